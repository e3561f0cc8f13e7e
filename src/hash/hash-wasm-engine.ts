/**
 * hash-wasm engine: portable (browsers, any JS runtime with WebAssembly), so it is the pure core's default. It hashes
 * one block per init/update/digest round trip, so it is slower than node:crypto on Node (docs/performance.md: ~170 MB/s).
 */
import type { IHasher } from 'hash-wasm';
import { digestSize, type HashAlgorithm } from '../format/algorithms.js';
import type { BlockHasher, BlockHasherOptions, HashEngine } from './engine.js';
import { withZeroBlocks } from './zero-blocks.js';

/** Loaded on first use: the package embeds every algorithm's binary, which costs ~40 ms of start-up to parse. */
async function createHasher(algorithm: HashAlgorithm): Promise<IHasher> {
  const m = await import('hash-wasm');
  const factories: Record<HashAlgorithm, () => Promise<IHasher>> = {
    sha1: m.createSHA1,
    sha224: m.createSHA224,
    sha256: m.createSHA256,
    sha384: m.createSHA384,
    sha512: m.createSHA512,
  };
  return factories[algorithm]();
}

/** hash-wasm on the calling thread; every algorithm, any runtime with WebAssembly. */
export const hashWasmEngine: HashEngine = {
  name: 'hash-wasm',
  supports: () => true,
  async createBlockHasher({ algorithm, salt, saltPlacement }: BlockHasherOptions): Promise<BlockHasher> {
    const h = await createHasher(algorithm);
    const prefix = saltPlacement === 'prefix' && salt.length > 0;
    const suffix = saltPlacement === 'suffix' && salt.length > 0;
    return withZeroBlocks({
      digestSize: digestSize(algorithm),
      async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
        for (let i = 0; i < count; i++) {
          h.init();
          if (prefix) h.update(salt);
          h.update(src.subarray(i * blockSize, (i + 1) * blockSize));
          if (suffix) h.update(salt);
          dst.set(h.digest('binary'), dstOffset + i * dstStride);
        }
      },
    });
  },
};
