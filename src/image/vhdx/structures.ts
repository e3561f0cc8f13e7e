/**
 * VHDX on-disk structures [MS-VHDX §2], each declared once as a field table and parsed through `parseStruct`.
 * Everything is little-endian; GUIDs are Microsoft GUIDs (data1 u32 LE, data2 u16 LE, data3 u16 LE, data4 as bytes)
 * [qemu block/vhdx.h `MSGUID`], decoded by guid.ts as GPT's are. Layouts and the rules checked on them:
 * docs/disk-images.md.
 *
 * Parsing here only decodes; the rules (which values are acceptable) live with the code that uses each structure.
 */
import { VerityError } from '../../errors.js';
import { viewOf } from '../../binary/bytes.js';
import { formatGuid } from '../../binary/guid.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------------------------------
// Field tables

export type FieldType = 'u16' | 'u32' | 'u64' | 'guid' | 'sig4' | 'sig8';

export interface Field {
  readonly at: number;
  readonly type: FieldType;
}

const FIELD_SIZE: Record<FieldType, number> = { u16: 2, u32: 4, u64: 8, guid: 16, sig4: 4, sig8: 8 };

/** u16/u32 decode to numbers, u64 to bigint (checked before use as an offset), GUIDs and signatures to strings. */
type ValueOf<T extends FieldType> = T extends 'u16' | 'u32' ? number : T extends 'u64' ? bigint : string;

export interface Struct<F extends Record<string, Field>> {
  /** Names the structure in error messages. */
  readonly name: string;
  /** Bytes the structure occupies (what must be available to parse it). */
  readonly size: number;
  readonly fields: F;
}

export type Parsed<F extends Record<string, Field>> = { [K in keyof F]: ValueOf<F[K]['type']> };

function struct<const F extends Record<string, Field>>(name: string, size: number, fields: F): Struct<F> {
  for (const [key, f] of Object.entries(fields)) {
    if (f.at < 0 || f.at + FIELD_SIZE[f.type] > size) throw new Error(`${name}.${key} lies outside its ${size} bytes`);
  }
  return { name, size, fields };
}

/** Decodes `s` from `bytes` at `at`; throws E_BAD_IMAGE if fewer than `s.size` bytes are there. */
export function parseStruct<F extends Record<string, Field>>(s: Struct<F>, bytes: Uint8Array, at = 0): Parsed<F> {
  if (!Number.isSafeInteger(at) || at < 0 || at + s.size > bytes.length) {
    throw new VerityError(
      'E_BAD_IMAGE',
      `VHDX ${s.name} needs ${s.size} bytes at offset ${at} of a ${bytes.length}-byte buffer.`,
    );
  }
  const v = viewOf(bytes.subarray(at, at + s.size));
  const out: Record<string, number | bigint | string> = {};
  for (const [key, f] of Object.entries(s.fields)) {
    switch (f.type) {
      case 'u16':
        out[key] = v.getUint16(f.at, true);
        break;
      case 'u32':
        out[key] = v.getUint32(f.at, true);
        break;
      case 'u64':
        out[key] = v.getBigUint64(f.at, true);
        break;
      case 'guid':
        out[key] = formatGuid(bytes, at + f.at);
        break;
      case 'sig4':
      case 'sig8':
        out[key] = String.fromCharCode(...bytes.subarray(at + f.at, at + f.at + FIELD_SIZE[f.type]));
        break;
    }
  }
  return out as Parsed<F>;
}

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
  const even = bytes.subarray(0, bytes.length & ~1);
  const text = new TextDecoder('utf-16le').decode(even);
  const nul = text.indexOf('\0');
  return nul < 0 ? text : text.slice(0, nul);
}

// ---------------------------------------------------------------------------------------------------------------------
// Header section: file type identifier, headers, region table [MS-VHDX §2.2]

/** The header section is 1 MiB: identifier, two headers, two region tables, reserved [MS-VHDX §2.2; qemu vhdx.h]. */
export const HEADER_SECTION_SIZE = MiB;
export const FILE_IDENTIFIER_OFFSET = 0;
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;

export const FILE_IDENTIFIER = struct('file type identifier', 8, {
  signature: { at: 0, type: 'sig8' }, // "vhdxfile"
});
export const FILE_SIGNATURE = 'vhdxfile';
/** Creator: UTF-16LE, NUL-terminated, diagnostic only. */
export const CREATOR_AT = 8;
export const CREATOR_SIZE = 512;

/** The checksum covers the whole 4 KiB, not only the 80 defined bytes [MS-VHDX §2.2.2; qemu `vhdx_parse_header`]. */
export const HEADER_SIZE = 4 * KiB;
export const HEADER = struct('header', HEADER_SIZE, {
  signature: { at: 0, type: 'sig4' }, // "head"
  checksum: { at: 4, type: 'u32' },
  sequenceNumber: { at: 8, type: 'u64' },
  fileWriteGuid: { at: 16, type: 'guid' },
  dataWriteGuid: { at: 32, type: 'guid' },
  logGuid: { at: 48, type: 'guid' },
  logVersion: { at: 64, type: 'u16' },
  version: { at: 66, type: 'u16' },
  logLength: { at: 68, type: 'u32' },
  logOffset: { at: 72, type: 'u64' },
});
export const HEADER_SIGNATURE = 'head';
export const CHECKSUM_AT = 4;

/** The checksum covers the whole 64 KiB table [MS-VHDX §2.2.3]. */
export const REGION_TABLE_SIZE = 64 * KiB;
export const REGION_TABLE_HEADER = struct('region table header', 16, {
  signature: { at: 0, type: 'sig4' }, // "regi"
  checksum: { at: 4, type: 'u32' },
  entryCount: { at: 8, type: 'u32' },
});
export const REGION_TABLE_SIGNATURE = 'regi';
export const REGION_TABLE_MAX_ENTRIES = 2047;
export const REGION_ENTRY = struct('region table entry', 32, {
  guid: { at: 0, type: 'guid' },
  fileOffset: { at: 16, type: 'u64' },
  length: { at: 24, type: 'u32' },
  flags: { at: 28, type: 'u32' }, // bit 0: Required
});
export const REGION_REQUIRED = 1;
export const BAT_REGION_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

// ---------------------------------------------------------------------------------------------------------------------
// Metadata region [MS-VHDX §2.6]

/** The table takes the first 64 KiB of the metadata region; items lie after it. */
export const METADATA_TABLE_SIZE = 64 * KiB;
export const METADATA_TABLE_HEADER = struct('metadata table header', 32, {
  signature: { at: 0, type: 'sig8' }, // "metadata"
  entryCount: { at: 10, type: 'u16' },
});
export const METADATA_SIGNATURE = 'metadata';
export const METADATA_MAX_ENTRIES = 2047;
export const METADATA_ENTRY = struct('metadata table entry', 32, {
  itemId: { at: 0, type: 'guid' },
  offset: { at: 16, type: 'u32' },
  length: { at: 20, type: 'u32' },
  flags: { at: 24, type: 'u32' },
});
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

export const FILE_PARAMETERS = struct('File Parameters item', 8, {
  blockSize: { at: 0, type: 'u32' },
  flags: { at: 4, type: 'u32' },
});
export const LEAVE_BLOCKS_ALLOCATED = 1;
export const HAS_PARENT = 2;
export const VIRTUAL_DISK_SIZE = struct('Virtual Disk Size item', 8, { size: { at: 0, type: 'u64' } });
export const PAGE83 = struct('Page 83 Data item', 16, { diskId: { at: 0, type: 'guid' } });
export const SECTOR_SIZE = struct('sector size item', 4, { size: { at: 0, type: 'u32' } });

/** [MS-VHDX §2.6.2.6]: a header, then KeyValueCount entries whose offsets are relative to the item's start. */
export const PARENT_LOCATOR_HEADER = struct('parent locator header', 20, {
  locatorType: { at: 0, type: 'guid' },
  keyValueCount: { at: 18, type: 'u16' },
});
export const PARENT_LOCATOR_ENTRY = struct('parent locator entry', 12, {
  keyOffset: { at: 0, type: 'u32' },
  valueOffset: { at: 4, type: 'u32' },
  keyLength: { at: 8, type: 'u16' },
  valueLength: { at: 10, type: 'u16' },
});
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
export const LOG_ENTRY_HEADER = struct('log entry header', 64, {
  signature: { at: 0, type: 'sig4' }, // "loge"
  checksum: { at: 4, type: 'u32' },
  entryLength: { at: 8, type: 'u32' },
  tail: { at: 12, type: 'u32' },
  sequenceNumber: { at: 16, type: 'u64' },
  descriptorCount: { at: 24, type: 'u32' },
  logGuid: { at: 32, type: 'guid' },
  flushedFileOffset: { at: 48, type: 'u64' },
  lastFileOffset: { at: 56, type: 'u64' },
});
export const LOG_ENTRY_SIGNATURE = 'loge';

/** Descriptors follow the 64-byte entry header back to back, 32 bytes each, across the descriptor sectors. */
export const LOG_DESCRIPTOR_SIZE = 32;
export const LOG_DESCRIPTORS_AT = 64;
export const ZERO_DESCRIPTOR = struct('log zero descriptor', LOG_DESCRIPTOR_SIZE, {
  signature: { at: 0, type: 'sig4' }, // "zero"
  zeroLength: { at: 8, type: 'u64' },
  fileOffset: { at: 16, type: 'u64' },
  sequenceNumber: { at: 24, type: 'u64' },
});
export const ZERO_DESCRIPTOR_SIGNATURE = 'zero';
/** The target sector's bytes 4092-4095 and 0-7 travel in the descriptor; the data sector holds bytes 8-4091. */
export const DATA_DESCRIPTOR = struct('log data descriptor', LOG_DESCRIPTOR_SIZE, {
  signature: { at: 0, type: 'sig4' }, // "desc"
  fileOffset: { at: 16, type: 'u64' },
  sequenceNumber: { at: 24, type: 'u64' },
});
export const DATA_DESCRIPTOR_SIGNATURE = 'desc';
export const DATA_DESCRIPTOR_TRAILING_AT = 4; // 4 bytes
export const DATA_DESCRIPTOR_LEADING_AT = 8; // 8 bytes
export const LOG_DATA_SECTOR = struct('log data sector', LOG_SECTOR_SIZE, {
  signature: { at: 0, type: 'sig4' }, // "data"
  sequenceHigh: { at: 4, type: 'u32' },
  sequenceLow: { at: 4092, type: 'u32' },
});
export const LOG_DATA_SIGNATURE = 'data';
export const LOG_DATA_AT = 8; // 4084 bytes: target bytes 8-4091
export const LOG_DATA_LENGTH = 4084;

/** Sectors holding the entry header and `count` descriptors: 126 fit beside the header, 128 in each further sector. */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / 128);
}
