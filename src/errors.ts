/**
 * The one error type of the library. Callers branch on `code`, never on the message text.
 *
 * - `E_PARAM`: a parameter is invalid (block size, salt, hash, UUID, root hash string, offsets).
 * - `E_OVERLAP`: the data and hash areas overlap on the same file.
 * - `E_NOT_FOUND`: an input file does not exist or cannot be opened.
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
  | 'E_NOT_FOUND'
  | 'E_IO'
  | 'E_TRUNCATED'
  | 'E_BAD_SUPERBLOCK'
  | 'E_BAD_IMAGE'
  | 'E_UNSUPPORTED'
  | 'E_INTERNAL';

export class VerityError extends Error {
  override readonly name = 'VerityError';
  readonly code: VerityErrorCode;

  constructor(code: VerityErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  toJSON(): { code: VerityErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isVerityError(value: unknown): value is VerityError {
  return value instanceof VerityError;
}
