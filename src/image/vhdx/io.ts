/**
 * Bounded reads from the VHDX file. Every offset and length comes from the file itself, so each read is checked
 * against the file size before anything is allocated: a corrupt field can cost an error, never a huge buffer.
 */
import { VerityError } from '../../errors.js';
import type { ByteSource } from '../../io/source.js';

/**
 * Reads `length` bytes at `position` into a new buffer, or throws E_TRUNCATED if the file ends first. `length` must
 * already be bounded by the caller (every caller passes a structure size or a length checked against a stated limit).
 */
export async function readRange(src: ByteSource, position: number, length: number, what: string): Promise<Uint8Array> {
  checkRange(src, position, length, what);
  const out = new Uint8Array(length);
  await readFully(src, out, position, what);
  return out;
}

/** Throws E_TRUNCATED unless [position, position + length) lies inside `src`. */
export function checkRange(src: ByteSource, position: number, length: number, what: string): void {
  const end = position + length;
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(end) || position < 0 || length < 0) {
    throw new VerityError('E_BAD_IMAGE', `VHDX ${what}: offset ${position} and length ${length} are out of range.`);
  }
  if (end > src.size) {
    throw new VerityError(
      'E_TRUNCATED',
      `VHDX ${what} lies at bytes ${position}-${end - 1}, but the file has only ${src.size} bytes: it is truncated.`,
    );
  }
}

/** Fills `dst` from `position`; a source that ends early (or shrank since it was sized) gives E_TRUNCATED. */
export async function readFully(src: ByteSource, dst: Uint8Array, position: number, what: string): Promise<void> {
  let done = 0;
  // Each pass either advances or throws, so this ends after at most dst.length passes.
  while (done < dst.length) {
    const n = await src.read(dst.subarray(done), position + done);
    if (!(n > 0)) {
      throw new VerityError(
        'E_TRUNCATED',
        `VHDX ${what}: the file ended at offset ${position + done}, ${dst.length - done} bytes short.`,
      );
    }
    done += n;
  }
}
