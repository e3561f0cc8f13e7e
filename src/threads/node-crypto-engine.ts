/** node:crypto engine (OpenSSL): the default on Node, and the reference the other engines are checked against. */
import { createHash, hash as oneShot } from 'node:crypto';
import { digestSize } from '../format/algorithms.js';
import type { BlockHasher, BlockHasherOptions, BlockLoop, HashEngine } from '../hash/engine.js';
import { skipZeroBlocks } from '../hash/zero-blocks.js';

/**
 * One call per block where the runtime has the one-shot `crypto.hash` (Node 20.12+): it skips the Hash object, its
 * algorithm lookup and its copy, which cost more than SHA-256 of 4 KiB with SHA extensions. With a salt, each block is
 * copied into a reused staging buffer that already holds the salt (`salt ‖ block`, or `block ‖ salt` for hash type 0):
 * a 4 KiB copy is far cheaper than the second update call it replaces. Without the one-shot, a hash state that has
 * already taken the salt is copied per block.
 */
function nodeCryptoLoop({ algorithm, salt, saltPlacement }: BlockHasherOptions): BlockLoop {
  if (typeof oneShot === 'function') {
    if (salt.length === 0) {
      return (src, blockSize, count, dst, dstOffset, dstStride) => {
        for (let i = 0, at = 0; i < count; i++, at += blockSize) {
          dst.set(oneShot(algorithm, src.subarray(at, at + blockSize), 'buffer'), dstOffset + i * dstStride);
        }
      };
    }
    const prefix = saltPlacement === 'prefix';
    let stage = new Uint8Array(0);
    return (src, blockSize, count, dst, dstOffset, dstStride) => {
      if (stage.length !== salt.length + blockSize) {
        stage = new Uint8Array(salt.length + blockSize);
        stage.set(salt, prefix ? 0 : blockSize);
      }
      const blockAt = prefix ? salt.length : 0;
      for (let i = 0, at = 0; i < count; i++, at += blockSize) {
        stage.set(src.subarray(at, at + blockSize), blockAt);
        dst.set(oneShot(algorithm, stage, 'buffer'), dstOffset + i * dstStride);
      }
    };
  }
  const start = createHash(algorithm);
  if (saltPlacement === 'prefix') start.update(salt);
  const suffix = saltPlacement === 'suffix' && salt.length > 0;
  return (src, blockSize, count, dst, dstOffset, dstStride) => {
    for (let i = 0, at = 0; i < count; i++, at += blockSize) {
      const h = start.copy();
      h.update(src.subarray(at, at + blockSize));
      if (suffix) h.update(salt);
      dst.set(h.digest(), dstOffset + i * dstStride);
    }
  };
}

/**
 * The node:crypto block loop with all-zero blocks skipped: what this engine's hashers run, and the hash pool's threads
 * too, over their shared arena.
 */
export function nodeCryptoBlocks(options: BlockHasherOptions): BlockLoop {
  return skipZeroBlocks(nodeCryptoLoop(options), digestSize(options.algorithm));
}

/** Hashes with node:crypto on the calling thread; every algorithm. */
export const nodeCryptoEngine: HashEngine = {
  name: 'node-crypto',
  supports: () => true,
  async createBlockHasher(options: BlockHasherOptions): Promise<BlockHasher> {
    const hash = nodeCryptoBlocks(options);
    return {
      digestSize: digestSize(options.algorithm),
      async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
        hash(src, blockSize, count, dst, dstOffset, dstStride);
      },
    };
  },
};
