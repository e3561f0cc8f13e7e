/**
 * All-zero blocks hash to one precomputed digest. Real root filesystems are mostly empty space, so checking for zeros
 * (which stops at the first non-zero word of a random block) and copying a cached digest saves most of their hashing.
 * The output is identical; only the work differs.
 */
import type { BlockHasher } from './engine.js';

/** True when every byte of `block` is zero; reads 32-bit words when aligned, with an early exit. */
export function isZeroBlock(block: Uint8Array): boolean {
  const { byteOffset, byteLength } = block;
  if ((byteOffset & 3) !== 0 || (byteLength & 31) !== 0) {
    for (let i = 0; i < byteLength; i++) if (block[i] !== 0) return false;
    return true;
  }
  const words = new Int32Array(block.buffer, byteOffset, byteLength >>> 2);
  if (words[0] !== 0) return false; // the common case for data: decided by one word
  for (let i = 0; i < words.length; i += 8) {
    if ((words[i]! | words[i + 1]! | words[i + 2]! | words[i + 3]! | words[i + 4]! | words[i + 5]! | words[i + 6]! | words[i + 7]!) !== 0) {
      return false;
    }
  }
  return true;
}

export interface BlockRun {
  first: number;
  count: number;
  zero: boolean;
}

/**
 * Blocks [0, count) of `src` as alternating runs of non-zero and all-zero blocks, in order. Every hashing thread runs
 * this over its own share of a batch, hashing the non-zero runs and filling in the cached digest for the zero ones.
 */
export function* blockRuns(src: Uint8Array, blockSize: number, count: number): Generator<BlockRun> {
  let runStart = 0;
  let runZero = false;
  for (let i = 0; i < count; i++) {
    const zero = isZeroBlock(src.subarray(i * blockSize, (i + 1) * blockSize));
    if (zero !== runZero && i > runStart) {
      yield { first: runStart, count: i - runStart, zero: runZero };
      runStart = i;
    }
    runZero = zero;
  }
  if (count > runStart) yield { first: runStart, count: count - runStart, zero: runZero };
}

/** Wraps a hasher so that all-zero blocks get the cached digest of a zero block instead of being hashed. */
export function withZeroBlocks(inner: BlockHasher): BlockHasher {
  const zeroDigests = new Map<number, Uint8Array>();
  const zeroDigest = async (blockSize: number): Promise<Uint8Array> => {
    let digest = zeroDigests.get(blockSize);
    if (!digest) {
      digest = new Uint8Array(inner.digestSize);
      await inner.hashBlocks(new Uint8Array(blockSize), blockSize, 1, digest, 0, inner.digestSize);
      zeroDigests.set(blockSize, digest);
    }
    return digest;
  };
  return {
    digestSize: inner.digestSize,
    async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
      for (const run of blockRuns(src, blockSize, count)) {
        if (run.zero) {
          const digest = await zeroDigest(blockSize);
          for (let i = run.first; i < run.first + run.count; i++) dst.set(digest, dstOffset + i * dstStride);
        } else {
          const bytes = src.subarray(run.first * blockSize, (run.first + run.count) * blockSize);
          await inner.hashBlocks(bytes, blockSize, run.count, dst, dstOffset + run.first * dstStride, dstStride);
        }
      }
    },
  };
}
