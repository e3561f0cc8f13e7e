/**
 * GUID partition tables: the protective MBR, the primary header at LBA 1 with its backup at the disk's last LBA, the
 * partition entry array, and the partitions found in it, named by their Discoverable Partitions type.
 *
 * Layout and checks follow the UEFI spec 2.10 §5.3 ("GPT Header" and "GPT Partition Entry" tables). Integers
 * are little-endian and GUIDs mixed-endian (guid.ts). Every field is untrusted: a header only counts when its
 * signature, CRC, own LBA and sizes check out, and the entry array is bounded before it is read.
 */
import { VerityError } from '../errors.js';
import { at, guid, latin1, struct, u32le, u64leBig, utf16le, type StructValue } from '../binary/struct.js';
import { sliceSource } from '../io/slice.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { crc32 } from '../binary/crc32.js';
import { dpsTypeByGuid } from './dps.js';
import { classifyMbr, MBR } from './mbr.js';
import { NULL_GUID } from '../binary/guid.js';
import { printable } from '../binary/printable.js';

export type SectorSize = 512 | 4096;
const SECTOR_SIZES: readonly SectorSize[] = [512, 4096];

/** Largest entry array read: 1024 entries of 4096 bytes, or 32768 of the usual 128. */
export const MAX_ENTRY_ARRAY_BYTES = 1024 * 4096;
const MAX_ENTRY_SIZE = 4096;
const MIN_ENTRY_SIZE = 128;

/**
 * The GPT header [UEFI spec 2.10 §5.3.2, Table 5.5]. LBAs are kept as bigint: a value past 2^53 is damage, reported with
 * the value as stored. HeaderSize may exceed 92 (the rest of the sector is reserved and zero).
 */
export const GPT_HEADER = struct('GPT header', {
  signature: at(0, latin1(8)), // Signature: "EFI PART"
  revision: at(8, u32le), // Revision: 0x00010000
  headerSize: at(12, u32le), // HeaderSize: 92 up to the sector size
  headerCrc32: at(16, u32le), // HeaderCRC32: over HeaderSize bytes with this field zero
  reserved: at(20, u32le), // Reserved: zero
  myLba: at(24, u64leBig), // MyLBA
  alternateLba: at(32, u64leBig), // AlternateLBA
  firstUsableLba: at(40, u64leBig), // FirstUsableLBA
  lastUsableLba: at(48, u64leBig), // LastUsableLBA
  diskGuid: at(56, guid), // DiskGUID
  partitionEntryLba: at(72, u64leBig), // PartitionEntryLBA
  numberOfPartitionEntries: at(80, u32le), // NumberOfPartitionEntries
  sizeOfPartitionEntry: at(84, u32le), // SizeOfPartitionEntry: 128 × 2^n
  partitionEntryArrayCrc32: at(88, u32le), // PartitionEntryArrayCRC32: over count × size bytes
});
/** A GPT header as GPT_HEADER reads it, every field as stored. */
export type GptHeaderValue = StructValue<typeof GPT_HEADER.fields>;
const MIN_HEADER_SIZE = GPT_HEADER.len;
const SIGNATURE = 'EFI PART';

/** A partition entry [UEFI spec 2.10 §5.3.3, Table 5.6]; entries may be longer than 128 bytes (the rest is reserved). */
export const GPT_ENTRY = struct('GPT partition entry', {
  partitionTypeGuid: at(0, guid), // PartitionTypeGUID: all zero = unused slot
  uniquePartitionGuid: at(16, guid), // UniquePartitionGUID
  startingLba: at(32, u64leBig), // StartingLBA
  endingLba: at(40, u64leBig), // EndingLBA, inclusive
  attributes: at(48, u64leBig), // Attributes
  partitionName: at(56, utf16le(72)), // PartitionName: UTF-16LE, NUL-padded
});
/** A partition entry as GPT_ENTRY reads it, every field as stored. */
export type GptEntryValue = StructValue<typeof GPT_ENTRY.fields>;

/** The CRC-32 a header of `headerSize` bytes at `bytes[0..]` must carry: computed with its own CRC field zeroed. */
function headerCrc(bytes: Uint8Array, headerSize: number): number {
  const copy = bytes.slice(0, headerSize);
  GPT_HEADER.fields.headerCrc32.field.put(copy, GPT_HEADER.fields.headerCrc32.offset, 0);
  return crc32(copy);
}

/**
 * Recomputes the HeaderCRC32 of the header at `offset` in `disk` (after a field was changed), over its HeaderSize
 * bytes. Writers and tests use it; the reader only checks.
 */
export function sealGptHeader(disk: Uint8Array, offset: number): void {
  const header = disk.subarray(offset);
  const size = GPT_HEADER.fields.headerSize.field.get(header, GPT_HEADER.fields.headerSize.offset);
  GPT_HEADER.fields.headerCrc32.field.put(header, GPT_HEADER.fields.headerCrc32.offset, headerCrc(header, size));
}

/** A 92-byte GPT header holding `value` with its HeaderCRC32 computed (the value's own CRC field is ignored). */
export function serializeGptHeader(value: GptHeaderValue): Uint8Array {
  const out = GPT_HEADER.serialize({ ...value, headerSize: GPT_HEADER.len });
  sealGptHeader(out, 0);
  return out;
}

/** Attribute bits: UEFI's low bits, and the high bits DPS gives meaning to [dps "Partition Attribute Flags"]. */
export const GPT_ATTRIBUTE = {
  required: 1n << 0n,
  noBlockIoProtocol: 1n << 1n,
  legacyBiosBootable: 1n << 2n,
  growFileSystem: 1n << 59n,
  readOnly: 1n << 60n,
  noAuto: 1n << 63n,
} as const;

export interface GptPartition {
  /** 1-based slot in the entry array, as in /dev/sdaN and sfdisk's numbering; unused slots keep their numbers. */
  index: number;
  typeGuid: string;
  partitionGuid: string;
  firstLba: number;
  /** Inclusive. */
  lastLba: number;
  /** Byte offset and size on the disk. */
  offset: number;
  size: number;
  attributes: bigint;
  name: string;
  /** The Discoverable Partitions name of the type (`root-x86-64`, `esp`, …), or null. */
  dpsType: string | null;
}

export interface GptTable {
  sectorSize: SectorSize;
  diskGuid: string;
  /** Which header (and its entry array) the partitions come from. */
  header: 'primary' | 'backup';
  headerLba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  partitionEntryLba: number;
  entryCount: number;
  entrySize: number;
  /** `hybrid` when the MBR also lists other partitions beside the 0xEE one. */
  mbr: 'protective' | 'hybrid';
  /** Used slots only, in slot order. */
  partitions: GptPartition[];
  /** Damage that did not prevent reading: a bad backup, the primary's failure when the backup was used, … */
  warnings: string[];
}

interface Header {
  lba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  partitionEntryLba: number;
  entryCount: number;
  entrySize: number;
  entryArrayCrc: number;
}

/**
 * Why a header was not usable. `truncated` marks headers that are intact but describe more disk than there is, so
 * that a cut-short image is reported as E_TRUNCATED rather than as a malformed table.
 */
interface Rejection {
  problem: string;
  truncated?: boolean;
  /** A CRC-valid header's AlternateLBA, to find the backup of a disk that grew after partitioning. */
  alternateLba?: number;
}

type Checked<T> = { ok: true; value: T } | ({ ok: false } & Rejection);

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** A u64 field as a number, or null past 2^53 (no disk is that large, so such a value is damage). */
function safe(value: bigint): number | null {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

/** Validates the header read from `lba`; everything it returns is safe to use as an offset on `diskSize` bytes. */
function checkHeader(sector: Uint8Array, lba: number, sectorSize: number, diskSize: number): Checked<Header> {
  const h = GPT_HEADER.get(sector, 0);
  if (h.signature !== SIGNATURE) {
    return { ok: false, problem: `no "${SIGNATURE}" signature` };
  }
  const headerSize = h.headerSize;
  if (headerSize < MIN_HEADER_SIZE || headerSize > sectorSize) {
    return { ok: false, problem: `header size ${headerSize} is outside ${MIN_HEADER_SIZE}..${sectorSize}` };
  }
  const stored = h.headerCrc32;
  const computed = headerCrc(sector, headerSize);
  if (stored !== computed) {
    return { ok: false, problem: `header CRC mismatch: stored ${hex32(stored)}, computed ${hex32(computed)}` };
  }

  const alternate = safe(h.alternateLba);
  const reject = (problem: string, truncated = false): Checked<Header> => ({
    ok: false,
    problem,
    truncated,
    ...(alternate !== null ? { alternateLba: alternate } : {}),
  });
  const myLba = safe(h.myLba);
  if (myLba !== lba) {
    return reject(`MyLBA is ${h.myLba}, but the header was read from LBA ${lba}`);
  }

  const lastLba = Math.floor(diskSize / sectorSize) - 1;
  const first = safe(h.firstUsableLba);
  const last = safe(h.lastUsableLba);
  if (first === null || last === null || first > last) {
    return reject(`usable LBAs ${h.firstUsableLba}..${h.lastUsableLba} are not a range`);
  }
  if (last > lastLba) {
    return reject(
      `the last usable LBA is ${last}, but the ${diskSize}-byte disk ends at LBA ${lastLba} (${sectorSize}-byte sectors)`,
      true,
    );
  }

  const count = h.numberOfPartitionEntries;
  const size = h.sizeOfPartitionEntry;
  // 128 × 2^n [UEFI spec]; the upper bound is ours, to keep one entry within what we are willing to read.
  if (size < MIN_ENTRY_SIZE || size > MAX_ENTRY_SIZE || (size & (size - 1)) !== 0) {
    return reject(`partition entry size ${size} is not 128 × 2^n up to ${MAX_ENTRY_SIZE}`);
  }
  if (count * size > MAX_ENTRY_ARRAY_BYTES) {
    return reject(
      `${count} partition entries of ${size} bytes make ${count * size} bytes, ` +
        `above the ${MAX_ENTRY_ARRAY_BYTES}-byte limit`,
    );
  }
  const entryLba = safe(h.partitionEntryLba);
  if (entryLba === null || entryLba > lastLba || entryLba * sectorSize + count * size > diskSize) {
    return reject(
      `the partition entry array (LBA ${h.partitionEntryLba}, ${count * size} bytes) ` +
        `does not fit on the ${diskSize}-byte disk`,
      true,
    );
  }
  return {
    ok: true,
    value: {
      lba,
      alternateLba: alternate ?? Number.MAX_SAFE_INTEGER,
      firstUsableLba: first,
      lastUsableLba: last,
      diskGuid: h.diskGuid,
      partitionEntryLba: entryLba,
      entryCount: count,
      entrySize: size,
      entryArrayCrc: h.partitionEntryArrayCrc32,
    },
  };
}

interface Found {
  header: Header;
  entries: Uint8Array;
}

/** Reads and checks the header at `lba` and then its entry array. */
async function readHeaderAt(disk: ByteSource, lba: number, sectorSize: SectorSize): Promise<Checked<Found>> {
  if ((lba + 1) * sectorSize > disk.size) {
    // Not `truncated`: no header was seen, so nothing says the disk should be longer (e.g. a 4096-byte-sector probe
    // of a small 512-byte-sector disk).
    return { ok: false, problem: `LBA ${lba} is past the end of the ${disk.size}-byte disk` };
  }
  const sector = new Uint8Array(sectorSize);
  await readExactly(disk, sector, lba * sectorSize, 'GPT header');
  const checked = checkHeader(sector, lba, sectorSize, disk.size);
  if (!checked.ok) return checked;
  const header = checked.value;
  const entries = new Uint8Array(header.entryCount * header.entrySize);
  await readExactly(disk, entries, header.partitionEntryLba * sectorSize, 'GPT partition entries');
  const crc = crc32(entries);
  if (crc !== header.entryArrayCrc) {
    return {
      ok: false,
      problem: `partition entry array CRC mismatch: stored ${hex32(header.entryArrayCrc)}, computed ${hex32(crc)}`,
      alternateLba: header.alternateLba,
    };
  }
  return { ok: true, value: { header, entries } };
}

function parsePartitions(found: Found, sectorSize: SectorSize, warnings: string[]): GptPartition[] {
  const { header, entries } = found;
  const partitions: GptPartition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const entry = GPT_ENTRY.get(entries, i * header.entrySize);
    const typeGuid = entry.partitionTypeGuid;
    if (typeGuid === NULL_GUID) continue;
    const index = i + 1;
    const first = safe(entry.startingLba);
    const last = safe(entry.endingLba);
    if (first === null || last === null || first > last || last > header.lastUsableLba || first < header.firstUsableLba) {
      // The entry array's CRC held, so this is how the table was written, not damage in transit: a partition
      // outside the usable area cannot be read safely, and sizes from it would be meaningless.
      throw new VerityError(
        'E_BAD_IMAGE',
        `GPT partition ${index} spans LBAs ${entry.startingLba}..${entry.endingLba}, outside the usable LBAs ` +
          `${header.firstUsableLba}..${header.lastUsableLba}.`,
      );
    }
    const dps = dpsTypeByGuid(typeGuid);
    partitions.push({
      index,
      typeGuid,
      partitionGuid: entry.uniquePartitionGuid,
      firstLba: first,
      lastLba: last,
      offset: first * sectorSize,
      size: (last - first + 1) * sectorSize,
      attributes: entry.attributes,
      name: entry.partitionName,
      dpsType: dps ? dps.name : null,
    });
  }
  const sorted = [...partitions].sort((a, b) => a.firstLba - b.firstLba);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (b.firstLba <= a.lastLba) warnings.push(`GPT partitions ${a.index} and ${b.index} overlap.`);
  }
  return partitions;
}

/** Reads LBA 0 and classifies its MBR; null when it is not protective (no 0xEE record, or no 55 AA). */
async function readMbr(disk: ByteSource): Promise<'protective' | 'hybrid' | null> {
  const sector = new Uint8Array(MBR.len);
  await readExactly(disk, sector, 0, 'MBR');
  return classifyMbr(sector);
}

/**
 * Finds a usable header for one sector size: the primary at LBA 1, else the backup at the last LBA or where a
 * CRC-valid primary's AlternateLBA says it is (a disk grown after partitioning keeps its backup there).
 */
async function findHeader(
  disk: ByteSource,
  sectorSize: SectorSize,
): Promise<{ found: Found; which: 'primary' | 'backup'; warnings: string[] } | { failures: string[]; truncated: boolean }> {
  const lastLba = Math.floor(disk.size / sectorSize) - 1;
  const primary = await readHeaderAt(disk, 1, sectorSize);
  if (primary.ok && disk.sequential) {
    // The backup is at the end: on a stream, checking it costs a whole extra pass over the disk.
    return {
      found: primary.value,
      which: 'primary',
      warnings: ['The backup GPT was not checked: the disk is read front to back (a compressed entry or a pipe).'],
    };
  }
  const backupLbas = [lastLba];
  const hinted = primary.ok ? primary.value.header.alternateLba : primary.alternateLba;
  if (hinted !== undefined && hinted !== lastLba && hinted > 1 && hinted <= lastLba) backupLbas.push(hinted);

  const backupFailures: string[] = [];
  let backup: { found: Found; lba: number } | null = null;
  let backupTruncated = false;
  for (const lba of backupLbas) {
    const r = await readHeaderAt(disk, lba, sectorSize);
    if (r.ok) {
      backup = { found: r.value, lba };
      break;
    }
    backupFailures.push(`backup header at LBA ${lba}: ${r.problem}`);
    backupTruncated ||= r.truncated === true;
  }

  if (primary.ok) {
    const warnings: string[] = [];
    if (!backup) warnings.push(`The backup GPT is not usable (${backupFailures.join('; ')}); the primary was used.`);
    else if (backup.found.header.entryArrayCrc !== primary.value.header.entryArrayCrc) {
      warnings.push(`The backup GPT at LBA ${backup.lba} lists other partitions than the primary; the primary was used.`);
    }
    return { found: primary.value, which: 'primary', warnings };
  }
  const primaryFailure = `primary header at LBA 1: ${primary.problem}`;
  if (backup) {
    return {
      found: backup.found,
      which: 'backup',
      warnings: [`The primary GPT is damaged (${primaryFailure}); the backup at LBA ${backup.lba} was used.`],
    };
  }
  return { failures: [primaryFailure, ...backupFailures], truncated: primary.truncated === true || backupTruncated };
}

/**
 * Reads the GPT of `disk`. With no `sectorSize`, 512 and then 4096 are tried: the header's MyLBA field only matches
 * at the right one, so at most one can succeed on a real disk.
 */
export async function readGpt(disk: ByteSource, sectorSize?: SectorSize): Promise<GptTable> {
  if (sectorSize !== undefined && !SECTOR_SIZES.includes(sectorSize)) {
    throw new VerityError('E_PARAM', `Invalid sector size ${String(sectorSize)}: expected 512 or 4096.`);
  }
  if (disk.size < 1024) {
    throw new VerityError('E_TRUNCATED', `Disk of ${disk.size} bytes is too small to hold a GPT (an MBR and a header).`);
  }
  const mbr = await readMbr(disk);
  if (mbr === null) {
    throw new VerityError(
      'E_BAD_IMAGE',
      'Not a GPT disk: LBA 0 holds no protective MBR (a record of type 0xEE and the 55 AA signature).',
    );
  }

  const failures: string[] = [];
  let truncated = false;
  for (const size of sectorSize !== undefined ? [sectorSize] : SECTOR_SIZES) {
    const r = await findHeader(disk, size);
    if ('failures' in r) {
      failures.push(`${size}-byte sectors: ${r.failures.join('; ')}`);
      truncated ||= r.truncated;
      continue;
    }
    const { header } = r.found;
    const warnings = [...r.warnings];
    const partitions = parsePartitions(r.found, size, warnings);
    return {
      sectorSize: size,
      diskGuid: header.diskGuid,
      header: r.which,
      headerLba: header.lba,
      alternateLba: header.alternateLba,
      firstUsableLba: header.firstUsableLba,
      lastUsableLba: header.lastUsableLba,
      partitionEntryLba: header.partitionEntryLba,
      entryCount: header.entryCount,
      entrySize: header.entrySize,
      mbr,
      partitions,
      warnings,
    };
  }
  throw new VerityError(
    truncated ? 'E_TRUNCATED' : 'E_BAD_IMAGE',
    `No valid GPT on the ${disk.size}-byte disk: ${failures.join('. ')}.`,
  );
}

/** One line per partition, for messages: `#2 "root-x86-64-verity" type root-x86-64-verity, uuid …, LBA 83968..100351`. */
export function describePartition(p: GptPartition): string {
  const type = p.dpsType ?? p.typeGuid;
  return `#${p.index} "${printable(p.name)}" type ${type}, uuid ${p.partitionGuid}, LBA ${p.firstLba}..${p.lastLba} (${p.size} bytes)`;
}

function listing(table: GptTable): string {
  return table.partitions.length === 0
    ? ' The table has no partitions.'
    : `\nPartitions:\n${table.partitions.map((p) => `  ${describePartition(p)}`).join('\n')}`;
}

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The one partition `selector` names: a 1-based index (a number, or a string of digits), a partition GUID, a GPT
 * partition name, or a DPS type name (`root-x86-64`). Every reading of the selector is tried; E_PARAM, listing the
 * partitions, when none or more than one partition matches.
 */
export function selectPartition(table: GptTable, selector: number | string): GptPartition {
  const matches = new Set<GptPartition>();
  const text = String(selector);
  for (const p of table.partitions) {
    if (typeof selector === 'number' || /^[1-9][0-9]*$/.test(text)) {
      if (p.index === Number(text)) matches.add(p);
    }
    if (typeof selector === 'string') {
      if (UUID_TEXT.test(text) && p.partitionGuid === text.toLowerCase()) matches.add(p);
      if (p.name === text) matches.add(p);
      if (p.dpsType !== null && p.dpsType === text) matches.add(p);
    }
  }
  if (matches.size === 1) return [...matches][0]!;
  if (matches.size === 0) {
    throw new VerityError(
      'E_PARAM',
      `No partition matches "${text}" (an index, partition GUID, name or DPS type such as root-x86-64).${listing(table)}`,
    );
  }
  throw new VerityError(
    'E_PARAM',
    `"${text}" matches ${matches.size} partitions (${[...matches].map((p) => `#${p.index}`).join(', ')}); ` +
      `select one by index or partition GUID.${listing(table)}`,
  );
}

/** The bytes of `partition` on `disk`; E_TRUNCATED when the disk ends before the partition does. */
export function partitionSource(disk: ByteSource, partition: GptPartition): ByteSource {
  if (partition.offset + partition.size > disk.size) {
    throw new VerityError(
      'E_TRUNCATED',
      `Partition ${describePartition(partition)} ends at byte ${partition.offset + partition.size}, ` +
        `past the end of the ${disk.size}-byte disk.`,
    );
  }
  return sliceSource(disk, partition.offset, partition.size);
}
