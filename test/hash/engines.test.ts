import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HASH_ALGORITHMS, hashWasmEngine, selfTest, type HashEngine } from '../../src/core.js';
import { simdSupported } from '../../src/hash/wasm-kernel.js';
import { wasmSimdEngine } from '../../src/hash/wasm-simd-engine.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';

describe.each([nodeCryptoEngine, hashWasmEngine])('hash engine $name', (engine) => {
  it.each(HASH_ALGORITHMS)('passes the %s known-answer test', async (algorithm) => {
    await expect(selfTest(engine, algorithm)).resolves.toBeUndefined();
  });

  it('hashes a batch with the salt before (format 1) or after (format 0) each block, at a stride', async () => {
    const blocks = new Uint8Array(3 * 512).map((_, i) => (i * 7) & 0xff);
    const salt = new Uint8Array([1, 2, 3, 4, 5]);
    for (const placement of ['prefix', 'suffix'] as const) {
      const hasher = await engine.createBlockHasher({ algorithm: 'sha1', salt, saltPlacement: placement });
      const out = new Uint8Array(3 * 32).fill(0xcc);
      await hasher.hashBlocks(blocks, 512, 3, out, 0, 32);
      for (let i = 0; i < 3; i++) {
        const block = blocks.subarray(i * 512, (i + 1) * 512);
        const h = createHash('sha1');
        if (placement === 'prefix') h.update(salt).update(block);
        else h.update(block).update(salt);
        expect(Buffer.from(out.subarray(i * 32, i * 32 + 20)).toString('hex')).toBe(h.digest('hex'));
        expect(out.subarray(i * 32 + 20, i * 32 + 32).every((b) => b === 0xcc)).toBe(true);
      }
    }
  });
});

describe('selfTest', () => {
  it('rejects an engine that puts the salt on the wrong side', async () => {
    const swapped: HashEngine = {
      name: 'swapped',
      supports: () => true,
      createBlockHasher: (o) =>
        nodeCryptoEngine.createBlockHasher({ ...o, saltPlacement: o.saltPlacement === 'prefix' ? 'suffix' : 'prefix' }),
    };
    await expect(selfTest(swapped, 'sha256')).rejects.toThrow(/swapped failed its sha256 known-answer test/);
  });

  it('rejects an engine that writes outside its digest slots', async () => {
    const sloppy: HashEngine = {
      name: 'sloppy',
      supports: () => true,
      async createBlockHasher(o) {
        const inner = await nodeCryptoEngine.createBlockHasher(o);
        return {
          digestSize: inner.digestSize,
          async hashBlocks(src, bs, n, dst, off, stride) {
            await inner.hashBlocks(src, bs, n, dst, off, stride);
            dst.fill(0, off + inner.digestSize, off + stride);
          },
        };
      },
    };
    await expect(selfTest(sloppy, 'sha1')).rejects.toThrow(/sloppy failed/);
  });
});

describe.each([nodeCryptoEngine, hashWasmEngine, ...(simdSupported() ? [wasmSimdEngine] : [])])('hash engine $name, sha256', (engine) => {
  // 5000 blocks of 512 bytes: several kernel calls (at most 2048 blocks each); zero runs at the ends and in between.
  const [blockSize, count] = [512, 5000];
  const src = new Uint8Array(count * blockSize).map((_, i) => (i * 131 + (i >>> 9)) & 0xff || 1);
  for (const [first, n] of [[0, 3], [7, 1], [2040, 20], [4096, 100], [4999, 1]] as const) {
    src.fill(0, first * blockSize, (first + n) * blockSize);
  }

  it.each(['prefix', 'suffix'] as const)('hashes long batches with zero runs like node:crypto (salt %s), twice', async (placement) => {
    const salt = new Uint8Array(32).map((_, i) => i + 1);
    const hasher = await engine.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: placement });
    const stride = 40;
    const want = new Uint8Array(count * stride).fill(0xcc);
    for (let i = 0; i < count; i++) {
      const block = src.subarray(i * blockSize, (i + 1) * blockSize);
      const h = createHash('sha256');
      want.set((placement === 'prefix' ? h.update(salt).update(block) : h.update(block).update(salt)).digest(), i * stride);
    }
    for (let pass = 0; pass < 2; pass++) {
      const out = new Uint8Array(count * stride).fill(0xcc);
      await hasher.hashBlocks(src, blockSize, count, out, 0, stride);
      expect(Buffer.from(out).equals(Buffer.from(want))).toBe(true);
    }
  });
});
