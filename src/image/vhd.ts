/**
 * Legacy VHD ("conectix", Virtual PC / Hyper-V generation 1) images, read as the virtual disk they hold.
 *
 * Layout (Microsoft Virtual Hard Disk Image Format Specification 1.0, "Hard Disk Footer Format" and "Dynamic Disk
 * Header Format"): a fixed image is the raw disk followed by a 512-byte footer; a dynamic one is a footer copy at
 * offset 0, a 1 KiB dynamic header, a block allocation table (BAT) and blocks, each a sector bitmap followed by the
 * block's data, then the footer again at the end. Every integer is big-endian. Differencing images need their parent
 * and are refused.
 *
 * Every value read from the file is untrusted: offsets and sizes are checked against the file size before they are
 * used, nothing is allocated from a claimed size before that check, and 64-bit offsets stay exact (no 32-bit bitwise
 * arithmetic on them).
 */
import { VerityError } from '../errors.js';
import { isPowerOfTwo, viewOf } from '../binary/bytes.js';
import { array, at, latin1, struct, u16be, u32be, u64beBig, u8, utf16be, uuid, type StructValue } from '../binary/struct.js';
import { sliceSource } from '../io/slice.js';
import { readExactly, spansOf, type ByteRange, type ByteSource } from '../io/source.js';

/** Bytes of the hard disk footer. */
export const VHD_FOOTER_SIZE = 512;
/** Bytes of the dynamic disk header. */
export const VHD_DYNAMIC_HEADER_SIZE = 1024;
const SECTOR = 512;

/** Above this many BAT entries (64 MiB of table) we refuse rather than allocate; 2 TiB in 2 MiB blocks is 1 Mi. */
const MAX_BAT_ENTRIES = 1 << 24;
const UNALLOCATED = 0xffffffff;

/**
 * The hard disk footer [VHD spec "Hard Disk Footer Format"]: 512 bytes, big-endian, at the end of every image and
 * copied at offset 0 of dynamic and differencing ones. Sizes are kept as bigint and checked where they are used.
 */
export const VHD_FOOTER = struct(
  'VHD footer',
  {
    cookie: at(0, latin1(8)), // Cookie: "conectix"
    features: at(8, u32be), // Features: bit 1 (reserved) is always set
    formatVersion: at(12, u32be), // File Format Version: 0x00010000
    dataOffset: at(16, u64beBig), // Data Offset: the dynamic header; all ones for fixed images
    timestamp: at(24, u32be), // Time Stamp: seconds since 2000-01-01 00:00:00 UTC
    creatorApp: at(28, latin1(4)), // Creator Application: "vpc ", "win ", "qem2", "d2v\0", …
    creatorVersion: at(32, u32be), // Creator Version: major << 16 | minor
    creatorHostOs: at(36, latin1(4)), // Creator Host OS: "Wi2k", "Mac "
    originalSize: at(40, u64beBig), // Original Size
    currentSize: at(48, u64beBig), // Current Size
    cylinders: at(56, u16be), // Disk Geometry: cylinders
    heads: at(58, u8), // Disk Geometry: heads
    sectorsPerTrack: at(59, u8), // Disk Geometry: sectors per track
    diskType: at(60, u32be), // Disk Type: 2 fixed, 3 dynamic, 4 differencing
    checksum: at(64, u32be), // Checksum
    uniqueId: at(68, uuid), // Unique Id
    savedState: at(84, u8), // Saved State
  },
  { size: VHD_FOOTER_SIZE },
);
/** A footer as VHD_FOOTER reads it, every field as stored. */
export type VhdFooterValue = StructValue<typeof VHD_FOOTER.fields>;

/** A parent locator entry [VHD spec "Dynamic Disk Header Format", Parent Locator Entries]. */
export const VHD_PARENT_LOCATOR = struct('VHD parent locator', {
  platformCode: at(0, latin1(4)), // Platform Code: "W2ru", "W2ku", …
  platformDataSpace: at(4, u32be), // Platform Data Space (sectors)
  platformDataLength: at(8, u32be), // Platform Data Length (bytes)
  reserved: at(12, u32be), // Reserved
  platformDataOffset: at(16, u64beBig), // Platform Data Offset
});

/** The dynamic disk header [VHD spec "Dynamic Disk Header Format"]: 1024 bytes, big-endian. */
export const VHD_DYNAMIC_HEADER = struct(
  'VHD dynamic header',
  {
    cookie: at(0, latin1(8)), // Cookie: "cxsparse"
    dataOffset: at(8, u64beBig), // Data Offset: unused, all ones
    tableOffset: at(16, u64beBig), // Table Offset: file offset of the BAT
    headerVersion: at(24, u32be), // Header Version: 0x00010000
    maxTableEntries: at(28, u32be), // Max Table Entries
    blockSize: at(32, u32be), // Block Size: data bytes per block (2 MiB by default)
    checksum: at(36, u32be), // Checksum
    parentUniqueId: at(40, uuid), // Parent Unique ID
    parentTimestamp: at(56, u32be), // Parent Time Stamp
    reserved: at(60, u32be), // Reserved
    parentUnicodeName: at(64, utf16be(512)), // Parent Unicode Name: UTF-16BE, NUL-padded
    parentLocators: at(576, array(VHD_PARENT_LOCATOR, 8)), // Parent Locator Entries
  },
  { size: VHD_DYNAMIC_HEADER_SIZE },
);
/** A dynamic header as VHD_DYNAMIC_HEADER reads it, every field as stored. */
export type VhdDynamicHeaderValue = StructValue<typeof VHD_DYNAMIC_HEADER.fields>;

const FOOTER_COOKIE = 'conectix';
const DYNAMIC_COOKIE = 'cxsparse';
const DISK_TYPES = { 2: 'fixed', 3: 'dynamic', 4: 'differencing' } as const;
/** VHD timestamps count from 2000-01-01T00:00:00Z. */
const EPOCH_2000_MS = Date.UTC(2000, 0, 1);

export type VhdDiskType = (typeof DISK_TYPES)[keyof typeof DISK_TYPES];

export interface VhdInfo {
  /** Differencing images are refused by openVhd, so an opened image is one of these two. */
  type: Exclude<VhdDiskType, 'differencing'>;
  /** Bytes of the virtual disk: the footer's current size, as qemu block/vpc.c does (docs/disk-image-formats.md). */
  currentSize: number;
  originalSize: number;
  /**
   * The CHS geometry. qemu sizes `vpc ` and `qemu` images from it instead of `currentSize` (qemu block/vpc.c); the
   * CHS size is usually smaller, so reading by it would cut the disk's end, where the backup GPT lives.
   */
  geometry: { cylinders: number; heads: number; sectorsPerTrack: number };
  /** cylinders × heads × sectors × 512. */
  chsSize: number;
  /** The creator application, trailing NULs and spaces removed: `vpc`, `win`, `qem2`, `d2v`. */
  creatorApp: string;
  creatorVersion: { major: number; minor: number };
  creatorHostOs: string;
  created: Date;
  /**
   * The footer's unique id, its bytes printed in order (the VHD spec stores every field big-endian). Hyper-V appears to store
   * it as a mixed-endian GUID (its sample's version nibble is in byte 7), so compare ids as bytes, not as GUIDs.
   */
  uniqueId: string;
  /** Data bytes per block; null for fixed images. */
  blockSize: number | null;
  /** Blocks that cover the disk, and how many of them the BAT allocates (both 0 for fixed images). */
  blocks: number;
  allocatedBlocks: number;
  /** Which footer was used: the one at the end of the file, or the copy at offset 0 when that one is damaged. */
  footer: 'end' | 'start';
  /** Damage found that did not prevent reading, e.g. a bad footer copy. */
  warnings: string[];
}

/** The virtual disk: reads return its bytes, with unallocated blocks reading as zeros. */
export interface VhdImage extends ByteSource {
  readonly info: VhdInfo;
}

interface Footer {
  formatVersion: number;
  dataOffset: bigint;
  timestamp: number;
  creatorApp: string;
  creatorVersion: number;
  creatorHostOs: string;
  originalSize: number;
  currentSize: number;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskTypeCode: number;
  uniqueId: string;
}

interface DynamicHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  parentUniqueId: string;
  parentName: string;
}

/** A structure that parsed, or why it did not; damage is a value here because a damaged footer has a fallback. */
type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * The VHD checksum: the one's complement of the byte sum of the structure, taken with its checksum field as zero
 * [VHD spec "Checksum"]. Skipping the field's four bytes is the same as zeroing them.
 */
function vhdChecksum(bytes: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i < checksumOffset || i >= checksumOffset + 4) sum += bytes[i]!;
  }
  return ~sum >>> 0;
}

/** A u64 that must fit a JavaScript number exactly, or null. */
function safeU64(value: bigint): number | null {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

/**
 * `bytes` (one whole structure) with its checksum field at `offset` set to the value the specification requires.
 * Writers use it; the reader only checks.
 */
export function sealVhdChecksum(bytes: Uint8Array, offset: number): Uint8Array {
  u32be.put(bytes, offset, vhdChecksum(bytes, offset));
  return bytes;
}

function checkChecksum(bytes: Uint8Array, offset: number, stored: number, what: string): string | null {
  const computed = vhdChecksum(bytes, offset);
  return stored === computed ? null : `${what} checksum mismatch: stored 0x${hex32(stored)}, computed 0x${hex32(computed)}`;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/**
 * Parses a footer. Damage (wrong cookie or checksum, a size past 2^53) is returned as a problem so the caller can try
 * the other copy; whether a well-formed footer describes something we read is decided once one has been chosen.
 */
function parseFooter(bytes: Uint8Array): Parsed<Footer> {
  const f = VHD_FOOTER.get(bytes, 0);
  if (f.cookie !== FOOTER_COOKIE) {
    return { ok: false, problem: `no "${FOOTER_COOKIE}" cookie` };
  }
  const bad = checkChecksum(bytes.subarray(0, VHD_FOOTER.len), VHD_FOOTER.fields.checksum.offset, f.checksum, 'footer');
  if (bad) return { ok: false, problem: bad };
  const currentSize = safeU64(f.currentSize);
  if (currentSize === null) return { ok: false, problem: `current size ${f.currentSize} is too large` };
  return {
    ok: true,
    value: {
      formatVersion: f.formatVersion,
      dataOffset: f.dataOffset,
      timestamp: f.timestamp,
      creatorApp: f.creatorApp.replace(/[\0 ]+$/, ''),
      creatorVersion: f.creatorVersion,
      creatorHostOs: f.creatorHostOs.replace(/[\0 ]+$/, ''),
      // Informational only; an absurd value is reported as it is rather than refused.
      originalSize: Number(f.originalSize),
      currentSize,
      cylinders: f.cylinders,
      heads: f.heads,
      sectorsPerTrack: f.sectorsPerTrack,
      diskTypeCode: f.diskType,
      uniqueId: f.uniqueId,
    },
  };
}

/** The disk type of a footer we can read, or E_UNSUPPORTED. */
function diskTypeOf(footer: Footer): VhdDiskType {
  const version = footer.formatVersion;
  if (version >>> 16 !== 1) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `Unsupported VHD format version ${version >>> 16}.${version & 0xffff}; only 1.x is read.`,
    );
  }
  const type = DISK_TYPES[footer.diskTypeCode as keyof typeof DISK_TYPES];
  if (!type) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `Unsupported VHD disk type ${footer.diskTypeCode} (2 fixed, 3 dynamic, 4 differencing).`,
    );
  }
  return type;
}

/** Only dynamic and differencing images keep a footer copy at offset 0; a fixed one starts with the disk's data. */
function hasCopy(footer: Footer): boolean {
  return footer.diskTypeCode === 3 || footer.diskTypeCode === 4;
}

function parseDynamicHeader(bytes: Uint8Array, offset: number): DynamicHeader {
  const h = VHD_DYNAMIC_HEADER.get(bytes, 0);
  const where = `VHD dynamic header at offset ${offset}`;
  if (h.cookie !== DYNAMIC_COOKIE) {
    throw new VerityError('E_BAD_IMAGE', `${where}: no "${DYNAMIC_COOKIE}" cookie.`);
  }
  const bad = checkChecksum(bytes.subarray(0, VHD_DYNAMIC_HEADER.len), VHD_DYNAMIC_HEADER.fields.checksum.offset, h.checksum, 'dynamic header');
  if (bad) throw new VerityError('E_BAD_IMAGE', `${where}: ${bad}.`);
  const version = h.headerVersion;
  if (version >>> 16 !== 1) {
    throw new VerityError('E_UNSUPPORTED', `${where}: unsupported header version ${version >>> 16}.${version & 0xffff}.`);
  }
  const tableOffset = safeU64(h.tableOffset);
  if (tableOffset === null) {
    throw new VerityError('E_BAD_IMAGE', `${where}: BAT offset ${h.tableOffset} is out of range.`);
  }
  const blockSize = h.blockSize;
  // qemu (block/vpc.c vpc_open) has the same rule: the block must be whole sectors and a power of two.
  if (!isPowerOfTwo(blockSize) || blockSize < SECTOR) {
    throw new VerityError('E_BAD_IMAGE', `${where}: block size ${blockSize} is not a power of two of at least 512 bytes.`);
  }
  return {
    tableOffset,
    maxTableEntries: h.maxTableEntries,
    blockSize,
    parentUniqueId: h.parentUniqueId,
    parentName: h.parentUnicodeName,
  };
}

/** Reads the footer at the end, falling back to the copy at offset 0 that dynamic images keep for that purpose. */
async function readFooter(
  file: ByteSource,
): Promise<{ footer: Footer; type: VhdDiskType; at: 'end' | 'start'; warnings: string[] }> {
  if (file.size < VHD_FOOTER_SIZE) {
    throw new VerityError(
      'E_BAD_IMAGE',
      `Not a VHD image: ${file.size} bytes is shorter than the ${VHD_FOOTER_SIZE}-byte footer.`,
    );
  }
  const endOffset = file.size - VHD_FOOTER_SIZE;
  const end = new Uint8Array(VHD_FOOTER_SIZE);
  await readExactly(file, end, endOffset, 'VHD footer');
  const atEnd = parseFooter(end);

  // The copy exists only in dynamic and differencing images; a fixed image starts with the disk's own first sector.
  let start: Parsed<Footer> = { ok: false, problem: 'the file is a single footer' };
  if (endOffset > 0) {
    const copy = new Uint8Array(VHD_FOOTER_SIZE);
    await readExactly(file, copy, 0, 'VHD footer copy');
    start = parseFooter(copy);
  }

  if (atEnd.ok) {
    const type = diskTypeOf(atEnd.value);
    const warnings: string[] = [];
    if (hasCopy(atEnd.value)) {
      const [copy, used] = [start, atEnd.value];
      if (!copy.ok) warnings.push(`The footer copy at offset 0 is damaged (${copy.problem}); the footer at the end was used.`);
      else if (copy.value.currentSize !== used.currentSize || copy.value.diskTypeCode !== used.diskTypeCode) {
        warnings.push('The footer copy at offset 0 differs from the footer at the end; the footer at the end was used.');
      }
    }
    return { footer: atEnd.value, type, at: 'end', warnings };
  }
  if (start.ok && hasCopy(start.value)) {
    return {
      footer: start.value,
      type: diskTypeOf(start.value),
      at: 'start',
      warnings: [`The footer at offset ${endOffset} is damaged (${atEnd.problem}); its copy at offset 0 was used.`],
    };
  }
  const noCopy = start.ok ? `a footer of disk type ${start.value.diskTypeCode}, which keeps no copy there` : start.problem;
  throw new VerityError(
    'E_BAD_IMAGE',
    `Not a readable VHD image: the footer at offset ${endOffset} has ${atEnd.problem}, and offset 0 holds no ` +
      `usable copy (${noCopy}).`,
  );
}

/** Bytes of a block's sector bitmap: one bit per sector, padded to whole sectors [VHD spec "Block Format"]. */
function bitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

/** Opens a VHD image as its virtual disk. */
export async function openVhd(file: ByteSource): Promise<VhdImage> {
  const { footer, type, at, warnings } = await readFooter(file);
  const base = {
    currentSize: footer.currentSize,
    originalSize: footer.originalSize,
    geometry: { cylinders: footer.cylinders, heads: footer.heads, sectorsPerTrack: footer.sectorsPerTrack },
    chsSize: footer.cylinders * footer.heads * footer.sectorsPerTrack * SECTOR,
    creatorApp: footer.creatorApp,
    creatorVersion: { major: footer.creatorVersion >>> 16, minor: footer.creatorVersion & 0xffff },
    creatorHostOs: footer.creatorHostOs,
    created: new Date(EPOCH_2000_MS + footer.timestamp * 1000),
    uniqueId: footer.uniqueId,
    footer: at,
    warnings,
  };

  if (type === 'fixed') {
    const dataBytes = file.size - VHD_FOOTER_SIZE;
    if (footer.currentSize > dataBytes) {
      throw new VerityError(
        'E_TRUNCATED',
        `Fixed VHD of ${footer.currentSize} bytes, but the file holds only ${dataBytes} bytes before its footer.`,
      );
    }
    const data = sliceSource(file, 0, footer.currentSize);
    const info: VhdInfo = { ...base, type: 'fixed', blockSize: null, blocks: 0, allocatedBlocks: 0 };
    return {
      size: data.size,
      read: (dst, position) => data.read(dst, position),
      ...(data.fileSpans && { fileSpans: (offset: number, length: number) => data.fileSpans!(offset, length) }),
      info,
    };
  }

  // Blocks must end before the footer at the end, unless that footer is the damaged one: then the file may have lost
  // its tail (a truncated copy), and whatever block data is still there can be read.
  const dataLimit = at === 'end' ? file.size - VHD_FOOTER_SIZE : file.size;
  const headerOffset = footer.dataOffset;
  if (headerOffset > BigInt(dataLimit - VHD_DYNAMIC_HEADER_SIZE)) {
    throw new VerityError(
      'E_BAD_IMAGE',
      `VHD dynamic header offset ${headerOffset} is outside the ${file.size}-byte file.`,
    );
  }
  const headerBytes = new Uint8Array(VHD_DYNAMIC_HEADER_SIZE);
  await readExactly(file, headerBytes, Number(headerOffset), 'VHD dynamic header');
  const header = parseDynamicHeader(headerBytes, Number(headerOffset));

  if (type === 'differencing') {
    throw new VerityError(
      'E_UNSUPPORTED',
      `Differencing VHD: its unwritten sectors come from the parent image "${header.parentName}" ` +
        `(parent id ${header.parentUniqueId}), which is not read; convert it to a standalone image first ` +
        `(e.g. qemu-img convert -O raw).`,
    );
  }

  const { blockSize } = header;
  const blocks = Math.ceil(footer.currentSize / blockSize);
  if (header.maxTableEntries < blocks) {
    throw new VerityError(
      'E_BAD_IMAGE',
      `VHD block table has ${header.maxTableEntries} entries, but ${footer.currentSize} bytes in ` +
        `${blockSize}-byte blocks need ${blocks}.`,
    );
  }
  if (blocks > MAX_BAT_ENTRIES) {
    throw new VerityError('E_UNSUPPORTED', `VHD of ${blocks} blocks: more than the ${MAX_BAT_ENTRIES} this reader accepts.`);
  }
  // Only the entries that cover the disk are read; the table may be longer (MaxTableEntries is a capacity).
  if (header.tableOffset + blocks * 4 > file.size) {
    throw new VerityError(
      'E_TRUNCATED',
      `VHD block table (${blocks} entries at offset ${header.tableOffset}) runs past the end of the ${file.size}-byte file.`,
    );
  }
  const batBytes = new Uint8Array(blocks * 4);
  await readExactly(file, batBytes, header.tableOffset, 'VHD block table');
  const batView = viewOf(batBytes);
  const bitmap = bitmapBytes(blockSize);
  /** File offset of each block's data (after its bitmap), or -1 when the block is unallocated. */
  const dataOffsets = new Float64Array(blocks);
  let allocatedBlocks = 0;
  for (let i = 0; i < blocks; i++) {
    const sector = batView.getUint32(i * 4);
    if (sector === UNALLOCATED) {
      dataOffsets[i] = -1;
      continue;
    }
    allocatedBlocks++;
    // Exact up to 2^41 + 2^31: every product here is far below 2^53.
    const start = sector * SECTOR + bitmap;
    const end = start + Math.min(blockSize, footer.currentSize - i * blockSize);
    if (end > dataLimit) {
      throw new VerityError(
        end > file.size ? 'E_TRUNCATED' : 'E_BAD_IMAGE',
        `VHD block ${i} (BAT entry sector ${sector}) holds data at file offsets ${start}..${end}, past the ` +
          `${end > file.size ? 'end of the' : 'footer of the'} ${file.size}-byte file.`,
      );
    }
    dataOffsets[i] = start;
  }

  const size = footer.currentSize;
  const info: VhdInfo = { ...base, type: 'dynamic', blockSize, blocks, allocatedBlocks };
  return {
    size,
    info,
    // An unallocated block (BAT entry 0xFFFFFFFF) reads as zeros [VHD spec "Block Allocation Table"], as `read`
    // returns it: a pass can take it as zeros without reading.
    knownZero(offset, length) {
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) return [];
      const end = Math.min(size, offset + length);
      const out: ByteRange[] = [];
      for (let block = Math.floor(offset / blockSize); block * blockSize < end; block++) {
        if (dataOffsets[block]! >= 0) continue;
        const at = Math.max(offset, block * blockSize);
        const until = Math.min(end, (block + 1) * blockSize);
        const last = out.at(-1);
        if (last && last.at + last.length === at) last.length += until - at;
        else out.push({ at, length: until - at });
      }
      return out;
    },
    // The allocated blocks lie in the file as `read` reads them; a range that touches an unallocated one does not.
    fileSpans(offset, length) {
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || offset + length > size) {
        return undefined;
      }
      const ranges: ByteRange[] = [];
      for (let at = offset; at < offset + length; ) {
        const block = Math.floor(at / blockSize);
        const within = at - block * blockSize;
        const n = Math.min(offset + length - at, blockSize - within);
        if (dataOffsets[block]! < 0) return undefined;
        ranges.push({ at: dataOffsets[block]! + within, length: n });
        at += n;
      }
      return spansOf(file, ranges);
    },
    async read(dst, position) {
      if (!Number.isSafeInteger(position) || position < 0) {
        throw new VerityError('E_PARAM', `Invalid read position ${position}.`);
      }
      if (position >= size) return 0;
      const total = Math.min(dst.length, size - position);
      let done = 0;
      while (done < total) {
        const at = position + done;
        const block = Math.floor(at / blockSize);
        const within = at - block * blockSize;
        const n = Math.min(total - done, blockSize - within);
        const piece = dst.subarray(done, done + n);
        const offset = dataOffsets[block]!;
        // qemu reads an allocated block without consulting its sector bitmap (block/vpc.c get_image_offset), and
        // writers zero a block when they allocate it; reading the bitmap too would double the reads for nothing.
        if (offset < 0) piece.fill(0);
        else await readExactly(file, piece, offset + within, `VHD block ${block}`);
        done += n;
      }
      return total;
    },
  };
}
