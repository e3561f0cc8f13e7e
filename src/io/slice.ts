/**
 * A window onto another byte source: a partition of a disk, the data area of an image file.
 */
import { VerityError } from '../errors.js';
import type { ByteRange, ByteSource } from './source.js';

/**
 * The bytes [offset, offset + length) of `source`, as a source of `length` bytes. Reads never reach outside the
 * window, and a window that does not fit inside `source` is refused here rather than found short on a later read.
 */
export function sliceSource(source: ByteSource, offset: number, length: number): ByteSource {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new VerityError('E_PARAM', `Invalid slice: offset ${offset} and length ${length} must be non-negative integers.`);
  }
  if (offset + length > source.size) {
    throw new VerityError(
      'E_TRUNCATED',
      `Slice of ${length} bytes at offset ${offset} ends at ${offset + length}, ` +
        `past the end of its ${source.size}-byte source.`,
    );
  }
  const inner = source.sequential;
  return {
    size: length,
    // A partition of a sparse disk image keeps what the image knows is zero (ByteSource.knownZero).
    ...(source.knownZero && {
      knownZero: (o: number, l: number) => {
        const end = Math.min(length, o + l);
        if (!(o < end)) return [];
        const out: ByteRange[] = [];
        for (const r of source.knownZero!(offset + o, end - o)) {
          const at = Math.max(o, r.at - offset);
          const until = Math.min(end, r.at - offset + r.length);
          if (at < until) out.push({ at, length: until - at });
        }
        return out;
      },
    }),
    // A partition of a raw disk still lies in the disk's file (ByteSource.fileSpans).
    ...(source.fileSpans && {
      fileSpans: (o: number, l: number) => (o >= 0 && o + l <= length ? source.fileSpans!(offset + o, l) : undefined),
    }),
    ...(inner && {
      sequential: {
        origin: inner.origin,
        runs: (o: number, l: number) =>
          inner.runs(offset + o, Math.min(l, length - o)).map((r) => ({ ...r, at: r.at - offset })),
        ...(inner.patch && { patch: inner.patch }),
      },
    }),
    read(dst, position) {
      if (!Number.isSafeInteger(position) || position < 0) {
        return Promise.reject(new VerityError('E_PARAM', `Invalid read position ${position}.`));
      }
      if (position >= length) return Promise.resolve(0);
      const n = Math.min(dst.length, length - position);
      return source.read(n === dst.length ? dst : dst.subarray(0, n), offset + position);
    },
  };
}
