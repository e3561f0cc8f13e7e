/**
 * Deterministic test data, shared by the golden-vector generator (which feeds it to the real veritysetup) and by the
 * tests (which feed it to us). Changing anything here invalidates test/golden/vectors.json: regenerate it.
 */

export type Fill = 'random' | 'zero' | 'mixed';

export interface DataSpec {
  /** Whole blocks of `blockSize` bytes. */
  blocks: number;
  blockSize: number;
  /** Extra bytes after the last whole block (a trailing partial block). */
  tailBytes: number;
  fill: Fill;
  seed: number;
}

/**
 * xorshift32 words written little-endian. 'mixed' zeroes every block whose index is a multiple of 3 (the stream is
 * still advanced over it), so an image has both zero and random blocks.
 */
export function makeData(spec: DataSpec): Uint8Array {
  const length = spec.blocks * spec.blockSize + spec.tailBytes;
  const out = new Uint8Array(length);
  if (spec.fill === 'zero') return out;
  const words = new Uint32Array(out.buffer, 0, length >>> 2);
  let x = spec.seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) out[i] = (i * 131 + spec.seed) & 0xff;
  if (spec.fill === 'mixed') {
    for (let b = 0; b * spec.blockSize < length; b += 3) out.fill(0, b * spec.blockSize, Math.min(length, (b + 1) * spec.blockSize));
  }
  return out;
}
