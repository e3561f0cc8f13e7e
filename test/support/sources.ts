/** Small helpers the reader tests share. */
import type { ByteSource } from '../../src/io/source.js';

/** Up to `length` bytes of `source` from `position` (fewer at its end). */
export async function readAt(source: ByteSource, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const n = await source.read(out, position);
  return out.subarray(0, n);
}

/** The VerityError code and message that `p` (a promise, or a function that throws or rejects) fails with. */
export async function failure(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  throw new Error('expected a failure');
}
