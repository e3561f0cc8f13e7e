/**
 * An MS-VHDX writer for tests, built on the declarations and serialisers the reader parses with
 * (src/image/vhdx/structures.ts): no offset is computed here that a declaration already gives.
 * Layout as Hyper-V's: header section, log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB, payload blocks after the BAT in
 * allocation order. What keeps it honest: qemu-img reads its images as the model says (test/image/vhdx), and the
 * reader is also checked on qemu's own sample images from Hyper-V and Disk2VHD.
 */
import type { Struct, StructValue, Placed } from '../../src/binary/struct.js';
import { utf16le } from '../../src/binary/struct.js';
import {
  BAT_ENTRY,
  BAT_ENTRY_SIZE,
  BAT_REGION_GUID,
  FILE_IDENTIFIER,
  FILE_PARAMETERS,
  FILE_PARAMETERS_GUID,
  FILE_SIGNATURE,
  HAS_PARENT,
  HEADER,
  HEADER_OFFSETS,
  HEADER_SIGNATURE,
  HEADER_SIZE,
  LEAVE_BLOCKS_ALLOCATED,
  LOG_SECTOR_SIZE,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_ENTRY,
  METADATA_IS_REQUIRED,
  METADATA_IS_VIRTUAL_DISK,
  METADATA_REGION_GUID,
  METADATA_SIGNATURE,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_SIZE,
  PAGE83,
  PAGE83_GUID,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_GUID,
  PARENT_LOCATOR_HEADER,
  PayloadState,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_REQUIRED,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS,
  REGION_TABLE_SIZE,
  SECTOR_SIZE,
  VHDX_PARENT_LOCATOR_TYPE,
  VIRTUAL_DISK_SIZE,
  VIRTUAL_DISK_SIZE_GUID,
  metadataEntryAt,
  sealChecksum,
  serializeHeader,
  serializeLogEntry,
  serializeRegionTable,
} from '../../src/image/vhdx/structures.js';
import { makeData } from './data.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export const G = {
  bat: BAT_REGION_GUID,
  metadata: METADATA_REGION_GUID,
  fileParameters: FILE_PARAMETERS_GUID,
  virtualDiskSize: VIRTUAL_DISK_SIZE_GUID,
  page83: PAGE83_GUID,
  logicalSectorSize: LOGICAL_SECTOR_SIZE_GUID,
  physicalSectorSize: PHYSICAL_SECTOR_SIZE_GUID,
  parentLocator: PARENT_LOCATOR_GUID,
  vhdxParentType: VHDX_PARENT_LOCATOR_TYPE,
  diskId: '11223344-5566-7788-99aa-bbccddeeff00',
  logGuid: 'c0ffee00-1234-4567-89ab-cdef01234567',
  otherLogGuid: 'deadbeef-0000-4000-8000-000000000001',
};
export const LOG_OFFSET = MiB;
export const LOG_LENGTH = MiB;
export const META_OFFSET = 2 * MiB;
export const BAT_OFFSET = 3 * MiB;

/** Rewrites fields of the structure `decl` at `at` in `file`, keeping the others. */
export function patch<F extends Record<string, Placed<any>>>(file: Uint8Array, decl: Struct<F>, at: number, changes: Partial<StructValue<F>>): void {
  decl.put(file, at, { ...decl.get(file, at), ...changes });
}

/** Recomputes the CRC-32C of the header at `at` (after a patch), as a writer must [MS-VHDX §2.2.2]. */
export function resealHeader(file: Uint8Array, at: number): void {
  sealChecksum(HEADER, file.subarray(at, at + HEADER_SIZE));
}

/** Recomputes the CRC-32C of the region table at `at`, which covers all of its 64 KiB [MS-VHDX §2.2.3.1]. */
export function resealRegionTable(file: Uint8Array, at: number): void {
  sealChecksum(REGION_TABLE_HEADER, file.subarray(at, at + REGION_TABLE_SIZE));
}

/** File offset of the metadata item `itemId` in a file from `buildVhdx`, found through its metadata table. */
export function itemAt(file: Uint8Array, itemId: string): number {
  const { entryCount } = METADATA_TABLE_HEADER.get(file, META_OFFSET);
  for (let i = 0; i < entryCount; i++) {
    const entry = METADATA_ENTRY.get(file, META_OFFSET + metadataEntryAt(i));
    if (entry.itemId === itemId) return META_OFFSET + entry.offset;
  }
  throw new Error(`no metadata item ${itemId}`);
}

/** Deterministic, distinct content for payload block `block` (makeData's xorshift32, seeded by the block index). */
export function blockContent(block: number, size: number): Uint8Array {
  return makeData({ blocks: 1, blockSize: size, tailBytes: 0, fill: 'random', seed: (block * 0x9e3779b1 + 0x1234567) >>> 0 });
}

export interface Spec {
  virtualSize: number;
  blockSize: number;
  lss?: 512 | 4096;
  pss?: 512 | 4096;
  /** Payload blocks stored in the file, in allocation order (so not necessarily in virtual order). */
  present?: number[];
  /** BAT states (PayloadState) for other payload blocks (default NOT_PRESENT). */
  states?: Record<number, number>;
  fixed?: boolean;
  /** Differencing: key/value pairs for the parent locator, or 'no-locator'. */
  parent?: Record<string, string> | 'no-locator';
  seq?: [bigint, bigint];
  logGuid?: string;
}

export interface Built {
  file: Uint8Array;
  chunkRatio: number;
  batEntries: number;
  dataOffset: number;
  /** File offset of each present block. */
  offsetOf: Map<number, number>;
  batIndex(block: number): number;
  /** File offset of the BAT entry of payload block `block`. */
  batEntryAt(block: number): number;
  /** The virtual disk as the spec says it reads. */
  expected(position: number, length: number): Uint8Array;
  /** Rewrites both headers (sequence numbers, LogGuid) with valid checksums. */
  writeHeaders(seq: [bigint, bigint], logGuid: string): void;
}

/** A BAT entry of `state` for a block at `fileOffset` (a multiple of 1 MiB) [MS-VHDX §2.5.1]. */
export function batEntry(state: number, fileOffset = 0): { state: number; reserved: number; fileOffsetMB: number } {
  if (fileOffset % MiB !== 0) throw new Error(`BAT offset ${fileOffset} is not a multiple of 1 MiB`);
  return { state, reserved: 0, fileOffsetMB: fileOffset / MiB };
}

/** The parent locator item [MS-VHDX §2.6.2.6]: header, key/value entries, then the UTF-16LE keys and values. */
function parentLocator(pairs: [string, string][]): Uint8Array {
  const item = new Uint8Array(4096);
  PARENT_LOCATOR_HEADER.put(item, 0, { locatorType: G.vhdxParentType, keyValueCount: pairs.length });
  let at = PARENT_LOCATOR_HEADER.len + PARENT_LOCATOR_ENTRY.len * pairs.length;
  pairs.forEach(([k, v], i) => {
    const keyOffset = at;
    utf16le(2 * k.length).put(item, at, k);
    at += 2 * k.length;
    const valueOffset = at;
    utf16le(2 * v.length).put(item, at, v);
    at += 2 * v.length;
    PARENT_LOCATOR_ENTRY.put(item, PARENT_LOCATOR_HEADER.len + PARENT_LOCATOR_ENTRY.len * i, {
      keyOffset,
      valueOffset,
      keyLength: 2 * k.length,
      valueLength: 2 * v.length,
    });
  });
  return item.slice(0, at);
}

/** A VHDX file as `spec` describes it, with its model (`expected`) of how the virtual disk reads. */
export function buildVhdx(spec: Spec): Built {
  const { virtualSize, blockSize } = spec;
  const lss = spec.lss ?? 512;
  const present = spec.present ?? [];
  const chunkRatio = (2 ** 23 * lss) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  const batLength = Math.max(MiB, Math.ceil((batEntries * BAT_ENTRY_SIZE) / MiB) * MiB);
  const dataOffset = BAT_OFFSET + batLength;
  const file = new Uint8Array(dataOffset + present.length * blockSize);
  const offsetOf = new Map<number, number>();
  // A sector bitmap entry follows every chunkRatio payload entries [MS-VHDX §2.5].
  const batIndex = (b: number) => b + Math.floor(b / chunkRatio);
  const batEntryAt = (b: number) => BAT_OFFSET + batIndex(b) * BAT_ENTRY_SIZE;

  FILE_IDENTIFIER.put(file, 0, { signature: FILE_SIGNATURE, creator: 'verity test writer' });

  const regionTable = serializeRegionTable([
    { guid: G.bat, fileOffset: BigInt(BAT_OFFSET), length: batLength, flags: REGION_REQUIRED },
    { guid: G.metadata, fileOffset: BigInt(META_OFFSET), length: MiB, flags: REGION_REQUIRED },
  ]);
  for (const at of REGION_TABLE_OFFSETS) file.set(regionTable, at);

  // Metadata table and items, 8-byte aligned after the table.
  const virtualDisk = METADATA_IS_VIRTUAL_DISK | METADATA_IS_REQUIRED;
  const items: Array<{ guid: string; data: Uint8Array; flags: number }> = [
    {
      guid: G.fileParameters,
      data: FILE_PARAMETERS.serialize({ blockSize, flags: (spec.fixed ? LEAVE_BLOCKS_ALLOCATED : 0) | (spec.parent ? HAS_PARENT : 0) }),
      flags: METADATA_IS_REQUIRED,
    },
    { guid: G.virtualDiskSize, data: VIRTUAL_DISK_SIZE.serialize({ size: BigInt(virtualSize) }), flags: virtualDisk },
    { guid: G.page83, data: PAGE83.serialize({ diskId: G.diskId }), flags: virtualDisk },
    { guid: G.logicalSectorSize, data: SECTOR_SIZE.serialize({ size: lss }), flags: virtualDisk },
    { guid: G.physicalSectorSize, data: SECTOR_SIZE.serialize({ size: spec.pss ?? lss }), flags: virtualDisk },
  ];
  if (spec.parent && spec.parent !== 'no-locator') {
    items.push({ guid: G.parentLocator, data: parentLocator(Object.entries(spec.parent)), flags: virtualDisk });
  }
  const metadata = file.subarray(META_OFFSET, META_OFFSET + MiB);
  METADATA_TABLE_HEADER.put(metadata, 0, { signature: METADATA_SIGNATURE, entryCount: items.length });
  let itemOffset = METADATA_TABLE_SIZE;
  items.forEach((item, i) => {
    METADATA_ENTRY.put(metadata, metadataEntryAt(i), { itemId: item.guid, offset: itemOffset, length: item.data.length, flags: item.flags });
    metadata.set(item.data, itemOffset);
    itemOffset += Math.ceil(item.data.length / 8) * 8;
  });

  // BAT and payload
  for (const [b, state] of Object.entries(spec.states ?? {})) BAT_ENTRY.put(file, batEntryAt(Number(b)), batEntry(state));
  present.forEach((b, k) => {
    const offset = dataOffset + k * blockSize;
    offsetOf.set(b, offset);
    BAT_ENTRY.put(file, batEntryAt(b), batEntry(PayloadState.FULLY_PRESENT, offset));
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
    batEntryAt,
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
      for (const [i, at] of HEADER_OFFSETS.entries()) {
        const header = serializeHeader({
          signature: HEADER_SIGNATURE,
          checksum: 0,
          sequenceNumber: seq[i]!,
          fileWriteGuid: 'aaaaaaaa-0000-4000-8000-000000000001',
          dataWriteGuid: 'bbbbbbbb-0000-4000-8000-000000000002',
          logGuid,
          logVersion: 0,
          version: 1,
          logLength: LOG_LENGTH,
          logOffset: BigInt(LOG_OFFSET),
        });
        file.set(header, at);
      }
    },
  };
  built.writeHeaders(spec.seq ?? [1n, 2n], spec.logGuid ?? '00000000-0000-0000-0000-000000000000');
  return built;
}

/** A log update: write the 4 KiB `data` at `target`, or zero `zero` bytes there. */
export type LogDescriptor = { target: number; data: Uint8Array } | { target: number; zero: number };

/**
 * A log entry [MS-VHDX §2.3.1] of LogGuid `guid` (G.logGuid unless given), written when the file had `fileSize`
 * bytes (FlushedFileOffset and LastFileOffset), through the reader's serialiser.
 */
export function logEntry(o: { seq: bigint; guid?: string; tail: number; fileSize: number; descs: LogDescriptor[] }): Uint8Array {
  return serializeLogEntry({
    sequenceNumber: o.seq,
    logGuid: o.guid ?? G.logGuid,
    tail: o.tail,
    flushedFileOffset: BigInt(o.fileSize),
    lastFileOffset: BigInt(o.fileSize),
    updates: o.descs.map((d) =>
      'zero' in d ? { fileOffset: BigInt(d.target), zeroLength: BigInt(d.zero) } : { fileOffset: BigInt(d.target), sector: d.data },
    ),
  });
}

/** Writes `entry` into the circular log at 4 KiB sector `sector`, wrapping past the log's end. */
export function placeLog(file: Uint8Array, entry: Uint8Array, sector: number): void {
  for (let i = 0; i < entry.length; i += LOG_SECTOR_SIZE) {
    const at = LOG_OFFSET + ((sector * LOG_SECTOR_SIZE + i) % LOG_LENGTH);
    file.set(entry.subarray(i, i + LOG_SECTOR_SIZE), at);
  }
}
