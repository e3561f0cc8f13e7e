/**
 * VHDX reader [MS-VHDX]: a `ByteSource` over a VHDX file that reads as the virtual disk it holds. Read-only: it only
 * has a ByteSource, and a dirty log is replayed in memory (log.ts), never written back.
 *
 * Open order [MS-VHDX §2.2, §2.3]: file type identifier → both headers, current one by checksum and sequence number
 * → log replay when LogGuid ≠ 0 → region table (second copy if the first is corrupt) → metadata → BAT. Everything
 * after the headers is read through the replayed file. Differencing disks are refused (E_UNSUPPORTED): reading them
 * needs the parent, and substituting zeros for it would be wrong. The layouts: structures.ts; the rules checked on
 * them, with their sources: docs/disk-image-formats.md.
 */
import { VerityError } from '../../errors.js';
import type { StructValue } from '../../binary/struct.js';
import { spansOf, type ByteRange, type ByteSource, type FileSpan, type OriginRun, type SequentialMap } from '../../io/source.js';
import { NULL_GUID } from '../../binary/guid.js';
import { type BlockMap, batGeometry, loadBat, type BlockCounts, type ReservedArea } from './bat.js';
import { readFully, readRange, checkRange } from './io.js';
import { replayLog, type VhdxLogInfo } from './log.js';
import {
  BAT_ENTRY_SIZE,
  BAT_REGION_GUID,
  FILE_IDENTIFIER,
  FILE_PARAMETERS,
  FILE_PARAMETERS_GUID,
  FILE_SIGNATURE,
  HAS_PARENT,
  HEADER,
  HEADER_OFFSETS,
  HEADER_SECTION_SIZE,
  HEADER_SIGNATURE,
  HEADER_SIZE,
  LEAVE_BLOCKS_ALLOCATED,
  LOGICAL_SECTOR_SIZE_GUID,
  MAX_BLOCK_SIZE,
  MAX_VIRTUAL_DISK_SIZE,
  METADATA_ENTRY,
  METADATA_IS_REQUIRED,
  METADATA_IS_USER,
  METADATA_ITEM_MAX_LENGTH,
  METADATA_MAX_ENTRIES,
  METADATA_REGION_GUID,
  METADATA_SIGNATURE,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_SIZE,
  MIN_BLOCK_SIZE,
  MiB,
  PAGE83,
  PAGE83_GUID,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_GUID,
  PARENT_LOCATOR_HEADER,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_ENTRY,
  REGION_REQUIRED,
  REGION_TABLE_HEADER,
  REGION_TABLE_MAX_ENTRIES,
  REGION_TABLE_OFFSETS,
  REGION_TABLE_SIGNATURE,
  REGION_TABLE_SIZE,
  SECTOR_SIZE,
  VHDX_PARENT_LOCATOR_TYPE,
  VIRTUAL_DISK_SIZE,
  VIRTUAL_DISK_SIZE_GUID,
  type VhdxHeaderValue,
  checksumOf,
  decodeUtf16,
  metadataEntryAt,
  regionEntryAt,
  safeOffset,
} from './structures.js';

export { MAX_REPLAYED_LOG_LENGTH, type VhdxLogInfo } from './log.js';
export type { BlockCounts } from './bat.js';

export interface VhdxRegionInfo {
  offset: number;
  length: number;
  required: boolean;
}

/** What `verity inspect` can show about a VHDX; every number was validated when the image was opened. */
export interface VhdxInfo {
  format: 'vhdx';
  /** The creator string of the file type identifier (diagnostic only), e.g. "QEMU v7.2.22". */
  creator: string;
  fileSize: number;
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: 512 | 4096;
  physicalSectorSize: 512 | 4096;
  /** Payload blocks per sector bitmap block: 2^23 × logicalSectorSize / blockSize. */
  chunkRatio: number;
  /** 'fixed' when File Parameters say LeaveBlocksAllocated; the layout is still mapped through the BAT. */
  subformat: 'dynamic' | 'fixed';
  /** Page 83 Data: the virtual disk's SCSI identifier. */
  diskId: string;
  header: {
    /** Which copy is current (1 at 64 KiB, 2 at 128 KiB), and which copies passed their checks. */
    current: 1 | 2;
    valid: [boolean, boolean];
    sequenceNumber: bigint;
    fileWriteGuid: string;
    dataWriteGuid: string;
    logGuid: string;
  };
  /** Which region table copy was used (2 only when the first is corrupt). */
  regionTable: 1 | 2;
  bat: VhdxRegionInfo & { entries: number };
  metadata: VhdxRegionInfo;
  log: { offset: number; length: number };
  /** Set when the log had to be replayed (LogGuid ≠ 0); `replay.replayed` says whether it held a sequence. */
  replay: VhdxLogInfo | null;
  blocks: BlockCounts & { total: number };
}

export interface VhdxImage extends ByteSource {
  /** The virtual disk size. */
  readonly size: number;
  readonly info: VhdxInfo;
}

/** Opens a VHDX file. Throws VerityError: E_BAD_IMAGE (malformed), E_UNSUPPORTED (differencing…), E_TRUNCATED. */
export async function openVhdx(file: ByteSource): Promise<VhdxImage> {
  if (!Number.isSafeInteger(file.size) || file.size < 0) throw bad(`file size ${file.size} is not a byte count.`);
  if (file.size < 8) throw bad(`the file has ${file.size} bytes: too small to be VHDX.`);
  const ident = await readRange(file, 0, Math.min(file.size, FILE_IDENTIFIER.len), 'file type identifier');
  const signature = FILE_IDENTIFIER.fields.signature;
  if (signature.field.get(ident, signature.offset) !== FILE_SIGNATURE) {
    throw bad('no "vhdxfile" signature at offset 0: not a VHDX file.');
  }
  checkRange(file, 0, HEADER_SECTION_SIZE, 'header section');
  const { creator } = FILE_IDENTIFIER.get(ident, 0);

  const headers = await selectHeader(file);
  const h = headers.header;
  const log = checkLogPlacement(h);

  // [MS-VHDX §2.2.2]: a non-zero LogGuid means the log may hold updates that must be applied before the region
  // table, metadata or BAT are read. qemu treats a zero LogLength as "no log" too (`vhdx_parse_log`).
  let src: ByteSource = file;
  let replay: VhdxLogInfo | null = null;
  if (h.logGuid !== NULL_GUID && log.length > 0) {
    if (h.logVersion !== 0) {
      throw new VerityError('E_UNSUPPORTED', `VHDX log version ${h.logVersion} must be replayed; only version 0 is known.`);
    }
    ({ source: src, info: replay } = await replayLog(file, { guid: h.logGuid, ...log }));
  }

  const regions = await readRegionTable(src, log);
  const meta = await readMetadata(src, regions.metadata);
  const g = batGeometry(meta.virtualSize, meta.blockSize, meta.logicalSectorSize);
  if (g.entries * BAT_ENTRY_SIZE > regions.bat.length) {
    throw bad(`the BAT region holds ${regions.bat.length / BAT_ENTRY_SIZE} entries; a ${meta.virtualSize}-byte disk of ` +
      `${meta.blockSize}-byte blocks needs ${g.entries}.`);
  }
  const reserved: ReservedArea[] = [
    { start: 0, end: HEADER_SECTION_SIZE, what: 'header section' },
    { start: regions.bat.offset, end: regions.bat.offset + regions.bat.length, what: 'BAT region' },
    { start: regions.metadata.offset, end: regions.metadata.offset + regions.metadata.length, what: 'metadata region' },
  ];
  if (log.length > 0) reserved.push({ start: log.offset, end: log.offset + log.length, what: 'log' });
  const { map, counts } = await loadBat(src, regions.bat.offset, g, reserved);

  const info: VhdxInfo = {
    format: 'vhdx',
    creator,
    fileSize: file.size,
    virtualSize: meta.virtualSize,
    blockSize: meta.blockSize,
    logicalSectorSize: meta.logicalSectorSize,
    physicalSectorSize: meta.physicalSectorSize,
    chunkRatio: g.chunkRatio,
    subformat: meta.fixed ? 'fixed' : 'dynamic',
    diskId: meta.diskId,
    header: {
      current: headers.current,
      valid: headers.valid,
      sequenceNumber: h.sequenceNumber,
      fileWriteGuid: h.fileWriteGuid,
      dataWriteGuid: h.dataWriteGuid,
      logGuid: h.logGuid,
    },
    regionTable: regions.copy,
    bat: { ...regions.bat, entries: g.entries },
    metadata: regions.metadata,
    log,
    replay,
    blocks: { ...counts, total: g.dataBlocks },
  };
  return new VhdxReader(src, map, info);
}

// ---------------------------------------------------------------------------------------------------------------------
// Headers [MS-VHDX §2.2.2]

type Header = VhdxHeaderValue;

async function selectHeader(file: ByteSource): Promise<{ header: Header; current: 1 | 2; valid: [boolean, boolean] }> {
  const raw = await Promise.all(HEADER_OFFSETS.map((at) => readRange(file, at, HEADER_SIZE, 'header')));
  const parsed = raw.map((bytes) => {
    const h = HEADER.get(bytes, 0);
    // Valid = signature and checksum; qemu also requires Version 1 (`vhdx_parse_header`).
    return h.signature === HEADER_SIGNATURE && checksumOf(HEADER, bytes) === h.checksum && h.version === 1 ? h : null;
  });
  const [h1, h2] = parsed as [Header | null, Header | null];
  const valid: [boolean, boolean] = [h1 !== null, h2 !== null];
  if (!h1 && !h2) throw bad('neither header (at 64 KiB and 128 KiB) has a valid signature, checksum and version 1.');
  if (h1 && !h2) return { header: h1, current: 1, valid };
  if (h2 && !h1) return { header: h2, current: 2, valid };
  // Both valid: the greater SequenceNumber is current [MS-VHDX §2.2.2]. Equal numbers are accepted only when the
  // headers are byte-identical, as Disk2VHD writes them (qemu `vhdx_parse_header`).
  if (h1!.sequenceNumber > h2!.sequenceNumber) return { header: h1!, current: 1, valid };
  if (h2!.sequenceNumber > h1!.sequenceNumber) return { header: h2!, current: 2, valid };
  const [a, b] = raw as [Uint8Array, Uint8Array];
  if (a.every((x, i) => x === b[i])) return { header: h1!, current: 1, valid };
  throw bad(`both headers are valid with sequence number ${h1!.sequenceNumber} but differ: no current header.`);
}

/**
 * Log placement from the current header: 1 MiB aligned, past the header section [MS-VHDX §2.2.2; qemu
 * `vhdx_parse_log`].
 */
function checkLogPlacement(h: Header): { offset: number; length: number } {
  const offset = safeOffset(h.logOffset, 'log offset');
  const length = h.logLength;
  if (length === 0) return { offset, length };
  if (length % MiB !== 0) throw bad(`log length ${length} is not a multiple of 1 MiB.`);
  if (offset < HEADER_SECTION_SIZE || offset % MiB !== 0) {
    throw bad(`log offset ${offset} is not a 1 MiB multiple after the header section.`);
  }
  return { offset, length };
}

// ---------------------------------------------------------------------------------------------------------------------
// Region table [MS-VHDX §2.2.3]

interface Regions {
  copy: 1 | 2;
  bat: VhdxRegionInfo;
  metadata: VhdxRegionInfo;
}

const KNOWN_REGIONS: Record<string, string> = { [BAT_REGION_GUID]: 'BAT region', [METADATA_REGION_GUID]: 'metadata region' };

async function readRegionTable(src: ByteSource, log: { offset: number; length: number }): Promise<Regions> {
  // qemu reads only the first copy; the spec keeps two so that a reader can use the second when the first is torn.
  let table: Uint8Array | null = null;
  let copy: 1 | 2 = 1;
  for (const [i, at] of REGION_TABLE_OFFSETS.entries()) {
    const bytes = await readRange(src, at, REGION_TABLE_SIZE, 'region table');
    const head = REGION_TABLE_HEADER.get(bytes, 0);
    if (head.signature === REGION_TABLE_SIGNATURE && checksumOf(REGION_TABLE_HEADER, bytes) === head.checksum) {
      table = bytes;
      copy = (i + 1) as 1 | 2;
      break;
    }
  }
  if (!table) throw bad('neither region table (at 192 KiB and 256 KiB) has a valid signature and checksum.');

  const { entryCount } = REGION_TABLE_HEADER.get(table, 0);
  if (entryCount > REGION_TABLE_MAX_ENTRIES) {
    throw bad(`region table has ${entryCount} entries; at most ${REGION_TABLE_MAX_ENTRIES} are allowed.`);
  }
  const areas: ReservedArea[] = [{ start: 0, end: HEADER_SECTION_SIZE, what: 'header section' }];
  if (log.length > 0) areas.push({ start: log.offset, end: log.offset + log.length, what: 'log' });
  const seen = new Set<string>();
  let bat: VhdxRegionInfo | null = null;
  let metadata: VhdxRegionInfo | null = null;

  for (let i = 0; i < entryCount; i++) {
    const e = REGION_ENTRY.get(table, regionEntryAt(i));
    const known = KNOWN_REGIONS[e.guid];
    const what = known ?? `region ${e.guid}`;
    if (seen.has(e.guid)) throw bad(`region table lists the ${what} twice.`);
    seen.add(e.guid);
    const required = (e.flags & REGION_REQUIRED) !== 0;
    if (!known && required) {
      // [MS-VHDX §2.2.3.2]: a required region we do not know means we cannot read the file correctly.
      throw new VerityError('E_UNSUPPORTED', `VHDX has a required region ${e.guid} that this reader does not know.`);
    }
    const offset = safeOffset(e.fileOffset, `${what} offset`);
    if (offset % MiB !== 0 || e.length % MiB !== 0 || offset < HEADER_SECTION_SIZE) {
      throw bad(`${what} at offset ${offset}, length ${e.length}: both must be 1 MiB multiples, after the header section.`);
    }
    const area = { start: offset, end: offset + e.length, what };
    for (const other of areas) {
      if (area.start < other.end && other.start < area.end) {
        throw bad(
          `${what} (bytes ${area.start}-${area.end - 1}) overlaps the ${other.what} (bytes ${other.start}-${other.end - 1}).`,
        );
      }
    }
    areas.push(area);
    if (e.guid === BAT_REGION_GUID) bat = { offset, length: e.length, required };
    if (e.guid === METADATA_REGION_GUID) metadata = { offset, length: e.length, required };
  }
  if (!bat || !metadata) throw bad(`region table lacks the ${bat ? 'metadata' : 'BAT'} region.`);
  checkRange(src, bat.offset, bat.length, 'BAT region');
  checkRange(src, metadata.offset, metadata.length, 'metadata region');
  if (metadata.length < METADATA_TABLE_SIZE) {
    throw bad(`metadata region is ${metadata.length} bytes, too small for its table.`);
  }
  return { copy, bat, metadata };
}

// ---------------------------------------------------------------------------------------------------------------------
// Metadata [MS-VHDX §2.6]

interface Metadata {
  blockSize: number;
  fixed: boolean;
  virtualSize: number;
  logicalSectorSize: 512 | 4096;
  physicalSectorSize: 512 | 4096;
  diskId: string;
}

type MetadataEntry = StructValue<(typeof METADATA_ENTRY)['fields']>;

const KNOWN_ITEMS: Record<string, string> = {
  [FILE_PARAMETERS_GUID]: 'File Parameters',
  [VIRTUAL_DISK_SIZE_GUID]: 'Virtual Disk Size',
  [PAGE83_GUID]: 'Page 83 Data',
  [LOGICAL_SECTOR_SIZE_GUID]: 'Logical Sector Size',
  [PHYSICAL_SECTOR_SIZE_GUID]: 'Physical Sector Size',
  [PARENT_LOCATOR_GUID]: 'Parent Locator',
};

async function readMetadata(src: ByteSource, region: VhdxRegionInfo): Promise<Metadata> {
  const table = await readRange(src, region.offset, METADATA_TABLE_SIZE, 'metadata table');
  const head = METADATA_TABLE_HEADER.get(table, 0);
  if (head.signature !== METADATA_SIGNATURE) {
    throw bad(`no "metadata" signature at the metadata region (offset ${region.offset}).`);
  }
  if (head.entryCount > METADATA_MAX_ENTRIES) {
    throw bad(`metadata table has ${head.entryCount} entries; at most ${METADATA_MAX_ENTRIES} are allowed.`);
  }

  const items = new Map<string, MetadataEntry>();
  const spans: Array<{ start: number; end: number; name: string }> = [];
  const seen = new Set<string>();
  for (let i = 0; i < head.entryCount; i++) {
    const e = METADATA_ENTRY.get(table, metadataEntryAt(i));
    const isUser = (e.flags & METADATA_IS_USER) !== 0;
    // System items are known by ItemId with IsUser clear; (ItemId, IsUser) is unique [MS-VHDX §2.6.1.2].
    const known = isUser ? undefined : KNOWN_ITEMS[e.itemId];
    const name = known ?? `${isUser ? 'user' : 'system'} metadata item ${e.itemId}`;
    const key = `${e.itemId}/${isUser}`;
    if (seen.has(key)) throw bad(`metadata table lists ${name} twice.`);
    seen.add(key);
    if (e.length > 0) {
      if (e.length > METADATA_ITEM_MAX_LENGTH || e.offset < METADATA_TABLE_SIZE || e.offset + e.length > region.length) {
        throw bad(`${name} at offset ${e.offset}, length ${e.length}, does not lie in the metadata region after its table.`);
      }
      spans.push({ start: e.offset, end: e.offset + e.length, name });
    }
    if (known) items.set(e.itemId, e);
    else if ((e.flags & METADATA_IS_REQUIRED) !== 0) {
      throw new VerityError('E_UNSUPPORTED', `VHDX has a required ${name} that this reader does not know.`);
    }
  }
  spans.sort((a, b) => a.start - b.start);
  for (let i = 1; i < spans.length; i++) {
    const [a, b] = [spans[i - 1]!, spans[i]!];
    if (b.start < a.end) throw bad(`metadata items ${a.name} and ${b.name} overlap.`);
  }

  const item = async (guid: string, size: number): Promise<Uint8Array> => {
    const e = items.get(guid);
    if (!e) throw bad(`the required ${KNOWN_ITEMS[guid]} metadata item is missing.`);
    if (e.length < size) throw bad(`${KNOWN_ITEMS[guid]} metadata item is ${e.length} bytes; it needs ${size}.`);
    return readRange(src, region.offset + e.offset, size, `${KNOWN_ITEMS[guid]} metadata item`);
  };

  const params = FILE_PARAMETERS.get(await item(FILE_PARAMETERS_GUID, FILE_PARAMETERS.len), 0);
  const { size: rawSize } = VIRTUAL_DISK_SIZE.get(await item(VIRTUAL_DISK_SIZE_GUID, VIRTUAL_DISK_SIZE.len), 0);
  const { diskId } = PAGE83.get(await item(PAGE83_GUID, PAGE83.len), 0);
  const { size: lss } = SECTOR_SIZE.get(await item(LOGICAL_SECTOR_SIZE_GUID, SECTOR_SIZE.len), 0);
  const { size: pss } = SECTOR_SIZE.get(await item(PHYSICAL_SECTOR_SIZE_GUID, SECTOR_SIZE.len), 0);

  // Differencing: refuse before the BAT, whose layout and states differ (sector bitmaps, PARTIALLY_PRESENT).
  if ((params.flags & HAS_PARENT) !== 0) {
    // The locator is required with HasParent [MS-VHDX §2.6.2.6] (qemu: -EINVAL without it); either way the disk
    // cannot be read without its parent, so the error is E_UNSUPPORTED, naming the parent when the locator can.
    const locator = items.get(PARENT_LOCATOR_GUID);
    const parent =
      locator && locator.length > 0
        ? describeParent(await readRange(src, region.offset + locator.offset, locator.length, 'Parent Locator item'))
        : 'no Parent Locator item names the parent';
    throw new VerityError(
      'E_UNSUPPORTED',
      `VHDX is a differencing disk: it holds only changes to a parent disk, which is needed to read it; ${parent}.`,
    );
  }

  const bs = params.blockSize;
  if (bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    throw bad(`block size ${bs} is not a power of two from 1 MiB to 256 MiB.`);
  }
  if (lss !== 512 && lss !== 4096) throw bad(`logical sector size ${lss} is neither 512 nor 4096.`);
  if (pss !== 512 && pss !== 4096) throw bad(`physical sector size ${pss} is neither 512 nor 4096.`);
  if (rawSize > BigInt(MAX_VIRTUAL_DISK_SIZE)) throw bad(`virtual disk size ${rawSize} exceeds the 64 TiB maximum.`);
  const virtualSize = Number(rawSize);
  if (virtualSize % lss !== 0) {
    throw bad(`virtual disk size ${virtualSize} is not a multiple of the ${lss}-byte logical sector.`);
  }
  return {
    blockSize: bs,
    fixed: (params.flags & LEAVE_BLOCKS_ALLOCATED) !== 0,
    virtualSize,
    logicalSectorSize: lss,
    physicalSectorSize: pss,
    diskId,
  };
}

/**
 * The parent's identity and paths from a Parent Locator item [MS-VHDX §2.6.2.6]: parent_linkage (the parent's
 * DataWriteGuid) and the paths, in the order the spec says to try them. Only for the error message, so a malformed
 * locator gives a shorter message rather than another error.
 */
function describeParent(item: Uint8Array): string {
  if (item.length < PARENT_LOCATOR_HEADER.len) return 'its parent locator is too short to read';
  const head = PARENT_LOCATOR_HEADER.get(item, 0);
  const pairs = new Map<string, string>();
  for (let i = 0; i < head.keyValueCount; i++) {
    const at = PARENT_LOCATOR_HEADER.len + i * PARENT_LOCATOR_ENTRY.len;
    if (at + PARENT_LOCATOR_ENTRY.len > item.length) break;
    const e = PARENT_LOCATOR_ENTRY.get(item, at);
    if (e.keyOffset + e.keyLength > item.length || e.valueOffset + e.valueLength > item.length) continue;
    const key = decodeUtf16(item.subarray(e.keyOffset, e.keyOffset + e.keyLength));
    pairs.set(key, decodeUtf16(item.subarray(e.valueOffset, e.valueOffset + e.valueLength)));
  }
  const keys = ['parent_linkage', 'parent_linkage2', 'relative_path', 'volume_path', 'absolute_win32_path'];
  const shown = keys.filter((k) => pairs.has(k)).map((k) => `${k} "${pairs.get(k)}"`);
  const type = head.locatorType === VHDX_PARENT_LOCATOR_TYPE ? '' : `locator type ${head.locatorType}; `;
  return shown.length ? `parent: ${type}${shown.join(', ')}` : `${type}its parent locator names no parent`;
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading the virtual disk

class VhdxReader implements VhdxImage {
  readonly size: number;
  readonly sequential?: SequentialMap;
  private readonly blockSize: number;

  constructor(
    private readonly src: ByteSource,
    private readonly map: BlockMap,
    readonly info: VhdxInfo,
  ) {
    this.size = info.virtualSize;
    this.blockSize = info.blockSize;
    const inner = src.sequential;
    if (inner) {
      this.sequential = {
        origin: inner.origin,
        runs: (offset, length) => this.originRuns(inner, offset, length),
        ...(inner.patch && { patch: inner.patch }),
      };
    }
  }

  /** The present payload blocks in [offset, offset + length), as runs of the stream the file comes from. */
  private originRuns(inner: SequentialMap, offset: number, length: number): OriginRun[] {
    const bs = this.blockSize;
    const { blocks, offsets } = this.map;
    const end = Math.min(this.size, offset + length);
    const runs: OriginRun[] = [];
    for (let i = this.map.firstAtOrAfter(Math.floor(offset / bs)); i < blocks.length && blocks[i]! * bs < end; i++) {
      const blockStart = blocks[i]! * bs;
      const from = Math.max(offset, blockStart);
      const until = Math.min(end, blockStart + bs);
      const fileAt = offsets[i]! + (from - blockStart);
      for (const r of inner.runs(fileAt, until - from)) runs.push({ ...r, at: from + (r.at - fileAt) });
    }
    return runs.sort((a, b) => a.from - b.from);
  }

  /**
   * The payload blocks in [offset, offset + length) that are not in the file: every BAT state but FULLY_PRESENT
   * (NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED) reads as zeros in a non-differencing file [MS-VHDX §2.5.1.1], which is
   * what `read` returns for them too, so a pass can take them as zeros without reading.
   */
  knownZero(offset: number, length: number): ByteRange[] {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) return [];
    const bs = this.blockSize;
    const { blocks } = this.map;
    const end = Math.min(this.size, offset + length);
    const out: ByteRange[] = [];
    let at = offset;
    // One step per present block in the window: absent stretches cost nothing however long they are.
    for (let i = this.map.firstAtOrAfter(Math.floor(at / bs)); at < end; i++) {
      const present = i < blocks.length ? blocks[i]! * bs : end;
      const gapEnd = Math.min(end, present);
      if (at < gapEnd) out.push({ at, length: gapEnd - at });
      at = Math.max(at, present + bs);
    }
    return out;
  }

  /**
   * Where [offset, offset + length) lies in files when every payload block it touches is present: the blocks lie in
   * the file as `read` reads them (a replayed log's source has no file spans, so its bytes are always read).
   */
  fileSpans(offset: number, length: number): FileSpan[] | undefined {
    if (!this.src.fileSpans) return undefined;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || offset + length > this.size) {
      return undefined;
    }
    const bs = this.blockSize;
    const { blocks, offsets } = this.map;
    const ranges: ByteRange[] = [];
    let i = this.map.firstAtOrAfter(Math.floor(offset / bs));
    for (let at = offset; at < offset + length; i++) {
      const block = Math.floor(at / bs);
      if (i >= blocks.length || blocks[i] !== block) return undefined;
      const n = Math.min(offset + length - at, (block + 1) * bs - at);
      ranges.push({ at: offsets[i]! + (at - block * bs), length: n });
      at += n;
    }
    return spansOf(this.src, ranges);
  }

  /**
   * Walks the request block by block through the BAT (payload blocks are in allocation order, not virtual order):
   * runs of absent blocks are zero-filled at once, and runs of present blocks that are also contiguous in the file
   * are read with one read straight into `dst`.
   */
  async read(dst: Uint8Array, position: number): Promise<number> {
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new VerityError('E_PARAM', `Read position ${position} is not a byte offset.`);
    }
    if (position >= this.size) return 0;
    const n = Math.min(dst.length, this.size - position);
    const bs = this.blockSize;
    const { blocks, offsets } = this.map;
    let done = 0;
    let block = Math.floor(position / bs);
    let next = this.map.firstAtOrAfter(block);
    while (done < n) {
      const v = position + done;
      const inBlock = v - block * bs;
      if (next < blocks.length && blocks[next] === block) {
        // Extend over following blocks that are present and follow this one in the file.
        const fileStart = offsets[next]! + inBlock;
        let end = Math.min(n, (block + 1) * bs - position);
        const followsInFile = (i: number) => blocks[i] === blocks[i - 1]! + 1 && offsets[i] === offsets[i - 1]! + bs;
        while (end < n && next + 1 < blocks.length && followsInFile(next + 1)) {
          next++;
          block++;
          end = Math.min(n, (block + 1) * bs - position);
        }
        await readFully(this.src, dst.subarray(done, end), fileStart, `payload block ${block}`);
        done = end;
        next++;
      } else {
        // Absent up to the next present block (or the end of the request).
        const until = next < blocks.length ? blocks[next]! * bs - position : n;
        const end = Math.min(n, until);
        dst.fill(0, done, end);
        done = end;
      }
      block = Math.floor((position + done) / bs);
    }
    return n;
  }
}

function bad(message: string): VerityError {
  return new VerityError('E_BAD_IMAGE', `VHDX ${message}`);
}
