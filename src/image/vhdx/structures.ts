/**
 * VHDX on-disk structures [MS-VHDX §2], each declared once with the struct module: the reader parses with `get`, and
 * writers build files with `serialize`/`put` and the serialisers below, which also compute the CRC-32C checksums.
 * Every field carries the name MS-VHDX gives it. Integers are little-endian; GUIDs are in the mixed-endian layout of
 * [MS-DTYP §2.3.4.2] (Data1 u32, Data2 u16, Data3 u16, Data4 as bytes), decoded by guid.ts as GPT's are. How the
 * reader uses them, and what it checks: docs/disk-image-formats.md.
 *
 * Parsing here only decodes; the rules (which values are acceptable) live with the code that uses each structure.
 */
import { VerityError } from '../../errors.js';
import { crc32cWithZeroedField } from '../../binary/crc32c.js';
import { at, bits64le, bytes, chars, guid, struct, u16le, u32le, u64leBig, utf16le } from '../../binary/struct.js';
import type { Placed, StructValue } from '../../binary/struct.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------------------------------
// Numbers, strings and checksums

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

/** A structure that starts a span covered by a CRC-32C held in its Checksum field. */
interface Checksummed {
  readonly fields: { readonly checksum: Placed<number> };
}

/**
 * The CRC-32C a structure's Checksum field must hold: over `bytes`, the whole span the checksum covers, with the
 * field taken as zero. The span is the 4 KiB header [MS-VHDX §2.2.2], the 64 KiB region table [§2.2.3.1], or the
 * EntryLength bytes of a log entry [§2.3.1.1].
 */
export function checksumOf(decl: Checksummed, bytes: Uint8Array): number {
  return crc32cWithZeroedField(bytes, decl.fields.checksum.offset);
}

/** Sets the Checksum field of `decl` at the start of `bytes` to `checksumOf(decl, bytes)`; returns `bytes`. */
export function sealChecksum(decl: Checksummed, bytes: Uint8Array): Uint8Array {
  const { offset, field } = decl.fields.checksum;
  field.put(bytes, offset, checksumOf(decl, bytes));
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------------
// Header section: file type identifier, headers, region tables [MS-VHDX §2.2]

/** The header section is 1 MiB of 64 KiB blocks: identifier, two headers, two region tables, reserved [§2.2]. */
export const HEADER_SECTION_SIZE = MiB;
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;

/** The file type identifier at offset 0 [§2.2.1]: 64 KiB, of which only these first 520 bytes are defined. */
export const FILE_IDENTIFIER = struct('VHDX file type identifier', {
  signature: at(0, chars(8)), // Signature: "vhdxfile"
  creator: at(8, utf16le(512)), // Creator: UTF-16, NUL-terminated when shorter; diagnostic only
});
export const FILE_SIGNATURE = 'vhdxfile';

/** A header [§2.2.2]: 80 defined bytes, then reserved ones up to 4 KiB, all covered by the checksum. */
export const HEADER_SIZE = 4 * KiB;
export const HEADER = struct(
  'VHDX header',
  {
    signature: at(0, chars(4)), // Signature: "head"
    checksum: at(4, u32le), // Checksum: CRC-32C over the 4 KiB with this field zero
    sequenceNumber: at(8, u64leBig), // SequenceNumber: of two valid headers, the greater is current
    fileWriteGuid: at(16, guid), // FileWriteGuid
    dataWriteGuid: at(32, guid), // DataWriteGuid
    logGuid: at(48, guid), // LogGuid: not all zero = the log may hold entries to replay
    logVersion: at(64, u16le), // LogVersion: 0
    version: at(66, u16le), // Version: 1
    logLength: at(68, u32le), // LogLength: a multiple of 1 MiB
    logOffset: at(72, u64leBig), // LogOffset: a multiple of 1 MiB
  },
  { size: HEADER_SIZE },
);
/** A header as HEADER reads it, every field as stored. */
export type VhdxHeaderValue = StructValue<typeof HEADER.fields>;
export const HEADER_SIGNATURE = 'head';

/** A 4 KiB header holding `value`, with its Checksum computed (the value's own checksum is ignored) [§2.2.2]. */
export function serializeHeader(value: VhdxHeaderValue): Uint8Array {
  return sealChecksum(HEADER, HEADER.serialize(value));
}

/** A region table [§2.2.3] takes 64 KiB, all covered by its checksum: this header, then the entries. */
export const REGION_TABLE_SIZE = 64 * KiB;
export const REGION_TABLE_HEADER = struct(
  'VHDX region table header',
  {
    signature: at(0, chars(4)), // Signature: "regi" [§2.2.3.1]
    checksum: at(4, u32le), // Checksum: CRC-32C over the 64 KiB with this field zero
    entryCount: at(8, u32le), // EntryCount: at most 2047
    // Reserved (4 bytes)
  },
  { size: 16 },
);
export const REGION_TABLE_SIGNATURE = 'regi';
export const REGION_TABLE_MAX_ENTRIES = 2047;
export const REGION_ENTRY = struct(
  'VHDX region table entry',
  {
    guid: at(0, guid), // Guid: which region [§2.2.3.2]
    fileOffset: at(16, u64leBig), // FileOffset: a multiple of 1 MiB, past the header section
    length: at(24, u32le), // Length: a multiple of 1 MiB
    flags: at(28, u32le), // Required (bit 0), Reserved (bits 1-31)
  },
  { size: 32 },
);
/** A region table entry as REGION_ENTRY reads it. */
export type RegionEntryValue = StructValue<typeof REGION_ENTRY.fields>;
export const REGION_REQUIRED = 1;
export const BAT_REGION_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

/** Where region table entry `index` lies in its table: the entries follow the header back to back [§2.2.3]. */
export function regionEntryAt(index: number): number {
  return REGION_TABLE_HEADER.len + index * REGION_ENTRY.len;
}

/** A 64 KiB region table listing `entries`, with its Checksum computed [§2.2.3]. */
export function serializeRegionTable(entries: readonly RegionEntryValue[]): Uint8Array {
  if (entries.length > REGION_TABLE_MAX_ENTRIES) {
    throw new VerityError('E_PARAM', `A VHDX region table holds at most ${REGION_TABLE_MAX_ENTRIES} entries.`);
  }
  const table = new Uint8Array(REGION_TABLE_SIZE);
  REGION_TABLE_HEADER.put(table, 0, { signature: REGION_TABLE_SIGNATURE, checksum: 0, entryCount: entries.length });
  entries.forEach((e, i) => REGION_ENTRY.put(table, regionEntryAt(i), e));
  return sealChecksum(REGION_TABLE_HEADER, table);
}

// ---------------------------------------------------------------------------------------------------------------------
// Metadata region [MS-VHDX §2.6]

/** The metadata table takes the first 64 KiB of the metadata region; the items lie after it [§2.6.1]. */
export const METADATA_TABLE_SIZE = 64 * KiB;
export const METADATA_TABLE_HEADER = struct(
  'VHDX metadata table header',
  {
    signature: at(0, chars(8)), // Signature: "metadata" [§2.6.1.1]
    // Reserved (2 bytes)
    entryCount: at(10, u16le), // EntryCount: at most 2047
    // Reserved2 (20 bytes)
  },
  { size: 32 },
);
export const METADATA_SIGNATURE = 'metadata';
export const METADATA_MAX_ENTRIES = 2047;
export const METADATA_ENTRY = struct(
  'VHDX metadata table entry',
  {
    itemId: at(0, guid), // ItemId [§2.6.1.2]
    offset: at(16, u32le), // Offset: from the start of the metadata region, at least 64 KiB
    length: at(20, u32le), // Length: at most 1 MiB
    flags: at(24, u32le), // IsUser (bit 0), IsVirtualDisk (bit 1), IsRequired (bit 2), Reserved
    // Reserved2 (4 bytes)
  },
  { size: 32 },
);
export const METADATA_IS_USER = 1;
export const METADATA_IS_VIRTUAL_DISK = 2;
export const METADATA_IS_REQUIRED = 4;
/** An item is at most 1 MiB [§2.6.1.2]. */
export const METADATA_ITEM_MAX_LENGTH = MiB;

/** Where metadata table entry `index` lies in its table: the entries follow the header back to back [§2.6.1]. */
export function metadataEntryAt(index: number): number {
  return METADATA_TABLE_HEADER.len + index * METADATA_ENTRY.len;
}

/** The ItemIds of the known metadata items [§2.6.2]. */
export const FILE_PARAMETERS_GUID = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const VIRTUAL_DISK_SIZE_GUID = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const PAGE83_GUID = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const LOGICAL_SECTOR_SIZE_GUID = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const PHYSICAL_SECTOR_SIZE_GUID = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const PARENT_LOCATOR_GUID = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';

export const FILE_PARAMETERS = struct(
  'VHDX File Parameters item',
  {
    blockSize: at(0, u32le), // BlockSize [§2.6.2.1]: a power of two from 1 MiB to 256 MiB
    flags: at(4, u32le), // LeaveBlockAllocated (bit 0), HasParent (bit 1), Reserved
  },
  { size: 8 },
);
export const LEAVE_BLOCKS_ALLOCATED = 1;
export const HAS_PARENT = 2;
export const VIRTUAL_DISK_SIZE = struct(
  'VHDX Virtual Disk Size item',
  {
    size: at(0, u64leBig), // VirtualDiskSize [§2.6.2.2]: a multiple of the logical sector size, at most 64 TiB
  },
  { size: 8 },
);
export const PAGE83 = struct(
  'VHDX Page 83 Data item',
  {
    diskId: at(0, guid), // Page83Data [§2.6.2.3]: the disk's SCSI identity
  },
  { size: 16 },
);
/** The Logical Sector Size [§2.6.2.4] and Physical Sector Size [§2.6.2.5] items share this layout. */
export const SECTOR_SIZE = struct(
  'VHDX sector size item',
  {
    size: at(0, u32le), // LogicalSectorSize or PhysicalSectorSize: 512 or 4096
  },
  { size: 4 },
);

/** The Parent Locator item [§2.6.2.6]: this header, then KeyValueCount entries, then the keys and values. */
export const PARENT_LOCATOR_HEADER = struct(
  'VHDX parent locator header',
  {
    locatorType: at(0, guid), // LocatorType [§2.6.2.6.1]
    // Reserved (2 bytes)
    keyValueCount: at(18, u16le), // KeyValueCount
  },
  { size: 20 },
);
export const PARENT_LOCATOR_ENTRY = struct(
  'VHDX parent locator entry',
  {
    keyOffset: at(0, u32le), // KeyOffset [§2.6.2.6.2]: from the start of the item
    valueOffset: at(4, u32le), // ValueOffset: from the start of the item
    keyLength: at(8, u16le), // KeyLength: bytes of UTF-16LE, no NUL
    valueLength: at(10, u16le), // ValueLength: bytes of UTF-16LE, no NUL
  },
  { size: 12 },
);
/** The LocatorType of a VHDX parent [§2.6.2.6.3]. */
export const VHDX_PARENT_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';

// ---------------------------------------------------------------------------------------------------------------------
// BAT [MS-VHDX §2.5]

/**
 * A BAT entry [§2.5.1]. The BAT is read in bulk, so the entry is a bit-field word of plain numbers (no bigint per
 * entry); FileOffsetMB counts MiB, so the offset it gives is exact below 8 PiB.
 */
export const BAT_ENTRY = bits64le({
  state: [0, 3], // State: a PayloadState (payload entries) or a sector bitmap state [§2.5.1.1, §2.5.1.2]
  reserved: [3, 17], // Reserved
  fileOffsetMB: [20, 44], // FileOffsetMB: the block's file offset in MiB
});
export const BAT_ENTRY_SIZE = BAT_ENTRY.len;

/** Payload block states [§2.5.1.1]. */
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

/** A chunk is 2^23 logical sectors, the span one 1 MiB sector bitmap block covers [§2.5]. */
export const SECTORS_PER_CHUNK = 2 ** 23;
export const MIN_BLOCK_SIZE = MiB;
export const MAX_BLOCK_SIZE = 256 * MiB;
/** The largest VirtualDiskSize: 64 TiB [§2.6.2.2]. */
export const MAX_VIRTUAL_DISK_SIZE = 64 * 1024 * 1024 * MiB;

// ---------------------------------------------------------------------------------------------------------------------
// Log [MS-VHDX §2.3]

/** The log is a circular buffer of 4 KiB sectors; an entry takes whole sectors [§2.3]. */
export const LOG_SECTOR_SIZE = 4 * KiB;
export const LOG_ENTRY_HEADER = struct(
  'VHDX log entry header',
  {
    signature: at(0, chars(4)), // Signature: "loge" [§2.3.1.1]
    checksum: at(4, u32le), // Checksum: CRC-32C over the EntryLength bytes with this field zero
    entryLength: at(8, u32le), // EntryLength: a multiple of 4 KiB
    tail: at(12, u32le), // Tail: log offset of the first entry of the sequence this one ends
    sequenceNumber: at(16, u64leBig), // SequenceNumber: not zero; consecutive along a sequence
    descriptorCount: at(24, u32le), // DescriptorCount
    // Reserved (4 bytes)
    logGuid: at(32, guid), // LogGuid: the header's LogGuid when the entry was written
    flushedFileOffset: at(48, u64leBig), // FlushedFileOffset: the file's size when the entry was written
    lastFileOffset: at(56, u64leBig), // LastFileOffset: the file's size the entry needs
  },
  { size: 64 },
);
export const LOG_ENTRY_SIGNATURE = 'loge';

/** Descriptors follow the 64-byte entry header back to back, 32 bytes each, across the descriptor sectors [§2.3.1]. */
export const LOG_DESCRIPTOR_SIZE = 32;
export const LOG_DESCRIPTORS_AT = LOG_ENTRY_HEADER.len;
export const ZERO_DESCRIPTOR = struct(
  'VHDX log zero descriptor',
  {
    signature: at(0, chars(4)), // ZeroSignature: "zero" [§2.3.1.2]
    reserved: at(4, u32le), // Reserved
    zeroLength: at(8, u64leBig), // ZeroLength: a multiple of 4 KiB
    fileOffset: at(16, u64leBig), // FileOffset: 4 KiB aligned
    sequenceNumber: at(24, u64leBig), // SequenceNumber: the entry's
  },
  { size: LOG_DESCRIPTOR_SIZE },
);
export const ZERO_DESCRIPTOR_SIGNATURE = 'zero';
/** A data descriptor [§2.3.1.3] carries the first 8 and last 4 bytes of its target sector; its data sector the rest. */
export const DATA_DESCRIPTOR = struct(
  'VHDX log data descriptor',
  {
    signature: at(0, chars(4)), // DataSignature: "desc" [§2.3.1.3]
    trailingBytes: at(4, bytes(4)), // TrailingBytes: target bytes 4092-4095
    leadingBytes: at(8, bytes(8)), // LeadingBytes: target bytes 0-7
    fileOffset: at(16, u64leBig), // FileOffset: 4 KiB aligned
    sequenceNumber: at(24, u64leBig), // SequenceNumber: the entry's
  },
  { size: LOG_DESCRIPTOR_SIZE },
);
export const DATA_DESCRIPTOR_SIGNATURE = 'desc';
/** The data sectors follow the descriptor sectors, one per data descriptor, in descriptor order [§2.3.1.4]. */
export const LOG_DATA_SECTOR = struct(
  'VHDX log data sector',
  {
    signature: at(0, chars(4)), // DataSignature: "data" [§2.3.1.4]
    sequenceHigh: at(4, u32le), // SequenceHigh: high 32 bits of the entry's SequenceNumber
    data: at(8, bytes(4084)), // Data: target bytes 8-4091
    sequenceLow: at(4092, u32le), // SequenceLow: low 32 bits of the entry's SequenceNumber
  },
  { size: LOG_SECTOR_SIZE },
);
export const LOG_DATA_SIGNATURE = 'data';

/** Sectors holding the entry header and `count` descriptors: 126 fit beside the header, 128 in each further sector. */
export function descriptorSectors(count: number): number {
  return Math.ceil((LOG_DESCRIPTORS_AT + count * LOG_DESCRIPTOR_SIZE) / LOG_SECTOR_SIZE);
}

/** The 4 KiB sector a data descriptor and its data sector write: LeadingBytes ‖ Data ‖ TrailingBytes [§2.3.1.3]. */
export function joinLogSector(
  descriptor: { leadingBytes: Uint8Array; trailingBytes: Uint8Array },
  dataSector: { data: Uint8Array },
): Uint8Array {
  const sector = new Uint8Array(LOG_SECTOR_SIZE);
  sector.set(descriptor.leadingBytes, 0);
  sector.set(dataSector.data, descriptor.leadingBytes.length);
  sector.set(descriptor.trailingBytes, LOG_SECTOR_SIZE - descriptor.trailingBytes.length);
  return sector;
}

/** One update of a log entry: write a 4 KiB `sector`, or zero `zeroLength` bytes, at `fileOffset` [§2.3.1]. */
export type LogUpdate = { fileOffset: bigint; sector: Uint8Array } | { fileOffset: bigint; zeroLength: bigint };

/** A log entry as `serializeLogEntry` takes it: the header fields it does not derive, and the updates in order. */
export interface LogEntryValue {
  sequenceNumber: bigint;
  logGuid: string;
  tail: number;
  flushedFileOffset: bigint;
  lastFileOffset: bigint;
  updates: readonly LogUpdate[];
}

/**
 * A log entry [§2.3.1]: the header, a descriptor per update, a data sector per data descriptor, EntryLength and
 * DescriptorCount derived, and the Checksum computed over the whole entry.
 */
export function serializeLogEntry(entry: LogEntryValue): Uint8Array {
  const { sequenceNumber } = entry;
  const descSectors = descriptorSectors(entry.updates.length);
  const dataCount = entry.updates.filter((u) => 'sector' in u).length;
  const out = new Uint8Array((descSectors + dataCount) * LOG_SECTOR_SIZE);
  LOG_ENTRY_HEADER.put(out, 0, {
    signature: LOG_ENTRY_SIGNATURE,
    checksum: 0,
    entryLength: out.length,
    tail: entry.tail,
    sequenceNumber,
    descriptorCount: entry.updates.length,
    logGuid: entry.logGuid,
    flushedFileOffset: entry.flushedFileOffset,
    lastFileOffset: entry.lastFileOffset,
  });
  let dataAt = descSectors * LOG_SECTOR_SIZE;
  entry.updates.forEach((u, i) => {
    const at = LOG_DESCRIPTORS_AT + i * LOG_DESCRIPTOR_SIZE;
    const { fileOffset } = u;
    if ('zeroLength' in u) {
      ZERO_DESCRIPTOR.put(out, at, { signature: ZERO_DESCRIPTOR_SIGNATURE, reserved: 0, zeroLength: u.zeroLength, fileOffset, sequenceNumber });
      return;
    }
    if (u.sector.length !== LOG_SECTOR_SIZE) {
      throw new VerityError('E_PARAM', `A VHDX log data update writes ${LOG_SECTOR_SIZE} bytes, not ${u.sector.length}.`);
    }
    const leadingBytes = u.sector.subarray(0, DATA_DESCRIPTOR.fields.leadingBytes.field.len);
    const trailingBytes = u.sector.subarray(LOG_SECTOR_SIZE - DATA_DESCRIPTOR.fields.trailingBytes.field.len);
    DATA_DESCRIPTOR.put(out, at, { signature: DATA_DESCRIPTOR_SIGNATURE, trailingBytes, leadingBytes, fileOffset, sequenceNumber });
    LOG_DATA_SECTOR.put(out, dataAt, {
      signature: LOG_DATA_SIGNATURE,
      sequenceHigh: Number(sequenceNumber >> 32n),
      data: u.sector.subarray(leadingBytes.length, LOG_SECTOR_SIZE - trailingBytes.length),
      sequenceLow: Number(sequenceNumber & 0xffffffffn),
    });
    dataAt += LOG_SECTOR_SIZE;
  });
  return sealChecksum(LOG_ENTRY_HEADER, out);
}
