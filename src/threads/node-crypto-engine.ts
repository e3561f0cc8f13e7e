/** node:crypto engine (OpenSSL): the default on Node, and the reference the other engines are checked against. */
import { createHash, hash as oneShot } from 'node:crypto';
import { digestSize } from '../format/algorithms.js';
import type { BlockHasher, BlockHasherOptions, BlockLoop, HashEngine } from '../hash/engine.js';
import { skipZeroBlocks } from '../hash/zero-blocks.js';

/**
 * Per block it copies a hash state that has already taken the salt (cheaper than createHash: no algorithm lookup, no
 * salt update); without a salt it uses the one-shot `crypto.hash` where the runtime has it (Node 20.12+), which skips
 * the Hash object altogether.
 */
function nodeCryptoLoop({ algorithm, salt, saltPlacement }: BlockHasherOptions): BlockLoop {
  if (salt.length === 0 && typeof oneShot === 'function') {
    return (src, blockSize, count, dst, dstOffset, dstStride) => {
      for (let i = 0, at = 0; i < count; i++, at += blockSize) {
        dst.set(oneShot(algorithm, src.subarray(at, at + blockSize), 'buffer'), dstOffset + i * dstStride);
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
