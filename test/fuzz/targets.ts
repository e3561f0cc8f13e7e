/**
 * Fuzz targets: a seed image (test/fixtures/fuzz, README.md there says how each was made), the layout of its
 * structures, and the entry points a case runs on the mutated image, all through the library API as a user calls it.
 */
import { readFileSync } from 'node:fs';
import { crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { VerityError } from '../../src/errors.js';
import { findFiles, readInitramfs } from '../../src/boot/initramfs.js';
import { openFileSource } from '../../src/files/files.js';
import { openFat } from '../../src/fs/fat.js';
import { dumpFile, formatFiles, inspectImage, verifyFiles, verifyImage } from '../../src/index.js';
import { openOperand } from '../../src/containers/operand.js';
import { renderInspect } from '../../src/report/inspect.js';
import { rawDiskLayout, superblockLayout, vhdLayout, vhdxLayout, zipLayout } from './layouts.js';
import { cmdlineSeed, grubSeed, peSeed, peSeedFields, runCmdline, runGrub, runPe } from '../fixtures/boot/fuzz-seeds.js';
import { ext4Targets } from '../fs/ext4-fuzz.js';
import { trustTargets } from '../trust/fuzz-target.js';
import type { Field, Layout } from './mutate.js';

const FIXTURES = new URL('../fixtures/fuzz/', import.meta.url);

export function fixture(name: string): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL(`${name}.gz`, FIXTURES))));
}

export const ROOT_HASH = readFileSync(new URL('roothash', FIXTURES), 'latin1').trim();

/** `path(name)` is where the case's file `name` was written. */
export type PathOf = (name: string) => string;

export interface Entry {
  name: string;
  run(path: PathOf): Promise<unknown>;
}

export interface Target {
  name: string;
  /** The fixture mutated; it is written under this name. */
  seed: string;
  bytes: Uint8Array;
  layout: Layout;
  /** Fixtures written unchanged beside it. */
  companions: string[];
  /** What the mutated seed is put in before it is written (a zip around a disk image). */
  wrap?: (bytes: Uint8Array) => Uint8Array;
  /** Cases of this target per round of the schedule (`targetForCase`). */
  weight: number;
  entries: Entry[];
}

/** A result that no input may produce, found by a check of what an entry point returned. */
export class BadResult extends Error {
  override readonly name = 'BadResult';
}

const VERIFY = { engine: 'node-crypto', threads: 1, rootHash: ROOT_HASH } as const;
const FORMAT = { engine: 'node-crypto', threads: 1, salt: '5a5a5a5a5a5a5a5a', uuid: '12345678-9abc-def0-1234-56789abcdef0' } as const;
const STATUSES = new Set(['ok', 'corrupt', 'root-mismatch', 'no-verity']);

async function verify(data: string, hash: string | undefined): Promise<string> {
  const r = hash === undefined ? await verifyImage(data, VERIFY) : await verifyFiles(data, hash, VERIFY);
  if (!STATUSES.has(r.status)) throw new BadResult(`verify status ${String(r.status)}`);
  return r.status;
}

async function inspect(address: string): Promise<string> {
  const report = await inspectImage(address);
  // The text and JSON renderings format every number the image declared.
  JSON.stringify(report);
  return renderInspect(report);
}

const WINDOW = 1 << 20;
/** Sources larger than this are read at the start, the end and in between instead of whole, to keep cases short. */
const WHOLE_READ_LIMIT = 32 << 20;

/** Opens `address` and reads its data source (all of it when small), checking what every read returns. */
async function readAll(address: string): Promise<number> {
  const operand = await openOperand(address);
  try {
    const { source } = operand;
    if (!Number.isSafeInteger(source.size) || source.size < 0) throw new BadResult(`source size ${source.size}`);
    const spans: Array<[number, number]> = [];
    if (source.size <= WHOLE_READ_LIMIT) spans.push([0, source.size]);
    else for (let k = 0; k <= 8; k++) spans.push([Math.floor(((source.size - WINDOW) * k) / 8), WINDOW]);
    const buffer = new Uint8Array(WINDOW);
    let total = 0;
    for (const [start, length] of spans) {
      for (let at = start; at < start + length; ) {
        const want = buffer.subarray(0, Math.min(WINDOW, start + length - at));
        const n = await source.read(want, at);
        if (!Number.isInteger(n) || n <= 0 || n > want.length) {
          throw new BadResult(`read of ${want.length} bytes at ${at} of a ${source.size}-byte source returned ${n}`);
        }
        at += n;
        total += n;
      }
    }
    return total;
  } finally {
    await operand.close();
  }
}

/** The entry points of a whole-disk image: a GPT disk with the root and root-verity pair, in any container. */
function diskEntries(file: string): Entry[] {
  return [
    { name: 'inspect', run: (p) => inspect(p(file)) },
    { name: 'read', run: (p) => readAll(p(file)) },
    { name: 'read partition', run: (p) => readAll(`${p(file)}::root-x86-64-verity`) },
    { name: 'verify (discovered pair)', run: (p) => verify(p(file), undefined) },
    { name: 'verify partitions', run: (p) => verify(`${p(file)}::1`, `${p(file)}::2`) },
    { name: 'format partition', run: (p) => formatFiles(`${p(file)}::1`, p('format-out.img'), FORMAT) },
  ];
}

/**
 * A zip of one deflated entry, so that a disk image is read as a stream (io/sequential.ts, tree/origin-order.ts).
 * Level 1: the point is the stream, not the ratio, and an 11 MiB VHDX must deflate in a few milliseconds.
 */
function zipOf(name: string): (bytes: Uint8Array) => Uint8Array {
  const fileName = new TextEncoder().encode(name);
  return (bytes) => {
    const body = deflateRawSync(bytes, { level: 1 });
    const crc = crc32(bytes);
    const local = new DataView(new ArrayBuffer(30));
    const central = new DataView(new ArrayBuffer(46));
    const end = new DataView(new ArrayBuffer(22));
    for (const [v, sig] of [[local, 0x04034b50], [central, 0x02014b50], [end, 0x06054b50]] as const) v.setUint32(0, sig, true);
    const common = (v: DataView, at: number) => {
      v.setUint16(at, 20, true); // version needed
      v.setUint16(at + 4, 8, true); // deflated
      v.setUint32(at + 10, crc, true);
      v.setUint32(at + 14, body.length, true);
      v.setUint32(at + 18, bytes.length, true);
      v.setUint16(at + 22, fileName.length, true);
    };
    common(local, 4);
    common(central, 6);
    const cdOffset = 30 + fileName.length + body.length;
    end.setUint16(8, 1, true);
    end.setUint16(10, 1, true);
    end.setUint32(12, 46 + fileName.length, true);
    end.setUint32(16, cdOffset, true);
    const out = new Uint8Array(cdOffset + 46 + fileName.length + 22);
    out.set(new Uint8Array(local.buffer), 0);
    out.set(fileName, 30);
    out.set(body, 30 + fileName.length);
    out.set(new Uint8Array(central.buffer), cdOffset);
    out.set(fileName, cdOffset + 46);
    out.set(new Uint8Array(end.buffer), cdOffset + 46 + fileName.length);
    return out;
  };
}

function make(name: string, seed: string, layout: (bytes: Uint8Array) => Layout, entries: Entry[], companions: string[] = []): Target {
  const bytes = fixture(seed);
  return { name, seed, bytes, layout: layout(bytes), companions, entries, weight: 4 };
}

/**
 * `inner`'s image, mutated the same way, read as the deflated entry of a zip named `zip`. Every backward read
 * inflates the entry again from its start, so a case costs ~10 times one on the image itself: fewer entry points
 * (the streamed passes are those of verify and format), and a quarter of the share of cases.
 */
function zipped(name: string, inner: string, layout: (bytes: Uint8Array) => Layout, zip: string): Target {
  const bytes = fixture(inner);
  const entries = diskEntries(`${zip}::${inner}`).filter((e) => ['inspect', 'verify (discovered pair)', 'format partition'].includes(e.name));
  return { name, seed: zip, bytes, layout: layout(bytes), companions: [], entries, wrap: zipOf(inner), weight: 1 };
}

// ---------------------------------------------------------------------------------------------------------------------
// FAT and initramfs: seeds built here (no tool needed), written independently of src/ so a misreading is not repeated.

/**
 * A 256 KiB FAT12 volume (Microsoft FAT specification layout): 512-byte sectors and clusters, 2 FATs, 64 root
 * entries; a label, a long-named file, a fragmented 20 KiB file, and EFI/BOOT/BOOTX64.EFI two directories down.
 */
function fatSeed(): { bytes: Uint8Array; layout: Layout } {
  const SECTOR = 512;
  const TOTAL = 512;
  const FAT_SECTORS = 2;
  const ROOT_ENTRIES = 64;
  const image = new Uint8Array(TOTAL * SECTOR);
  const dv = new DataView(image.buffer);
  image.set([0xeb, 0x3c, 0x90], 0);
  image.set(new TextEncoder().encode('FUZZSEED'), 3);
  dv.setUint16(11, SECTOR, true); // BPB_BytsPerSec
  image[13] = 1; // BPB_SecPerClus
  dv.setUint16(14, 1, true); // BPB_RsvdSecCnt
  image[16] = 2; // BPB_NumFATs
  dv.setUint16(17, ROOT_ENTRIES, true); // BPB_RootEntCnt
  dv.setUint16(19, TOTAL, true); // BPB_TotSec16
  image[21] = 0xf8; // BPB_Media
  dv.setUint16(22, FAT_SECTORS, true); // BPB_FATSz16
  image[38] = 0x29; // BS_BootSig
  dv.setUint32(39, 0x1234abcd, true); // BS_VolID
  image.set(new TextEncoder().encode('FUZZ       FAT12   '), 43); // BS_VolLab, BS_FilSysType
  image.set([0x55, 0xaa], 510);
  const fatAt = SECTOR;
  const rootAt = fatAt + 2 * FAT_SECTORS * SECTOR;
  const dataAt = rootAt + ROOT_ENTRIES * 32;
  const clusterAt = (c: number) => dataAt + (c - 2) * SECTOR;
  const setFat = (n: number, v: number) => {
    for (const base of [fatAt, fatAt + FAT_SECTORS * SECTOR]) {
      const o = base + n + (n >> 1);
      const old = image[o]! | (image[o + 1]! << 8);
      const packed = n & 1 ? (old & 0x000f) | (v << 4) : (old & 0xf000) | v;
      image[o] = packed & 0xff;
      image[o + 1] = packed >> 8;
    }
  };
  setFat(0, 0xff8);
  setFat(1, 0xfff);
  const chain = (clusters: number[]) => clusters.forEach((c, i) => setFat(c, clusters[i + 1] ?? 0xfff));
  const fields: Field[] = [];
  const entry = (at: number, name: string, attr: number, cluster: number, size: number) => {
    image.set(new TextEncoder().encode(name.padEnd(11, ' ')), at);
    image[at + 11] = attr;
    dv.setUint16(at + 26, cluster, true);
    dv.setUint32(at + 28, size, true);
    fields.push({ name: `dir entry ${name.trim()} cluster`, at: at + 26, size: 2, littleEndian: true });
    fields.push({ name: `dir entry ${name.trim()} size`, at: at + 28, size: 4, littleEndian: true });
  };
  const longName = (at: number, name: string, short: string) => {
    let sum = 0;
    for (const b of new TextEncoder().encode(short)) sum = (((sum & 1) << 7) + (sum >> 1) + b) & 0xff;
    const units = [...name].map((c) => c.charCodeAt(0)).concat(0);
    const count = Math.ceil(units.length / 13);
    const spots = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    for (let k = count; k >= 1; k--) {
      const o = at + (count - k) * 32;
      image[o] = k | (k === count ? 0x40 : 0);
      image[o + 11] = 0x0f;
      image[o + 13] = sum;
      spots.forEach((s, i) => dv.setUint16(o + s, units[(k - 1) * 13 + i] ?? 0xffff, true));
    }
    return at + count * 32;
  };
  const fill = (clusters: number[], length: number, seed: number) => {
    let x = seed;
    for (let i = 0; i < length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      image[clusterAt(clusters[Math.floor(i / SECTOR)]!) + (i % SECTOR)] = x >>> 24;
    }
  };
  // Root directory: label, EFI (cluster 2), a long-named file (clusters 3-8), BIG.BIN (fragmented, 40 clusters).
  entry(rootAt, 'FUZZ', 0x08, 0, 0);
  entry(rootAt + 32, 'EFI', 0x10, 2, 0);
  const afterLfn = longName(rootAt + 64, 'loader configuration.conf', 'LOADER~1CON');
  entry(afterLfn, 'LOADER~1CON', 0x20, 3, 3000);
  const big = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 9 + i / 2 : 60 + (i - 1) / 2));
  entry(afterLfn + 32, 'BIG     BIN', 0x20, big[0]!, 20_000);
  chain([2]);
  chain([3, 4, 5, 6, 7, 8]);
  chain(big);
  fill([3, 4, 5, 6, 7, 8], 3000, 1);
  fill(big, 20_000, 2);
  // EFI: ".", "..", BOOT (cluster 100); BOOT: ".", "..", BOOTX64.EFI (clusters 101-102).
  entry(clusterAt(2), '.', 0x10, 2, 0);
  entry(clusterAt(2) + 32, '..', 0x10, 0, 0);
  entry(clusterAt(2) + 64, 'BOOT', 0x10, 100, 0);
  entry(clusterAt(100), '.', 0x10, 100, 0);
  entry(clusterAt(100) + 32, '..', 0x10, 2, 0);
  entry(clusterAt(100) + 64, 'BOOTX64 EFI', 0x20, 101, 1000);
  chain([100]);
  chain([101, 102]);
  fill([101, 102], 1000, 3);
  const bpb: Array<[string, number, number]> = [
    ['BytsPerSec', 11, 2], ['RsvdSecCnt', 14, 2], ['RootEntCnt', 17, 2], ['TotSec16', 19, 2], ['FATSz16', 22, 2],
    ['TotSec32', 32, 4], ['VolID', 39, 4], ['SecPerClus', 13, 1], ['NumFATs', 16, 1],
  ];
  fields.push(...bpb.map(([name, at, size]) => ({ name: `BPB ${name}`, at, size, littleEndian: true })));
  fields.push(...Array.from({ length: 16 }, (_, i) => ({ name: `FAT bytes ${3 * i}`, at: fatAt + 3 * i, size: 2, littleEndian: true })));
  return {
    bytes: image,
    layout: {
      fields,
      regions: [
        { name: 'boot sector', at: 0, length: 64 },
        { name: 'FAT', at: fatAt, length: 160 },
        { name: 'root directory', at: rootAt, length: 256 },
        { name: 'EFI directory', at: clusterAt(2), length: 96 },
        { name: 'BOOT directory', at: clusterAt(100), length: 96 },
      ],
      fixups: [],
    },
  };
}

/** Every file of a FAT volume, depth first, reading each whole; VerityErrors of one file do not stop the walk. */
async function walkFat(file: string): Promise<number> {
  const source = await openFileSource(file);
  try {
    const volume = await openFat(source);
    let files = 0;
    const walk = async (path: string, depth: number): Promise<void> => {
      const entries = await volume.list(path);
      if (entries === null) throw new BadResult(`list(${path}) of a directory returned null`);
      // Names equal but for case resolve to the first of them, as in the kernel's vfat: only a unique name must
      // lead to the entry listed.
      const folded = entries.map((e) => e.name.toLowerCase());
      const unique = (i: number) => folded.indexOf(folded[i]!) === folded.lastIndexOf(folded[i]!);
      for (const [i, e] of entries.slice(0, 64).entries()) {
        const child = `${path === '/' ? '' : path}/${e.name}`;
        try {
          if (e.kind === 'directory') {
            if (depth < 8 && unique(i)) await walk(child, depth + 1);
            continue;
          }
          const data = await volume.readFile(child, 1 << 20);
          if (unique(i) && (data === null || data.length !== e.size)) throw new BadResult(`readFile(${child}) gave ${data?.length} bytes; list said ${e.size}`);
          files++;
        } catch (err) {
          if (!acceptable(err)) throw err;
        }
      }
    };
    await walk('/', 0);
    const big = await volume.open('/big.bin');
    if (big) {
      const buffer = new Uint8Array(4096);
      for (let at = 0; at < Math.min(big.size, 1 << 20); at += 4093) await big.read(buffer, at);
    }
    return files;
  } finally {
    await source.close();
  }
}

/** The 8-hex-digit fields of the newc header (buffer-format.rst), after the 6-byte magic. */
const NEWC_FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'];

/** A newc archive of `entries` ([name, mode, data, nlink, ino]) with its trailer, and where its header fields lie. */
function newc(entries: Array<[string, number, Uint8Array, number?, number?]>, base: number): { bytes: Uint8Array; fields: Field[]; headers: number[] } {
  const parts: Uint8Array[] = [];
  const fields: Field[] = [];
  const headers: number[] = [];
  let at = base;
  for (const [name, mode, data, nlink = 1, ino = parts.length + 1] of [...entries, ['TRAILER!!!', 0, new Uint8Array(0)] as [string, number, Uint8Array]]) {
    const nameBytes = new TextEncoder().encode(`${name}\0`);
    const values = [ino, mode, 0, 0, nlink, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    const head = `070701${values.map((v) => v.toString(16).padStart(8, '0')).join('')}`;
    const nameArea = ((nameBytes.length + 1) & ~3) + 2;
    const entry = new Uint8Array(110 + nameArea + ((data.length + 3) & ~3));
    entry.set(new TextEncoder().encode(head));
    entry.set(nameBytes, 110);
    entry.set(data, 110 + nameArea);
    headers.push(at);
    NEWC_FIELDS.forEach((f, i) => fields.push({ name: `cpio ${name} c_${f}`, at: at + 6 + 8 * i, size: 8, littleEndian: true }));
    parts.push(entry);
    at += entry.length;
  }
  const bytes = new Uint8Array(at - base);
  parts.reduce((o, p) => (bytes.set(p, o), o + p.length), 0);
  return { bytes, fields, headers };
}

/**
 * An initramfs as dracut lays one out, kept uncompressed in the seed: an early archive (microcode), then two
 * archives that `wrapInitramfs` gzips as two members, then zero padding and a last uncompressed archive. The
 * mutations reach the cpio data inside the compressed members; the fixup writes a binary value that the mutator put
 * in a hex field back as 8 hex digits, so that sizes and modes get past the header check.
 */
function initramfsSeed(): { bytes: Uint8Array; layout: Layout; cuts: number[] } {
  const text = (s: string) => new TextEncoder().encode(s);
  const rand = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 24) & 0xff);
  const DIR = 0o40755;
  const FILE = 0o100644;
  const early = newc([['kernel', DIR, new Uint8Array(0)], ['kernel/x86', DIR, new Uint8Array(0)], ['kernel/x86/microcode', DIR, new Uint8Array(0)], ['kernel/x86/microcode/GenuineIntel.bin', FILE, rand(3000, 1)]], 0);
  const earlyPadded = (early.bytes.length + 511) & ~511;
  const main = newc([
    ['.', DIR, new Uint8Array(0)],
    ['etc', DIR, new Uint8Array(0)],
    ['etc/cmdline.d', DIR, new Uint8Array(0)],
    ['./etc/cmdline.d/90-verity.conf', FILE, text('roothash=00112233 systemd.verity=1\n')],
    ['etc/os-release', FILE, text('ID=fuzz\n')],
    ['usr', DIR, new Uint8Array(0)],
    ['usr/hard-1', FILE, new Uint8Array(0), 2, 77],
    ['usr/hard-2', FILE, text('hard linked\n'), 2, 77],
    ['lib', 0o120777, text('usr')],
  ], earlyPadded);
  const more = newc([['usr/data.bin', FILE, rand(9000, 2)], ['etc/os-release', FILE, text('ID=replaced\n')]], earlyPadded + main.bytes.length);
  const lastAt = earlyPadded + main.bytes.length + more.bytes.length;
  const last = newc([['etc/last', FILE, text('last\n')]], lastAt);
  const bytes = new Uint8Array(lastAt + last.bytes.length);
  bytes.set(early.bytes, 0);
  bytes.set(main.bytes, earlyPadded);
  bytes.set(more.bytes, earlyPadded + main.bytes.length);
  bytes.set(last.bytes, lastAt);
  const fields = [...early.fields, ...main.fields, ...more.fields, ...last.fields];
  const hexify: Field[] = fields;
  return {
    bytes,
    cuts: [earlyPadded, earlyPadded + main.bytes.length, lastAt],
    layout: {
      fields,
      regions: [...early.headers, ...main.headers, ...more.headers, ...last.headers].map((at, i) => ({ name: `cpio header ${i}`, at, length: 110 })),
      fixups: [
        {
          name: 'newc fields as hex',
          apply(b) {
            for (const f of hexify) {
              if (f.at + 8 > b.length) continue;
              const s = String.fromCharCode(...b.subarray(f.at, f.at + 8));
              if (/^[0-9a-fA-F]{8}$/.test(s)) continue;
              const v = new DataView(b.buffer, b.byteOffset + f.at, 8).getUint32(0, true);
              b.set(new TextEncoder().encode(v.toString(16).padStart(8, '0')), f.at);
            }
          },
        },
      ],
    },
  };
}

/**
 * Puts the mutated initramfs together: [early][gzip member][gzip member][zeros to 16+ bytes, 4-aligned][last]. One case in four
 * has a byte of the second member damaged, to reach the inflate and trailer checks.
 */
function wrapInitramfs(cuts: number[]): (bytes: Uint8Array) => Uint8Array {
  return (bytes) => {
    const [a, b, c] = cuts.map((x) => Math.min(x, bytes.length)) as [number, number, number];
    const one = gzipSync(bytes.subarray(a, b), { level: 6 });
    const two = new Uint8Array(gzipSync(bytes.subarray(b, c), { level: 6 }));
    const sum = crc32(bytes);
    if (sum % 4 === 0 && two.length > 20) two[10 + (sum % (two.length - 10))]! ^= 1 << (sum % 7);
    // An uncompressed archive after a compressed one starts on a multiple of 4 of the file (init/initramfs.c).
    const lastAt = (a + one.length + two.length + 16 + 3) & ~3;
    const out = new Uint8Array(lastAt + (bytes.length - c));
    out.set(bytes.subarray(0, a), 0);
    out.set(one, a);
    out.set(two, a + one.length);
    out.set(bytes.subarray(c), lastAt);
    return out;
  };
}

/** Limits within the fuzz bounds (64 MiB allocations, 2 s per entry point). */
const INITRAMFS_LIMITS = { maxFileBytes: 4 << 20, maxTotalBytes: 16 << 20, maxExpandedBytes: 32 << 20, maxWindowBytes: 8 << 20 } as const;

async function readInitramfsFile(file: string, wanted?: (name: string) => boolean): Promise<number> {
  const source = await openFileSource(file);
  try {
    if (wanted) return (await findFiles(source, wanted, INITRAMFS_LIMITS)).size;
    const r = await readInitramfs(source, INITRAMFS_LIMITS);
    let bytes = 0;
    for (const data of r.files.values()) bytes += data.length;
    if (bytes > INITRAMFS_LIMITS.maxTotalBytes) throw new BadResult(`kept ${bytes} bytes, above maxTotalBytes`);
    for (const s of r.segments) if (!(s.length > 0 && s.offset + s.length <= source.size)) throw new BadResult(`segment ${JSON.stringify(s)}`);
    return r.files.size;
  } finally {
    await source.close();
  }
}

function fatTarget(): Target {
  const { bytes, layout } = fatSeed();
  return {
    name: 'fat', seed: 'fat.img', bytes, layout, companions: [], weight: 4,
    entries: [{ name: 'walk', run: (p) => walkFat(p('fat.img')) }],
  };
}

function initramfsTarget(): Target {
  const { bytes, layout, cuts } = initramfsSeed();
  return {
    name: 'initramfs', seed: 'initramfs.img', bytes, layout, companions: [], weight: 4, wrap: wrapInitramfs(cuts),
    entries: [
      { name: 'read all', run: (p) => readInitramfsFile(p('initramfs.img')) },
      { name: 'find files', run: (p) => readInitramfsFile(p('initramfs.img'), (n) => n.startsWith('etc/') || n.startsWith('usr/hard')) },
    ],
  };
}

let cached: Target[] | null = null;

/**
 * The boot-configuration targets (seeds and entry points in test/fixtures/boot/fuzz-seeds.ts): a grub.cfg
 * interpreted against a /boot volume, a UKI's section table and add-ons, and a kernel command line's verity keys.
 */
function bootTargets(): Target[] {
  const whole = (bytes: Uint8Array): Layout => ({ fields: [], regions: [{ name: 'text', at: 0, length: bytes.length }], fixups: [] });
  const grub = grubSeed();
  const pe = peSeed();
  const cmdline = cmdlineSeed();
  const peFields = peSeedFields(pe).map((f) => ({ ...f, littleEndian: true }));
  return [
    { name: 'grub', seed: 'grub.cfg', bytes: grub, layout: whole(grub), companions: [], weight: 2, entries: [{ name: 'interpret', run: (p) => runGrub(p('grub.cfg')) }] },
    { name: 'pe', seed: 'uki.efi', bytes: pe, layout: { ...whole(pe), fields: peFields }, companions: [], weight: 2, entries: [{ name: 'sections and UKI', run: (p) => runPe(p('uki.efi')) }] },
    { name: 'cmdline', seed: 'cmdline.txt', bytes: cmdline, layout: whole(cmdline), companions: [], weight: 2, entries: [{ name: 'verity keys', run: (p) => runCmdline(p('cmdline.txt')) }] },
  ];
}

export function targets(): Target[] {
  cached ??= [
    make('superblock', 'hash.img', () => superblockLayout(0, 4096), [
      { name: 'dump', run: (p) => dumpFile(p('hash.img')) },
      { name: 'verify', run: (p) => verify(p('data.img'), p('hash.img')) },
      { name: 'inspect', run: (p) => inspect(p('hash.img')) },
    ], ['data.img']),
    make('gpt', 'disk.raw', (b) => rawDiskLayout(b), diskEntries('disk.raw')),
    make('vhd-fixed', 'disk-fixed.vhd', vhdLayout, diskEntries('disk-fixed.vhd')),
    make('vhd-dynamic', 'disk-dynamic.vhd', vhdLayout, diskEntries('disk-dynamic.vhd')),
    make('vhdx', 'disk.vhdx', vhdxLayout, diskEntries('disk.vhdx')),
    make('zip', 'disk.zip', zipLayout, [
      { name: 'inspect', run: (p) => inspect(p('disk.zip')) },
      { name: 'read deflated', run: (p) => readAll(`${p('disk.zip')}::data.img`) },
      { name: 'read stored', run: (p) => readAll(`${p('disk.zip')}::hash.img`) },
      { name: 'verify entries', run: (p) => verify(`${p('disk.zip')}::data.img`, `${p('disk.zip')}::hash.img`) },
      { name: 'verify disk entry', run: (p) => verify(`${p('disk.zip')}::disk.raw`, undefined) },
    ]),
    zipped('zip-vhdx', 'disk.vhdx', vhdxLayout, 'vhdx.zip'),
    zipped('zip-vhd', 'disk-dynamic.vhd', vhdLayout, 'vhd.zip'),
    make('zip64', 'disk64.zip', zipLayout, [
      { name: 'inspect', run: (p) => inspect(p('disk64.zip')) },
      { name: 'read deflated', run: (p) => readAll(`${p('disk64.zip')}::data.img`) },
      { name: 'dump stored', run: (p) => dumpFile(`${p('disk64.zip')}::hash.img`) },
      { name: 'verify entries', run: (p) => verify(`${p('disk64.zip')}::data.img`, `${p('disk64.zip')}::hash.img`) },
    ]),
    fatTarget(),
    initramfsTarget(),
    ...bootTargets(),
    ...ext4Targets(),
    ...trustTargets(),
  ];
  return cached;
}

/**
 * The target of case `index` when fuzzing `names`: rounds in which each target has `weight` cases, interleaved,
 * so that any run of cases spreads over all targets.
 */
export function targetForCase(names: readonly string[], index: number): Target {
  const chosen = names.map(targetNamed);
  const rounds = Math.max(...chosen.map((t) => t.weight));
  const order = Array.from({ length: rounds }, (_, r) => chosen.filter((t) => t.weight > r)).flat();
  return order[index % order.length]!;
}

export function targetNamed(name: string): Target {
  const t = targets().find((x) => x.name === name);
  if (!t) throw new Error(`No fuzz target "${name}"; there are ${targets().map((x) => x.name).join(', ')}.`);
  return t;
}

/** Whether an error is an acceptable end of a case: a VerityError, but not one that reports a bug. */
export function acceptable(e: unknown): e is VerityError {
  return e instanceof VerityError && e.code !== 'E_INTERNAL' && e.message.length > 0;
}
