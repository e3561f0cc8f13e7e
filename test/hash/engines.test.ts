import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HASH_ALGORITHMS, hashWasmEngine, selfTest, type HashEngine } from '../../src/core.js';
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
