/** node:crypto engine (OpenSSL): the default on Node, and the reference the other engines are checked against. */
import { createHash } from 'node:crypto';
import { digestSize } from '../format/algorithms.js';
import type { BlockHasher, BlockHasherOptions, HashEngine } from '../hash/engine.js';
import { withZeroBlocks } from '../hash/zero-blocks.js';

export const nodeCryptoEngine: HashEngine = {
  name: 'node-crypto',
  supports: () => true,
  async createBlockHasher({ algorithm, salt, saltPlacement }: BlockHasherOptions): Promise<BlockHasher> {
    const prefix = saltPlacement === 'prefix' && salt.length > 0;
    const suffix = saltPlacement === 'suffix' && salt.length > 0;
    return withZeroBlocks({
      digestSize: digestSize(algorithm),
      async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
        for (let i = 0; i < count; i++) {
          const h = createHash(algorithm);
          if (prefix) h.update(salt);
          h.update(src.subarray(i * blockSize, (i + 1) * blockSize));
          if (suffix) h.update(salt);
          dst.set(h.digest(), dstOffset + i * dstStride);
        }
      },
    });
  },
};
