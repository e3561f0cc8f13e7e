/**
 * The worker_threads hash pool (src/threads/hash-pool.ts): digests equal node:crypto's for every algorithm, salt and
 * shape of batch, in and out of the shared arena; whole trees equal the single-threaded ones; and the pool never hangs
 * when closed or when a thread dies.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HASH_ALGORITHMS, digestSize, type HashAlgorithm } from '../../src/format/algorithms.js';
import { paramsForFormat } from '../../src/format/options.js';
import type { HashEngine, SaltPlacement } from '../../src/hash/engine.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { selfTest } from '../../src/hash/self-test.js';
import { simdSupported } from '../../src/hash/wasm-kernel.js';
import { bytesSource, MemorySink, spansWithin, type FileSpan } from '../../src/io/source.js';
import { openFileSource } from '../../src/files/files.js';
import {
  createHashPool,
  MIN_DISPATCH_BLOCKS,
  POOL_TESTING,
  type PoolInner,
  type PoolTesting,
} from '../../src/threads/hash-pool.js';
import { buildTree, formatImage } from '../../src/tree/build.js';
import { prestartThreads } from '../../src/threads/thread-set.js';
import { VerityError, type VerityErrorJson } from '../../src/errors.js';

/** Whether this runtime runs the WASM SIMD kernel (Node 20 does). */
const kernelAvailable = simdSupported();

const hooks = (pool: HashEngine): PoolTesting => (pool as unknown as { [POOL_TESTING]: PoolTesting })[POOL_TESTING];

function reference(
  algorithm: HashAlgorithm,
  salt: Uint8Array,
  placement: SaltPlacement,
  src: Uint8Array,
  blockSize: number,
  count: number,
): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const block = src.subarray(i * blockSize, (i + 1) * blockSize);
    const h = createHash(algorithm);
    if (placement === 'prefix') h.update(salt).update(block);
    else h.update(block).update(salt);
    out.push(h.digest());
  }
  return out;
}

const GUARD = 0xa5;
const LEAD = 8;

/** Hashes with `hasher` into a guarded destination and checks every digest and every byte between them. */
async function expectDigests(
  hashBlocks: (dst: Uint8Array, offset: number, stride: number) => Promise<void>,
  expected: Buffer[],
  count: number,
  stride: number,
): Promise<void> {
  const size = expected[0]!.length;
  const dst = new Uint8Array(LEAD + count * stride + LEAD).fill(GUARD);
  await hashBlocks(dst, LEAD, stride);
  let wrong = 0;
  let touched = 0;
  for (let i = 0; i < count; i++) {
    const at = LEAD + i * stride;
    if (!expected[i]!.equals(dst.subarray(at, at + size))) wrong++;
    for (let j = at + size; j < at + stride; j++) if (dst[j] !== GUARD) touched++;
  }
  for (let j = 0; j < LEAD; j++) if (dst[j] !== GUARD || dst[dst.length - 1 - j] !== GUARD) touched++;
  expect({ wrong, touched }).toEqual({ wrong: 0, touched: 0 });
}

const SALT_LENGTHS = [0, 1, 32, 256];
const BLOCK_SIZES = [512, 4096, 65536];
const COUNTS = [1, 3, 63, 64, 65, 257, 1000];
/** A reader never hands over more than a batch (a few MiB): at 64 KiB blocks that is ~64 blocks. */
const countsFor = (blockSize: number) => (blockSize === 65536 ? COUNTS.filter((c) => c <= 65) : COUNTS);
const stridesFor = (size: number) => [32, 64].filter((s) => s >= size);
const PLACEMENTS: SaltPlacement[] = ['prefix', 'suffix'];

/** Random data for every test; a block's contents do not matter, only that blocks differ. */
const DATA = randomBytes(1000 * 4096 + 65 * 65536);
const SLOT_BYTES = Math.max(...BLOCK_SIZES.map((bs) => Math.max(...countsFor(bs)) * bs));

function matrix(name: string, pool: () => HashEngine, algorithms: readonly HashAlgorithm[]) {
  describe(name, () => {
    let arena: Uint8Array;
    let spanDir: string;
    beforeAll(() => {
      spanDir = mkdtempSync(join(tmpdir(), 'hash-pool-spans-'));
      arena = pool().allocate!(SLOT_BYTES);
      arena.set(DATA.subarray(0, SLOT_BYTES));
    });
    afterAll(() => rmSync(spanDir, { recursive: true, force: true }));

    const cases = algorithms.flatMap((a) => PLACEMENTS.flatMap((p) => SALT_LENGTHS.map((s) => [a, p, s] as const)));
    const title = '%s, salt %s, %i-byte salt: every block size, count and stride, in the arena';
    it.each(cases)(title, async (algorithm, placement, saltLength) => {
      const salt = randomBytes(saltLength);
      const hasher = await pool().createBlockHasher({ algorithm, salt, saltPlacement: placement });
      expect(hasher.digestSize).toBe(digestSize(algorithm));
      for (const blockSize of BLOCK_SIZES) {
        const counts = countsFor(blockSize);
        const expected = reference(algorithm, salt, placement, arena, blockSize, Math.max(...counts));
        for (const count of counts) {
          for (const stride of stridesFor(hasher.digestSize)) {
            const before = hooks(pool()).dispatched;
            const hash = (dst: Uint8Array, off: number, st: number) => hasher.hashBlocks(arena, blockSize, count, dst, off, st);
            await expectDigests(hash, expected, count, stride);
            // Large batches in the arena go to the threads; the rest stay on the calling thread.
            expect(hooks(pool()).dispatched - before).toBe(count >= MIN_DISPATCH_BLOCKS ? 1 : 0);
          }
        }
      }
    });

    it.each(algorithms.flatMap((a) => PLACEMENTS.map((p) => [a, p] as const)))(
      '%s, salt %s: sources outside the arena (plain and foreign shared memory)',
      async (algorithm, placement) => {
        const salt = randomBytes(32);
        const hasher = await pool().createBlockHasher({ algorithm, salt, saltPlacement: placement });
        const plain = DATA.slice(0, 1000 * 4096);
        const foreign = new Uint8Array(new SharedArrayBuffer(1000 * 4096));
        foreign.set(plain);
        const expected = reference(algorithm, salt, placement, plain, 4096, 1000);
        const before = hooks(pool()).dispatched;
        for (const src of [plain, foreign]) {
          for (const count of [1, 64, 1000]) {
            const hash = (dst: Uint8Array, off: number, st: number) => hasher.hashBlocks(src, 4096, count, dst, off, st);
            await expectDigests(hash, expected, count, 64);
          }
        }
        expect(hooks(pool()).dispatched).toBe(before);
      },
    );

    it('a view starting inside a slot, as a run of non-zero blocks from a zero-block splitter would be', async () => {
      const algorithm = algorithms.includes('sha1') ? 'sha1' : 'sha256';
      const salt = randomBytes(32);
      const hasher = await pool().createBlockHasher({ algorithm, salt, saltPlacement: 'prefix' });
      const src = arena.subarray(7 * 4096);
      const expected = reference(algorithm, salt, 'prefix', src, 4096, 300);
      const before = hooks(pool()).dispatched;
      await expectDigests((dst, off, st) => hasher.hashBlocks(src, 4096, 300, dst, off, st), expected, 300, 32);
      expect(hooks(pool()).dispatched).toBe(before + 1);
    });

    it('two hashers with different salts interleaved on the same threads', async () => {
      const [saltA, saltB] = [randomBytes(32), randomBytes(7)];
      const a = await pool().createBlockHasher({ algorithm: 'sha256', salt: saltA, saltPlacement: 'prefix' });
      const b = await pool().createBlockHasher({ algorithm: 'sha256', salt: saltB, saltPlacement: 'suffix' });
      const half = arena.subarray(0, 500 * 4096);
      const other = arena.subarray(500 * 4096, 1000 * 4096);
      const outA = new Uint8Array(500 * 32);
      const outB = new Uint8Array(500 * 32);
      await Promise.all([a.hashBlocks(half, 4096, 500, outA, 0, 32), b.hashBlocks(other, 4096, 500, outB, 0, 32)]);
      expect(Buffer.from(outA)).toEqual(Buffer.concat(reference('sha256', saltA, 'prefix', half, 4096, 500)));
      expect(Buffer.from(outB)).toEqual(Buffer.concat(reference('sha256', saltB, 'suffix', other, 4096, 500)));
    });

    it('all-zero blocks among the data get the zero-block digest of each hasher, its salt and placement', async () => {
      const algorithm = algorithms.at(-1)!;
      const [blockSize, count] = [4096, 1000];
      const region = arena.subarray(0, count * blockSize);
      const saved = region.slice();
      try {
        // Zero runs of every length a piece can see: single blocks, first and last blocks, runs across pieces.
        for (const [first, n] of [[0, 1], [2, 2], [10, 5], [100, 64], [400, 300], [999, 1]] as const) {
          region.fill(0, first * blockSize, (first + n) * blockSize);
        }
        for (const placement of PLACEMENTS) {
          const salt = randomBytes(32);
          const hasher = await pool().createBlockHasher({ algorithm, salt, saltPlacement: placement });
          const expected = reference(algorithm, salt, placement, region, blockSize, count);
          const before = hooks(pool()).dispatched;
          for (let pass = 0; pass < 2; pass++) {
            await expectDigests((dst, off, st) => hasher.hashBlocks(region, blockSize, count, dst, off, st), expected, count, 64);
          }
          expect(hooks(pool()).dispatched).toBe(before + 2);
        }
      } finally {
        region.set(saved);
      }
    });

    it.each(algorithms.flatMap((a) => PLACEMENTS.map((p) => [a, p] as const)))(
      '%s, salt %s: blocks that lie in two files, read by the threads, every block size, count and stride',
      async (algorithm, placement) => {
        const salt = randomBytes(32);
        const hasher = await pool().createBlockHasher({ algorithm, salt, saltPlacement: placement });
        const files = hasher.fromFiles!;
        expect(files.batchBytes).toBeGreaterThan(0);
        // Split mid-block, so pieces cross from one file into the other.
        const split = 123_457;
        writeFileSync(join(spanDir, 'a'), DATA.subarray(0, 1000 + split));
        writeFileSync(join(spanDir, 'b'), DATA.subarray(1000 + split, 1000 + SLOT_BYTES));
        const [a, b] = [openSync(join(spanDir, 'a'), 'r'), openSync(join(spanDir, 'b'), 'r')];
        try {
          const spans = [
            { fd: a, at: 1000, length: split, path: 'a' },
            { fd: b, at: 0, length: SLOT_BYTES - split, path: 'b' },
          ];
          const bytes = DATA.subarray(1000, 1000 + SLOT_BYTES);
          for (const blockSize of BLOCK_SIZES) {
            const counts = countsFor(blockSize);
            const expected = reference(algorithm, salt, placement, bytes, blockSize, Math.max(...counts));
            for (const count of counts) {
              const mine = spansWithin(spans, 0, count * blockSize);
              for (const stride of stridesFor(hasher.digestSize)) {
                const before = hooks(pool()).dispatched;
                const hash = (dst: Uint8Array, off: number, st: number) => files.hashSpans(mine, blockSize, count, dst, off, st);
                await expectDigests(hash, expected, count, stride);
                expect(hooks(pool()).dispatched - before).toBe(count >= MIN_DISPATCH_BLOCKS ? 1 : 0);
              }
            }
          }
        } finally {
          closeSync(a);
          closeSync(b);
        }
      },
    );

    it.each(algorithms)('passes the %s known-answer self-test', async (algorithm) => {
      await expect(selfTest(pool(), algorithm)).resolves.toBeUndefined();
    });
  });
}

describe('createHashPool', () => {
  it('names the pool, sizes its batches and says what it supports', async () => {
    const crypto = createHashPool({ threads: 2, inner: 'node-crypto' });
    const simd = createHashPool({ threads: 3, inner: 'wasm-simd' });
    try {
      expect(crypto.name).toBe('pool(node-crypto×2)');
      expect(simd.name).toBe('pool(wasm-simd×3)');
      expect(crypto.batchBytes).toBe(4 << 20);
      expect(simd.batchBytes).toBe(6 << 20);
      expect(HASH_ALGORITHMS.filter((a) => crypto.supports(a))).toEqual(HASH_ALGORITHMS);
      expect(HASH_ALGORITHMS.filter((a) => simd.supports(a))).toEqual(['sha256']);
      const sha1 = simd.createBlockHasher({ algorithm: 'sha1', salt: new Uint8Array(0), saltPlacement: 'prefix' });
      await expect(sha1).rejects.toMatchObject({ code: 'E_PARAM' });
    } finally {
      await Promise.all([crypto.close!(), simd.close!()]);
    }
  });

  it('rejects a bad thread count or inner engine', () => {
    expect(() => createHashPool({ threads: 0, inner: 'node-crypto' })).toThrow(VerityError);
    expect(() => createHashPool({ threads: 1.5, inner: 'node-crypto' })).toThrow(/threads/);
    expect(() => createHashPool({ threads: 2, inner: 'openssl' as 'node-crypto' })).toThrow(/inner/);
  });

  it('hands out views of one arena, two slots reused pass after pass', async () => {
    const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
    try {
      const views = Array.from({ length: 6 }, () => pool.allocate!(1 << 20));
      expect(views.every((v) => v.buffer instanceof SharedArrayBuffer)).toBe(true);
      expect(new Set(views.map((v) => v.byteOffset)).size).toBe(2);
      expect(views[0]!.byteOffset + pool.batchBytes!).toBeLessThanOrEqual(views[1]!.byteOffset);
      // Distinct buffer objects (one per lease) over the same memory.
      expect(new Set(views.map((v) => v.buffer)).size).toBe(6);
      views[4]![0] = 0x5a;
      expect(views[0]![0]).toBe(0x5a);
      // Smaller requests share the slots; a larger one than a slot gets a new arena, whose views still hash right.
      const small = pool.allocate!(4096);
      const large = pool.allocate!(pool.batchBytes! + 4096);
      expect(small.byteOffset).toBe(views[0]!.byteOffset);
      large.set(DATA.subarray(0, large.length));
      const salt = new Uint8Array(3);
      const hasher = await pool.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: 'prefix' });
      const blocks = large.length / 4096;
      const expected = reference('sha256', salt, 'prefix', large, 4096, blocks);
      const before = hooks(pool).dispatched;
      await expectDigests((dst, off, st) => hasher.hashBlocks(large, 4096, blocks, dst, off, st), expected, blocks, 32);
      expect(hooks(pool).dispatched).toBe(before + 1);
    } finally {
      await pool.close!();
    }
  });

  it('refuses a buffer whose slot was handed out again, and fails the pool', async () => {
    const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
    try {
      const hasher = await pool.createBlockHasher({ algorithm: 'sha1', salt: new Uint8Array(0), saltPlacement: 'prefix' });
      const [a] = [pool.allocate!(256 * 4096), pool.allocate!(256 * 4096), pool.allocate!(256 * 4096)];
      const out = new Uint8Array(256 * 20);
      await expect(hasher.hashBlocks(a!.subarray(4096), 4096, 1, out, 0, 20)).rejects.toThrow(/handed out again/);
      await expect(hasher.hashBlocks(new Uint8Array(4096), 4096, 1, out, 0, 20)).rejects.toMatchObject({ code: 'E_INTERNAL' });
    } finally {
      await pool.close!();
    }
  });

  it('runs passes one after another on one pool, and never returns a wrong root for passes at once', async () => {
    const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
    try {
      const data = DATA.subarray(0, 8 << 20);
      const salt = '5a'.repeat(32);
      const build = async (engine: HashEngine) => {
        const params = paramsForFormat({ salt, superblock: false }, data.length);
        const { rootHash } = await buildTree(params, bytesSource(data), new MemorySink(), engine);
        return Buffer.from(rootHash).toString('hex');
      };
      const want = await build(nodeCryptoEngine);
      for (let i = 0; i < 3; i++) expect(await build(pool)).toBe(want);
      expect(hooks(pool).dispatched).toBe(6);
      const together = await Promise.allSettled([build(pool), build(pool)]);
      for (const r of together) {
        if (r.status === 'fulfilled') expect(r.value).toBe(want);
        else expect(r.reason).toMatchObject({ code: 'E_INTERNAL' });
      }
      expect(together.some((r) => r.status === 'rejected')).toBe(true);
    } finally {
      await pool.close!();
    }
  });
});

describe('node-crypto inner', () => {
  let pool: HashEngine;
  beforeAll(() => {
    pool = createHashPool({ threads: 3, inner: 'node-crypto' });
  });
  afterAll(() => pool.close!());
  matrix('×3 threads', () => pool, HASH_ALGORITHMS);
});

describe.skipIf(!kernelAvailable)('wasm-simd inner', () => {
  let pool: HashEngine;
  beforeAll(() => {
    pool = createHashPool({ threads: 2, inner: 'wasm-simd' });
  });
  afterAll(() => pool.close!());
  matrix('×2 threads', () => pool, ['sha256']);
});

describe('through the tree', () => {
  // 20 MiB and 37 blocks: whole batches for every thread count, then a short tail hashed on the calling thread.
  const data = randomBytes((20 << 20) + 37 * 4096);
  const salt = randomBytes(32).toString('hex');
  const uuid = '0b3a9c1e-8f59-4d4e-9a43-2f5f0c6f1d7a';

  async function image(engine: HashEngine, algorithm: string, hashType: 0 | 1) {
    const params = paramsForFormat({ algorithm, hashType, salt, uuid }, data.length);
    const sink = new MemorySink();
    const { rootHash } = await formatImage(params, bytesSource(data), sink, engine);
    return { root: Buffer.from(rootHash).toString('hex'), bytes: Buffer.from(sink.bytes) };
  }

  const expected = new Map<string, Promise<{ root: string; bytes: Buffer }>>();
  const single = (algorithm: string, hashType: 0 | 1) => {
    const key = `${algorithm}/${hashType}`;
    if (!expected.has(key)) expected.set(key, image(nodeCryptoEngine, algorithm, hashType));
    return expected.get(key)!;
  };
  async function compare(inner: PoolInner, threads: number, algorithm: string, hashType: 0 | 1) {
    const pool = createHashPool({ threads, inner });
    try {
      const got = await image(pool, algorithm, hashType);
      const want = await single(algorithm, hashType);
      expect(got.root).toBe(want.root);
      expect(got.bytes.equals(want.bytes)).toBe(true);
    } finally {
      await pool.close!();
    }
  }

  const cryptoBuilds = [1, 2, 3].flatMap((threads) =>
    (['sha256', 'sha1'] as const).flatMap((a) => ([0, 1] as const).map((t) => [threads, a, t] as const)),
  );
  it.each(cryptoBuilds)(
    'node-crypto ×%i, %s, format %i: the same root and hash device as node-crypto on one thread',
    (threads, algorithm, hashType) => compare('node-crypto', threads, algorithm, hashType),
  );

  it.skipIf(!kernelAvailable).each([1, 2, 3].flatMap((threads) => ([0, 1] as const).map((t) => [threads, t] as const)))(
    'wasm-simd ×%i, sha256, format %i: the same root and hash device as node-crypto on one thread',
    (threads, hashType) => compare('wasm-simd', threads, 'sha256', hashType),
  );

  it('buildTree reads level 0 into the arena and dispatches it to the threads', async () => {
    const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
    try {
      const allocate = pool.allocate!.bind(pool);
      const sizes: number[] = [];
      (pool as { allocate?: (n: number) => Uint8Array }).allocate = (n) => {
        sizes.push(n);
        return allocate(n);
      };
      const params = paramsForFormat({ algorithm: 'sha256', salt, superblock: false }, data.length);
      const sink = new MemorySink();
      const { rootHash } = await buildTree(params, bytesSource(data), sink, pool);
      const want = new MemorySink();
      const ref = await buildTree(params, bytesSource(data), want, nodeCryptoEngine);
      expect(sizes).toEqual([4 << 20, 4 << 20]);
      // Five whole 4 MiB batches went to the threads; the 37-block tail and the upper levels did not.
      expect(hooks(pool).dispatched).toBe(5);
      expect(Buffer.from(rootHash)).toEqual(Buffer.from(ref.rootHash));
      expect(Buffer.from(sink.bytes).equals(Buffer.from(want.bytes))).toBe(true);
    } finally {
      await pool.close!();
    }
  });
});

describe('data that lies in a file', () => {
  const data = randomBytes((20 << 20) + 37 * 4096);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hash-pool-file-'));
    writeFileSync(join(dir, 'data'), data);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['node-crypto', ...(kernelAvailable ? ['wasm-simd'] : [])] as PoolInner[])(
    '%s: buildTree lets the threads read it; the calling thread reads nothing and allocates no chunk buffer',
    async (inner) => {
      const pool = createHashPool({ threads: 2, inner });
      const file = await openFileSource(join(dir, 'data'));
      try {
        let reads = 0;
        let allocations = 0;
        const source = { ...file, read: (dst: Uint8Array, at: number) => (reads++, file.read(dst, at)) };
        const allocate = pool.allocate!.bind(pool);
        (pool as { allocate?: (n: number) => Uint8Array }).allocate = (n) => (allocations++, allocate(n));
        const params = paramsForFormat({ algorithm: 'sha256', salt: 'ab'.repeat(32), superblock: false }, data.length);
        const sink = new MemorySink();
        const { rootHash } = await buildTree(params, source, sink, pool);
        const want = new MemorySink();
        const ref = await buildTree(params, bytesSource(data), want, nodeCryptoEngine);
        expect({ reads, allocations }).toEqual({ reads: 0, allocations: 0 });
        // 20 MiB and 37 blocks: one batch that lies in a file (up to 32 MiB each), read and hashed by the threads.
        expect(hooks(pool).dispatched).toBe(1);
        expect(Buffer.from(rootHash)).toEqual(Buffer.from(ref.rootHash));
        expect(Buffer.from(sink.bytes).equals(Buffer.from(want.bytes))).toBe(true);
      } finally {
        await file.close();
        await pool.close!();
      }
    },
  );

  it('a read that fails in a thread is E_IO naming the file, and one past its end E_TRUNCATED; the pool goes on', async () => {
    const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
    const hasher = await pool.createBlockHasher({ algorithm: 'sha256', salt: new Uint8Array(0), saltPlacement: 'prefix' });
    const fd = openSync(join(dir, 'data'), 'r');
    const folder = openSync(dir, 'r');
    try {
      const dst = new Uint8Array(256 * 32);
      const hash = (spans: FileSpan[], count = 256) => hasher.fromFiles!.hashSpans(spans, 4096, count, dst, 0, 32);
      // A directory opens, but cannot be read (EISDIR).
      await expect(hash([{ fd: folder, at: 0, length: 256 * 4096, path: 'the-folder' }])).rejects.toMatchObject({
        code: 'E_IO',
        message: expect.stringMatching(/^Hash worker \d \(node-crypto\) failed: Cannot read the-folder: /),
        data: { path: 'the-folder' },
      });
      const tail = data.length - 100 * 4096;
      await expect(hash([{ fd, at: tail, length: 256 * 4096, path: 'the-data' }])).rejects.toMatchObject({
        code: 'E_TRUNCATED',
        data: { path: 'the-data' },
      });
      // On the calling thread too (below MIN_DISPATCH_BLOCKS).
      await expect(hash([{ fd, at: data.length - 4096, length: 8 * 4096, path: 'the-data' }], 8)).rejects.toMatchObject({
        code: 'E_TRUNCATED',
        data: { path: 'the-data' },
      });
      // Spans that do not hold the blocks are a caller's bug.
      await expect(hash([{ fd, at: 0, length: 4096, path: 'the-data' }])).rejects.toMatchObject({ code: 'E_INTERNAL' });
      await hash([{ fd, at: 0, length: 256 * 4096, path: 'the-data' }]);
      expect(Buffer.from(dst)).toEqual(Buffer.concat(reference('sha256', new Uint8Array(0), 'prefix', data, 4096, 256)));
    } finally {
      closeSync(fd);
      closeSync(folder);
      await pool.close!();
    }
  });
});

describe('threads started ahead of their pool', () => {
  it.each(['node-crypto', ...(kernelAvailable ? ['wasm-simd'] : [])] as PoolInner[])(
    '%s: the next pool of as many threads takes them and hashes as any pool; other pools start their own',
    async (inner) => {
      prestartThreads(3);
      const other = createHashPool({ threads: 2, inner });
      const pool = createHashPool({ threads: 3, inner });
      const again = createHashPool({ threads: 3, inner });
      try {
        const ids = (p: HashEngine) => hooks(p).threads.map((w) => w.threadId);
        // Spawned before the 2-thread pool's own: the spare ones. The next 3-thread pool found none left.
        expect(Math.max(...ids(pool))).toBeLessThan(Math.min(...ids(other)));
        expect(Math.min(...ids(again))).toBeGreaterThan(Math.max(...ids(other)));
        const salt = randomBytes(32);
        const hasher = await pool.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: 'prefix' });
        const src = pool.allocate!(300 * 4096);
        src.set(DATA.subarray(0, src.length));
        await expectDigests((dst, off, st) => hasher.hashBlocks(src, 4096, 300, dst, off, st), reference('sha256', salt, 'prefix', src, 4096, 300), 300, 32);
        expect(hooks(pool).dispatched).toBe(1);
      } finally {
        await Promise.all([other, pool, again].map((p) => p.close!()));
      }
    },
  );
});

describe('closing and failures', () => {
  const big = MIN_DISPATCH_BLOCKS * 4;
  async function started(threads = 2) {
    const pool = createHashPool({ threads, inner: 'node-crypto' });
    const salt = new Uint8Array(4);
    const hasher = await pool.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: 'prefix' });
    const src = pool.allocate!(big * 4096);
    src.set(DATA.subarray(0, src.length));
    return { pool, hasher, src, dst: new Uint8Array(big * 32) };
  }

  it('rejects a batch that does not fit its destination, and stays usable', async () => {
    const { pool, hasher, src, dst } = await started();
    try {
      const short = dst.subarray(1);
      await expect(hasher.hashBlocks(src, 4096, big, short, 0, 32)).rejects.toMatchObject({ code: 'E_INTERNAL' });
      await expect(hasher.hashBlocks(src, 4096, big, dst, 0, 16)).rejects.toMatchObject({ code: 'E_INTERNAL' });
      await hasher.hashBlocks(src, 4096, big, dst, 0, 32);
      expect(Buffer.from(dst)).toEqual(Buffer.concat(reference('sha256', new Uint8Array(4), 'prefix', src, 4096, big)));
    } finally {
      await pool.close!();
    }
  });

  it('close ends the threads; pending and later calls reject', async () => {
    const { pool, hasher, src, dst } = await started();
    const pending = hasher.hashBlocks(src, 4096, big, dst, 0, 32);
    const closing = pool.close!();
    await expect(pending).rejects.toMatchObject({ code: 'E_INTERNAL' });
    await closing;
    expect(hooks(pool).threads.every((w) => w.threadId === -1)).toBe(true);
    await expect(hasher.hashBlocks(src, 4096, big, dst, 0, 32)).rejects.toMatchObject({ code: 'E_INTERNAL' });
    await expect(hasher.hashBlocks(src, 4096, 1, dst, 0, 32)).rejects.toMatchObject({ code: 'E_INTERNAL' });
    const another = pool.createBlockHasher({ algorithm: 'sha256', salt: src.subarray(0, 0), saltPlacement: 'prefix' });
    await expect(another).rejects.toThrow(/closed/);
    expect(() => pool.allocate!(4096)).toThrow(/closed/);
    await pool.close!(); // twice is fine
  });

  it('a VerityError raised in a thread reaches the caller with its code and data, and the pool goes on', { timeout: 15_000 }, async () => {
    const { pool, hasher, src, dst } = await started();
    try {
      hooks(pool).fault(0, 'reject');
      const call = hasher.hashBlocks(src, 4096, big, dst, 0, 32);
      await expect(call).rejects.toBeInstanceOf(VerityError);
      await expect(call).rejects.toMatchObject({
        code: 'E_IO',
        data: { offset: expect.any(Number) },
        message: expect.stringMatching(/^Hash worker 0 \(\S+\) failed: Simulated failure in a hash worker\.$/),
      });
      // A failed job is not a dead thread: the next call hashes.
      await hasher.hashBlocks(src, 4096, big, dst, 0, 32);
    } finally {
      await pool.close!();
    }
  });

  const thrown: VerityErrorJson[] = [
    {
      code: 'E_TRUNCATED',
      message: 'The data device is 4096 bytes; 8192 are needed.',
      data: { path: '/dev/sdz1', offset: 4096, expected: 8192, actual: '4096', field: 'data_blocks' },
    },
    { code: 'E_BAD_IMAGE', message: 'A structure without data.' },
  ];
  it.each(thrown)('a VerityError of code $code thrown in a thread reaches the caller with that code and data', async (json) => {
    const { pool, hasher, src, dst } = await started();
    try {
      hooks(pool).fault(1, 'reject', json);
      const error: unknown = await hasher.hashBlocks(src, 4096, big, dst, 0, 32).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(VerityError);
      const { code, data, message } = error as VerityError;
      expect({ code, data, message }).toEqual({
        code: json.code,
        data: json.data ?? {},
        message: `Hash worker 1 (node-crypto) failed: ${json.message}`,
      });
      await hasher.hashBlocks(src, 4096, big, dst, 0, 32);
    } finally {
      await pool.close!();
    }
  });

  it('anything else thrown in a thread reaches the caller as E_INTERNAL with its message', async () => {
    const { pool, hasher, src, dst } = await started();
    try {
      hooks(pool).fault(0, 'reject', 'Not a VerityError.');
      const error: unknown = await hasher.hashBlocks(src, 4096, big, dst, 0, 32).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(VerityError);
      const { code, data, message } = error as VerityError;
      expect({ code, data, message }).toEqual({
        code: 'E_INTERNAL',
        data: {},
        message: 'Hash worker 0 (node-crypto) failed: Not a VerityError.',
      });
    } finally {
      await pool.close!();
    }
  });

  const dies = 'a thread that dies (%s) rejects the pending call and every later one';
  it.each(['throw', 'exit'] as const)(dies, { timeout: 15_000 }, async (mode) => {
    const { pool, hasher, src, dst } = await started();
    try {
      hooks(pool).fault(1, mode);
      const call = hasher.hashBlocks(src, 4096, big, dst, 0, 32);
      await expect(call).rejects.toMatchObject({ code: 'E_INTERNAL', message: expect.stringMatching(/worker 1/) });
      await expect(hasher.hashBlocks(src, 4096, big, dst, 0, 32)).rejects.toBeInstanceOf(VerityError);
      const another = pool.createBlockHasher({ algorithm: 'sha256', salt: dst.subarray(0, 0), saltPlacement: 'prefix' });
      await expect(another).rejects.toMatchObject({ code: 'E_INTERNAL' });
    } finally {
      await pool.close!();
    }
  });

  it('a thread that dies while idle fails the next call instead of hanging', { timeout: 15_000 }, async () => {
    const { pool, hasher, src, dst } = await started(3);
    try {
      hooks(pool).fault(2, 'exit');
      await new Promise((r) => setTimeout(r, 200));
      await expect(hasher.hashBlocks(src, 4096, big, dst, 0, 32)).rejects.toThrow(/worker 2 .*exited with code 70/);
    } finally {
      await pool.close!();
    }
  });

  it('an open pool, or spare threads no pool took, do not keep the process alive', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hash-pool-'));
    try {
      const script = join(dir, 'forgotten.mts');
      const poolUrl = pathToFileURL(fileURLToPath(new URL('../../src/threads/hash-pool.ts', import.meta.url))).href;
      writeFileSync(
        script,
        `import { createHashPool } from ${JSON.stringify(poolUrl)};
import { prestartThreads } from ${JSON.stringify(poolUrl.replace('hash-pool.ts', 'thread-set.ts'))};
// Spare threads nobody takes must not keep the process alive either.
prestartThreads(3);
const pool = createHashPool({ threads: 2, inner: 'node-crypto' });
const hasher = await pool.createBlockHasher({ algorithm: 'sha256', salt: new Uint8Array(0), saltPlacement: 'prefix' });
const src = pool.allocate(256 * 4096);
const dst = new Uint8Array(256 * 32);
await hasher.hashBlocks(src, 4096, 256, dst, 0, 32);
console.log('hashed', Buffer.from(dst.subarray(0, 4)).toString('hex'));
`,
      );
      const started = Date.now();
      const root = fileURLToPath(new URL('../..', import.meta.url));
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ['--import', 'tsx', script], { cwd: root, timeout: 25_000 }, (e, out, err) =>
          e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out),
        ),
      );
      expect(stdout).toBe(`hashed ${createHash('sha256').update(new Uint8Array(4096)).digest('hex').slice(0, 8)}\n`);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
