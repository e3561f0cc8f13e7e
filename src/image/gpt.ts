/**
 * GUID partition tables: the protective MBR, the primary header at LBA 1 with its backup at the disk's last LBA, the
 * partition entry array, and the partitions found in it, named by their Discoverable Partitions type.
 *
 * Layout and checks follow the UEFI spec 2.10 §5.3 ("GPT Header" and "GPT Partition Entry" tables). Integers
 * are little-endian and GUIDs mixed-endian (guid.ts). Every field is untrusted: a header only counts when its
 * signature, CRC, own LBA and sizes check out, and the entry array is bounded before it is read.
 */
import { VerityError } from '../errors.js';
import { viewOf } from '../binary/bytes.js';
import { sliceSource } from '../io/slice.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { crc32 } from '../binary/crc32.js';
import { dpsTypeByGuid } from './dps.js';
import { formatGuid, NULL_GUID } from '../binary/guid.js';
import { printable } from '../binary/printable.js';

export type SectorSize = 512 | 4096;
const SECTOR_SIZES: readonly SectorSize[] = [512, 4096];

/** Largest entry array read: 1024 entries of 4096 bytes, or 32768 of the usual 128. */
export const MAX_ENTRY_ARRAY_BYTES = 1024 * 4096;
const MAX_ENTRY_SIZE = 4096;
const MIN_ENTRY_SIZE = 128;

/** Protective MBR [UEFI spec 2.10 §5.2.3 "Protective MBR"]: four 16-byte records from byte 446. */
const MBR = {
  records: 446,
  recordSize: 16,
  recordType: 4, // u8 within a record; 0xEE marks the GPT
  signature: 510, // 0x55 0xAA
} as const;
const GPT_PROTECTIVE_TYPE = 0xee;

/** GPT header fields [UEFI spec 2.10 §5.3.2 "GPT Header"]. */
const HEADER = {
  signature: 0, // 8 bytes "EFI PART"
  revision: 8, // u32, 0x00010000
  headerSize: 12, // u32, 92
  headerCrc32: 16, // u32, CRC-32 of headerSize bytes with this field zero
  myLba: 24, // u64
  alternateLba: 32, // u64
  firstUsableLba: 40, // u64
  lastUsableLba: 48, // u64
  diskGuid: 56, // 16 bytes
  partitionEntryLba: 72, // u64
  numberOfPartitionEntries: 80, // u32
  sizeOfPartitionEntry: 84, // u32, 128 × 2^n
  partitionEntryArrayCrc32: 88, // u32, CRC-32 of count × size bytes
} as const;
const MIN_HEADER_SIZE = 92;
const SIGNATURE = 'EFI PART';

/** Partition entry fields [UEFI spec 2.10 §5.3.3 "GPT Partition Entry Array"]. */
const ENTRY = {
  typeGuid: 0, // 16 bytes; all zero = unused
  partitionGuid: 16, // 16 bytes
  startingLba: 32, // u64
  endingLba: 40, // u64, inclusive
  attributes: 48, // u64
  name: 56, // 72 bytes, UTF-16LE, NUL-padded
} as const;
const NAME_BYTES = 72;

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
function u64(view: DataView, offset: number): number | null {
  const value = view.getBigUint64(offset, true);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

function utf16le(bytes: Uint8Array): string {
  const v = viewOf(bytes);
  let out = '';
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const unit = v.getUint16(i, true);
    if (unit === 0) break;
    out += String.fromCharCode(unit);
  }
  return out;
}

/** Validates the header read from `lba`; everything it returns is safe to use as an offset on `diskSize` bytes. */
function checkHeader(sector: Uint8Array, lba: number, sectorSize: number, diskSize: number): Checked<Header> {
  const v = viewOf(sector);
  if (String.fromCharCode(...sector.subarray(0, 8)) !== SIGNATURE) {
    return { ok: false, problem: `no "${SIGNATURE}" signature` };
  }
  const headerSize = v.getUint32(HEADER.headerSize, true);
  if (headerSize < MIN_HEADER_SIZE || headerSize > sectorSize) {
    return { ok: false, problem: `header size ${headerSize} is outside ${MIN_HEADER_SIZE}..${sectorSize}` };
  }
  const stored = v.getUint32(HEADER.headerCrc32, true);
  const copy = sector.slice(0, headerSize);
  viewOf(copy).setUint32(HEADER.headerCrc32, 0, true);
  const computed = crc32(copy);
  if (stored !== computed) {
    return { ok: false, problem: `header CRC mismatch: stored ${hex32(stored)}, computed ${hex32(computed)}` };
  }

  const alternate = u64(v, HEADER.alternateLba);
  const reject = (problem: string, truncated = false): Checked<Header> => ({
    ok: false,
    problem,
    truncated,
    ...(alternate !== null ? { alternateLba: alternate } : {}),
  });
  const myLba = u64(v, HEADER.myLba);
  if (myLba !== lba) {
    return reject(`MyLBA is ${v.getBigUint64(HEADER.myLba, true)}, but the header was read from LBA ${lba}`);
  }

  const lastLba = Math.floor(diskSize / sectorSize) - 1;
  const first = u64(v, HEADER.firstUsableLba);
  const last = u64(v, HEADER.lastUsableLba);
  if (first === null || last === null || first > last) {
    const range = `${v.getBigUint64(HEADER.firstUsableLba, true)}..${v.getBigUint64(HEADER.lastUsableLba, true)}`;
    return reject(`usable LBAs ${range} are not a range`);
  }
  if (last > lastLba) {
    return reject(
      `the last usable LBA is ${last}, but the ${diskSize}-byte disk ends at LBA ${lastLba} (${sectorSize}-byte sectors)`,
      true,
    );
  }

  const count = v.getUint32(HEADER.numberOfPartitionEntries, true);
  const size = v.getUint32(HEADER.sizeOfPartitionEntry, true);
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
  const entryLba = u64(v, HEADER.partitionEntryLba);
  if (entryLba === null || entryLba > lastLba || entryLba * sectorSize + count * size > diskSize) {
    return reject(
      `the partition entry array (LBA ${v.getBigUint64(HEADER.partitionEntryLba, true)}, ${count * size} bytes) ` +
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
      diskGuid: formatGuid(sector, HEADER.diskGuid),
      partitionEntryLba: entryLba,
      entryCount: count,
      entrySize: size,
      entryArrayCrc: v.getUint32(HEADER.partitionEntryArrayCrc32, true),
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
  const v = viewOf(entries);
  const partitions: GptPartition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const at = i * header.entrySize;
    const typeGuid = formatGuid(entries, at + ENTRY.typeGuid);
    if (typeGuid === NULL_GUID) continue;
    const index = i + 1;
    const first = u64(v, at + ENTRY.startingLba);
    const last = u64(v, at + ENTRY.endingLba);
    if (first === null || last === null || first > last || last > header.lastUsableLba || first < header.firstUsableLba) {
      // The entry array's CRC held, so this is how the table was written, not damage in transit: a partition
      // outside the usable area cannot be read safely, and sizes from it would be meaningless.
      throw new VerityError(
        'E_BAD_IMAGE',
        `GPT partition ${index} spans LBAs ${v.getBigUint64(at + ENTRY.startingLba, true)}..` +
          `${v.getBigUint64(at + ENTRY.endingLba, true)}, outside the usable LBAs ` +
          `${header.firstUsableLba}..${header.lastUsableLba}.`,
      );
    }
    const dps = dpsTypeByGuid(typeGuid);
    partitions.push({
      index,
      typeGuid,
      partitionGuid: formatGuid(entries, at + ENTRY.partitionGuid),
      firstLba: first,
      lastLba: last,
      offset: first * sectorSize,
      size: (last - first + 1) * sectorSize,
      attributes: v.getBigUint64(at + ENTRY.attributes, true),
      name: utf16le(entries.subarray(at + ENTRY.name, at + ENTRY.name + NAME_BYTES)),
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
  const mbr = new Uint8Array(512);
  await readExactly(disk, mbr, 0, 'MBR');
  if (mbr[MBR.signature] !== 0x55 || mbr[MBR.signature + 1] !== 0xaa) return null;
  const types = [0, 1, 2, 3].map((i) => mbr[MBR.records + i * MBR.recordSize + MBR.recordType]!);
  // The 0xEE record may sit in any slot: the kernel's is_pmbr_valid() accepts each of the four.
  if (!types.includes(GPT_PROTECTIVE_TYPE)) return null;
  return types.every((t) => t === 0 || t === GPT_PROTECTIVE_TYPE) ? 'protective' : 'hybrid';
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
