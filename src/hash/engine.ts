/**
 * The batch hashing interface the tree code is written against. One call hashes many equal-sized blocks, each with
 * the salt placed as the tree format requires, and writes each digest at a stride into a destination: straight into
 * the digest slots of the hash block being built, or packed into a scratch array.
 */
import type { HashAlgorithm } from '../format/algorithms.js';
import type { FileSpan } from '../io/source.js';

/** Format 1 prepends the salt to every block; format 0 (Chrome OS) appends it (cryptsetup lib/verity/verity_hash.c: verify_hash_block). */
export type SaltPlacement = 'prefix' | 'suffix';

/** What a block hasher hashes with: one tree's algorithm, salt and salt placement. */
export interface BlockHasherOptions {
  algorithm: HashAlgorithm;
  salt: Uint8Array;
  saltPlacement: SaltPlacement;
}

/** Hashes batches of blocks for one tree (one algorithm and salt). */
export interface BlockHasher {
  readonly digestSize: number;
  /**
   * Hashes `count` consecutive blocks of `blockSize` bytes starting at `src[0]` and writes digest `i` to
   * `dst[dstOffset + i * dstStride ...]`. Bytes of `dst` between digests are left untouched.
   */
  hashBlocks(...args: Parameters<BlockLoop>): Promise<void>;
  /** Set by engines whose threads read data by themselves (the hash pool), so the calling thread does not. */
  readonly fromFiles?: FileBlockHasher;
}

/** Hashes blocks that lie in files (ByteSource.fileSpans), reading them on the engine's own threads. */
export interface FileBlockHasher {
  /** Bytes of data per call that keep the threads busy between calls. */
  readonly batchBytes: number;
  /**
   * Reads the `count * blockSize` bytes of `spans` (in order) and hashes them as `hashBlocks` would hash the same
   * bytes in memory: digest `i` to `dst[dstOffset + i * dstStride ...]`.
   */
  hashSpans(
    spans: readonly FileSpan[],
    blockSize: number,
    count: number,
    dst: Uint8Array,
    dstOffset: number,
    dstStride: number,
  ): Promise<void>;
}

/**
 * `BlockHasher.hashBlocks` as a plain synchronous function: the block loop of an engine, which its BlockHasher and
 * the hash pool's threads both run.
 */
export type BlockLoop = (
  src: Uint8Array,
  blockSize: number,
  count: number,
  dst: Uint8Array,
  dstOffset: number,
  dstStride: number,
) => void;

/** A way of hashing (node:crypto, a WASM kernel, a pool of threads): makes block hashers. */
export interface HashEngine {
  readonly name: string;
  /** Whether this engine hashes `algorithm` (the WASM SIMD kernel does sha256 only). */
  supports(algorithm: HashAlgorithm): boolean;
  createBlockHasher(options: BlockHasherOptions): Promise<BlockHasher>;
  /**
   * Buffers the engine hashes from without copying (e.g. views of memory shared with worker threads). The block
   * reader reads data straight into them. Engines without one hash from any Uint8Array.
   */
  allocate?(bytes: number): Uint8Array;
  /** Bytes of data per `hashBlocks` call that keep the engine fully busy (default 1 MiB). */
  readonly batchBytes?: number;
  /** Releases threads and memory; the engine is unusable afterwards. */
  close?(): Promise<void>;
}

/** The salt placement of a superblock hash type: 1 (normal) prefix, 0 (Chrome OS) suffix. */
export function saltPlacementFor(hashType: 0 | 1): SaltPlacement {
  return hashType === 1 ? 'prefix' : 'suffix';
}
