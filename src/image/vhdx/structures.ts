/**
 * VHDX on-disk structures [MS-VHDX §2], each declared once with the struct module and read (`get`) and written
 * (`serialize`, `sealChecksum`) from that declaration.
 * Everything is little-endian; GUIDs are Microsoft GUIDs (data1 u32 LE, data2 u16 LE, data3 u16 LE, data4 as bytes)
 * [qemu block/vhdx.h `MSGUID`], decoded by guid.ts as GPT's are. Layouts and the rules checked on them:
 * docs/disk-images.md.
 *
 * Parsing here only decodes; the rules (which values are acceptable) live with the code that uses each structure.
 */
import { VerityError } from '../../errors.js';
import { crc32cWithZeroedField } from '../../binary/crc32c.js';
import { at, bytes, chars, guid, struct, u16le, u32le, u64leBig, utf16le } from '../../binary/struct.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------------------------------
// GUIDs and numbers

/** A u64 read from the file, as a number, or E_BAD_IMAGE if it is beyond 2^53 (no file is that large). */
export function safeOffset(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VerityError('E_BAD_IMAGE', `VHDX ${what} is ${value}, beyond any possible file offset.`);
  }
  return Number(value);
}

/** A UTF-16LE string of at most `bytes.length` bytes, ending at the first NUL if there is one. */
export function decodeUtf16(bytes: Uint8Array): string {
  return utf16le(bytes.length & ~1).get(bytes, 0);
}

/**
 * Sets the CRC-32C checksum field at `checksumOffset` of a structure (`bytes` is the whole span the checksum covers)
 * to the value the specification requires: the CRC-32C of those bytes with the field zeroed [MS-VHDX §2.2.2].
 * Writers use it; the reader only checks.
 */
export function sealChecksum(bytes: Uint8Array, checksumOffset: number): Uint8Array {
  u32le.put(bytes, checksumOffset, crc32cWithZeroedField(bytes, checksumOffset));
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------------
// Header section: file type identifier, headers, region table [MS-VHDX §2.2]

/** The header section is 1 MiB: identifier, two headers, two region tables, reserved [MS-VHDX §2.2; qemu vhdx.h]. */
export const HEADER_SECTION_SIZE = MiB;
export const FILE_IDENTIFIER_OFFSET = 0;
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;

export const FILE_IDENTIFIER = struct(
  'VHDX file type identifier',
  {
    signature: at(0, chars(8)), // Signature: "vhdxfile" [§2.2.1]
    creator: at(8, utf16le(512)), // Creator: UTF-16LE, NUL-terminated, diagnostic only
  },
  // The structure takes 64 KiB [§2.2.1]; only its first 520 bytes are defined, and only they are read.
);
export const FILE_SIGNATURE = 'vhdxfile';

/** The checksum covers the whole 4 KiB, not only the 80 defined bytes [MS-VHDX §2.2.2; qemu `vhdx_parse_header`]. */
export const HEADER_SIZE = 4 * KiB;
export const HEADER = struct(
  'VHDX header',
  {
    signature: at(0, chars(4)), // Signature: "head" [§2.2.2]
    checksum: at(4, u32le), // Checksum: CRC-32C over the 4 KiB with this field zero
    sequenceNumber: at(8, u64leBig), // SequenceNumber: the higher valid header is current
    fileWriteGuid: at(16, guid), // FileWriteGuid
    dataWriteGuid: at(32, guid), // DataWriteGuid
    logGuid: at(48, guid), // LogGuid: not null = a log to replay
    logVersion: at(64, u16le), // LogVersion: 0
    version: at(66, u16le), // Version: 1
    logLength: at(68, u32le), // LogLength
    logOffset: at(72, u64leBig), // LogOffset
  },
  { size: HEADER_SIZE },
);
export const HEADER_SIGNATURE = 'head';
export const CHECKSUM_AT = HEADER.fields.checksum.offset;

/** The checksum covers the whole 64 KiB table [MS-VHDX §2.2.3]. */
export const REGION_TABLE_SIZE = 64 * KiB;
export const REGION_TABLE_HEADER = struct(
  'VHDX region table header',
  {
    signature: at(0, chars(4)), // Signature: "regi" [§2.2.3.1]
    checksum: at(4, u32le),
    entryCount: at(8, u32le),
  },
  { size: 16 },
);
export const REGION_TABLE_SIGNATURE = 'regi';
export const REGION_TABLE_MAX_ENTRIES = 2047;
export const REGION_ENTRY = struct(
  'VHDX region table entry',
  {
    guid: at(0, guid),
    fileOffset: at(16, u64leBig),
    length: at(24, u32le),
    flags: at(28, u32le), // bit 0: Required
  },
  { size: 32 },
);
export const REGION_REQUIRED = 1;
export const BAT_REGION_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

// ---------------------------------------------------------------------------------------------------------------------
// Metadata region [MS-VHDX §2.6]

/** The table takes the first 64 KiB of the metadata region; items lie after it. */
export const METADATA_TABLE_SIZE = 64 * KiB;
export const METADATA_TABLE_HEADER = struct(
  'VHDX metadata table header',
  {
    signature: at(0, chars(8)), // Signature: "metadata" [§2.6.1.1]
    entryCount: at(10, u16le),
  },
  { size: 32 },
);
export const METADATA_SIGNATURE = 'metadata';
export const METADATA_MAX_ENTRIES = 2047;
export const METADATA_ENTRY = struct(
  'VHDX metadata table entry',
  {
    itemId: at(0, guid),
    offset: at(16, u32le),
    length: at(20, u32le),
    flags: at(24, u32le),
  },
  { size: 32 },
);
export const METADATA_IS_USER = 1;
export const METADATA_IS_VIRTUAL_DISK = 2;
export const METADATA_IS_REQUIRED = 4;
/** [MS-VHDX §2.6.1.2]: an item is at most 1 MiB. */
export const METADATA_ITEM_MAX_LENGTH = MiB;

export const FILE_PARAMETERS_GUID = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const VIRTUAL_DISK_SIZE_GUID = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const PAGE83_GUID = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const LOGICAL_SECTOR_SIZE_GUID = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const PHYSICAL_SECTOR_SIZE_GUID = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const PARENT_LOCATOR_GUID = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';

export const FILE_PARAMETERS = struct(
  'VHDX File Parameters item',
  {
    blockSize: at(0, u32le),
    flags: at(4, u32le),
  },
  { size: 8 },
);
export const LEAVE_BLOCKS_ALLOCATED = 1;
export const HAS_PARENT = 2;
export const VIRTUAL_DISK_SIZE = struct(
  'VHDX Virtual Disk Size item',
  {
    size: at(0, u64leBig),
  },
  { size: 8 },
);
export const PAGE83 = struct(
  'VHDX Page 83 Data item',
  {
    diskId: at(0, guid),
  },
  { size: 16 },
);
export const SECTOR_SIZE = struct(
  'VHDX sector size item',
  {
    size: at(0, u32le),
  },
  { size: 4 },
);

/** [MS-VHDX §2.6.2.6]: a header, then KeyValueCount entries whose offsets are relative to the item's start. */
export const PARENT_LOCATOR_HEADER = struct(
  'VHDX parent locator header',
  {
    locatorType: at(0, guid),
    keyValueCount: at(18, u16le),
  },
  { size: 20 },
);
export const PARENT_LOCATOR_ENTRY = struct(
  'VHDX parent locator entry',
  {
    keyOffset: at(0, u32le),
    valueOffset: at(4, u32le),
    keyLength: at(8, u16le),
    valueLength: at(10, u16le),
  },
  { size: 12 },
);
export const VHDX_PARENT_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';

// ---------------------------------------------------------------------------------------------------------------------
// BAT [MS-VHDX §2.5]

/**
 * A BAT entry is a u64: State in bits 0-2, FileOffsetMB in bits 20-63 [qemu vhdx.h `VHDX_BAT_STATE_BIT_MASK`,
 * `VHDX_BAT_FILE_OFF_MASK`]. It is not parsed through the field table: the BAT is the one structure read in bulk, so
 * entries are decoded from their two u32 halves, which also keeps offsets exact without a bigint per entry.
 */
export const BAT_ENTRY_SIZE = 8;
export const BAT_STATE_MASK = 0x7;
export const BAT_OFFSET_LOW_MASK = 0xfff00000;

export const PayloadState = {
  NOT_PRESENT: 0,
  UNDEFINED: 1,
  ZERO: 2,
  UNMAPPED: 3,
  /** VHDX 0.95 wrote UNMAPPED as 5; qemu still reads it as zeros (qemu commit a9d1e9d). */
  UNMAPPED_V095: 5,
  FULLY_PRESENT: 6,
  PARTIALLY_PRESENT: 7,
} as const;

/** Chunk = 2^23 logical sectors: one 1 MiB sector bitmap block covers that many [MS-VHDX §2.5]. */
export const SECTORS_PER_CHUNK = 2 ** 23;
export const MIN_BLOCK_SIZE = MiB;
export const MAX_BLOCK_SIZE = 256 * MiB;
/** [MS-VHDX §2.6.2.2] and qemu `VHDX_MAX_IMAGE_SIZE`: 64 TiB. */
export const MAX_VIRTUAL_DISK_SIZE = 64 * 1024 * 1024 * MiB;

// ---------------------------------------------------------------------------------------------------------------------
// Log [MS-VHDX §2.3; qemu vhdx.h `VHDXLogEntryHeader`, `VHDXLogDescriptor`, `VHDXLogDataSector`]

export const LOG_SECTOR_SIZE = 4 * KiB;
export const LOG_ENTRY_HEADER = struct(
  'VHDX log entry header',
  {
    signature: at(0, chars(4)), // Signature: "loge" [§2.3.1.1]
    checksum: at(4, u32le),
    entryLength: at(8, u32le),
    tail: at(12, u32le),
    sequenceNumber: at(16, u64leBig),
    descriptorCount: at(24, u32le),
    logGuid: at(32, guid),
    flushedFileOffset: at(48, u64leBig),
    lastFileOffset: at(56, u64leBig),
  },
  { size: 64 },
);
export const LOG_ENTRY_SIGNATURE = 'loge';

/** Descriptors follow the 64-byte entry header back to back, 32 bytes each, across the descriptor sectors. */
export const LOG_DESCRIPTOR_SIZE = 32;
export const LOG_DESCRIPTORS_AT = 64;
export const ZERO_DESCRIPTOR = struct(
  'VHDX log zero descriptor',
  {
    signature: at(0, chars(4)), // ZeroSignature: "zero" [§2.3.1.2]
    reserved: at(4, u32le), // Reserved
    zeroLength: at(8, u64leBig),
    fileOffset: at(16, u64leBig),
    sequenceNumber: at(24, u64leBig),
  },
  { size: LOG_DESCRIPTOR_SIZE },
);
export const ZERO_DESCRIPTOR_SIGNATURE = 'zero';
/** The target sector's bytes 4092-4095 and 0-7 travel in the descriptor; the data sector holds bytes 8-4091. */
export const DATA_DESCRIPTOR = struct(
  'VHDX log data descriptor',
  {
    signature: at(0, chars(4)), // DataSignature: "desc" [§2.3.1.3]
    trailingBytes: at(4, bytes(4)), // TrailingBytes: target bytes 4092-4095
    leadingBytes: at(8, bytes(8)), // LeadingBytes: target bytes 0-7
    fileOffset: at(16, u64leBig),
    sequenceNumber: at(24, u64leBig),
  },
  { size: LOG_DESCRIPTOR_SIZE },
);
export const DATA_DESCRIPTOR_SIGNATURE = 'desc';
export const DATA_DESCRIPTOR_TRAILING_AT = DATA_DESCRIPTOR.fields.trailingBytes.offset;
export const DATA_DESCRIPTOR_LEADING_AT = DATA_DESCRIPTOR.fields.leadingBytes.offset;
export const LOG_DATA_SECTOR = struct(
  'VHDX log data sector',
  {
    signature: at(0, chars(4)), // DataSignature: "data" [§2.3.1.4]
    sequenceHigh: at(4, u32le),
    sequenceLow: at(4092, u32le),
  },
  { size: LOG_SECTOR_SIZE },
);
export const LOG_DATA_SIGNATURE = 'data';
export const LOG_DATA_AT = 8; // 4084 bytes: target bytes 8-4091
export const LOG_DATA_LENGTH = 4084;

/** Sectors holding the entry header and `count` descriptors: 126 fit beside the header, 128 in each further sector. */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / 128);
}
