/**
 * All-zero blocks of one size hash to one digest. Real root filesystems are mostly empty space, so checking for zeros
 * (which stops at the first non-zero word of a random block) and copying a cached digest saves most of their hashing.
 * The output is identical; only the work differs. Every engine and every thread of the hash pool skips zero blocks
 * through the one walk here (ZeroDigests), wrapped around its block loop (skipZeroBlocks) or hasher (withZeroBlocks).
 */
import type { BlockHasher, BlockLoop } from './engine.js';

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

/** Blocks [first, first + count) of a batch, all zero or none. */
export interface BlockRun {
  first: number;
  count: number;
  zero: boolean;
}

/**
 * Blocks [0, count) of `src` as alternating runs of non-zero and all-zero blocks, in order. Every hashing thread runs
 * this over its own share of a batch (through ZeroDigests), so zero-heavy images keep their parallelism.
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

/** True when `a` and `b` hold the same bytes; compares 32-bit words eight at a time when it can, with an early exit. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  if (((a.byteOffset | b.byteOffset | n) & 31) !== 0) {
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  return sameWords(new Int32Array(a.buffer, a.byteOffset, n >>> 2), 0, new Int32Array(b.buffer, b.byteOffset, n >>> 2), 0, n >>> 2);
}

/** Words [i, i + count) of `x` equal words [j, j + count) of `y`; `count` is a multiple of 8. */
function sameWords(x: Int32Array, i: number, y: Int32Array, j: number, count: number): boolean {
  if (x[i] !== y[j]) return false; // the common case for different hash blocks: decided by one word
  for (let k = 0; k < count; k += 8) {
    const p = i + k;
    const q = j + k;
    if (
      ((x[p]! ^ y[q]!) | (x[p + 1]! ^ y[q + 1]!) | (x[p + 2]! ^ y[q + 2]!) | (x[p + 3]! ^ y[q + 3]!) |
        (x[p + 4]! ^ y[q + 4]!) | (x[p + 5]! ^ y[q + 5]!) | (x[p + 6]! ^ y[q + 6]!) | (x[p + 7]! ^ y[q + 7]!)) !== 0
    ) {
      return false;
    }
  }
  return true;
}

/**
 * Blocks [0, count) of `src` as alternating runs of blocks that differ from `known` and blocks equal to it (`zero`
 * set), in order. The tree uses it one level up from the data: a hash block equal to the hash block of an all-zero
 * subtree has that subtree's digest, so it is copied, not hashed (tree/level-chain.ts).
 */
export function* knownBlockRuns(src: Uint8Array, blockSize: number, count: number, known: Uint8Array): Generator<BlockRun> {
  const aligned = ((src.byteOffset | known.byteOffset | blockSize) & 31) === 0 && known.length === blockSize;
  const words = blockSize >>> 2;
  const x = aligned ? new Int32Array(src.buffer, src.byteOffset, count * words) : null;
  const y = aligned ? new Int32Array(known.buffer, known.byteOffset, words) : null;
  let runStart = 0;
  let runKnown = false;
  for (let i = 0; i < count; i++) {
    const same = x ? sameWords(x, i * words, y!, 0, words) : sameBytes(src.subarray(i * blockSize, (i + 1) * blockSize), known);
    if (same !== runKnown && i > runStart) {
      yield { first: runStart, count: i - runStart, zero: runKnown };
      runStart = i;
    }
    runKnown = same;
  }
  if (count > runStart) yield { first: runStart, count: count - runStart, zero: runKnown };
}

/**
 * The digest of an all-zero block, per block size, for one hasher (one algorithm and salt). It is not computed apart:
 * the first all-zero block met is hashed where it lies like any other, and its digest is kept.
 */
export class ZeroDigests {
  private readonly digests = new Map<number, Uint8Array>();

  constructor(readonly digestSize: number) {}

  /**
   * Walks blocks [0, count) of `src`, writing the cached digest for every all-zero block (digest `i` at
   * `dst[dstOffset + i * dstStride]`), and yields the runs the caller must hash into `dst` itself: the non-zero runs,
   * and a block size's first zero block, whose digest is read back from `dst` once the caller resumes the walk. A
   * generator, so the synchronous loops and the async hashers share this one walk.
   */
  *runsToHash(
    src: Uint8Array,
    blockSize: number,
    count: number,
    dst: Uint8Array,
    dstOffset: number,
    dstStride: number,
  ): Generator<BlockRun> {
    for (const run of blockRuns(src, blockSize, count)) {
      if (!run.zero) {
        yield run;
        continue;
      }
      let first = run.first;
      let digest = this.digests.get(blockSize);
      if (!digest) {
        yield { first, count: 1, zero: true };
        const at = dstOffset + first * dstStride;
        // A copy: `dst` may be a Buffer (whose slice is a view) over memory the next batch overwrites.
        digest = new Uint8Array(this.digestSize);
        digest.set(dst.subarray(at, at + this.digestSize));
        this.digests.set(blockSize, digest);
        first++;
      }
      for (let i = first; i < run.first + run.count; i++) dst.set(digest, dstOffset + i * dstStride);
    }
  }
}

/** Wraps a block loop so that all-zero blocks get the cached digest of a zero block instead of being hashed. */
export function skipZeroBlocks(inner: BlockLoop, digestSize: number): BlockLoop {
  const zeros = new ZeroDigests(digestSize);
  return (src, blockSize, count, dst, dstOffset, dstStride) => {
    for (const run of zeros.runsToHash(src, blockSize, count, dst, dstOffset, dstStride)) {
      const bytes = src.subarray(run.first * blockSize, (run.first + run.count) * blockSize);
      inner(bytes, blockSize, run.count, dst, dstOffset + run.first * dstStride, dstStride);
    }
  };
}

/** Wraps a hasher so that all-zero blocks get the cached digest of a zero block instead of being hashed. */
export function withZeroBlocks(inner: BlockHasher): BlockHasher {
  const zeros = new ZeroDigests(inner.digestSize);
  return {
    digestSize: inner.digestSize,
    async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
      for (const run of zeros.runsToHash(src, blockSize, count, dst, dstOffset, dstStride)) {
        const bytes = src.subarray(run.first * blockSize, (run.first + run.count) * blockSize);
        await inner.hashBlocks(bytes, blockSize, run.count, dst, dstOffset + run.first * dstStride, dstStride);
      }
    },
  };
}
