/**
 * The legacy VHD reader: qemu's sample images (test/fixtures/vhd/README.md), images qemu-img writes, read back
 * byte-for-byte against `qemu-img convert -O raw`, synthetic images with blocks past 4 GiB, and damage.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isAllZero } from '../../src/binary/bytes.js';
import { u32be } from '../../src/binary/struct.js';
import {
  openVhd,
  sealVhdChecksum,
  VHD_DYNAMIC_HEADER,
  VHD_FOOTER,
  type VhdDynamicHeaderValue,
  type VhdFooterValue,
} from '../../src/image/vhd.js';
import { bytesSource, type ByteSource } from '../../src/io/source.js';
import { Rng } from '../support/rng.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { findTool } from '../support/tools.js';
import { failure, readAt } from '../support/sources.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vhd');
const MiB = 1 << 20;
const GiB = 1024 * MiB;

const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const NEEDS_QEMU_IMG = QEMU_IMG ? '' : ' [SKIPPED: qemu-img not installed]';
const BZIP2 = findTool('bzip2', '/usr/bin/bzip2');
const NEEDS_BZIP2 = BZIP2 ? '' : ' [SKIPPED: bzip2 not installed]';

/** Runs a tool found by findTool; tests that call it are guarded with `it.skipIf` on the same tool. */
function run(cmd: string | null, args: string[]): string {
  if (cmd === null) throw new Error('tool not installed: guard the test with it.skipIf');
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Flips the bits `mask` of the byte at `at`. */
function flip(bytes: Uint8Array, at: number, mask: number): void {
  bytes[at] = bytes[at]! ^ mask;
}

async function readAll(source: ByteSource): Promise<Uint8Array> {
  const out = new Uint8Array(source.size);
  expect(await source.read(out, 0)).toBe(source.size);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Building and patching images through the declarations the reader parses with (VHD_FOOTER, VHD_DYNAMIC_HEADER).
// The reader is checked independently on images written by qemu-img and on qemu's sample images from Hyper-V,
// Disk2VHD and Virtual PC.

const FOOTER_CHECKSUM = VHD_FOOTER.fields.checksum.offset;
const DYNAMIC_CHECKSUM = VHD_DYNAMIC_HEADER.fields.checksum.offset;
/** A byte of the footer's reserved area (after Saved State): no field reads it, but the checksum covers it. */
const FOOTER_RESERVED_BYTE = 300;

/** Where the dynamic header of `file` is: the Data Offset of its footer copy at 0. */
function dynamicHeaderAt(file: Uint8Array): number {
  return Number(VHD_FOOTER.get(file, 0).dataOffset);
}

/** Changes fields of the footer at `at` and re-seals its checksum. */
function patchFooter(file: Uint8Array, at: number, changes: Partial<VhdFooterValue>): void {
  VHD_FOOTER.put(file, at, { ...VHD_FOOTER.get(file, at), ...changes });
  sealVhdChecksum(file.subarray(at, at + VHD_FOOTER.len), FOOTER_CHECKSUM);
}

/** Applies `changes` to the footer copy at 0 (dynamic images) and at the end, resealing both. */
function patchFooters(file: Uint8Array, changes: Partial<VhdFooterValue>): void {
  for (const at of [0, file.length - VHD_FOOTER.len]) patchFooter(file, at, changes);
}

/** Changes fields of the dynamic header at `at` and re-seals its checksum. */
function patchDynamic(file: Uint8Array, at: number, changes: Partial<VhdDynamicHeaderValue>): void {
  VHD_DYNAMIC_HEADER.put(file, at, { ...VHD_DYNAMIC_HEADER.get(file, at), ...changes });
  sealVhdChecksum(file.subarray(at, at + VHD_DYNAMIC_HEADER.len), DYNAMIC_CHECKSUM);
}

/** A sealed footer of disk type `type` (2 fixed, 3 dynamic, 4 differencing). */
function footer(type: 2 | 3 | 4, currentSize: number, dataOffset: bigint): Uint8Array {
  const bytes = VHD_FOOTER.serialize({
    cookie: 'conectix',
    features: 2,
    formatVersion: 0x00010000,
    dataOffset,
    timestamp: 0x12345678,
    creatorApp: 'test',
    creatorVersion: 0x00020005,
    creatorHostOs: 'Wi2k',
    originalSize: BigInt(currentSize),
    currentSize: BigInt(currentSize),
    // 65535/16/255: the size comes from currentSize.
    cylinders: 0xffff,
    heads: 16,
    sectorsPerTrack: 255,
    diskType: type,
    checksum: 0,
    uniqueId: 'deadbeef-0000-0000-0000-000000000000',
    savedState: 0,
  });
  return sealVhdChecksum(bytes, FOOTER_CHECKSUM);
}

/** A source of `size` bytes that are zero except for the regions given, so a "file" can span 6 GiB. */
function sparseSource(size: number, regions: [number, Uint8Array][]): ByteSource {
  return {
    size,
    async read(dst, position) {
      const n = Math.max(0, Math.min(dst.length, size - position));
      dst.fill(0, 0, n);
      for (const [at, bytes] of regions) {
        const from = Math.max(at, position);
        const to = Math.min(at + bytes.length, position + n);
        if (from < to) dst.set(bytes.subarray(from - at, to - at), from - position);
      }
      return n;
    },
  };
}

interface SyntheticBlock {
  index: number;
  sector: number;
  data: Uint8Array;
}

const NO_LOCATOR = { platformCode: '', platformDataSpace: 0, platformDataLength: 0, reserved: 0, platformDataOffset: 0n };

/** A sealed dynamic header (a differencing one when `parentName` is given). */
function dynamicHeader(o: { tableOffset: number; maxTableEntries: number; blockSize: number; parentName?: string }): Uint8Array {
  const bytes = VHD_DYNAMIC_HEADER.serialize({
    cookie: 'cxsparse',
    dataOffset: 2n ** 64n - 1n,
    tableOffset: BigInt(o.tableOffset),
    headerVersion: 0x00010000,
    maxTableEntries: o.maxTableEntries,
    blockSize: o.blockSize,
    checksum: 0,
    parentUniqueId: '00000000-0000-0000-0000-000000000000',
    parentTimestamp: 0,
    reserved: 0,
    parentUnicodeName: o.parentName ?? '',
    parentLocators: Array.from({ length: 8 }, () => NO_LOCATOR),
  });
  return sealVhdChecksum(bytes, DYNAMIC_CHECKSUM);
}

/** The layout syntheticDynamic writes: footer copy, dynamic header right after it, then the BAT. */
const SYNTHETIC_HEADER_AT = VHD_FOOTER.len;
const SYNTHETIC_BAT_AT = SYNTHETIC_HEADER_AT + VHD_DYNAMIC_HEADER.len;
const UNALLOCATED = 0xffffffff;

/**
 * A dynamic VHD: footer copy at 0, dynamic header at 512, BAT at 1536, the given blocks (each a 0xFF bitmap and its
 * data) at their sectors, footer at the end of a file of `fileSize` bytes.
 */
function syntheticDynamic(o: { currentSize: number; blockSize: number; fileSize: number; blocks: SyntheticBlock[]; maxEntries?: number; parentName?: string }) {
  const entries = o.maxEntries ?? Math.ceil(o.currentSize / o.blockSize);
  const bitmapBytes = Math.ceil(o.blockSize / 512 / 8 / 512) * 512;
  const head = new Uint8Array(SYNTHETIC_BAT_AT + Math.ceil((entries * 4) / 512) * 512);
  head.set(footer(o.parentName === undefined ? 3 : 4, o.currentSize, BigInt(SYNTHETIC_HEADER_AT)), 0);
  const header = dynamicHeader({ tableOffset: SYNTHETIC_BAT_AT, maxTableEntries: entries, blockSize: o.blockSize, parentName: o.parentName });
  head.set(header, SYNTHETIC_HEADER_AT);
  // The BAT: one big-endian sector number per block.
  const bat = head.subarray(SYNTHETIC_BAT_AT);
  for (let i = 0; i < entries; i++) u32be.put(bat, 4 * i, UNALLOCATED);
  const regions: [number, Uint8Array][] = [[0, head]];
  for (const b of o.blocks) {
    u32be.put(bat, 4 * b.index, b.sector);
    regions.push([b.sector * 512, new Uint8Array(bitmapBytes).fill(0xff)], [b.sector * 512 + bitmapBytes, b.data]);
  }
  regions.push([o.fileSize - VHD_FOOTER.len, head.slice(0, VHD_FOOTER.len)]);
  return sparseSource(o.fileSize, regions);
}

function pattern(length: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length }, () => rng.int(0, 255));
}

// ---------------------------------------------------------------------------------------------------------------------

describe('declared layouts (footer, dynamic header) read and write the same bytes', () => {
  /** Writing back what was read changes no byte the declaration covers; bytes it does not cover are left alone. */
  const rewritesItself = <T,>(decl: { get(b: Uint8Array, o: number): T; put(b: Uint8Array, o: number, v: T): void }, bytes: Uint8Array) => {
    const copy = bytes.slice();
    decl.put(copy, 0, decl.get(bytes, 0));
    expect(copy).toEqual(bytes);
  };

  it.each(['hyperv2012r2-dynamic.vhd', 'virtualpc-dynamic.vhd'])('on %s', (name) => {
    const file = new Uint8Array(readFileSync(join(FIXTURES, name)));
    rewritesItself(VHD_FOOTER, file.subarray(file.length - 512));
    rewritesItself(VHD_FOOTER, file.subarray(0, 512));
    const headerAt = Number(VHD_FOOTER.get(file, 0).dataOffset);
    rewritesItself(VHD_DYNAMIC_HEADER, file.subarray(headerAt, headerAt + VHD_DYNAMIC_HEADER.len));
    expect(VHD_DYNAMIC_HEADER.get(file, headerAt).cookie).toBe('cxsparse');
  });

  it('on a synthetic footer: serialise, parse and serialise again give the same bytes, checksum included', () => {
    const bytes = footer(3, 5 * MiB + 512, 512n);
    expect(VHD_FOOTER.serialize(VHD_FOOTER.get(bytes, 0))).toEqual(bytes);
    expect(VHD_FOOTER.get(bytes, 0)).toMatchObject({ cookie: 'conectix', currentSize: BigInt(5 * MiB + 512), diskType: 3, creatorHostOs: 'Wi2k' });
  });

  it('on a synthetic differencing header: the parent name, the parent locators and 64-bit offsets survive a round trip', () => {
    const value = VHD_DYNAMIC_HEADER.get(dynamicHeader({ tableOffset: 2 ** 40 + 512, maxTableEntries: 3, blockSize: 2 * MiB, parentName: 'C:\\VMs\\bäse.vhd' }), 0);
    value.parentUniqueId = '00112233-4455-6677-8899-aabbccddeeff';
    value.parentLocators[0] = { platformCode: 'W2ku', platformDataSpace: 1, platformDataLength: 30, reserved: 0, platformDataOffset: 2n ** 33n };
    value.parentLocators[7] = { platformCode: 'W2ru', platformDataSpace: 2, platformDataLength: 24, reserved: 0, platformDataOffset: 1536n };
    const bytes = sealVhdChecksum(VHD_DYNAMIC_HEADER.serialize(value), DYNAMIC_CHECKSUM);
    const parsed = VHD_DYNAMIC_HEADER.get(bytes, 0);
    expect(parsed).toEqual({ ...value, checksum: parsed.checksum });
    expect(VHD_DYNAMIC_HEADER.serialize(parsed)).toEqual(bytes);
  });
});

describe('qemu-iotests sample images (fixtures/vhd)', () => {
  const samples = [
    {
      file: 'hyperv2012r2-dynamic.vhd',
      sha256: '1340b8a51517ba5f0112c47694f3c8a4a2bb4f9933336a18cf0392f3490c6674',
      creatorApp: 'win',
      creatorVersion: { major: 6, minor: 3 },
    },
    {
      file: 'virtualpc-dynamic.vhd',
      sha256: '7675fd9bcc5f705f69e69a2c5e948d2a6522eaac044540a0782ae6097a458d6a',
      creatorApp: 'vpc',
      creatorVersion: { major: 1, minor: 0 },
    },
  ];

  for (const s of samples) {
    it(`${s.file}: 136365211648 bytes (current size, not the CHS size), no block allocated, reads as zeros`, async () => {
      const bytes = new Uint8Array(readFileSync(join(FIXTURES, s.file)));
      expect(sha256(bytes)).toBe(s.sha256);
      const image = await openVhd(bytesSource(bytes));
      expect(image.size).toBe(136365211648);
      expect(image.info).toMatchObject({
        type: 'dynamic',
        currentSize: 136365211648,
        originalSize: 136365211648,
        geometry: { cylinders: 65278, heads: 16, sectorsPerTrack: 255 },
        chsSize: 136363130880,
        creatorApp: s.creatorApp,
        creatorVersion: s.creatorVersion,
        creatorHostOs: 'Wi2k',
        blockSize: 2 * MiB,
        blocks: 65024,
        allocatedBlocks: 0,
        footer: 'end',
        warnings: [],
      });
      for (const at of [0, 4 * GiB - 7, 100 * GiB + 12345, image.size - 3 * MiB]) {
        expect(isAllZero(await readAt(image, at, 3 * MiB))).toBe(true);
      }
      // Reads are clipped at the end of the disk.
      expect((await readAt(image, image.size - 100, 4096)).length).toBe(100);
      expect((await readAt(image, image.size, 4096)).length).toBe(0);
    });
  }

  it.skipIf(!BZIP2)(`d2v-zerofilled.vhd (bzip2-compressed fixture): 126 blocks of 2 MiB, all allocated, all zero${NEEDS_BZIP2}`, async () => {
    const r = spawnSync(BZIP2!, ['-dc', join(FIXTURES, 'd2v-zerofilled.vhd.bz2')], { maxBuffer: 300 * MiB });
    expect(r.status).toBe(0);
    const bytes = new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length);
    expect(bytes.length).toBe(264308224);
    expect(sha256(bytes)).toBe('af175e3c442b659e26b91029aacf2e62f2f7cf054404446db3185aafc38e079f');
    const image = await openVhd(bytesSource(bytes));
    expect(image.size).toBe(263454720);
    expect(image.info).toMatchObject({
      type: 'dynamic',
      creatorApp: 'd2v',
      geometry: { cylinders: 65535, heads: 16, sectorsPerTrack: 255 },
      blockSize: 2 * MiB,
      blocks: 126,
      allocatedBlocks: 126,
    });
    const chunk = new Uint8Array(16 * MiB);
    for (let at = 0; at < image.size; at += chunk.length) {
      const n = await image.read(chunk, at);
      expect(n).toBe(Math.min(chunk.length, image.size - at));
      expect(isAllZero(chunk.subarray(0, n))).toBe(true);
    }
  }, 30_000);
});

describe('images written by qemu-img 7.2', () => {
  const dir = tempDirPerTest('vhd-qemu-');

  /** 20 MiB + 1536 bytes: scattered random runs, whole zero 2 MiB blocks (left unallocated), a tail in a partial block. */
  function rawImage(): Uint8Array {
    const rng = new Rng(0x5eed);
    const raw = new Uint8Array(20 * MiB + 1536);
    for (let i = 0; i < 60; i++) {
      const at = rng.int(0, raw.length - 9000);
      if (Math.floor(at / (2 * MiB)) % 3 === 1) continue; // keep blocks 1, 4, 7 zero
      raw.set(pattern(rng.int(1, 9000), rng.u32()), at);
    }
    raw.set(pattern(700, 7), raw.length - 700);
    return raw;
  }

  for (const subformat of ['dynamic', 'fixed'] as const) {
    for (const forceSize of ['on', 'off'] as const) {
      it.skipIf(!QEMU_IMG)(`subformat=${subformat},force_size=${forceSize}: equals qemu-img convert -O raw, byte for byte${NEEDS_QEMU_IMG}`, async () => {
        const raw = rawImage();
        const [rawPath, vhdPath, backPath] = ['in.raw', 'disk.vhd', 'back.raw'].map((f) => join(dir(), f)) as [string, string, string];
        writeFileSync(rawPath, raw);
        run(QEMU_IMG, ['convert', '-f', 'raw', '-O', 'vpc', '-o', `subformat=${subformat},force_size=${forceSize}`, rawPath, vhdPath]);
        run(QEMU_IMG, ['convert', '-f', 'vpc', '-O', 'raw', vhdPath, backPath]);
        const virtualSize = JSON.parse(run(QEMU_IMG, ['info', '--output=json', '-f', 'vpc', vhdPath]))['virtual-size'];
        const expected = new Uint8Array(readFileSync(backPath));

        const image = await openVhd(bytesSource(new Uint8Array(readFileSync(vhdPath))));
        expect(image.size).toBe(virtualSize);
        expect(image.size).toBe(expected.length);
        expect(image.info.type).toBe(subformat);
        expect(image.info.creatorApp).toBe(forceSize === 'on' ? 'qem2' : 'qemu');
        const got = await readAll(image);
        expect(sha256(got)).toBe(sha256(expected));
        // qemu rounds a size that is not whole CHS cylinders up; what it adds reads as zeros.
        expect(sha256(got.subarray(0, raw.length))).toBe(sha256(raw));
        if (subformat === 'dynamic') {
          expect(image.info.blockSize).toBe(2 * MiB);
          expect(image.info.blocks).toBe(11);
          expect(image.info.allocatedBlocks).toBeLessThan(image.info.blocks);
        }
        // Unaligned reads across block boundaries.
        const rng = new Rng(3);
        for (let i = 0; i < 50; i++) {
          const at = rng.int(0, image.size - 1);
          const length = rng.int(1, 5 * MiB);
          const piece = await readAt(image, at, length);
          expect(piece.length).toBe(Math.min(length, image.size - at));
          expect(Buffer.compare(piece, expected.subarray(at, at + piece.length))).toBe(0);
        }
      });
    }
  }

  it.skipIf(!QEMU_IMG)(`a dynamic image that lost its last 512 bytes (the footer) is read through the footer copy at offset 0${NEEDS_QEMU_IMG}`, async () => {
    const raw = rawImage();
    writeFileSync(join(dir(), 'in.raw'), raw);
    run(QEMU_IMG, ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on', join(dir(), 'in.raw'), join(dir(), 'd.vhd')]);
    const file = new Uint8Array(readFileSync(join(dir(), 'd.vhd')));
    const image = await openVhd(bytesSource(file.subarray(0, file.length - 512)));
    expect(image.info.footer).toBe('start');
    expect(image.info.warnings[0]).toMatch(/footer at offset .* is damaged \(no "conectix" cookie\); its copy at offset 0 was used/);
    expect(sha256(await readAll(image))).toBe(sha256(raw));

    // Cut in the middle of the blocks, the same image is truncated.
    const cut = await failure(openVhd(bytesSource(file.subarray(0, 9 * MiB))));
    expect(cut.code).toBe('E_TRUNCATED');
    expect(cut.message).toMatch(/VHD block \d+ .* past the end of the 9437184-byte file/);
  });

  it.skipIf(!QEMU_IMG)(`a fixed image whose footer claims more data than the file holds is truncated${NEEDS_QEMU_IMG}`, async () => {
    writeFileSync(join(dir(), 'in.raw'), rawImage());
    run(QEMU_IMG, ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', join(dir(), 'in.raw'), join(dir(), 'f.vhd')]);
    const file = new Uint8Array(readFileSync(join(dir(), 'f.vhd')));
    const at = file.length - 512;
    patchFooter(file, at, { currentSize: BigInt(file.length) });
    expect(await failure(openVhd(bytesSource(file)))).toMatchObject({ code: 'E_TRUNCATED' });
    // A fixed image has no footer copy to fall back on.
    flip(file, at + FOOTER_RESERVED_BYTE, 1);
    const bad = await failure(openVhd(bytesSource(file)));
    expect(bad.code).toBe('E_BAD_IMAGE');
    expect(bad.message).toMatch(/footer checksum mismatch/);
  });
});

describe('offsets and sizes past 4 GiB', () => {
  it('maps blocks stored at 2 GiB + 512, exactly 4 GiB and 4.5 GiB in a 6 GiB file', async () => {
    const blockSize = MiB;
    const currentSize = 4 * blockSize + 1000; // block 4 is partial
    const blocks: SyntheticBlock[] = [
      { index: 0, sector: 9 * 2 ** 20, data: pattern(blockSize, 1) }, // 4.5 GiB
      // block 1 unallocated
      { index: 2, sector: 4 * 2 ** 20 + 1, data: pattern(blockSize, 2) }, // bitmap at 2 GiB + 512
      { index: 3, sector: 8 * 2 ** 20 - 1, data: pattern(blockSize, 3) }, // bitmap just below 4 GiB, data at 4 GiB
      { index: 4, sector: 8, data: pattern(1000, 4) },
    ];
    const file = syntheticDynamic({ currentSize, blockSize, fileSize: 6 * GiB, blocks });
    const image = await openVhd(file);
    expect(image.size).toBe(currentSize);
    expect(image.info).toMatchObject({ type: 'dynamic', blocks: 5, allocatedBlocks: 4, creatorApp: 'test', creatorVersion: { major: 2, minor: 5 } });
    const expected = new Uint8Array(currentSize);
    for (const b of blocks) expected.set(b.data, b.index * blockSize);
    expect(sha256(await readAll(image))).toBe(sha256(expected));
    const piece = await readAt(image, 3 * blockSize - 10, 20);
    expect([...piece]).toEqual([...expected.subarray(3 * blockSize - 10, 3 * blockSize + 10)]);
  });

  it('a BAT entry past the end of the file is truncation, one reaching into the footer is damage', async () => {
    const base = { currentSize: MiB, blockSize: MiB, fileSize: 5 * MiB };
    const beyond = await failure(openVhd(syntheticDynamic({ ...base, blocks: [{ index: 0, sector: 2 ** 32 - 2, data: new Uint8Array(0) }] })));
    expect(beyond.code).toBe('E_TRUNCATED');
    expect(beyond.message).toContain(`file offsets ${(2 ** 32 - 2) * 512 + 512}..`);
    const intoFooter = await failure(openVhd(syntheticDynamic({ ...base, blocks: [{ index: 0, sector: (4 * MiB) / 512 - 1, data: new Uint8Array(0) }] })));
    expect(intoFooter.code).toBe('E_BAD_IMAGE');
  });

  it('a current size of 2^52 with a 1 MiB table is refused without allocating for it', async () => {
    const file = syntheticDynamic({ currentSize: 2 ** 52, blockSize: 2 * MiB, fileSize: 4 * MiB, blocks: [], maxEntries: 16 });
    const e = await failure(openVhd(file));
    expect(e.code).toBe('E_BAD_IMAGE');
    expect(e.message).toMatch(/block table has 16 entries, but 4503599627370496 bytes in 2097152-byte blocks need 2147483648/);
  });
});

describe('damage and unsupported images (on hyperv2012r2-dynamic.vhd)', () => {
  const sample = () => new Uint8Array(readFileSync(join(FIXTURES, 'hyperv2012r2-dynamic.vhd')));

  it('a damaged footer at the end falls back to the copy at offset 0, and a damaged copy is a warning', async () => {
    const endDamaged = sample();
    flip(endDamaged, endDamaged.length - VHD_FOOTER.len + FOOTER_RESERVED_BYTE, 0x40);
    const a = await openVhd(bytesSource(endDamaged));
    expect(a.info.footer).toBe('start');
    expect(a.size).toBe(136365211648);
    expect(a.info.warnings).toEqual([expect.stringMatching(/footer checksum mismatch: stored 0xffffe9db, computed 0xffffe99b/)]);

    const copyDamaged = sample();
    flip(copyDamaged, FOOTER_RESERVED_BYTE, 0x40);
    const b = await openVhd(bytesSource(copyDamaged));
    expect(b.info.footer).toBe('end');
    expect(b.info.warnings).toEqual([expect.stringMatching(/footer copy at offset 0 is damaged/)]);

    flip(endDamaged, FOOTER_RESERVED_BYTE, 0x40);
    const both = await failure(openVhd(bytesSource(endDamaged)));
    expect(both.code).toBe('E_BAD_IMAGE');
    expect(both.message).toMatch(/footer at offset 265728 has footer checksum mismatch.*offset 0 holds no usable copy/);
  });

  it('a damaged dynamic header, a bad block size or too short a table is E_BAD_IMAGE', async () => {
    const header = sample();
    flip(header, dynamicHeaderAt(header) + VHD_DYNAMIC_HEADER.fields.parentUnicodeName.offset, 1);
    expect(await failure(openVhd(bytesSource(header)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/dynamic header checksum mismatch/) });

    const blockSize = sample();
    patchDynamic(blockSize, dynamicHeaderAt(blockSize), { blockSize: 3 * MiB });
    expect(await failure(openVhd(bytesSource(blockSize)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/block size 3145728 is not a power of two/) });

    const table = sample();
    patchDynamic(table, dynamicHeaderAt(table), { maxTableEntries: 65023 });
    expect(await failure(openVhd(bytesSource(table)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/65023 entries, but .* need 65024/) });

    const headerOffset = sample();
    patchFooters(headerOffset, { dataOffset: 2n ** 63n });
    expect(await failure(openVhd(bytesSource(headerOffset)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/dynamic header offset/) });
  });

  it('a differencing image is E_UNSUPPORTED and names its parent', async () => {
    const file = syntheticDynamic({ currentSize: 4 * MiB, blockSize: 2 * MiB, fileSize: 3 * MiB, blocks: [], parentName: 'C:\\VMs\\base-disk.vhd' });
    const e = await failure(openVhd(file));
    expect(e.code).toBe('E_UNSUPPORTED');
    expect(e.message).toContain('"C:\\VMs\\base-disk.vhd"');
  });

  it('unknown disk types and format versions are E_UNSUPPORTED; files that are no VHD are E_BAD_IMAGE', async () => {
    const type = sample();
    patchFooters(type, { diskType: 5 });
    expect(await failure(openVhd(bytesSource(type)))).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/disk type 5/) });

    const version = sample();
    patchFooters(version, { formatVersion: 0x00020000 });
    expect(await failure(openVhd(bytesSource(version)))).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/format version 2\.0/) });

    expect(await failure(openVhd(bytesSource(pattern(64 * 1024, 9))))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/no "conectix" cookie/) });
    expect(await failure(openVhd(bytesSource(new Uint8Array(100))))).toMatchObject({ code: 'E_BAD_IMAGE' });
  });

  it('a current size past 2^53 is damage, not a number to round', async () => {
    const file = sample();
    patchFooters(file, { currentSize: 2n ** 60n });
    expect(await failure(openVhd(bytesSource(file)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/current size 1152921504606846976 is too large/) });
  });
});
