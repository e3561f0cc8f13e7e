/**
 * openEngine (src/threads/engines.ts) where worker threads cannot start: the pass still runs, on the calling thread,
 * with the same digests, and the process is warned once. `node:worker_threads` is replaced in this file only, by a
 * Worker that either throws when constructed (no threads in this runtime) or dies before it is ready (a worker script
 * that cannot load, as in an application bundle without hash-worker.js).
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const mode = vi.hoisted(() => ({ current: 'throw' as 'throw' | 'die' }));

vi.mock('node:worker_threads', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:worker_threads')>();
  // Imported here: the factory runs before this file's own imports.
  const { EventEmitter } = await import('node:events');
  class BrokenWorker extends EventEmitter {
    constructor() {
      super();
      if (mode.current === 'throw') throw new Error('worker_threads is not available');
      setImmediate(() => {
        this.emit('error', new Error("Cannot find module '/app/dist/hash-worker.js'"));
        this.emit('exit', 1);
      });
    }
    postMessage(): void {}
    ref(): void {}
    unref(): void {}
    async terminate(): Promise<number> {
      return 1;
    }
  }
  return { ...original, Worker: BrokenWorker };
});

const { openEngine } = await import('../../src/threads/engines.js');
const { VerityError } = await import('../../src/errors.js');

let warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** Hashes two 4 KiB blocks with the opened engine and with node:crypto directly. */
async function digestsMatch(engine: Awaited<ReturnType<typeof openEngine>>['engine']): Promise<boolean> {
  const blocks = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff);
  const salt = new Uint8Array([1, 2, 3]);
  const hasher = await engine.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: 'prefix' });
  const out = new Uint8Array(64);
  await hasher.hashBlocks(blocks, 4096, 2, out, 0, 32);
  const expect0 = createHash('sha256').update(salt).update(blocks.subarray(0, 4096)).digest();
  const expect1 = createHash('sha256').update(salt).update(blocks.subarray(4096)).digest();
  return Buffer.from(out).equals(Buffer.concat([expect0, expect1]));
}

describe('openEngine when worker threads cannot start', () => {
  it.each(['throw', 'die'] as const)(
    'a Worker that cannot %s falls back to one thread with the same digests, warning once per process',
    async (how) => {
      mode.current = how;
      const first = await openEngine('sha256', 1 << 30, { engine: 'node-crypto', threads: 2 });
      expect(first.threads).toBe(1);
      expect(first.description).toMatch(/^node-crypto \(.*threads cannot start; hashed on the calling thread\)$/);
      expect(await digestsMatch(first.engine)).toBe(true);
      await first.close();
      const second = await openEngine('sha256', 1 << 30, { engine: 'wasm-simd', threads: 4 });
      expect(second.threads).toBe(1);
      expect(second.engine.name).toBe('wasm-simd');
      expect(await digestsMatch(second.engine)).toBe(true);
      await second.close();
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'VERITY_NO_THREADS');
      // One warning in the whole process: the first test's; the second test sees none.
      expect(ours.length).toBe(how === 'throw' ? 1 : 0);
      if (how === 'throw') expect(ours[0]!.message).toMatch(/Hash threads cannot start: .*not available\. Hashing on the calling thread instead\./);
    },
  );

  it('an error that is not about starting threads still fails the pass (an unknown engine name)', async () => {
    await expect(openEngine('sha256', 1 << 30, { engine: 'nope', threads: 2 })).rejects.toBeInstanceOf(VerityError);
  });
});
