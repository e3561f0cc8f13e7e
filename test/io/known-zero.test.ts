/**
 * ByteSource.knownZero through slices and the block reader: which blocks a pass takes as zeros without reading.
 */
import { describe, expect, it } from 'vitest';
import { readBlocks } from '../../src/io/block-reader.js';
import { sliceSource } from '../../src/io/slice.js';
import type { ByteRange, ByteSource } from '../../src/io/source.js';
import { VerityError } from '../../src/errors.js';

/** A source of `size` bytes of 0xff except the `zero` ranges, which it reports as known zero (split as given). */
function sparse(size: number, zero: ByteRange[]) {
  const reads: Array<[number, number]> = [];
  const bytes = new Uint8Array(size).fill(0xff);
  for (const r of zero) bytes.fill(0, r.at, r.at + r.length);
  const source: ByteSource = {
    size,
    knownZero(offset, length) {
      return zero
        .map((r) => ({ at: Math.max(offset, r.at), end: Math.min(offset + length, r.at + r.length) }))
        .filter((r) => r.at < r.end)
        .map((r) => ({ at: r.at, length: r.end - r.at }));
    },
    async read(dst, position) {
      reads.push([position, dst.length]);
      const n = Math.min(dst.length, size - position);
      dst.set(bytes.subarray(position, position + n));
      return n;
    },
  };
  return { source, reads };
}

async function chunks(source: ByteSource, blockSize: number, blocks: number, chunkBytes = 4 * blockSize) {
  const out: Array<{ first: number; count: number; zero: boolean }> = [];
  for await (const c of readBlocks(source, blockSize, blocks, 'test', { chunkBytes, skipKnownZero: true })) {
    out.push({ first: c.first, count: c.count, zero: c.zero === true });
  }
  return out;
}

describe('known-zero blocks in the block reader', () => {
  it('yields whole known-zero blocks unread, merging ranges that touch, and reads partly covered blocks', async () => {
    // Blocks of 512. The three ranges touch, so they are one, [700, 4096): blocks 2–7 are whole inside it; block 1
    // is only partly, so it is read.
    const { source, reads } = sparse(16 * 512, [{ at: 700, length: 1348 }, { at: 2048, length: 52 }, { at: 2100, length: 1996 }]);
    expect(await chunks(source, 512, 16)).toEqual([
      { first: 0, count: 2, zero: false },
      { first: 2, count: 6, zero: true },
      { first: 8, count: 4, zero: false },
      { first: 12, count: 4, zero: false },
    ]);
    for (const [position, length] of reads) expect(position + length <= 2 * 512 || position >= 8 * 512).toBe(true);
    expect(reads.reduce((sum, [, l]) => sum + l, 0)).toBe(10 * 512);
  });

  it('reads everything when not asked to skip, or when the source knows nothing', async () => {
    const { source, reads } = sparse(8 * 512, [{ at: 0, length: 4096 }]);
    let n = 0;
    for await (const c of readBlocks(source, 512, 8, 'test', { chunkBytes: 2048 })) {
      expect(c.zero).toBeUndefined();
      n += c.count;
    }
    expect(n).toBe(8);
    expect(reads.length).toBe(2);
    const plain: ByteSource = { size: 4096, read: source.read };
    expect(await chunks(plain, 512, 8)).toEqual([{ first: 0, count: 4, zero: false }, { first: 4, count: 4, zero: false }]);
  });

  it('an answer out of order is a bug in the source (E_INTERNAL)', async () => {
    const source: ByteSource = {
      size: 4096,
      knownZero: () => [{ at: 2048, length: 1024 }, { at: 0, length: 1024 }],
      read: async (dst) => dst.length,
    };
    await expect(chunks(source, 512, 8)).rejects.toSatisfy((e) => e instanceof VerityError && e.code === 'E_INTERNAL');
  });
});

describe('known-zero bytes through a slice', () => {
  it('are clipped to the window and shifted to its offsets', () => {
    const { source } = sparse(10_000, [{ at: 1000, length: 2000 }, { at: 5000, length: 4000 }]);
    const slice = sliceSource(source, 2500, 5000);
    expect(slice.knownZero!(0, 5000)).toEqual([{ at: 0, length: 500 }, { at: 2500, length: 2500 }]);
    expect(slice.knownZero!(100, 300)).toEqual([{ at: 100, length: 300 }]);
    expect(slice.knownZero!(4000, 9999)).toEqual([{ at: 4000, length: 1000 }]);
    expect(slice.knownZero!(5000, 10)).toEqual([]);
    expect(sliceSource({ size: 10, read: async () => 0 }, 0, 5).knownZero).toBeUndefined();
  });
});
