/**
 * The 4-lane WASM SIMD SHA-256 kernel (wasm/, src/hash/wasm-kernel.ts, src/hash/wasm-simd-engine.ts): the committed
 * artifact is exactly what the committed generator builds; digests equal node:crypto's for every salt length and
 * placement, block size, count (lane tails) and stride; nothing outside the digest slots is written; the shared-memory
 * build behaves the same; and the engine passes the known-answer test.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, build, MODULE_PATH, parseModule, readModule } from '../../wasm/build.mjs';
import { selfTest } from '../../src/hash/self-test.js';
import { SHA256X4_SHARED_WASM, SHA256X4_SHARED_WASM_SHA256, SHA256X4_WASM, SHA256X4_WASM_SHA256 } from '../../src/hash/wasm-sha256-binary.js';
import { decodeBase64, kernelBinary, loadKernel, simdSupported, wasmApi, type Sha256Kernel, type WasmMemory } from '../../src/hash/wasm-kernel.js';
import { wasmSimdEngine } from '../../src/hash/wasm-simd-engine.js';
import { makeData } from '../support/data.js';

const ROOT = new URL('../..', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('the committed kernel artifact', () => {
  it('is exactly what wasm/build.mjs builds from the committed generator', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verity-wasm-build-'));
    try {
      const built = await build(dir);
      expect(Buffer.compare(readFileSync(join(dir, MODULE_PATH)), read(MODULE_PATH)), `${MODULE_PATH} differs from a fresh build`).toBe(0);
      expect(built.map((b) => b.name)).toEqual(ARTIFACTS.map((a) => a.name));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes to binaries whose sha256 is the one recorded beside them, both valid WebAssembly', async () => {
    expect(sha256(decodeBase64(SHA256X4_WASM))).toBe(SHA256X4_WASM_SHA256);
    expect(sha256(decodeBase64(SHA256X4_SHARED_WASM))).toBe(SHA256X4_SHARED_WASM_SHA256);
    expect(sha256(kernelBinary(false))).toBe(SHA256X4_WASM_SHA256);
    expect(sha256(kernelBinary(true))).toBe(SHA256X4_SHARED_WASM_SHA256);
    await expect(wasmApi()!.compile(kernelBinary(false))).resolves.toBeDefined();
    expect(decodeBase64('YWJj')).toEqual(new Uint8Array([0x61, 0x62, 0x63]));
    expect(decodeBase64('YWI=')).toEqual(new Uint8Array([0x61, 0x62]));
    expect(() => decodeBase64('YW*=')).toThrow(/Invalid base64/);
  });

  it('reads back through readModule() (what wasm/bench.mjs measures) as the bytes the core loads; a damaged copy throws', () => {
    const parsed = readModule();
    expect(parsed.map((a) => [a.name, a.sha256])).toEqual([
      ['sha256x4', SHA256X4_WASM_SHA256],
      ['sha256x4-shared', SHA256X4_SHARED_WASM_SHA256],
    ]);
    expect(Buffer.compare(parsed[0]!.wasm, kernelBinary(false))).toBe(0);
    expect(Buffer.compare(parsed[1]!.wasm, kernelBinary(true))).toBe(0);
    const text = readFileSync(new URL(MODULE_PATH, ROOT), 'utf8');
    expect(() => parseModule(text.replace(SHA256X4_WASM_SHA256, '0'.repeat(64)))).toThrow(/recorded sha256/);
    expect(() => parseModule(text.replace(/SHA256X4_SHARED_WASM_SHA256 = /, 'X = '))).toThrow(/no SHA256X4_SHARED_WASM_SHA256/);
  });

  it('is the only form in the tree: no generated WAT or .wasm beside the generator (wasm/out/ is ignored by git)', () => {
    const files = readdirSync(fileURLToPath(new URL('wasm/', ROOT)), { recursive: true, encoding: 'utf8' });
    expect(files.filter((f) => !f.startsWith('out') && /\.(wat|wasm)$|SHA256SUMS/.test(f))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// Known answers against node:crypto

const GUARD = 0xa5;
const PAGE = 65536;
// Memory layout of the harness: scratch, salt, digests (with guard bytes around), then block data.
const SCRATCH = 0;
const SALT = 8192;
const DST = 16384;
const SRC = 1 << 20;

interface Harness {
  kernel: Sha256Kernel;
  bytes: Uint8Array;
}

function newMemory(shared: boolean, pages: number): WasmMemory {
  const api = wasmApi()!;
  return shared ? new api.Memory({ initial: pages, maximum: pages, shared: true }) : new api.Memory({ initial: pages });
}

async function harness(shared: boolean, pages = 64): Promise<Harness> {
  const kernel = await loadKernel(newMemory(shared, pages));
  return { kernel, bytes: new Uint8Array(kernel.memory.buffer) };
}

let seed = 1;
const random = (length: number) => makeData({ blocks: 0, blockSize: 1, tailBytes: length, fill: 'random', seed: seed++ });
const randomBlocks = (blocks: number, blockSize: number) => makeData({ blocks, blockSize, tailBytes: 0, fill: 'random', seed: seed++ });

interface Case {
  saltLen: number;
  first: boolean;
  blockSize: number;
  count: number;
  stride: number;
}

/**
 * Hashes one case through the kernel and checks every digest against node:crypto, the guard bytes between and
 * around the digest slots, and that the block data is unchanged. Returns the number of digests checked.
 */
function check({ kernel, bytes }: Harness, c: Case, scratch = SCRATCH): number {
  const salt = random(c.saltLen);
  const data = randomBlocks(c.count, c.blockSize);
  bytes.set(salt, SALT);
  kernel.setup(scratch, SALT, c.saltLen, c.blockSize, c.first ? 1 : 0);
  bytes.set(data, SRC);
  const span = c.count * c.stride;
  bytes.fill(GUARD, DST - 64, DST + span + 64);
  kernel.hash(scratch, SRC, c.count, DST, c.stride);
  const what = `salt ${c.saltLen} ${c.first ? 'first' : 'last'}, ${c.count} × ${c.blockSize} B, stride ${c.stride}`;
  for (let i = 0; i < c.count; i++) {
    const block = data.subarray(i * c.blockSize, (i + 1) * c.blockSize);
    const h = createHash('sha256');
    const want = (c.first ? h.update(salt).update(block) : h.update(block).update(salt)).digest('hex');
    const at = DST + i * c.stride;
    const got = Buffer.from(bytes.subarray(at, at + 32)).toString('hex');
    if (got !== want) expect(got, `${what}: block ${i}`).toBe(want);
  }
  const outside = (i: number) => i < DST || i >= DST + span || (i - DST) % c.stride >= 32;
  for (let i = DST - 64; i < DST + span + 64; i++) {
    if (outside(i) && bytes[i] !== GUARD) expect.fail(`${what}: byte ${i - DST} of the output area was written`);
  }
  expect(Buffer.compare(bytes.subarray(SRC, SRC + data.length), data), `${what}: block data changed`).toBe(0);
  return c.count;
}

const SALT_LENGTHS = [0, 1, 31, 32, 33, 55, 56, 63, 64, 65, 127, 128, 200, 255, 256];
const COUNTS = [1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257];
const PLACEMENTS = [true, false];

describe.runIf(simdSupported())('the kernel (non-shared memory) equals node:crypto', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness(false, 64); // 4 MiB: 1 MiB of scratch, salt and digests, 3 MiB of blocks
  });

  it('for every salt length 0..256 in both placements, block sizes 64, 512 and 4096, 1-9 blocks, strides 32 and 48', () => {
    let n = 0;
    for (const saltLen of SALT_LENGTHS) {
      for (const first of PLACEMENTS) {
        for (const blockSize of [64, 512, 4096]) {
          for (const count of COUNTS.filter((c) => c < 10)) n += check(h, { saltLen, first, blockSize, count, stride: count % 2 ? 48 : 32 });
        }
      }
    }
    expect(n).toBe(SALT_LENGTHS.length * 2 * 3 * 39);
  });

  it('for 255, 256 and 257 blocks (several groups and every lane tail)', () => {
    for (const saltLen of [0, 32, 63, 255]) {
      for (const first of PLACEMENTS) {
        for (const blockSize of [64, 1024]) {
          for (const count of [255, 256, 257]) check(h, { saltLen, first, blockSize, count, stride: count === 256 ? 48 : 32 });
        }
      }
    }
  });

  it('for block sizes 1024, 65536 and 524288', () => {
    for (const saltLen of [0, 1, 32, 64, 65, 256]) {
      for (const first of PLACEMENTS) {
        for (const count of [1, 4, 5]) check(h, { saltLen, first, blockSize: 1024, count, stride: 48 });
        for (const count of [1, 3, 5]) check(h, { saltLen, first, blockSize: 65536, count, stride: count === 3 ? 48 : 32 });
      }
    }
    for (const saltLen of [0, 32, 256]) {
      for (const first of PLACEMENTS) {
        check(h, { saltLen, first, blockSize: 524288, count: 1, stride: 32 });
        check(h, { saltLen, first, blockSize: 524288, count: 5, stride: 48 });
      }
    }
  });

  it('for block sizes that are not multiples of 64, down to 1 byte (every chunk staged)', () => {
    for (const saltLen of SALT_LENGTHS) {
      for (const first of PLACEMENTS) {
        for (const blockSize of [1, 2, 3, 55, 56, 63, 65, 100, 119, 127, 191, 4095]) {
          check(h, { saltLen, first, blockSize, count: 5, stride: 33 });
        }
      }
    }
  });

  it('keeps per-tree state in its scratch only: two scratch areas set up differently hash independently', () => {
    const other = 4 * PAGE;
    const { kernel, bytes } = h;
    const saltA = random(32);
    bytes.set(saltA, SALT);
    kernel.setup(other, SALT, 32, 512, 0); // format 0 in the second scratch
    check(h, { saltLen: 100, first: true, blockSize: 4096, count: 6, stride: 32 }); // format 1 in the first
    const data = randomBlocks(3, 512);
    bytes.set(data, SRC);
    kernel.hash(other, SRC, 3, DST, 32);
    for (let i = 0; i < 3; i++) {
      const want = createHash('sha256').update(data.subarray(i * 512, (i + 1) * 512)).update(saltA).digest('hex');
      expect(Buffer.from(bytes.subarray(DST + 32 * i, DST + 32 * i + 32)).toString('hex')).toBe(want);
    }
  });

  it('writes only its scratch area and the digest slots', () => {
    const { kernel, bytes } = h;
    const before = Uint8Array.from(bytes);
    kernel.setup(SCRATCH, SALT, 77, 4096, 1);
    kernel.hash(SCRATCH, SRC, 7, DST, 40);
    const changed: number[] = [];
    for (let i = kernel.scratchBytes; i < bytes.length; i++) {
      if (bytes[i] !== before[i] && !(i >= DST && i < DST + 7 * 40 && (i - DST) % 40 < 32)) changed.push(i);
    }
    expect(changed).toEqual([]);
  });

  it('rejects a salt longer than 256 bytes and a zero block size', () => {
    expect(() => h.kernel.setup(SCRATCH, SALT, 257, 4096, 1)).toThrow(/unreachable/);
    expect(() => h.kernel.setup(SCRATCH, SALT, 32, 0, 1)).toThrow(/unreachable/);
  });

  it('reports a scratch size that is a multiple of 16', () => {
    expect(h.kernel.scratchBytes % 16).toBe(0);
    expect(h.kernel.scratchBytes).toBeLessThanOrEqual(8192);
  });
});

describe.runIf(simdSupported())('the kernel over a shared memory', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness(true, 40);
  });

  it('is the shared-memory build and gives the same digests', () => {
    expect(h.kernel.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    for (const saltLen of [0, 32, 63, 64, 256]) {
      for (const first of PLACEMENTS) {
        for (const count of [1, 3, 4, 9]) check(h, { saltLen, first, blockSize: 4096, count, stride: 48 });
      }
    }
  });

  it('can be instantiated again over the same memory (one instance per worker thread)', async () => {
    const again = await loadKernel(h.kernel.memory);
    check({ kernel: again, bytes: h.bytes }, { saltLen: 32, first: true, blockSize: 512, count: 7, stride: 32 }, 8 * PAGE);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// The engine

describe.runIf(simdSupported())('the wasm-simd engine', () => {
  it('hashes sha256 only and passes the known-answer test', async () => {
    expect(wasmSimdEngine.supports('sha256')).toBe(true);
    expect(wasmSimdEngine.supports('sha1')).toBe(false);
    await expect(selfTest(wasmSimdEngine, 'sha256')).resolves.toBeUndefined();
    await expect(wasmSimdEngine.createBlockHasher({ algorithm: 'sha512', salt: new Uint8Array(0), saltPlacement: 'prefix' })).rejects.toThrow(
      /sha256 only/,
    );
  });

  it('splits batches into kernel calls of at most 1 MiB and writes each digest at its stride', async () => {
    const salt = random(32);
    for (const [blockSize, count] of [
      [512, 3000], // more blocks than one call takes
      [4096, 300],
      [1 << 21, 2], // blocks larger than 1 MiB: one per call
    ] as const) {
      for (const placement of ['prefix', 'suffix'] as const) {
        const hasher = await wasmSimdEngine.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: placement });
        const data = randomBlocks(count, blockSize);
        const stride = 40;
        const out = new Uint8Array(5 + count * stride).fill(GUARD);
        await hasher.hashBlocks(data, blockSize, count, out, 5, stride);
        for (let i = 0; i < count; i++) {
          const block = data.subarray(i * blockSize, (i + 1) * blockSize);
          const h = createHash('sha256');
          const want = (placement === 'prefix' ? h.update(salt).update(block) : h.update(block).update(salt)).digest('hex');
          const got = Buffer.from(out.subarray(5 + i * stride, 5 + i * stride + 32)).toString('hex');
          if (got !== want) expect(got, `${blockSize} B × ${count}, ${placement}: block ${i}`).toBe(want);
        }
        expect(out.subarray(0, 5).every((b) => b === GUARD)).toBe(true);
        for (let i = 0; i < count; i++) {
          expect(out.subarray(5 + i * stride + 32, 5 + (i + 1) * stride).every((b) => b === GUARD)).toBe(true);
        }
      }
    }
  });

  it('re-runs setup when the block size changes between calls', async () => {
    const salt = random(5);
    const hasher = await wasmSimdEngine.createBlockHasher({ algorithm: 'sha256', salt, saltPlacement: 'prefix' });
    for (const blockSize of [4096, 512, 4096]) {
      const data = randomBlocks(2, blockSize);
      const out = new Uint8Array(64);
      await hasher.hashBlocks(data, blockSize, 2, out, 0, 32);
      const want = createHash('sha256').update(salt).update(data.subarray(blockSize)).digest();
      expect(Buffer.from(out.subarray(32))).toEqual(want);
    }
  });
});
