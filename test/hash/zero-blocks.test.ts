import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BlockHasher, BlockLoop } from '../../src/hash/engine.js';
import { isZeroBlock, skipZeroBlocks, withZeroBlocks } from '../../src/hash/zero-blocks.js';

/** A plain salted sha256 hasher that records how many blocks it was asked to hash. */
function countingHasher(salt: Uint8Array) {
  const seen = { blocks: 0, calls: 0 };
  const hasher: BlockHasher = {
    digestSize: 32,
    async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
      seen.calls++;
      seen.blocks += count;
      for (let i = 0; i < count; i++) {
        const d = createHash('sha256').update(salt).update(src.subarray(i * blockSize, (i + 1) * blockSize)).digest();
        dst.set(d, dstOffset + i * dstStride);
      }
    },
  };
  return { hasher, seen };
}

describe('isZeroBlock', () => {
  it('finds a single non-zero byte anywhere, aligned or not', () => {
    const buffer = new Uint8Array(4096 + 3);
    for (const offset of [0, 1, 3]) {
      const block = buffer.subarray(offset, offset + 4096);
      expect(isZeroBlock(block)).toBe(true);
      for (const at of [0, 1, 31, 32, 2047, 4095]) {
        block[at] = 1;
        expect(isZeroBlock(block), `offset ${offset}, byte ${at}`).toBe(false);
        block[at] = 0;
      }
    }
  });
});

describe('withZeroBlocks', () => {
  const salt = new Uint8Array([9, 8, 7]);
  const blockSize = 512;
  // Blocks: zero, data, data, zero, zero, data, zero (a zero run at both ends and in the middle).
  const pattern = [0, 1, 1, 0, 0, 1, 0];
  const src = new Uint8Array(pattern.length * blockSize);
  pattern.forEach((p, i) => {
    if (p) src.fill(i + 1, i * blockSize, (i + 1) * blockSize);
  });

  it('gives exactly the digests of hashing every block, at the stride, leaving the gaps untouched', async () => {
    const plain = countingHasher(salt);
    const expected = new Uint8Array(pattern.length * 40).fill(0xee);
    await plain.hasher.hashBlocks(src, blockSize, pattern.length, expected, 0, 40);
    const skipping = withZeroBlocks(countingHasher(salt).hasher);
    const actual = new Uint8Array(pattern.length * 40).fill(0xee);
    await skipping.hashBlocks(src, blockSize, pattern.length, actual, 0, 40);
    expect(Buffer.from(actual).toString('hex')).toBe(Buffer.from(expected).toString('hex'));
  });

  it('hashes only the non-zero blocks, in runs, plus one zero block per block size for the cached digest', async () => {
    const inner = countingHasher(salt);
    const skipping = withZeroBlocks(inner.hasher);
    const out = new Uint8Array(pattern.length * 32);
    await skipping.hashBlocks(src, blockSize, pattern.length, out, 0, 32);
    // Runs [1,2] and [5], then the zero digest once.
    expect(inner.seen).toEqual({ blocks: 3 + 1, calls: 3 });
    await skipping.hashBlocks(src, blockSize, pattern.length, out, 0, 32);
    expect(inner.seen).toEqual({ blocks: 3 + 1 + 3, calls: 3 + 2 });
  });
});

describe('skipZeroBlocks', () => {
  const salt = new Uint8Array([9, 8, 7]);
  const blockSize = 512;
  const pattern = [0, 1, 1, 0, 0, 1, 0];
  const src = new Uint8Array(pattern.length * blockSize);
  pattern.forEach((p, i) => {
    if (p) src.fill(i + 1, i * blockSize, (i + 1) * blockSize);
  });
  const expected = (stride: number) => {
    const out = new Uint8Array(pattern.length * stride).fill(0xee);
    for (let i = 0; i < pattern.length; i++) {
      out.set(createHash('sha256').update(salt).update(src.subarray(i * blockSize, (i + 1) * blockSize)).digest(), i * stride);
    }
    return Buffer.from(out).toString('hex');
  };

  it('is the synchronous form: the same digests, the same runs hashed, the zero digest hashed once', () => {
    const calls: number[] = [];
    const loop: BlockLoop = (bytes, bs, count, dst, dstOffset, dstStride) => {
      calls.push(count);
      for (let i = 0; i < count; i++) {
        const d = createHash('sha256').update(salt).update(bytes.subarray(i * bs, (i + 1) * bs)).digest();
        dst.set(d, dstOffset + i * dstStride);
      }
    };
    const skipping = skipZeroBlocks(loop, 32);
    const out = new Uint8Array(pattern.length * 40).fill(0xee);
    skipping(src, blockSize, pattern.length, out, 0, 40);
    expect(Buffer.from(out).toString('hex')).toBe(expected(40));
    expect(calls).toEqual([1, 2, 1]);
    skipping(src, blockSize, pattern.length, out.fill(0xee), 0, 40);
    expect(Buffer.from(out).toString('hex')).toBe(expected(40));
    expect(calls).toEqual([1, 2, 1, 2, 1]);
  });

  it('keeps its own copy of the zero digest when the destination (a Buffer, whose slice is a view) is reused', () => {
    const loop: BlockLoop = (bytes, bs, count, dst, dstOffset, dstStride) => {
      for (let i = 0; i < count; i++) {
        dst.set(createHash('sha256').update(salt).update(bytes.subarray(i * bs, (i + 1) * bs)).digest(), dstOffset + i * dstStride);
      }
    };
    const skipping = skipZeroBlocks(loop, 32);
    const out = Buffer.alloc(pattern.length * 32);
    skipping(src, blockSize, pattern.length, out, 0, 32);
    out.fill(0x11);
    skipping(src, blockSize, pattern.length, out, 0, 32);
    expect(out.toString('hex')).toBe(expected(32));
  });
});
