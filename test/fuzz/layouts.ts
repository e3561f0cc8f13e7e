/**
 * Where the fields of each format lie in a seed image, found by walking the seed's own structures (independently of
 * src/, so that a misreading there is not repeated here), and the checksums to recompute after a mutation.
 */
import { crc32 } from '../../src/binary/crc32.js';
import { crc32cWithZeroedField } from '../../src/binary/crc32c.js';
import type { Field, Fixup, Layout, Region } from './mutate.js';

const KiB = 1024;
const MiB = 1024 * KiB;

type Spec = Record<string, [at: number, size: number]>;

function fields(prefix: string, base: number, spec: Spec, littleEndian = true): Field[] {
  return Object.entries(spec).map(([name, [at, size]]) => ({ name: `${prefix} ${name}`, at: base + at, size, littleEndian }));
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function merge(...layouts: Layout[]): Layout {
  return {
    fields: layouts.flatMap((l) => l.fields),
    regions: layouts.flatMap((l) => l.regions),
    fixups: layouts.flatMap((l) => l.fixups),
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// verity superblock (cryptsetup struct verity_sb) and the ext4 superblock the survey reads

const SUPERBLOCK: Spec = {
  signature: [0, 8], version: [8, 4], hashType: [12, 4], uuid: [16, 16], algorithm: [32, 32],
  dataBlockSize: [64, 4], hashBlockSize: [68, 4], dataBlocks: [72, 8], saltSize: [80, 2], salt: [88, 256],
};

/** A verity superblock at `at`, and the hash tree after it. */
export function superblockLayout(at: number, treeLength: number): Layout {
  return {
    fields: fields('superblock', at, SUPERBLOCK),
    regions: [{ name: 'superblock', at, length: 512 }, { name: 'hash tree', at: at + 4096, length: treeLength }],
    fixups: [],
  };
}

const EXT4: Spec = { blocksCount: [4, 4], logBlockSize: [24, 4], magic: [56, 2], featureIncompat: [96, 4], blocksCountHi: [0x150, 4] };

export function ext4Layout(at: number): Layout {
  return { fields: fields('ext4', at + 1024, EXT4), regions: [{ name: 'ext4 superblock', at: at + 1024, length: 1024 }], fixups: [] };
}

// ---------------------------------------------------------------------------------------------------------------------
// GPT (UEFI 2.10 §5.3), 512-byte sectors

const GPT_HEADER: Spec = {
  signature: [0, 8], revision: [8, 4], headerSize: [12, 4], headerCrc: [16, 4], myLba: [24, 8], alternateLba: [32, 8],
  firstUsable: [40, 8], lastUsable: [48, 8], diskGuid: [56, 16], entriesLba: [72, 8], entryCount: [80, 4],
  entrySize: [84, 4], entriesCrc: [88, 4],
};
const GPT_ENTRY: Spec = { type: [0, 16], guid: [16, 16], firstLba: [32, 8], lastLba: [40, 8], attributes: [48, 8], name: [56, 72] };
const MBR_RECORD: Spec = { status: [0, 1], type: [4, 1], firstLba: [8, 4], sectors: [12, 4] };

/** Recomputes a GPT header's entry-array CRC, then its own CRC, as a writer would after changing either. */
function gptFixup(name: string, headerAt: number): Fixup {
  return {
    name,
    apply(bytes) {
      if (headerAt + 92 > bytes.length) return;
      const v = view(bytes);
      const entries = Number(v.getBigUint64(headerAt + 72, true)) * 512;
      const arrayBytes = v.getUint32(headerAt + 80, true) * v.getUint32(headerAt + 84, true);
      if (arrayBytes <= 4 * MiB && entries + arrayBytes <= bytes.length) {
        v.setUint32(headerAt + 88, crc32(bytes.subarray(entries, entries + arrayBytes)), true);
      }
      const size = v.getUint32(headerAt + 12, true);
      if (size < 20 || headerAt + size > bytes.length) return;
      v.setUint32(headerAt + 16, 0, true);
      v.setUint32(headerAt + 16, crc32(bytes.subarray(headerAt, headerAt + size)), true);
    },
  };
}

export function gptLayout(disk: Uint8Array): Layout {
  const v = view(disk);
  const parts: Layout[] = [
    { fields: [0, 1, 2, 3].flatMap((i) => fields(`MBR record ${i}`, 446 + 16 * i, MBR_RECORD)), regions: [{ name: 'MBR', at: 0, length: 512 }], fixups: [] },
  ];
  const backupLba = Number(v.getBigUint64(512 + 32, true));
  for (const [copy, lba] of [['primary', 1], ['backup', backupLba]] as const) {
    const at = lba * 512;
    const entriesAt = Number(v.getBigUint64(at + 72, true)) * 512;
    const count = v.getUint32(at + 80, true);
    const size = v.getUint32(at + 84, true);
    const used: Field[] = [];
    for (let i = 0; i < count; i++) {
      const e = entriesAt + i * size;
      if (disk.subarray(e, e + 16).some((b) => b !== 0)) used.push(...fields(`${copy} entry ${i + 1}`, e, GPT_ENTRY));
    }
    parts.push({
      fields: [...fields(`${copy} GPT header`, at, GPT_HEADER), ...used],
      regions: [{ name: `${copy} GPT header`, at, length: 92 }, { name: `${copy} GPT entries`, at: entriesAt, length: count * size }],
      fixups: [gptFixup(`${copy} GPT CRCs`, at)],
    });
  }
  return merge(...parts);
}

/** GPT partitions of the seed disk: [offset, length] of each used entry, for the structures inside them. */
export function gptPartitions(disk: Uint8Array): Array<[number, number]> {
  const v = view(disk);
  const entriesAt = Number(v.getBigUint64(512 + 72, true)) * 512;
  const out: Array<[number, number]> = [];
  for (let i = 0; i < v.getUint32(512 + 80, true); i++) {
    const e = entriesAt + i * v.getUint32(512 + 84, true);
    const first = Number(v.getBigUint64(e + 32, true));
    if (first !== 0) out.push([first * 512, (Number(v.getBigUint64(e + 40, true)) - first + 1) * 512]);
  }
  return out;
}

/** A raw disk image as the fuzz seeds lay it out: GPT, the ext4 in partition 1, the hash device in partition 2. */
export function rawDiskLayout(disk: Uint8Array, shift = 0): Layout {
  const [[fsAt], [hashAt, hashLength]] = gptPartitions(disk) as [[number, number], [number, number]];
  const inner = merge(gptLayout(disk), ext4Layout(fsAt), superblockLayout(hashAt, Math.min(hashLength - 4096, 8192)));
  return shift === 0
    ? inner
    : {
        fields: inner.fields.map((f) => ({ ...f, at: f.at + shift })),
        regions: inner.regions.map((r) => ({ ...r, at: r.at + shift })),
        fixups: [],
      };
}

// ---------------------------------------------------------------------------------------------------------------------
// VHD (Virtual Hard Disk Image Format Specification 1.0): big-endian

const VHD_FOOTER: Spec = {
  cookie: [0, 8], features: [8, 4], version: [12, 4], dataOffset: [16, 8], timestamp: [24, 4], creatorApp: [28, 4],
  originalSize: [40, 8], currentSize: [48, 8], cylinders: [56, 2], diskType: [60, 4], checksum: [64, 4], uuid: [68, 16],
  savedState: [84, 1],
};
const VHD_DYNAMIC: Spec = {
  cookie: [0, 8], dataOffset: [8, 8], tableOffset: [16, 8], headerVersion: [24, 4], maxTableEntries: [28, 4],
  blockSize: [32, 4], checksum: [36, 4], parentUuid: [40, 16], parentTimestamp: [56, 4],
};

function vhdChecksumFixup(name: string, at: number, length: number, checksumAt: number): Fixup {
  return {
    name,
    apply(bytes) {
      if (at < 0 || at + length > bytes.length) return;
      let sum = 0;
      for (let i = at; i < at + length; i++) if (i < at + checksumAt || i >= at + checksumAt + 4) sum += bytes[i]!;
      view(bytes).setUint32(at + checksumAt, ~sum >>> 0, false);
    },
  };
}

export function vhdLayout(file: Uint8Array): Layout {
  const v = view(file);
  const end = file.length - 512;
  const fixed = v.getUint32(end + 60, false) === 2;
  const parts: Layout[] = [
    {
      fields: fields('footer', end, VHD_FOOTER, false),
      regions: [{ name: 'footer', at: end, length: 512 }],
      // The fixup is bound to the seed's footer position: after a truncation there is no footer to fix.
      fixups: [vhdChecksumFixup('footer checksum', end, 512, 64)],
    },
  ];
  if (fixed) return merge(...parts, rawDiskLayout(file.subarray(0, end)));
  const dyn = Number(v.getBigUint64(16, false));
  const table = Number(v.getBigUint64(dyn + 16, false));
  const entries = v.getUint32(dyn + 28, false);
  const bat: Field[] = [];
  for (let i = 0; i < entries; i++) bat.push({ name: `BAT entry ${i}`, at: table + 4 * i, size: 4, littleEndian: false });
  parts.push(
    {
      fields: fields('footer copy', 0, VHD_FOOTER, false),
      regions: [{ name: 'footer copy', at: 0, length: 512 }],
      fixups: [vhdChecksumFixup('footer copy checksum', 0, 512, 64)],
    },
    {
      fields: [...fields('dynamic header', dyn, VHD_DYNAMIC, false), ...bat],
      regions: [{ name: 'dynamic header', at: dyn, length: 1024 }, { name: 'BAT', at: table, length: 4 * entries }],
      fixups: [vhdChecksumFixup('dynamic header checksum', dyn, 1024, 36)],
    },
  );
  return merge(...parts);
}

// ---------------------------------------------------------------------------------------------------------------------
// VHDX [MS-VHDX]: little-endian

const VHDX_HEADER: Spec = {
  signature: [0, 4], checksum: [4, 4], sequenceNumber: [8, 8], fileWriteGuid: [16, 16], dataWriteGuid: [32, 16],
  logGuid: [48, 16], logVersion: [64, 2], version: [66, 2], logLength: [68, 4], logOffset: [72, 8],
};
const REGION_TABLE: Spec = { signature: [0, 4], checksum: [4, 4], entryCount: [8, 4] };
const REGION_ENTRY: Spec = { guid: [0, 16], fileOffset: [16, 8], length: [24, 4], required: [28, 4] };
const METADATA_TABLE: Spec = { signature: [0, 8], entryCount: [10, 2] };
const METADATA_ENTRY: Spec = { itemId: [0, 16], offset: [16, 4], length: [20, 4], flags: [24, 4] };
const LOG_ENTRY: Spec = {
  signature: [0, 4], checksum: [4, 4], entryLength: [8, 4], tail: [12, 4], sequenceNumber: [16, 8],
  descriptorCount: [24, 4], logGuid: [32, 16], flushedFileOffset: [48, 8], lastFileOffset: [56, 8],
};
const LOG_DESCRIPTOR: Spec = { signature: [0, 4], trailing: [4, 4], leadingOrLength: [8, 8], fileOffset: [16, 8], sequenceNumber: [24, 8] };
const LOG_DATA: Spec = { signature: [0, 4], sequenceHigh: [4, 4], sequenceLow: [4092, 4] };

function crc32cFixup(name: string, at: number, length: () => number): Fixup {
  return {
    name,
    apply(bytes) {
      const n = length();
      if (n < 8 || at + n > bytes.length) return;
      const s = bytes.subarray(at, at + n);
      view(s).setUint32(4, crc32cWithZeroedField(s, 4), true);
    },
  };
}

const GUIDS: Record<string, string> = {
  '6677c22d23f600429d64115e9bfd4a08': 'BAT',
  '06a27c8b90479a4bb8fe575f050f886e': 'metadata',
};

export function vhdxLayout(file: Uint8Array): Layout {
  const v = view(file);
  const hex = (at: number) => Array.from(file.subarray(at, at + 16), (b) => b.toString(16).padStart(2, '0')).join('');
  const parts: Layout[] = [
    { fields: [{ name: 'file identifier', at: 0, size: 8, littleEndian: true }], regions: [{ name: 'file identifier', at: 0, length: 520 }], fixups: [] },
  ];
  for (const [i, at] of [64 * KiB, 128 * KiB].entries()) {
    parts.push({
      fields: fields(`header ${i + 1}`, at, VHDX_HEADER),
      regions: [{ name: `header ${i + 1}`, at, length: 80 }],
      fixups: [crc32cFixup(`header ${i + 1} CRC-32C`, at, () => 4 * KiB)],
    });
  }
  let bat = { at: 0, length: 0 };
  let metadata = 0;
  for (const [i, at] of [192 * KiB, 256 * KiB].entries()) {
    const count = v.getUint32(at + 8, true);
    const entries: Field[] = [];
    for (let e = 0; e < count; e++) {
      const ea = at + 16 + 32 * e;
      entries.push(...fields(`region table ${i + 1} entry ${e}`, ea, REGION_ENTRY));
      const kind = GUIDS[hex(ea)];
      const offset = Number(v.getBigUint64(ea + 16, true));
      if (kind === 'BAT') bat = { at: offset, length: v.getUint32(ea + 24, true) };
      if (kind === 'metadata') metadata = offset;
    }
    parts.push({
      fields: [...fields(`region table ${i + 1}`, at, REGION_TABLE), ...entries],
      regions: [{ name: `region table ${i + 1}`, at, length: 16 + 32 * count }],
      fixups: [crc32cFixup(`region table ${i + 1} CRC-32C`, at, () => 64 * KiB)],
    });
  }
  const metaCount = v.getUint16(metadata + 10, true);
  const meta: Field[] = fields('metadata table', metadata, METADATA_TABLE);
  const metaRegions: Region[] = [{ name: 'metadata table', at: metadata, length: 32 + 32 * metaCount }];
  for (let e = 0; e < metaCount; e++) {
    const ea = metadata + 32 + 32 * e;
    meta.push(...fields(`metadata entry ${e}`, ea, METADATA_ENTRY));
    const item = metadata + v.getUint32(ea + 16, true);
    const length = v.getUint32(ea + 20, true);
    // Items are small integers (block size and flags, disk size, sector sizes) or a GUID.
    for (let k = 0; k + 4 <= length && k < 16; k += 4) meta.push({ name: `metadata item ${e} +${k}`, at: item + k, size: length === 8 && k === 0 ? 8 : 4, littleEndian: true });
    metaRegions.push({ name: `metadata item ${e}`, at: item, length });
  }
  parts.push({ fields: meta, regions: metaRegions, fixups: [] });

  const batFields: Field[] = [];
  for (let e = 0; e * 8 < bat.length && e < 64; e++) {
    if (v.getBigUint64(bat.at + 8 * e, true) !== 0n || e < 8) batFields.push({ name: `BAT entry ${e}`, at: bat.at + 8 * e, size: 8, littleEndian: true });
  }
  parts.push({ fields: batFields, regions: [{ name: 'BAT', at: bat.at, length: 8 * batFields.length }], fixups: [] });

  // The log of the current header: a run of entries, each a header sector with descriptors, then data sectors.
  const logOffset = Number(v.getBigUint64(64 * KiB + 72, true));
  const logLength = v.getUint32(64 * KiB + 68, true);
  for (let at = logOffset; at + 64 <= logOffset + logLength && v.getUint32(at, true) === 0x65676f6c; ) {
    const length = v.getUint32(at + 8, true);
    const count = v.getUint32(at + 24, true);
    const entry: Field[] = fields(`log entry @${at - logOffset}`, at, LOG_ENTRY);
    for (let d = 0; d < count; d++) entry.push(...fields(`log entry @${at - logOffset} descriptor ${d}`, at + 64 + 32 * d, LOG_DESCRIPTOR));
    const dataAt = at + 4 * KiB * Math.ceil((64 + 32 * count) / (4 * KiB));
    for (let s = dataAt; s < at + length; s += 4 * KiB) entry.push(...fields(`log data sector @${s - logOffset}`, s, LOG_DATA));
    const entryAt = at;
    parts.push({
      fields: entry,
      regions: [{ name: `log entry @${at - logOffset}`, at, length: Math.min(length, 8 * KiB) }],
      fixups: [crc32cFixup(`log entry @${at - logOffset} CRC-32C`, entryAt, () => view(file).getUint32(entryAt + 8, true))],
    });
    if (length === 0 || length % (4 * KiB) !== 0) break;
    at += length;
  }
  return merge(...parts);
}

// ---------------------------------------------------------------------------------------------------------------------
// ZIP (APPNOTE.TXT 6.3.10): little-endian

const EOCD: Spec = { disk: [4, 2], cdDisk: [6, 2], entriesOnDisk: [8, 2], entries: [10, 2], cdSize: [12, 4], cdOffset: [16, 4], commentLength: [20, 2] };
const ZIP64_EOCD: Spec = {
  recordSize: [4, 8], versionMade: [12, 2], versionNeeded: [14, 2], disk: [16, 4], cdDisk: [20, 4],
  entriesOnDisk: [24, 8], entries: [32, 8], cdSize: [40, 8], cdOffset: [48, 8],
};
const ZIP64_LOCATOR: Spec = { signature: [0, 4], disk: [4, 4], eocdOffset: [8, 8], disks: [16, 4] };
const CENTRAL: Spec = {
  signature: [0, 4], versionNeeded: [6, 2], flags: [8, 2], method: [10, 2], crc: [16, 4], compressedSize: [20, 4],
  uncompressedSize: [24, 4], nameLength: [28, 2], extraLength: [30, 2], commentLength: [32, 2], diskStart: [34, 2],
  localOffset: [42, 4],
};
const LOCAL: Spec = {
  signature: [0, 4], flags: [6, 2], method: [8, 2], crc: [14, 4], compressedSize: [18, 4], uncompressedSize: [22, 4],
  nameLength: [26, 2], extraLength: [28, 2],
};

/** A ZIP64 extended-information extra field's values (8 bytes each) inside the extra field at [at, at + length). */
function zip64Extra(prefix: string, at: number, length: number, v: DataView): Field[] {
  const out: Field[] = [];
  for (let p = at; p + 4 <= at + length; ) {
    const id = v.getUint16(p, true);
    const size = v.getUint16(p + 2, true);
    if (id === 1) {
      out.push({ name: `${prefix} ZIP64 extra size`, at: p + 2, size: 2, littleEndian: true });
      for (let k = 0; k + 8 <= size; k += 8) out.push({ name: `${prefix} ZIP64 extra value ${k / 8}`, at: p + 4 + k, size: 8, littleEndian: true });
    }
    p += 4 + size;
  }
  return out;
}

export function zipLayout(file: Uint8Array): Layout {
  const v = view(file);
  let eocd = file.length - 22;
  while (eocd > 0 && v.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const out: Layout = { fields: fields('EOCD', eocd, EOCD), regions: [{ name: 'EOCD', at: eocd, length: 22 }], fixups: [] };
  let cd = v.getUint32(eocd + 16, true);
  let count = v.getUint16(eocd + 10, true);
  const locator = eocd - 20;
  if (locator >= 0 && v.getUint32(locator, true) === 0x07064b50) {
    const record = Number(v.getBigUint64(locator + 8, true));
    out.fields.push(...fields('ZIP64 locator', locator, ZIP64_LOCATOR), ...fields('ZIP64 EOCD', record, ZIP64_EOCD));
    out.regions.push({ name: 'ZIP64 locator', at: locator, length: 20 }, { name: 'ZIP64 EOCD', at: record, length: 56 });
    cd = Number(v.getBigUint64(record + 48, true));
    count = Number(v.getBigUint64(record + 32, true));
  }
  out.regions.push({ name: 'central directory', at: cd, length: eocd - cd });
  for (let i = 0, at = cd; i < count; i++) {
    const nameLength = v.getUint16(at + 28, true);
    const extraLength = v.getUint16(at + 30, true);
    out.fields.push(...fields(`central ${i}`, at, CENTRAL), ...zip64Extra(`central ${i}`, at + 46 + nameLength, extraLength, v));
    const local = v.getUint32(at + 42, true) === 0xffffffff ? localFromExtra(v, at + 46 + nameLength, extraLength) : v.getUint32(at + 42, true);
    const localName = v.getUint16(local + 26, true);
    const localExtra = v.getUint16(local + 28, true);
    const dataAt = local + 30 + localName + localExtra;
    out.fields.push(...fields(`local ${i}`, local, LOCAL), ...zip64Extra(`local ${i}`, local + 30 + localName, localExtra, v));
    out.regions.push({ name: `local header ${i}`, at: local, length: 30 + localName + localExtra });
    out.regions.push({ name: `entry ${i} data`, at: dataAt, length: Math.min(v.getUint32(at + 20, true), 4096) });
    at += 46 + nameLength + extraLength + v.getUint16(at + 32, true);
  }
  return out;
}

/** The local header offset from a central record's ZIP64 extra field (the last of its 8-byte values here). */
function localFromExtra(v: DataView, at: number, length: number): number {
  for (let p = at; p + 4 <= at + length; p += 4 + v.getUint16(p + 2, true)) {
    if (v.getUint16(p, true) === 1) return Number(v.getBigUint64(p + 4 + v.getUint16(p + 2, true) - 8, true));
  }
  throw new Error('no ZIP64 extra field with a local header offset');
}
