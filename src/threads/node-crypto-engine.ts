/** node:crypto engine (OpenSSL): the default on Node, and the reference the other engines are checked against. */
import { createHash, hash as oneShot } from 'node:crypto';
import { digestSize, type HashAlgorithm } from '../format/algorithms.js';
import type { BlockHasher, BlockHasherOptions, HashEngine, SaltPlacement } from '../hash/engine.js';
import { withZeroBlocks } from '../hash/zero-blocks.js';

/** Hashes `count` blocks of `blockSize` bytes from `src` into `dst`, one digest every `dstStride` bytes from `dstOffset`. */
export type BlockLoop = (src: Uint8Array, blockSize: number, count: number, dst: Uint8Array, dstOffset: number, dstStride: number) => void;

/**
 * The node:crypto block loop, shared by this engine and the hash pool's threads. Per block it copies a hash state
 * that has already taken the salt (cheaper than createHash: no algorithm lookup, no salt update); without a salt it
 * uses the one-shot `crypto.hash` where the runtime has it (Node 20.12+), which skips the Hash object altogether.
 */
export function nodeCryptoLoop(algorithm: HashAlgorithm, salt: Uint8Array, saltPlacement: SaltPlacement): BlockLoop {
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

export const nodeCryptoEngine: HashEngine = {
  name: 'node-crypto',
  supports: () => true,
  async createBlockHasher({ algorithm, salt, saltPlacement }: BlockHasherOptions): Promise<BlockHasher> {
    const loop = nodeCryptoLoop(algorithm, salt, saltPlacement);
    return withZeroBlocks({
      digestSize: digestSize(algorithm),
      async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
        loop(src, blockSize, count, dst, dstOffset, dstStride);
      },
    });
  },
};
