/**
 * The one error type of the library. Callers branch on `code`, never on the message text; `data` carries the
 * numbers and names the message was written from, so the JSON report and the message agree.
 *
 * - `E_PARAM`: a parameter is invalid (block size, salt, hash, UUID, root hash string, offsets).
 * - `E_OVERLAP`: the data and hash areas overlap on the same file.
 * - `E_NO_FILE`: an input file does not exist, cannot be opened, or is a directory.
 * - `E_NO_ENTRY`: an address step names nothing in its container (no such zip entry, no such partition).
 * - `E_IO`: reading or writing failed.
 * - `E_TRUNCATED`: an input is shorter than its parameters require.
 * - `E_BAD_SUPERBLOCK`: there is no valid verity superblock where one is expected.
 * - `E_BAD_IMAGE`: a disk image or partition table is malformed (bad checksum, field out of range, truncated).
 * - `E_UNSUPPORTED`: a valid image of a kind we do not read (e.g. a differencing VHDX, which needs its parent).
 * - `E_INTERNAL`: a bug in this library.
 */
export type VerityErrorCode =
  | 'E_PARAM'
  | 'E_OVERLAP'
  | 'E_NO_FILE'
  | 'E_NO_ENTRY'
  | 'E_IO'
  | 'E_TRUNCATED'
  | 'E_BAD_SUPERBLOCK'
  | 'E_BAD_IMAGE'
  | 'E_UNSUPPORTED'
  | 'E_INTERNAL';

export const VERITY_ERROR_CODES: readonly VerityErrorCode[] = [
  'E_PARAM',
  'E_OVERLAP',
  'E_NO_FILE',
  'E_NO_ENTRY',
  'E_IO',
  'E_TRUNCATED',
  'E_BAD_SUPERBLOCK',
  'E_BAD_IMAGE',
  'E_UNSUPPORTED',
  'E_INTERNAL',
];

/** What an error is about, as far as it is known. Every field is optional; 64-bit values too large for a double are strings. */
export interface VerityErrorData {
  /** The file or address at fault. */
  path?: string;
  /** A byte offset in that input. */
  offset?: number;
  /** The value the format or the parameters required. */
  expected?: number | string;
  /** The value found. */
  actual?: number | string;
  /** The structure field or parameter at fault. */
  field?: string;
}

/** The serialised form of a `VerityError`: what `toJSON` gives and `fromJSON` takes (also across worker threads). */
export interface VerityErrorJson {
  code: VerityErrorCode;
  message: string;
  data?: VerityErrorData;
}

export class VerityError extends Error {
  override readonly name = 'VerityError';
  readonly code: VerityErrorCode;
  readonly data: VerityErrorData;

  constructor(code: VerityErrorCode, message: string, options?: { cause?: unknown; data?: VerityErrorData }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.data = options?.data ?? {};
  }

  toJSON(): VerityErrorJson {
    return Object.keys(this.data).length > 0
      ? { code: this.code, message: this.message, data: { ...this.data } }
      : { code: this.code, message: this.message };
  }

  /** Rebuilds an error from `toJSON()`'s output; an unknown code becomes `E_INTERNAL`. */
  static fromJSON(json: VerityErrorJson): VerityError {
    const code = VERITY_ERROR_CODES.includes(json.code) ? json.code : 'E_INTERNAL';
    return new VerityError(code, String(json.message), json.data ? { data: json.data } : undefined);
  }
}

export function isVerityError(value: unknown): value is VerityError {
  return value instanceof VerityError;
}
