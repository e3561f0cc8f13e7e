/**
 * The VHDX reader (src/image/vhdx/vhdx.ts) against three kinds of input:
 * - the qemu-iotests samples (Hyper-V, Disk2VHD, and a dirty log made by qemu 1.6 and replayed by Hyper-V): they
 *   must read as [MS-VHDX] §2.5 says and hash as qemu-img's raw conversion does;
 * - VHDX files built here, in memory, by a small writer that follows MS-VHDX: any block size, 4096-byte logical
 *   sectors, sector bitmap entries, logs of several entries (wrapping, zero descriptors, stale and torn entries),
 *   and every hostile variant. When qemu-img is installed, it reads the same files and must agree;
 * - images converted by `qemu-img convert -O vhdx` from sparse raw images, compared byte for byte.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerityError } from '../../../src/errors.js';
import { crc32c, crc32cWithZeroedField } from '../../../src/binary/crc32c.js';
import { encodeGuid } from '../../../src/binary/guid.js';
import { openVhdx, type VhdxImage } from '../../../src/image/vhdx/vhdx.js';
import { bytesSource, type ByteSource } from '../../../src/io/source.js';
import { openFileSource } from '../../../src/files/files.js';
import { Rng } from '../../support/rng.js';
import { makeData } from '../../support/data.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const FIXTURES = new URL('../../fixtures/vhdx/', import.meta.url);

function hasCommand(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return !r.error && r.status === 0;
}
const HAS_BZIP2 = hasCommand('bzip2', ['--help']);
const HAS_QEMU_IMG = hasCommand('qemu-img', ['--version']);
const HAS_QEMU_IO = hasCommand('qemu-io', ['--version']);
const SKIP_BZIP2 = HAS_BZIP2 ? '' : ' [SKIPPED: bzip2 not installed]';
const SKIP_QEMU = HAS_QEMU_IMG ? '' : ' [SKIPPED: qemu-img not installed]';
const SKIP_QEMU_IO = HAS_QEMU_IO && HAS_QEMU_IMG ? '' : ' [SKIPPED: qemu-io/qemu-img not installed]';

let work = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'vhdx-test-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

/** Every read from `src` is recorded: the largest one bounds what the reader allocated for file structures. */
function counted(src: ByteSource): { src: ByteSource; stats: { reads: number; largest: number } } {
  const stats = { reads: 0, largest: 0 };
  return {
    stats,
    src: {
      size: src.size,
      read(dst, position) {
        stats.reads++;
        stats.largest = Math.max(stats.largest, dst.length);
        return src.read(dst, position);
      },
    },
  };
}

async function readAll(img: ByteSource, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const n = await img.read(out, position);
  expect(n).toBe(Math.min(length, Math.max(0, img.size - position)));
  return out.subarray(0, n);
}

/** sha256 of the whole virtual disk, read in 16 MiB requests. */
async function sha256Of(img: ByteSource): Promise<string> {
  const h = createHash('sha256');
  const buf = new Uint8Array(16 * MiB);
  for (let p = 0; p < img.size; ) {
    const n = await img.read(buf, p);
    expect(n).toBeGreaterThan(0);
    h.update(buf.subarray(0, n));
    p += n;
  }
  return h.digest('hex');
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Offsets of the first and last byte in [from, to) of the virtual disk that differ from `value`, or null. */
async function findNot(img: ByteSource, value: number, from: number, to: number): Promise<number | null> {
  const buf = new Uint8Array(32 * MiB);
  const ref = Buffer.alloc(buf.length, value);
  for (let p = from; p < to; ) {
    const n = await img.read(buf.subarray(0, Math.min(buf.length, to - p)), p);
    if (Buffer.compare(Buffer.from(buf.buffer, 0, n), ref.subarray(0, n)) !== 0) {
      const i = buf.subarray(0, n).findIndex((b) => b !== value);
      return p + i;
    }
    p += n;
  }
  return null;
}

/** Byte equality without vitest's deep equality, which walks typed arrays key by key (and runs out of memory on MiBs). */
function expectSame(actual: Uint8Array, expected: Uint8Array, what = 'bytes'): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(b)) return;
  let i = 0;
  while (i < Math.min(a.length, b.length) && a[i] === b[i]) i++;
  expect.fail(`${what}: ${a.length} bytes vs ${b.length} expected; first difference at byte ${i} (${a[i]} vs ${b[i]})`);
}

async function rejection(p: Promise<unknown>): Promise<VerityError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(VerityError);
  return e as VerityError;
}

async function expectError(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const e = await rejection(p);
  expect({ code: e.code, message: e.message }).toMatchObject({ code, message: expect.stringMatching(message) });
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Decompresses a fixture into the work directory with the bzip2 command. */
function bunzip(name: string): Promise<string> {
  const out = join(work, name.replace(/\.bz2$/, ''));
  return new Promise((resolve, reject) => {
    const fd = openSync(out, 'w');
    const child = spawn('bzip2', ['-dc', new URL(name, FIXTURES).pathname], { stdio: ['ignore', fd, 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += String(d)));
    child.on('error', reject);
    child.on('close', (code) => {
      closeSync(fd);
      if (code === 0) resolve(out);
      else reject(new Error(`bzip2 -dc ${name} failed: ${stderr}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// An MS-VHDX writer for tests. Layout as Hyper-V's: header section, log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB,
// payload blocks after the BAT in allocation order.

const G = {
  bat: '2dc27766-f623-4200-9d64-115e9bfd4a08',
  metadata: '8b7ca206-4790-4b9a-b8fe-575f050f886e',
  fileParameters: 'caa16737-fa36-4d43-b3b6-33f0aa44e76b',
  virtualDiskSize: '2fa54224-cd1b-4876-b211-5dbed83bf4b8',
  page83: 'beca12ab-b2e6-4523-93ef-c309e000c746',
  logicalSectorSize: '8141bf1d-a96f-4709-ba47-f233a8faab5f',
  physicalSectorSize: 'cda348c7-445d-4471-9cc9-e9885251c556',
  parentLocator: 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c',
  vhdxParentType: 'b04aefb7-d19e-4a81-b789-25b8e9445913',
  diskId: '11223344-5566-7788-99aa-bbccddeeff00',
  logGuid: 'c0ffee00-1234-4567-89ab-cdef01234567',
  otherLogGuid: 'deadbeef-0000-4000-8000-000000000001',
};
const LOG_OFFSET = MiB;
const LOG_LENGTH = MiB;
const META_OFFSET = 2 * MiB;
const BAT_OFFSET = 3 * MiB;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
function putAscii(b: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
}
function putUtf16(b: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) view(b).setUint16(at + 2 * i, s.charCodeAt(i), true);
  return s.length * 2;
}
function putU64(b: Uint8Array, at: number, v: number | bigint): void {
  view(b).setBigUint64(at, BigInt(v), true);
}

/** Deterministic, distinct content for payload block `block` (makeData's xorshift32, seeded by the block index). */
function blockContent(block: number, size: number): Uint8Array {
  return makeData({ blocks: 1, blockSize: size, tailBytes: 0, fill: 'random', seed: (block * 0x9e3779b1 + 0x1234567) >>> 0 });
}

interface Spec {
  virtualSize: number;
  blockSize: number;
  lss?: 512 | 4096;
  pss?: 512 | 4096;
  /** Payload blocks stored in the file, in allocation order (so not necessarily in virtual order). */
  present?: number[];
  /** BAT states for other payload blocks (default NOT_PRESENT = 0). */
  states?: Record<number, number>;
  fixed?: boolean;
  /** Differencing: key/value pairs for the parent locator, or 'no-locator'. */
  parent?: Record<string, string> | 'no-locator';
  seq?: [bigint, bigint];
  logGuid?: string;
}

interface Built {
  file: Uint8Array;
  chunkRatio: number;
  batEntries: number;
  dataOffset: number;
  /** File offset of each present block. */
  offsetOf: Map<number, number>;
  batIndex(block: number): number;
  /** The virtual disk as the spec says it reads. */
  expected(position: number, length: number): Uint8Array;
  /** Rewrites both headers (sequence numbers, LogGuid) with valid checksums. */
  writeHeaders(seq: [bigint, bigint], logGuid: string): void;
}

function buildVhdx(spec: Spec): Built {
  const { virtualSize, blockSize } = spec;
  const lss = spec.lss ?? 512;
  const present = spec.present ?? [];
  const chunkRatio = (2 ** 23 * lss) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  const batLength = Math.max(MiB, Math.ceil((batEntries * 8) / MiB) * MiB);
  const dataOffset = BAT_OFFSET + batLength;
  const file = new Uint8Array(dataOffset + present.length * blockSize);
  const offsetOf = new Map<number, number>();
  const batIndex = (b: number) => b + Math.floor(b / chunkRatio);

  // File type identifier
  putAscii(file, 0, 'vhdxfile');
  putUtf16(file, 8, 'verity test writer');

  // Region tables (both copies)
  const rt = new Uint8Array(64 * KiB);
  putAscii(rt, 0, 'regi');
  view(rt).setUint32(8, 2, true);
  rt.set(encodeGuid(G.bat), 16);
  putU64(rt, 32, BAT_OFFSET);
  view(rt).setUint32(40, batLength, true);
  view(rt).setUint32(44, 1, true);
  rt.set(encodeGuid(G.metadata), 48);
  putU64(rt, 64, META_OFFSET);
  view(rt).setUint32(72, MiB, true);
  view(rt).setUint32(76, 1, true);
  view(rt).setUint32(4, crc32cWithZeroedField(rt, 4), true);
  file.set(rt, 192 * KiB);
  file.set(rt, 256 * KiB);

  // Metadata table and items
  const items: Array<{ guid: string; data: Uint8Array; flags: number }> = [];
  const fp = new Uint8Array(8);
  view(fp).setUint32(0, blockSize, true);
  view(fp).setUint32(4, (spec.fixed ? 1 : 0) | (spec.parent ? 2 : 0), true);
  items.push({ guid: G.fileParameters, data: fp, flags: 4 });
  const vds = new Uint8Array(8);
  putU64(vds, 0, virtualSize);
  items.push({ guid: G.virtualDiskSize, data: vds, flags: 6 });
  items.push({ guid: G.page83, data: encodeGuid(G.diskId), flags: 6 });
  const ls = new Uint8Array(4);
  view(ls).setUint32(0, lss, true);
  items.push({ guid: G.logicalSectorSize, data: ls, flags: 6 });
  const ps = new Uint8Array(4);
  view(ps).setUint32(0, spec.pss ?? lss, true);
  items.push({ guid: G.physicalSectorSize, data: ps, flags: 6 });
  if (spec.parent && spec.parent !== 'no-locator') {
    const pairs = Object.entries(spec.parent);
    const pl = new Uint8Array(4096);
    pl.set(encodeGuid(G.vhdxParentType), 0);
    view(pl).setUint16(18, pairs.length, true);
    let at = 20 + 12 * pairs.length;
    pairs.forEach(([k, v], i) => {
      const e = 20 + 12 * i;
      view(pl).setUint32(e, at, true);
      const kl = putUtf16(pl, at, k);
      view(pl).setUint16(e + 8, kl, true);
      at += kl;
      view(pl).setUint32(e + 4, at, true);
      const vl = putUtf16(pl, at, v);
      view(pl).setUint16(e + 10, vl, true);
      at += vl;
    });
    items.push({ guid: G.parentLocator, data: pl.slice(0, at), flags: 6 });
  }
  const mt = file.subarray(META_OFFSET, META_OFFSET + MiB);
  putAscii(mt, 0, 'metadata');
  view(mt).setUint16(10, items.length, true);
  let itemAt = 64 * KiB;
  items.forEach((item, i) => {
    const e = 32 + 32 * i;
    mt.set(encodeGuid(item.guid), e);
    view(mt).setUint32(e + 16, itemAt, true);
    view(mt).setUint32(e + 20, item.data.length, true);
    view(mt).setUint32(e + 24, item.flags, true);
    mt.set(item.data, itemAt);
    itemAt += Math.ceil(item.data.length / 8) * 8;
  });

  // BAT and payload
  const bat = view(file.subarray(BAT_OFFSET, BAT_OFFSET + batLength));
  for (const [b, state] of Object.entries(spec.states ?? {})) bat.setBigUint64(batIndex(Number(b)) * 8, BigInt(state), true);
  present.forEach((b, k) => {
    const offset = dataOffset + k * blockSize;
    offsetOf.set(b, offset);
    bat.setBigUint64(batIndex(b) * 8, BigInt(offset) | 6n, true);
    const used = Math.min(blockSize, virtualSize - b * blockSize);
    file.set(blockContent(b, blockSize).subarray(0, used), offset);
  });

  const built: Built = {
    file,
    chunkRatio,
    batEntries,
    dataOffset,
    offsetOf,
    batIndex,
    expected(position, length) {
      const out = new Uint8Array(Math.max(0, Math.min(length, virtualSize - position)));
      for (let done = 0; done < out.length; ) {
        const v = position + done;
        const b = Math.floor(v / blockSize);
        const inBlock = v - b * blockSize;
        const n = Math.min(out.length - done, blockSize - inBlock);
        const offset = offsetOf.get(b);
        if (offset !== undefined) out.set(file.subarray(offset + inBlock, offset + inBlock + n), done);
        done += n;
      }
      return out;
    },
    writeHeaders(seq, logGuid) {
      for (const [i, at] of [64 * KiB, 128 * KiB].entries()) {
        const h = new Uint8Array(4096);
        putAscii(h, 0, 'head');
        putU64(h, 8, seq[i]!);
        h.set(encodeGuid('aaaaaaaa-0000-4000-8000-000000000001'), 16);
        h.set(encodeGuid('bbbbbbbb-0000-4000-8000-000000000002'), 32);
        h.set(encodeGuid(logGuid), 48);
        view(h).setUint16(64, 0, true);
        view(h).setUint16(66, 1, true);
        view(h).setUint32(68, LOG_LENGTH, true);
        putU64(h, 72, LOG_OFFSET);
        view(h).setUint32(4, crc32cWithZeroedField(h, 4), true);
        file.set(h, at);
      }
    },
  };
  built.writeHeaders(spec.seq ?? [1n, 2n], spec.logGuid ?? '00000000-0000-0000-0000-000000000000');
  return built;
}

type LogDescriptor = { target: number; data: Uint8Array } | { target: number; zero: number };

/** A log entry [MS-VHDX §2.3; qemu vhdx-log.c]: header, descriptors, one data sector per data descriptor, CRC-32C. */
function logEntry(o: { seq: bigint; guid?: string; tail: number; fileSize: number; descs: LogDescriptor[] }): Uint8Array {
  const dataDescs = o.descs.filter((d): d is { target: number; data: Uint8Array } => 'data' in d);
  const descSectors = Math.ceil((o.descs.length + 2) / 128);
  const e = new Uint8Array((descSectors + dataDescs.length) * 4096);
  const v = view(e);
  putAscii(e, 0, 'loge');
  v.setUint32(8, e.length, true);
  v.setUint32(12, o.tail, true);
  putU64(e, 16, o.seq);
  v.setUint32(24, o.descs.length, true);
  e.set(encodeGuid(o.guid ?? G.logGuid), 32);
  putU64(e, 48, o.fileSize);
  putU64(e, 56, o.fileSize);
  let k = 0;
  o.descs.forEach((d, i) => {
    const at = 64 + 32 * i;
    putU64(e, at + 16, d.target);
    putU64(e, at + 24, o.seq);
    if ('zero' in d) {
      putAscii(e, at, 'zero');
      putU64(e, at + 8, d.zero);
    } else {
      putAscii(e, at, 'desc');
      e.set(d.data.subarray(4092, 4096), at + 4);
      e.set(d.data.subarray(0, 8), at + 8);
      const s = (descSectors + k++) * 4096;
      putAscii(e, s, 'data');
      v.setUint32(s + 4, Number(o.seq >> 32n), true);
      e.set(d.data.subarray(8, 4092), s + 8);
      v.setUint32(s + 4092, Number(o.seq & 0xffffffffn), true);
    }
  });
  v.setUint32(4, crc32cWithZeroedField(e, 4), true);
  return e;
}

/** Writes `entry` into the circular log at 4 KiB sector `sector`, wrapping past the log's end. */
function placeLog(file: Uint8Array, entry: Uint8Array, sector: number): void {
  for (let i = 0; i < entry.length; i += 4096) {
    const at = LOG_OFFSET + ((sector * 4096 + i) % LOG_LENGTH);
    file.set(entry.subarray(i, i + 4096), at);
  }
}

/** The 4 KiB page of the file at `offset`, copied. */
function page(file: Uint8Array, offset: number): Uint8Array {
  return file.slice(offset, offset + 4096);
}

async function open(bytes: Uint8Array): Promise<VhdxImage> {
  return openVhdx(bytesSource(bytes));
}

/** Compares every block of `img` with the builder's model (present blocks in full, absent ones checked for zeros). */
async function expectMatchesModel(img: VhdxImage, built: Built, bs: number): Promise<void> {
  const buf = new Uint8Array(bs);
  for (let p = 0; p < img.size; p += bs) {
    const n = await img.read(buf, p);
    const want = built.expected(p, bs);
    expect(n).toBe(want.length);
    if (!Buffer.from(buf.buffer, 0, n).equals(Buffer.from(want.buffer, want.byteOffset, want.length))) {
      throw new Error(`virtual bytes ${p}-${p + n - 1} differ from the model`);
    }
  }
}

/** Writes the built file to disk and reads it with qemu-img (replaying a dirty log on a copy first). */
function qemuRaw(bytes: Uint8Array, name: string, replay = false): string {
  const vhdx = join(work, `${name}.vhdx`);
  const raw = join(work, `${name}.raw`);
  writeFileSync(vhdx, bytes);
  if (replay) run('qemu-img', ['check', '-r', 'all', '-f', 'vhdx', vhdx]);
  run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', vhdx, raw]);
  return raw;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('CRC-32C', () => {
  it('matches the Castagnoli check value and the zeroed-field form', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    const b = new Uint8Array(100).map((_, i) => i * 7);
    const z = b.slice();
    z.fill(0, 4, 8);
    expect(crc32cWithZeroedField(b, 4)).toBe(crc32c(z));
  });
});

describe(`qemu-iotests samples${SKIP_BZIP2}`, () => {
  const paths: Record<string, string> = {};
  beforeAll(async () => {
    if (!HAS_BZIP2) return;
    const names = ['iotest-dirtylog-10G-4M.vhdx.bz2', 'iotest-dynamic-1G.vhdx.bz2', 'test-disk2vhd.vhdx.bz2'];
    const out = await Promise.all(names.map(bunzip));
    names.forEach((n, i) => (paths[n.replace('.vhdx.bz2', '')] = out[i]!));
  }, 60_000);

  it.skipIf(!HAS_BZIP2)('iotest-dynamic-1G (Hyper-V): 0xa5 to 33 MiB, 0x96 to 66 MiB, zeros to 1 GiB (qemu test 064)', async () => {
    const src = await openFileSource(paths['iotest-dynamic-1G']!);
    try {
      const img = await openVhdx(src);
      expect(img.info).toMatchObject({
        creator: 'Microsoft Windows 6.2.9200.16384',
        virtualSize: GiB,
        blockSize: 32 * MiB,
        logicalSectorSize: 512,
        physicalSectorSize: 4096,
        chunkRatio: 128,
        subformat: 'dynamic',
        header: { current: 2, valid: [true, true], sequenceNumber: 15n },
        regionTable: 1,
        bat: { offset: 3 * MiB, required: true, entries: 32 },
        metadata: { offset: 2 * MiB, required: true },
        replay: null,
        blocks: { fullyPresent: 3, zero: 29, notPresent: 0, total: 32 },
      });
      expect(await findNot(img, 0xa5, 0, 33 * MiB)).toBeNull();
      expect(await findNot(img, 0x96, 33 * MiB, 66 * MiB)).toBeNull();
      expect(await findNot(img, 0x00, 66 * MiB, GiB)).toBeNull();
      // qemu-img convert -O raw of this image hashes to this.
      expect(await sha256Of(img)).toBe('d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478');
    } finally {
      await src.close();
    }
  });

  it.skipIf(!HAS_BZIP2)('test-disk2vhd (Disk2VHD): identical headers with equal sequence numbers, an MBR, 256 MiB (qemu test 070)', async () => {
    const src = await openFileSource(paths['test-disk2vhd']!);
    try {
      const img = await openVhdx(src);
      expect(img.size).toBe(268435456);
      expect(img.info).toMatchObject({
        creator: 'd2v',
        blockSize: 2 * MiB,
        chunkRatio: 2048,
        header: { current: 1, valid: [true, true], sequenceNumber: 1n },
        blocks: { fullyPresent: 128, total: 128 },
      });
      const mbr = await readAll(img, 0, 512);
      expect([mbr[510], mbr[511]]).toEqual([0x55, 0xaa]);
      const p = view(mbr.subarray(446, 462));
      expect({ type: p.getUint8(4), lba: p.getUint32(8, true), sectors: p.getUint32(12, true) }).toEqual({ type: 6, lba: 128, sectors: 518144 });
      expect(await findNot(img, 0, MiB, img.size)).toBeNull();
      expect(await sha256Of(img)).toBe('96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a');
    } finally {
      await src.close();
    }
  });

  it.skipIf(!HAS_BZIP2)('iotest-dirtylog-10G-4M (dirty log): replayed in memory, 0xa5 to 18 MiB, then zeros (qemu test 070)', async () => {
    const before = sha256File(paths['iotest-dirtylog-10G-4M']!);
    const file = await openFileSource(paths['iotest-dirtylog-10G-4M']!);
    try {
      const { src, stats } = counted(file);
      const img = await openVhdx(src);
      expect(stats.largest).toBeLessThanOrEqual(MiB);
      expect(img.info).toMatchObject({
        creator: 'QEMU v1.6.50',
        virtualSize: 10 * GiB,
        blockSize: MiB,
        chunkRatio: 4096,
        header: { current: 2, sequenceNumber: 932638741n, logGuid: 'c82755bc-427f-1245-b72c-da70aaabe031' },
        bat: { offset: 2 * MiB, required: false, entries: 10242 },
        replay: { replayed: true, entries: 1, firstSequence: 7n, lastSequence: 7n, sectorsWritten: 1, discardedEntries: 0 },
        blocks: { fullyPresent: 18, notPresent: 10222, total: 10240 },
      });
      // 0xa5 ends at 0x1200000 after replay (0x1100000 without): exactly what qemu's `read -pP 0xa5 0 18M` checks.
      expect(await findNot(img, 0xa5, 0, 18 * MiB)).toBeNull();
      expect((await readAll(img, 18 * MiB, 1))[0]).toBe(0);
      // The rest of the 10 GiB: zeros at every block boundary region, and no present block beyond 18 MiB.
      const rng = new Rng(70);
      for (let i = 0; i < 64; i++) {
        const at = rng.int(18 * MiB, 10 * GiB - 65536);
        expectSame(await readAll(img, at, 65536), new Uint8Array(65536));
      }
      expect(await findNot(img, 0, 18 * MiB, 64 * MiB)).toBeNull();
    } finally {
      await file.close();
    }
    expect(sha256File(paths['iotest-dirtylog-10G-4M']!), 'the file is never written').toBe(before);
  });

  it.skipIf(!HAS_BZIP2)('iotest-dirtylog-10G-4M with its log entry torn (bad CRC): not replayed, 0xa5 ends at 17 MiB', async () => {
    const bytes = new Uint8Array(readFileSync(paths['iotest-dirtylog-10G-4M']!));
    bytes[0x10d000 + 100]! ^= 0xff; // inside the entry's data sector (entry at log offset 0xC000, log at 1 MiB)
    const img = await open(bytes);
    expect(img.info.replay).toMatchObject({ replayed: false, entries: 0, discardedEntries: 1 });
    expect(img.info.blocks.fullyPresent).toBe(17);
    expect(await findNot(img, 0xa5, 0, 17 * MiB)).toBeNull();
    expect(await findNot(img, 0, 17 * MiB, 18 * MiB)).toBeNull();
  });

  it.skipIf(!HAS_BZIP2)('a sample corrupted in the current header falls back to the other one', async () => {
    const bytes = new Uint8Array(readFileSync(paths['iotest-dynamic-1G']!));
    bytes[128 * KiB + 200]! ^= 1; // header 2 (current, seq 15): checksum now fails
    const img = await open(bytes);
    expect(img.info.header).toMatchObject({ current: 1, valid: [true, false], sequenceNumber: 14n });
    expect(await findNot(img, 0x96, 33 * MiB, 66 * MiB)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('images from the test writer', () => {
  const cases: Array<{ name: string; spec: Spec }> = [
    { name: '1 MiB blocks, allocation order shuffled', spec: { virtualSize: 64 * MiB, blockSize: MiB, present: [40, 3, 0, 63, 17, 18, 19, 5] } },
    { name: '2 MiB blocks, size not a multiple of the block size', spec: { virtualSize: 33 * MiB + 512, blockSize: 2 * MiB, present: [16, 0, 7] } },
    { name: 'ZERO, UNMAPPED, UNDEFINED and legacy UNMAPPED (5) states read as zeros', spec: { virtualSize: 16 * MiB, blockSize: MiB, present: [1, 6], states: { 0: 2, 2: 3, 3: 1, 4: 5, 5: 0 } } },
    { name: '4096-byte logical sectors (chunk ratio 32768)', spec: { virtualSize: 24 * MiB, blockSize: MiB, lss: 4096, pss: 4096, present: [23, 2, 11] } },
    { name: 'fixed (LeaveBlocksAllocated), 8 MiB blocks', spec: { virtualSize: 48 * MiB, blockSize: 8 * MiB, fixed: true, present: [5, 4, 3, 2, 1, 0] } },
    { name: 'an empty disk (size 0)', spec: { virtualSize: 0, blockSize: MiB } },
  ];

  it.each(cases)('$name', async ({ spec }) => {
    const built = buildVhdx(spec);
    const img = await open(built.file);
    expect(img.size).toBe(spec.virtualSize);
    expect(img.info).toMatchObject({
      logicalSectorSize: spec.lss ?? 512,
      chunkRatio: built.chunkRatio,
      subformat: spec.fixed ? 'fixed' : 'dynamic',
      diskId: G.diskId,
      creator: 'verity test writer',
      blocks: { fullyPresent: spec.present?.length ?? 0 },
    });
    await expectMatchesModel(img, built, spec.blockSize);
    // Unaligned reads across block boundaries, and one read of the whole disk.
    const rng = new Rng(spec.virtualSize + spec.blockSize);
    for (let i = 0; i < 40 && spec.virtualSize > 0; i++) {
      const at = rng.int(0, spec.virtualSize - 1);
      const len = rng.logInt(1, 3 * spec.blockSize);
      expectSame(await readAll(img, at, len), built.expected(at, len));
    }
    expectSame(await readAll(img, 0, spec.virtualSize + 4096), built.expected(0, spec.virtualSize));
  });

  it('sector bitmap entries are interleaved every chunk ratio entries (5 GiB, 1 MiB blocks: entries 4096 and 8193)', async () => {
    // Blocks either side of both sector bitmap entries; the SB entries themselves hold garbage, as qemu < 7.2.2 left
    // them (qemu issue 727), and must be ignored.
    const spec: Spec = { virtualSize: 5 * GiB, blockSize: MiB, present: [4095, 4096, 4097, 8191, 8192, 5119] };
    const built = buildVhdx(spec);
    const bat = view(built.file.subarray(BAT_OFFSET));
    bat.setBigUint64(4096 * 8, 0x1234567890abcdefn, true);
    expect(built.batIndex(4096)).toBe(4097);
    expect(built.batEntries).toBe(5121);
    const img = await open(built.file);
    expect(img.info.bat.entries).toBe(5121);
    for (const b of [...spec.present!, 0, 4094, 4098, 8190, 8193, 5118]) {
      expectSame(await readAll(img, b * MiB, MiB), built.expected(b * MiB, MiB));
    }
    // One read across the whole interleaved region.
    expectSame(await readAll(img, 4094 * MiB + 12345, 5 * MiB), built.expected(4094 * MiB + 12345, 5 * MiB));
  });

  it('4096-byte logical sectors with a sector bitmap entry inside the disk (40 GiB, 1 MiB blocks: entry 32768)', async () => {
    const spec: Spec = { virtualSize: 40 * GiB, blockSize: MiB, lss: 4096, present: [32767, 32768, 40959] };
    const built = buildVhdx(spec);
    expect(built.chunkRatio).toBe(32768);
    const img = await open(built.file);
    expect(img.info).toMatchObject({ chunkRatio: 32768, bat: { entries: 40961 }, blocks: { fullyPresent: 3, total: 40960 } });
    for (const b of [32766, 32767, 32768, 32769, 40959]) {
      expectSame(await readAll(img, b * MiB, MiB), built.expected(b * MiB, MiB));
    }
  });

  it('a read larger than the remaining disk is short; reads at or past the end return 0', async () => {
    const built = buildVhdx({ virtualSize: 3 * MiB, blockSize: MiB, present: [2] });
    const img = await open(built.file);
    const buf = new Uint8Array(2 * MiB);
    expect(await img.read(buf, 2 * MiB + 100)).toBe(MiB - 100);
    expectSame(buf.subarray(0, MiB - 100), built.expected(2 * MiB + 100, MiB));
    expect(await img.read(buf, 3 * MiB)).toBe(0);
    expect(await img.read(buf, 10 * GiB)).toBe(0);
    expect(await img.read(new Uint8Array(0), 0)).toBe(0);
    await expectError(img.read(buf, -1), 'E_PARAM', /position/);
  });

  it('a contiguous run of present blocks is read with one read of the file', async () => {
    const built = buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, present: [0, 1, 2, 3, 4, 5, 6, 7, 9, 8] });
    const { src, stats } = counted(bytesSource(built.file));
    const img = await openVhdx(src);
    stats.reads = 0;
    stats.largest = 0;
    const buf = new Uint8Array(16 * MiB);
    await img.read(buf, 0);
    // blocks 0-7 are contiguous in the file (one read), 8 and 9 are swapped (two reads), 10-15 are zero-filled.
    expect(stats).toEqual({ reads: 3, largest: 8 * MiB });
    expectSame(buf, built.expected(0, 16 * MiB));
  });

  it.skipIf(!HAS_QEMU_IMG)(`qemu-img reads the writer's images the same way${SKIP_QEMU}`, async () => {
    for (const [i, c] of cases.entries()) {
      if ((c.spec.lss ?? 512) !== 512) continue; // qemu 7.2 only supports 512-byte logical sectors (-ENOTSUP)
      if (c.spec.virtualSize === 0) continue;
      const built = buildVhdx(c.spec);
      const raw = qemuRaw(built.file, `writer-${i}`);
      expectSame(new Uint8Array(readFileSync(raw)), built.expected(0, c.spec.virtualSize), c.name);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('log replay (in memory)', () => {
  /**
   * A dirty image: the model (`post`) has blocks [0, 5, 9, 20, 30]; on disk the BAT still says block 30 is absent
   * and block 20 present. The log (entries 10, 11, 12) must bring the BAT to the model, write a sector of block 9,
   * zero part of block 5 and rewrite a sector inside the zeroed part, in that order.
   */
  function dirtyImage(layout: { first: number; wrap?: boolean }) {
    const built = buildVhdx({ virtualSize: 64 * MiB, blockSize: MiB, present: [9, 0, 20, 5, 30] });
    const file = built.file;
    const batPage = BAT_OFFSET; // blocks 0-511
    const post1 = page(file, batPage); // block 30 present
    view(post1).setBigUint64(20 * 8, 2n, true); // ... and block 20 ZERO (final BAT page)
    const mid = page(file, batPage); // what entry 10 writes: block 30 present, 20 still present
    // On disk: block 30 absent.
    view(file).setBigUint64(batPage + 30 * 8, 0n, true);

    const b5 = built.offsetOf.get(5)!;
    const b9 = built.offsetOf.get(9)!;
    const rewritten = new Uint8Array(4096).fill(0x5a);
    rewritten[0] = 1;
    rewritten[4095] = 2;
    const tail = layout.first * 4096;
    const size = file.length;
    const e10 = logEntry({ seq: 10n, tail, fileSize: size, descs: [{ target: batPage, data: mid }, { target: b9, data: new Uint8Array(4096).fill(0x77) }] });
    const e11 = logEntry({ seq: 11n, tail, fileSize: size, descs: [{ target: b5 + 4096, zero: 8192 }] });
    const e12 = logEntry({ seq: 12n, tail, fileSize: size, descs: [{ target: b5 + 8192, data: rewritten }, { target: batPage, data: post1 }] });
    const torn = logEntry({ seq: 13n, tail, fileSize: size, descs: [{ target: batPage, data: new Uint8Array(4096) }] });
    torn[5000]! ^= 1;
    // An older sequence with the same LogGuid (must not be applied: its head has a lower sequence number), and an
    // entry of another LogGuid with a higher number (stale, from an earlier open).
    const old = logEntry({ seq: 3n, tail: 200 * 4096, fileSize: size, descs: [{ target: batPage, data: new Uint8Array(4096) }] });
    const stale = logEntry({ seq: 99n, guid: G.otherLogGuid, tail: 120 * 4096, fileSize: size, descs: [{ target: batPage, data: new Uint8Array(4096) }] });
    placeLog(file, old, 200);
    placeLog(file, stale, 120);
    let s = layout.first;
    for (const e of [e10, e11, e12, torn]) {
      placeLog(file, e, s);
      s = (s + e.length / 4096) % 256;
    }
    built.writeHeaders([7n, 8n], G.logGuid);

    // The model after replay.
    built.offsetOf.delete(20);
    const expected = (position: number, length: number) => {
      const out = built.expected(position, length);
      for (let v = Math.max(position, 5 * MiB + 4096); v < Math.min(position + out.length, 5 * MiB + 12288); v++) {
        out[v - position] = v < 5 * MiB + 8192 ? 0 : rewritten[v - 5 * MiB - 8192]!;
      }
      for (let v = Math.max(position, 9 * MiB); v < Math.min(position + out.length, 9 * MiB + 4096); v++) out[v - position] = 0x77;
      return out;
    };
    return { built, file, expected };
  }

  async function expectReplayed(file: Uint8Array, expected: (p: number, l: number) => Uint8Array) {
    const { src, stats } = counted(bytesSource(file));
    const img = await openVhdx(src);
    expect(stats.largest).toBeLessThanOrEqual(MiB);
    expect(img.info.replay).toMatchObject({ replayed: true, entries: 3, firstSequence: 10n, lastSequence: 12n, sectorsWritten: 4, rangesZeroed: 1, discardedEntries: 1 });
    expect(img.info.blocks).toMatchObject({ fullyPresent: 4, zero: 1 });
    expectSame(await readAll(img, 0, img.size), expected(0, img.size));
    return img;
  }

  it('three entries, stale and torn entries around them; data and zero descriptors applied in order', async () => {
    const { file, expected } = dirtyImage({ first: 10 });
    const before = file.slice();
    await expectReplayed(file, expected);
    expectSame(file, before, 'the file is not modified');
  });

  it('a sequence that wraps past the end of the circular log', async () => {
    // Entry 10 takes sectors 254-255, entry 11 sector 0, entry 12 sectors 1-3: the scan meets 11-12 first. (qemu 7.2
    // replays only 11-12 here, losing entry 10's write to block 9: `vhdx_log_search` ranks sequences by their first
    // entry's number and keeps the first one met. Hence qemu cross-checks the unwrapped layout only.)
    const { file, expected } = dirtyImage({ first: 254 });
    await expectReplayed(file, expected);
  });

  it.skipIf(!HAS_QEMU_IMG)(`qemu-img check -r all replays the same log to the same disk${SKIP_QEMU}`, async () => {
    const { file, expected } = dirtyImage({ first: 10 });
    const raw = qemuRaw(file, 'dirty-writer', true);
    expectSame(new Uint8Array(readFileSync(raw)), expected(0, 64 * MiB));
  });

  it('a LogGuid with no entry in the log: nothing to replay', async () => {
    const built = buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [1], logGuid: G.logGuid });
    const img = await open(built.file);
    expect(img.info.replay).toMatchObject({ replayed: false, entries: 0, discardedEntries: 0 });
    await expectMatchesModel(img, built, MiB);
  });

  it('Tail: entries of the run before the head\'s tail were already flushed and are not replayed', async () => {
    const built = buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [1, 2], logGuid: G.logGuid });
    const b1 = built.offsetOf.get(1)!;
    const b2 = built.offsetOf.get(2)!;
    const size = built.file.length;
    // Entry 5 (already flushed) writes 0x11 into block 1; entry 6, whose Tail names itself, writes 0x22 into block 2.
    const e5 = logEntry({ seq: 5n, tail: 0, fileSize: size, descs: [{ target: b1, data: new Uint8Array(4096).fill(0x11) }] });
    const e6 = logEntry({ seq: 6n, tail: 2 * 4096, fileSize: size, descs: [{ target: b2, data: new Uint8Array(4096).fill(0x22) }] });
    placeLog(built.file, e5, 0);
    placeLog(built.file, e6, 2);
    const img = await open(built.file);
    expect(img.info.replay).toMatchObject({ replayed: true, entries: 1, firstSequence: 6n });
    expectSame(await readAll(img, MiB, 4096), built.expected(MiB, 4096));
    expectSame(await readAll(img, 2 * MiB, 4096), new Uint8Array(4096).fill(0x22));
  });

  it('LastFileOffset beyond the end: the file grows with zeros, and a block there reads as zeros', async () => {
    const built = buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [1], logGuid: G.logGuid });
    const size = built.file.length;
    const bat = page(built.file, BAT_OFFSET);
    view(bat).setBigUint64(3 * 8, BigInt(size) | 6n, true); // block 3 → the first MiB past the end
    const e = logEntry({ seq: 1n, tail: 0, fileSize: size, descs: [{ target: BAT_OFFSET, data: bat }] });
    view(e).setBigUint64(56, BigInt(size + MiB), true);
    view(e).setUint32(4, crc32cWithZeroedField(e, 4), true);
    placeLog(built.file, e, 0);
    const img = await open(built.file);
    expect(img.info.replay).toMatchObject({ replayed: true, replayedFileSize: size + MiB });
    expect(img.info.blocks.fullyPresent).toBe(2);
    expectSame(await readAll(img, 3 * MiB, MiB), new Uint8Array(MiB));
    expectSame(await readAll(img, MiB, MiB), built.expected(MiB, MiB));
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('hostile and damaged images: a typed error, quickly, with bounded reads', () => {
  const base = () => buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, present: [3, 0, 7] });
  const setRegionEntry = (file: Uint8Array, index: number, fields: { offset?: number; length?: number; guid?: string; flags?: number }) => {
    for (const copy of [192 * KiB, 256 * KiB]) {
      const rt = file.subarray(copy, copy + 64 * KiB);
      const e = 16 + 32 * index;
      if (fields.guid) rt.set(encodeGuid(fields.guid), e);
      if (fields.offset !== undefined) putU64(rt, e + 16, fields.offset);
      if (fields.length !== undefined) view(rt).setUint32(e + 24, fields.length, true);
      if (fields.flags !== undefined) view(rt).setUint32(e + 28, fields.flags, true);
      if (index >= view(rt).getUint32(8, true)) view(rt).setUint32(8, index + 1, true);
      view(rt).setUint32(4, crc32cWithZeroedField(rt, 4), true);
    }
  };
  /** Overwrites the value of a metadata item (located through the writer's table). */
  const setItem = (file: Uint8Array, guid: string, value: Uint8Array) => {
    const mt = file.subarray(META_OFFSET);
    const want = encodeGuid(guid);
    for (let i = 0; i < view(mt).getUint16(10, true); i++) {
      const e = 32 + 32 * i;
      if (Buffer.from(mt.subarray(e, e + 16)).equals(want)) {
        mt.set(value, view(mt).getUint32(e + 16, true));
        return;
      }
    }
    throw new Error(`no item ${guid}`);
  };
  const u32 = (v: number) => new Uint8Array(new Uint32Array([v]).buffer);
  const u64 = (v: bigint) => new Uint8Array(new BigUint64Array([v]).buffer);
  const setBat = (b: Built, block: number, value: bigint) => view(b.file).setBigUint64(BAT_OFFSET + b.batIndex(block) * 8, value, true);

  interface HostileCase {
    name: string;
    make: () => Uint8Array;
    code: string;
    message: RegExp;
  }
  const hostile: HostileCase[] = [
    { name: 'not VHDX at all', make: () => new Uint8Array(2 * MiB).fill(7), code: 'E_BAD_IMAGE', message: /no "vhdxfile" signature/ },
    { name: 'a 4-byte file', make: () => new Uint8Array(4), code: 'E_BAD_IMAGE', message: /too small/ },
    { name: 'truncated inside the header section', make: () => base().file.slice(0, 300 * KiB), code: 'E_TRUNCATED', message: /header section .* truncated/ },
    { name: 'truncated inside the BAT region', make: () => base().file.slice(0, BAT_OFFSET + 4096), code: 'E_TRUNCATED', message: /BAT region .* truncated/ },
    {
      name: 'truncated inside the payload',
      make: () => {
        const b = base();
        return b.file.slice(0, b.file.length - MiB / 2);
      },
      code: 'E_TRUNCATED',
      message: /BAT entry 7 \(payload block 7\) .* truncated/,
    },
    {
      name: 'both header checksums wrong',
      make: () => {
        const f = base().file;
        f[64 * KiB + 100]! ^= 1;
        f[128 * KiB + 4000]! ^= 1; // in the reserved bytes: still covered by the checksum
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /neither header/,
    },
    {
      name: 'both headers valid, equal sequence numbers, different contents',
      make: () => {
        const b = base();
        b.writeHeaders([4n, 4n], G.logGuid);
        const h1 = b.file.subarray(64 * KiB, 68 * KiB);
        h1[3000] = 1;
        view(h1).setUint32(4, crc32cWithZeroedField(h1, 4), true);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /same|sequence number 4 but differ/,
    },
    {
      name: 'both region tables corrupt',
      make: () => {
        const f = base().file;
        f[192 * KiB + 20]! ^= 1;
        f[256 * KiB + 20]! ^= 1;
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /neither region table/,
    },
    { name: 'overlapping regions (BAT on the metadata)', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: META_OFFSET }); return f; }, code: 'E_BAD_IMAGE', message: /overlaps the BAT region|overlaps the metadata region/ },
    { name: 'a region overlapping the log', make: () => { const f = base().file; setRegionEntry(f, 1, { offset: LOG_OFFSET }); return f; }, code: 'E_BAD_IMAGE', message: /metadata region .* overlaps the log/ },
    { name: 'a region inside the header section', make: () => { const f = base().file; setRegionEntry(f, 1, { offset: 0 }); return f; }, code: 'E_BAD_IMAGE', message: /after the header section/ },
    { name: 'a region past the end of the file', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: 1024 * MiB }); return f; }, code: 'E_TRUNCATED', message: /BAT region .* truncated/ },
    { name: 'a region at offset 2^63', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: 2 ** 63 }); return f; }, code: 'E_BAD_IMAGE', message: /BAT region offset .* beyond/ },
    { name: 'an unknown required region', make: () => { const f = base().file; setRegionEntry(f, 2, { guid: G.diskId, offset: 40 * MiB, length: MiB, flags: 1 }); return f; }, code: 'E_UNSUPPORTED', message: /required region 11223344/ },
    { name: 'no metadata region', make: () => { const f = base().file; setRegionEntry(f, 1, { guid: G.diskId, flags: 0 }); return f; }, code: 'E_BAD_IMAGE', message: /lacks the metadata region/ },
    { name: 'BAT entry past the end of the file', make: () => { const b = base(); setBat(b, 3, BigInt(64 * MiB) | 6n); return b.file; }, code: 'E_TRUNCATED', message: /BAT entry 3 \(payload block 3\) lies at bytes 67108864/ },
    { name: 'BAT entry at 2^63', make: () => { const b = base(); setBat(b, 3, (1n << 63n) | 6n); return b.file; }, code: 'E_BAD_IMAGE', message: /BAT entry 3 .* beyond 8 PiB/ },
    { name: 'BAT entry inside the header section', make: () => { const b = base(); setBat(b, 3, 6n); return b.file; }, code: 'E_BAD_IMAGE', message: /inside the 1 MiB header section/ },
    { name: 'BAT entry on the BAT region', make: () => { const b = base(); setBat(b, 3, BigInt(BAT_OFFSET) | 6n); return b.file; }, code: 'E_BAD_IMAGE', message: /overlaps the BAT region/ },
    { name: 'two blocks at the same offset', make: () => { const b = base(); setBat(b, 9, BigInt(b.offsetOf.get(0)!) | 6n); return b.file; }, code: 'E_BAD_IMAGE', message: /two payload blocks overlap/ },
    { name: 'PARTIALLY_PRESENT in a non-differencing disk', make: () => { const b = base(); setBat(b, 7, BigInt(b.offsetOf.get(7)!) | 7n); return b.file; }, code: 'E_BAD_IMAGE', message: /PARTIALLY_PRESENT/ },
    { name: 'reserved BAT state 4', make: () => { const b = base(); setBat(b, 1, 4n); return b.file; }, code: 'E_BAD_IMAGE', message: /reserved state 4/ },
    { name: 'virtual size 2^63', make: () => { const f = base().file; setItem(f, G.virtualDiskSize, u64(1n << 63n)); return f; }, code: 'E_BAD_IMAGE', message: /exceeds the 64 TiB/ },
    { name: 'virtual size 64 TiB in a 6 MiB file', make: () => { const f = base().file; setItem(f, G.virtualDiskSize, u64(1n << 46n)); return f; }, code: 'E_BAD_IMAGE', message: /BAT region holds 131072 entries.* needs 67125247/ },
    { name: 'virtual size not a multiple of the sector', make: () => { const f = base().file; setItem(f, G.virtualDiskSize, u64(1000n)); return f; }, code: 'E_BAD_IMAGE', message: /not a multiple of the 512-byte/ },
    { name: 'block size 3 MiB', make: () => { const f = base().file; setItem(f, G.fileParameters, u32(3 * MiB)); return f; }, code: 'E_BAD_IMAGE', message: /block size 3145728/ },
    { name: 'block size 512 MiB', make: () => { const f = base().file; setItem(f, G.fileParameters, u32(512 * MiB)); return f; }, code: 'E_BAD_IMAGE', message: /block size 536870912/ },
    { name: 'block size 0', make: () => { const f = base().file; setItem(f, G.fileParameters, u32(0)); return f; }, code: 'E_BAD_IMAGE', message: /block size 0 / },
    { name: 'logical sector size 1024', make: () => { const f = base().file; setItem(f, G.logicalSectorSize, u32(1024)); return f; }, code: 'E_BAD_IMAGE', message: /logical sector size 1024/ },
    { name: 'physical sector size 2^32-1', make: () => { const f = base().file; setItem(f, G.physicalSectorSize, u32(0xffffffff)); return f; }, code: 'E_BAD_IMAGE', message: /physical sector size 4294967295/ },
    {
      name: 'a required metadata item missing',
      make: () => {
        const f = base().file;
        view(f).setUint16(META_OFFSET + 10, 4, true); // drops the last entry: Physical Sector Size
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /Physical Sector Size metadata item is missing/,
    },
    {
      name: 'an unknown required metadata item',
      make: () => {
        const f = base().file;
        const e = META_OFFSET + 32 + 32 * 5;
        f.set(encodeGuid(G.diskId), e);
        view(f).setUint32(e + 16, 128 * KiB, true);
        view(f).setUint32(e + 20, 8, true);
        view(f).setUint32(e + 24, 4, true);
        view(f).setUint16(META_OFFSET + 10, 6, true);
        return f;
      },
      code: 'E_UNSUPPORTED',
      message: /required system metadata item 11223344/,
    },
    {
      name: 'a metadata item outside the region',
      make: () => {
        const f = base().file;
        view(f).setUint32(META_OFFSET + 32 + 16, MiB - 4, true);
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /File Parameters at offset 1048572/,
    },
    {
      name: 'a differencing disk',
      make: () =>
        buildVhdx({
          virtualSize: 16 * MiB,
          blockSize: 2 * MiB,
          parent: {
            parent_linkage: '{83ffb7a5-2f1c-4b3d-8b4e-7d9b0e5f1a2c}',
            relative_path: '..\\base\\parent.vhdx',
            absolute_win32_path: 'C:\\VMs\\base\\parent.vhdx',
          },
        }).file,
      code: 'E_UNSUPPORTED',
      message: /differencing disk.*parent_linkage "\{83ffb7a5-2f1c-4b3d-8b4e-7d9b0e5f1a2c\}", relative_path "\.\.\\base\\parent\.vhdx", absolute_win32_path "C:\\VMs\\base\\parent\.vhdx"/,
    },
    { name: 'HasParent without a parent locator', make: () => buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, parent: 'no-locator' }).file, code: 'E_UNSUPPORTED', message: /differencing disk.*no Parent Locator/ },
    {
      name: 'a log entry written when the file was longer (FlushedFileOffset)',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        placeLog(b.file, logEntry({ seq: 1n, tail: 0, fileSize: b.file.length + MiB, descs: [] }), 0);
        return b.file;
      },
      code: 'E_TRUNCATED',
      message: /log entry 1 was written when the file had/,
    },
    {
      name: 'a log entry with a valid checksum and a misaligned descriptor',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        placeLog(b.file, logEntry({ seq: 1n, tail: 0, fileSize: b.file.length, descs: [{ target: BAT_OFFSET + 8, data: new Uint8Array(4096) }] }), 0);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /log entry .* targets offset 3145736, not 4 KiB aligned/,
    },
    {
      name: 'a dirty log past the end of the file',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        const h = b.file.subarray(128 * KiB, 132 * KiB);
        view(h).setUint32(68, 0xfff00000, true); // LogLength ~4 GiB
        view(h).setUint32(4, crc32cWithZeroedField(h, 4), true);
        return b.file;
      },
      code: 'E_TRUNCATED',
      message: /log lies at bytes/,
    },
    {
      name: 'a misaligned log offset',
      make: () => {
        const b = base();
        const h = b.file.subarray(128 * KiB, 132 * KiB);
        putU64(h, 72, LOG_OFFSET + 4096);
        view(h).setUint32(4, crc32cWithZeroedField(h, 4), true);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /log offset 1052672/,
    },
  ];

  it.each(hostile)('$name → $code', async ({ make, code, message }) => {
    const { src, stats } = counted(bytesSource(make()));
    const started = performance.now();
    await expectError(openVhdx(src), code, message);
    expect(performance.now() - started).toBeLessThan(2000);
    // No read (hence no buffer for a file structure) larger than 1 MiB, whatever the image claims.
    expect(stats.largest).toBeLessThanOrEqual(MiB);
  }, 5000);

  it('one corrupt header: the other one is used', async () => {
    const b = base();
    b.writeHeaders([9n, 4n], '00000000-0000-0000-0000-000000000000');
    expect((await open(b.file)).info.header).toMatchObject({ current: 1, valid: [true, true], sequenceNumber: 9n });
    b.file[64 * KiB + 8]! ^= 1; // header 1's sequence number: checksum fails
    const img = await open(b.file);
    expect(img.info.header).toMatchObject({ current: 2, valid: [false, true], sequenceNumber: 4n });
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('one corrupt region table: the second copy is used', async () => {
    const b = base();
    b.file[192 * KiB + 40]! ^= 1;
    const img = await open(b.file);
    expect(img.info.regionTable).toBe(2);
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('an unknown optional region and an unknown optional metadata item are ignored', async () => {
    const b = base();
    setRegionEntry(b.file, 2, { guid: G.diskId, offset: 60 * MiB, length: MiB, flags: 0 });
    const e = META_OFFSET + 32 + 32 * 5;
    b.file.set(encodeGuid(G.diskId), e);
    view(b.file).setUint32(e + 16, 128 * KiB, true);
    view(b.file).setUint32(e + 20, 8, true);
    view(b.file).setUint16(META_OFFSET + 10, 6, true);
    const img = await open(b.file);
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('a log whose every sector claims to be a whole-log entry with a bad checksum: scanned in linear time', async () => {
    const b = base();
    b.writeHeaders([1n, 2n], G.logGuid);
    const e = logEntry({ seq: 1n, tail: 0, fileSize: b.file.length, descs: [] });
    for (let s = 0; s < 256; s++) {
      const h = e.slice(0, 4096);
      view(h).setUint32(8, LOG_LENGTH, true); // EntryLength = the whole log, so each CRC would cover 1 MiB
      view(h).setUint32(4, 0x12345678, true);
      b.file.set(h, LOG_OFFSET + s * 4096);
    }
    const started = performance.now();
    const img = await open(b.file);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(img.info.replay).toMatchObject({ replayed: false, discardedEntries: 1 });
  }, 5000);

  it('bit flips anywhere in the metadata structures give a VerityError or a readable image, never a hang', async () => {
    const rng = new Rng(4242);
    const pristine = base().file;
    const areas = [
      [64 * KiB, 64 * KiB + 96],
      [192 * KiB, 192 * KiB + 96],
      [META_OFFSET, META_OFFSET + 256],
      [META_OFFSET + 64 * KiB, META_OFFSET + 64 * KiB + 64],
      [BAT_OFFSET, BAT_OFFSET + 128],
    ] as const;
    for (let i = 0; i < 300; i++) {
      const f = pristine.slice();
      const [from, to] = rng.pick(areas);
      f[rng.int(from, to - 1)]! ^= 1 << rng.int(0, 7);
      const { src, stats } = counted(bytesSource(f));
      try {
        const img = await openVhdx(src);
        await readAll(img, 0, Math.min(img.size, 16 * MiB));
      } catch (e) {
        expect(e).toBeInstanceOf(VerityError);
      }
      expect(stats.largest).toBeLessThanOrEqual(16 * MiB);
    }
  }, 10_000);
});

// ---------------------------------------------------------------------------------------------------------------------

describe(`images converted by qemu-img 7.2${SKIP_QEMU}`, () => {
  /** A sparse raw disk: random data in scattered regions (and at both ends), zeros elsewhere. */
  function makeRaw(name: string, size: number, seed: number, regions: Array<[number, number]> = []): string {
    const path = join(work, `${name}.raw`);
    const fd = openSync(path, 'w');
    try {
      ftruncateSync(fd, size);
      const rng = new Rng(seed);
      const spots: Array<[number, number]> = [[0, 4096], [size - 1536, 1536], ...regions];
      for (let i = 0; i < 14; i++) spots.push([rng.int(0, size - 1), rng.logInt(1, 3 * MiB)]);
      for (const [at, len] of spots) {
        const n = Math.min(len, size - at);
        const data = new Uint8Array(n);
        for (let j = 0; j < n; j += 65536) globalThis.crypto.getRandomValues(data.subarray(j, Math.min(n, j + 65536)));
        writeSync(fd, data, 0, n, at);
      }
    } finally {
      closeSync(fd);
    }
    return path;
  }

  async function compareWithRaw(vhdxPath: string, rawPath: string, opts: { fullHash: boolean }) {
    const file = await openFileSource(vhdxPath);
    const rawFile = await openFileSource(rawPath);
    try {
      const { src, stats } = counted(file);
      const img = await openVhdx(src);
      expect(stats.largest).toBeLessThanOrEqual(MiB);
      expect(img.size).toBe(rawFile.size);
      expect(img.info.creator).toMatch(/^QEMU v7\.2/);
      if (opts.fullHash) expect(await sha256Of(img)).toBe(await sha256Of(rawFile));
      // Random reads, and reads across the first block boundaries (payload blocks are mapped one by one).
      const rng = new Rng(img.size % 100_003);
      const reads: Array<[number, number]> = [];
      for (let i = 0; i < 60; i++) reads.push([rng.int(0, img.size - 1), rng.logInt(1, 4 * MiB)]);
      const bs = img.info.blockSize;
      for (let b = 1; b < Math.min(16, img.size / bs); b++) reads.push([b * bs - rng.int(1, 70_000), rng.int(2, 140_000)]);
      for (const [at, len] of reads) expectSame(await readAll(img, at, len), await readAll(rawFile, at, len), `${len} bytes at ${at}`);
      return img;
    } finally {
      await file.close();
      await rawFile.close();
    }
  }

  const variants = [
    { subformat: 'dynamic', blockSize: '1M', size: 100 * MiB },
    { subformat: 'dynamic', blockSize: '8M', size: 100 * MiB },
    { subformat: 'dynamic', blockSize: '32M', size: 300 * MiB },
    { subformat: 'dynamic', blockSize: '256M', size: 300 * MiB },
    { subformat: 'fixed', blockSize: '1M', size: 64 * MiB },
    { subformat: 'fixed', blockSize: '32M', size: 100 * MiB },
  ];

  it.skipIf(!HAS_QEMU_IMG).each(variants)('subformat=$subformat,block_size=$blockSize: byte for byte', async ({ subformat, blockSize, size }) => {
    const name = `qemu-${subformat}-${blockSize}`;
    const raw = makeRaw(name, size, size + blockSize.length);
    const vhdx = join(work, `${name}.vhdx`);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', `subformat=${subformat},block_size=${blockSize},log_size=1M`, raw, vhdx]);
    const img = await compareWithRaw(vhdx, raw, { fullHash: true });
    expect(img.info).toMatchObject({ subformat, blockSize: parseInt(blockSize) * MiB, replay: null, logicalSectorSize: 512 });
  });

  it.skipIf(!HAS_QEMU_IMG)('qemu-img convert -O raw of the VHDX gives the same bytes as reading it here', async () => {
    const raw = makeRaw('roundtrip', 48 * MiB, 5);
    const vhdx = join(work, 'roundtrip.vhdx');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=2M,log_size=1M', raw, vhdx]);
    const back = join(work, 'roundtrip-back.raw');
    run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', vhdx, back]);
    await compareWithRaw(vhdx, back, { fullHash: true });
  });

  it.skipIf(!HAS_QEMU_IMG)('4 GiB + 8 MiB, 1 MiB blocks: data either side of the sector bitmap entry (BAT index 4096)', async () => {
    const size = 4 * GiB + 8 * MiB;
    const raw = makeRaw('qemu-sb', size, 9, [
      [4095 * MiB - 1000, 2 * MiB + 2000],
      [4097 * MiB + 5, 3 * MiB],
    ]);
    const vhdx = join(work, 'qemu-sb.vhdx');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M,log_size=1M', raw, vhdx]);
    const img = await compareWithRaw(vhdx, raw, { fullHash: false });
    expect(img.info.bat.entries).toBe(4104 + 1);
    const file = await openFileSource(vhdx);
    const rawFile = await openFileSource(raw);
    try {
      const reopened = await openVhdx(file);
      for (const at of [4094 * MiB, 4095 * MiB, 4096 * MiB, 4097 * MiB, 4098 * MiB, size - 8 * MiB]) {
        expectSame(await readAll(reopened, at, 8 * MiB), await readAll(rawFile, at, 8 * MiB));
      }
    } finally {
      await file.close();
      await rawFile.close();
    }
  });

  it.skipIf(!HAS_QEMU_IO || !HAS_QEMU_IMG)(`blocks written by qemu-io out of virtual order (allocated in write order; stale log entries)${SKIP_QEMU_IO}`, async () => {
    const vhdx = join(work, 'qemu-io.vhdx');
    run('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M,log_size=1M', vhdx, '64M']);
    const writes: Array<[number, number, number]> = [
      [40 * MiB + 4096, 0x11, 65536],
      [3 * MiB, 0x22, 3 * MiB],
      [63 * MiB + 512, 0x33, 512],
      [0, 0x44, 1024],
      [20 * MiB - 2048, 0x55, 8192],
    ];
    run('qemu-io', ['-f', 'vhdx', ...writes.flatMap(([at, p, len]) => ['-c', `write -q -P ${p} ${at} ${len}`]), vhdx]);
    const expected = new Uint8Array(64 * MiB);
    for (const [at, p, len] of writes) expected.fill(p, at, at + len);
    const file = await openFileSource(vhdx);
    try {
      const img = await openVhdx(file);
      expect(img.info.replay).toBeNull();
      expectSame(await readAll(img, 0, img.size), expected);
    } finally {
      await file.close();
    }
  });
});
