/**
 * Known-zero data (ByteSource.knownZero, issue #14 item 3): the unallocated blocks of a dynamic VHDX or VHD are
 * neither read nor hashed, and whole zero subtrees take a digest worked out once per level (tree/level-chain.ts).
 * What must not change: the tree, the root, and every verify report, for every engine and thread count. The oracle
 * is the same pass over the same bytes as a plain in-memory source (no knownZero), and veritysetup where installed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { paramsForFormat } from '../../src/format/options.js';
import type { VerityParams } from '../../src/format/params.js';
import type { BlockHasher, HashEngine } from '../../src/hash/engine.js';
import { hashWasmEngine } from '../../src/hash/hash-wasm-engine.js';
import { simdSupported } from '../../src/hash/wasm-kernel.js';
import { wasmSimdEngine } from '../../src/hash/wasm-simd-engine.js';
import { openVhd } from '../../src/image/vhd.js';
import { openVhdx } from '../../src/image/vhdx/vhdx.js';
import { PayloadState } from '../../src/image/vhdx/structures.js';
import { sliceSource } from '../../src/io/slice.js';
import { bytesSource, MemorySink, type ByteSource } from '../../src/io/source.js';
import { openFileSource } from '../../src/files/files.js';
import { createHashPool } from '../../src/threads/hash-pool.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { formatImage } from '../../src/tree/build.js';
import { verifyTree } from '../../src/tree/verify.js';
import { toHex } from '../../src/binary/bytes.js';
import { buildVhdx } from '../support/vhdx-writer.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, failedPosition, veritysetup } from '../support/veritysetup-bin.js';
import { HAS_QEMU_IMG, SKIP_QEMU, run, useWorkDir, workDir, writeSparseRaw } from '../image/vhdx/helpers.js';

useWorkDir();

const MiB = 1 << 20;
const SALT = new Uint8Array(32).map((_, i) => i * 7 + 1);

/**
 * A 12 MiB dynamic VHDX of 1 MiB blocks: blocks 1, 4, 5 and 9 in the file (in that allocation order: 9 first), 2
 * ZERO, 3 UNMAPPED, 7 UNDEFINED, the rest NOT_PRESENT [MS-VHDX §2.5.1.1]. Blocks 6–8 are a 3 MiB absent run holding a
 * whole 2 MiB-aligned stretch, so small hash blocks give zero subtrees two and three levels up.
 */
function sparseVhdx() {
  return buildVhdx({
    virtualSize: 12 * MiB,
    blockSize: MiB,
    present: [9, 1, 4, 5],
    states: { 2: PayloadState.ZERO, 3: PayloadState.UNMAPPED, 7: PayloadState.UNDEFINED },
  });
}

/** The same bytes with no knownZero: what every pass read before. */
async function plainCopy(source: ByteSource): Promise<ByteSource> {
  const bytes = new Uint8Array(source.size);
  await source.read(bytes, 0);
  return bytesSource(bytes);
}

interface Shape {
  name: string;
  algorithm: string;
  hashType: 0 | 1;
  dataBlockSize: number;
  hashBlockSize: number;
}

const SHAPES: Shape[] = [
  { name: 'sha256 4096/4096', algorithm: 'sha256', hashType: 1, dataBlockSize: 4096, hashBlockSize: 4096 },
  // 16 digests a hash block: level 0 covers 8 KiB, level 1 128 KiB, level 2 2 MiB, level 3 32 MiB.
  { name: 'sha256 512/512', algorithm: 'sha256', hashType: 1, dataBlockSize: 512, hashBlockSize: 512 },
  { name: 'sha1 format 0, 1024/512', algorithm: 'sha1', hashType: 0, dataBlockSize: 1024, hashBlockSize: 512 },
  { name: 'sha512 4096/1024', algorithm: 'sha512', hashType: 1, dataBlockSize: 4096, hashBlockSize: 1024 },
];

function paramsOf(shape: Shape, size: number): VerityParams {
  return paramsForFormat(
    { ...shape, salt: SALT, superblock: true, uuid: '2b9c6f0e-8d1a-4c3b-9e7f-5a6b7c8d9e0f' },
    size,
  );
}

async function format(params: VerityParams, data: ByteSource, engine: HashEngine) {
  const sink = new MemorySink();
  const { rootHash } = await formatImage(params, data, sink, engine);
  return { root: toHex(rootHash), hash: sink.bytes.slice() };
}

const pools = [createHashPool({ threads: 2, inner: 'node-crypto' }), createHashPool({ threads: 3, inner: 'wasm-simd' })];
afterAll(() => Promise.all(pools.map((p) => p.close?.())));
// The engine and thread matrix of test/format/golden.test.ts, here over sparse sources.
const ENGINES: HashEngine[] = [nodeCryptoEngine, hashWasmEngine, ...(simdSupported() ? [wasmSimdEngine] : []), ...pools];

describe('a dynamic VHDX with unallocated and ZERO blocks builds the tree of its bytes', () => {
  for (const engine of ENGINES) {
    describe(`engine ${engine.name}`, () => {
      const shapes = SHAPES.filter((s) => engine.supports(s.algorithm as never));
      it.each(shapes)('$name: the whole disk, and a slice crossing allocated and absent blocks', async (shape) => {
        const img = await openVhdx(bytesSource(sparseVhdx().file));
        expect(img.knownZero).toBeTypeOf('function');
        // A slice that starts inside absent block 0 off any block boundary and ends inside present block 9.
        const slice = sliceSource(img, MiB / 2 + 1536, 9 * MiB + 3000);
        for (const source of [img, slice]) {
          const params = paramsOf(shape, source.size);
          const plain = await plainCopy(source);
          const want = await format(params, plain, nodeCryptoEngine);
          const got = await format(params, source, engine);
          expect(got.root).toBe(want.root);
          expect(Buffer.compare(got.hash, want.hash)).toBe(0);
          const verified = await verifyTree(params, source, bytesSource(got.hash), Buffer.from(got.root, 'hex'), engine);
          expect(verified.status).toBe('ok');
          expect(verified).toEqual(await verifyTree(params, plain, bytesSource(want.hash), Buffer.from(want.root, 'hex'), nodeCryptoEngine));
        }
      });
    });
  }
});

/** Flips one byte of `hash` at `position`. */
function damaged(hash: Uint8Array, position: number): Uint8Array {
  const out = hash.slice();
  out[position]! ^= 0x5a;
  return out;
}

describe('damage in the tree over a zero region is reported as over the same bytes read', () => {
  const shape = SHAPES[1]!; // 512/512: four levels over 12 MiB, zero subtrees at levels 0–2
  it.each(ENGINES.filter((e) => e.supports('sha256')).map((e) => [e.name, e] as const))('%s', async (_name, engine) => {
    const img = await openVhdx(bytesSource(sparseVhdx().file));
    const plain = await plainCopy(img);
    const params = paramsOf(shape, img.size);
    const { root, hash } = await format(params, plain, nodeCryptoEngine);
    const expected = Buffer.from(root, 'hex');
    const verifyBoth = async (h: Uint8Array) => {
      const got = await verifyTree(params, img, bytesSource(h), expected, engine);
      const want = await verifyTree(params, plain, bytesSource(h), expected, nodeCryptoEngine);
      expect(got).toEqual(want);
      return got;
    };
    const plan = (await verifyBoth(hash)).geometry;
    expect(plan.levels.length).toBe(4);
    const hbs = params.hashBlockSize;
    // Absent block 7 (7 MiB) is data blocks 14336.. of 512 bytes: one level-0 block covers 16 of them.
    const dataBlock = (7 * MiB) / 512 + 5;
    const at = (level: number, index: number) => (plan.levels[level]!.startBlock + index) * hbs;
    const cases = [
      // A digest in a level-0 block over zeros: that data block is blamed.
      at(0, Math.floor(dataBlock / 16)) + (dataBlock % 16) * 32 + 3,
      // A digest in a level-1 block whose children are all zero subtrees.
      at(1, Math.floor(dataBlock / 256)) + (Math.floor(dataBlock / 16) % 16) * 32,
      // A level-2 block over a whole 2 MiB zero stretch (6–8 MiB): its entry for a level-1 block.
      at(2, Math.floor(dataBlock / 4096)) + 5 * 32 + 31,
      // The last byte of the last level-0 block: a digest byte for the last data block, in absent block 11.
      at(0, plan.levels[0]!.blocks - 1) + hbs - 1,
    ];
    for (const position of cases) {
      const report = await verifyBoth(damaged(hash, position));
      expect(report.status).toBe('corrupt');
    }
  });
});

describe('data the tree expects where the image has no block', () => {
  it.each(ENGINES.filter((e) => e.supports('sha256')).map((e) => [e.name, e] as const))(
    '%s: the data blocks of a block the image lost are corrupt, as over the same bytes read',
    async (_name, engine) => {
      // The tree of a disk with block 7 present, checked against the same disk whose BAT lost block 7 (NOT_PRESENT).
      const whole = buildVhdx({ virtualSize: 12 * MiB, blockSize: MiB, present: [9, 1, 4, 5, 7] });
      const lost = await openVhdx(bytesSource(sparseVhdx().file));
      const params = paramsOf(SHAPES[0]!, lost.size);
      const { root, hash } = await format(params, await openVhdx(bytesSource(whole.file)), nodeCryptoEngine);
      const got = await verifyTree(params, lost, bytesSource(hash), Buffer.from(root, 'hex'), engine);
      expect(got.status).toBe('corrupt');
      expect(got.data.corrupt).toEqual([{ first: (7 * MiB) / 4096, count: MiB / 4096 }]);
      expect(got).toEqual(await verifyTree(params, await plainCopy(lost), bytesSource(hash), Buffer.from(root, 'hex'), nodeCryptoEngine));
    },
  );
});

/** A source that counts the bytes read, and keeps the inner source's knownZero. */
function counting(inner: ByteSource) {
  const reads: Array<[number, number]> = [];
  const source: ByteSource = {
    size: inner.size,
    ...(inner.knownZero && { knownZero: (o: number, l: number) => inner.knownZero!(o, l) }),
    async read(dst, position) {
      reads.push([position, dst.length]);
      return inner.read(dst, position);
    },
  };
  return { source, reads };
}

/** An engine that counts the blocks each size of block its hashers were given. */
function countingEngine(inner: HashEngine) {
  const blocks = new Map<number, number>();
  const engine: HashEngine = {
    name: `counting ${inner.name}`,
    supports: (a) => inner.supports(a),
    async createBlockHasher(options): Promise<BlockHasher> {
      const h = await inner.createBlockHasher(options);
      return {
        digestSize: h.digestSize,
        hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
          blocks.set(blockSize, (blocks.get(blockSize) ?? 0) + count);
          return h.hashBlocks(src, blockSize, count, dst, dstOffset, dstStride);
        },
      };
    },
  };
  return { engine, blocks };
}

describe('what a pass over a sparse image reads and hashes', () => {
  it('reads only the present blocks and hashes no zero subtree', async () => {
    const img = await openVhdx(bytesSource(sparseVhdx().file));
    const { source, reads } = counting(img);
    const params = paramsOf(SHAPES[1]!, img.size);
    const { engine, blocks } = countingEngine(nodeCryptoEngine);
    const sink = new MemorySink();
    await formatImage(params, source, sink, engine);
    const present = new Set([1, 4, 5, 9]);
    let bytes = 0;
    for (const [position, length] of reads) {
      bytes += length;
      for (let b = Math.floor(position / MiB); b * MiB < position + length; b++) expect(present.has(b)).toBe(true);
    }
    expect(bytes).toBe(4 * MiB);
    // 512-byte data and hash blocks alike: the 4 MiB of data (8192 blocks), the zero block once, the tree blocks
    // that are not zero subtrees (over present data, plus the edges), and one per level for the zero subtrees.
    const hashed = blocks.get(512)!;
    const treeBlocks = sink.bytes.length / 512;
    expect(hashed).toBeLessThan(8192 + 1 + treeBlocks / 2);
  });

  it('a verify reads the same and still checks every stored block over the zeros', async () => {
    const img = await openVhdx(bytesSource(sparseVhdx().file));
    const params = paramsOf(SHAPES[0]!, img.size);
    const { root, hash } = await format(params, img, nodeCryptoEngine);
    const data = counting(img);
    const tree = counting(bytesSource(hash));
    const r = await verifyTree(params, data.source, tree.source, Buffer.from(root, 'hex'), nodeCryptoEngine);
    expect(r.status).toBe('ok');
    expect(data.reads.reduce((s, [, l]) => s + l, 0)).toBe(4 * MiB);
    // The whole tree is read and compared (the superblock is not: verifyTree takes the parameters).
    expect(tree.reads.reduce((s, [, l]) => s + l, 0)).toBe(r.geometry.hashBlocks * params.hashBlockSize);
  });
});

describe(`images from qemu-img: tree as from the raw bytes${SKIP_QEMU}`, () => {
  /** A raw disk of `size` bytes with random data at `spots` ([offset, length]), zeros elsewhere (sparse). */
  const rawDisk = (name: string, size: number, spots: Array<[number, number]>) => writeSparseRaw(join(workDir(), name), size, spots);
  const SPOTS: Array<[number, number]> = [[0, 8192], [3 * MiB + 100, 5000], [9 * MiB - 4096, 2 * 4096 + 77], [20 * MiB - 512, 512]];

  it.skipIf(!HAS_QEMU_IMG)('dynamic VHDX (block_size=1M) and dynamic VHD: same tree as the raw file', async () => {
    const raw = rawDisk('disk.raw', 20 * MiB, SPOTS);
    const vhdx = join(workDir(), 'disk.vhdx');
    const vhd = join(workDir(), 'disk.vhd');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, vhdx]);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on', raw, vhd]);
    const rawBytes = new Uint8Array(readFileSync(raw));
    for (const [path, open] of [[vhdx, openVhdx], [vhd, openVhd]] as const) {
      const file = await openFileSource(path);
      try {
        const img: ByteSource = await open(file);
        expect(img.knownZero).toBeTypeOf('function');
        expect(img.knownZero!(0, img.size).length).toBeGreaterThan(0);
        const plain = bytesSource(rawBytes.subarray(0, img.size));
        for (const shape of SHAPES) {
          const params = paramsOf(shape, img.size);
          for (const engine of [nodeCryptoEngine, pools[0]!]) {
            const got = await format(params, img, engine);
            const want = await format(params, plain, nodeCryptoEngine);
            expect(got.root).toBe(want.root);
            expect(Buffer.compare(got.hash, want.hash)).toBe(0);
          }
        }
      } finally {
        await file.close();
      }
    }
  });

  it.skipIf(!HAS_QEMU_IMG || !hasVeritysetup)(`veritysetup agrees: root, tree, and the first failure over a zero region${NEEDS_VERITYSETUP}`, async () => {
    const raw = rawDisk('oracle.raw', 20 * MiB, SPOTS);
    const vhdx = join(workDir(), 'oracle.vhdx');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, vhdx]);
    const hashPath = join(workDir(), 'oracle.hash');
    const salt = toHex(SALT);
    const uuid = '2b9c6f0e-8d1a-4c3b-9e7f-5a6b7c8d9e0f';
    const formatted = veritysetup(['format', raw, hashPath, `--salt=${salt}`, `--uuid=${uuid}`]);
    expect(formatted.code).toBe(0);
    const root = /^Root hash:\s+([0-9a-f]+)$/m.exec(formatted.stdout)![1]!;
    const file = await openFileSource(vhdx);
    try {
      const img = await openVhdx(file);
      const params = paramsOf(SHAPES[0]!, img.size);
      const ours = await format(params, img, pools[0]!);
      expect(ours.root).toBe(root);
      const theirs = new Uint8Array(readFileSync(hashPath));
      expect(Buffer.compare(ours.hash, theirs.subarray(0, ours.hash.length))).toBe(0);
      // Damage an entry of level 0 over the zero stretch at 12 MiB: veritysetup stops at the data block it stands for.
      const r0 = await verifyTree(params, img, bytesSource(theirs), Buffer.from(root, 'hex'), pools[0]!);
      expect(r0.status).toBe('ok');
      const dataBlock = (12 * MiB) / 4096 + 9;
      const position = (r0.geometry.levels[0]!.startBlock + Math.floor(dataBlock / 128)) * 4096 + (dataBlock % 128) * 32;
      const bad = damaged(theirs, position);
      writeFileSync(hashPath, bad);
      const r = await verifyTree(params, img, bytesSource(bad), Buffer.from(root, 'hex'), pools[0]!);
      expect(r.status).toBe('corrupt');
      // The damaged level-0 block is blamed, the data under it unverified, exactly as over the raw bytes.
      expect(r.levels[0]!.corrupt).toEqual([{ first: Math.floor(dataBlock / 128), count: 1 }]);
      expect(r.data.corrupt).toEqual([]);
      expect(r).toEqual(await verifyTree(params, bytesSource(new Uint8Array(readFileSync(raw))), bytesSource(bad), Buffer.from(root, 'hex'), nodeCryptoEngine));
      const theirVerify = veritysetup(['verify', raw, hashPath, root]);
      expect(theirVerify.code).not.toBe(0);
      expect(r.firstFailure).toEqual({ kind: 'digest', position: failedPosition(theirVerify.stderr) });
    } finally {
      await file.close();
    }
  });
});
