/**
 * Every VHDX structure is read and written from one declaration (src/image/vhdx/structures.ts). Both directions are
 * pinned: writing back what was read changes no byte (on files Hyper-V, Disk2VHD and qemu 1.6 wrote, the qemu-iotests
 * samples, and on the test writer's), and reading back what was written gives the value written.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Field, Placed, Struct, StructValue } from '../../../src/binary/struct.js';
import {
  BAT_ENTRY,
  BAT_ENTRY_SIZE,
  BAT_REGION_GUID,
  checksumOf,
  DATA_DESCRIPTOR,
  DATA_DESCRIPTOR_SIGNATURE,
  descriptorSectors,
  FILE_IDENTIFIER,
  FILE_PARAMETERS,
  FILE_PARAMETERS_GUID,
  HEADER,
  HEADER_OFFSETS,
  HEADER_SIZE,
  joinLogSector,
  LOG_DATA_SECTOR,
  LOG_DESCRIPTOR_SIZE,
  LOG_DESCRIPTORS_AT,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_SIGNATURE,
  LOG_SECTOR_SIZE,
  LOGICAL_SECTOR_SIZE_GUID,
  type LogEntryValue,
  type LogUpdate,
  METADATA_ENTRY,
  METADATA_REGION_GUID,
  METADATA_TABLE_HEADER,
  metadataEntryAt,
  PAGE83,
  PAGE83_GUID,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_GUID,
  PARENT_LOCATOR_HEADER,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS,
  REGION_TABLE_SIZE,
  regionEntryAt,
  sealChecksum,
  SECTOR_SIZE,
  serializeHeader,
  serializeLogEntry,
  serializeRegionTable,
  VIRTUAL_DISK_SIZE,
  VIRTUAL_DISK_SIZE_GUID,
  ZERO_DESCRIPTOR,
} from '../../../src/image/vhdx/structures.js';
import { buildVhdx, G, logEntry } from '../../support/vhdx-writer.js';
import { bunzip, expectSame, HAS_BZIP2, MiB, SKIP_BZIP2, useWorkDir } from './helpers.js';

useWorkDir();

/** parse∘serialise: the value read at `at` writes back the same bytes. */
function rewritesItself<T>(decl: Field<T>, file: Uint8Array, at: number): T {
  const value = decl.get(file, at);
  const copy = new Uint8Array(decl.len);
  decl.put(copy, 0, value);
  expectSame(copy, file.subarray(at, at + decl.len), `${(decl as { name?: string }).name ?? 'field'} at ${at}`);
  return value;
}

/** serialise∘parse: the bytes written for `value` read back as `value`. */
function readsBack<F extends Record<string, Placed<any>>>(decl: Struct<F>, value: StructValue<F>): void {
  const bytes = decl.serialize(value);
  expect(bytes.length).toBe(decl.len);
  expect(decl.get(bytes, 0)).toEqual(value);
}

/** The declaration of each known metadata item, by ItemId. */
const ITEMS: Record<string, Struct<any>> = {
  [FILE_PARAMETERS_GUID]: FILE_PARAMETERS,
  [VIRTUAL_DISK_SIZE_GUID]: VIRTUAL_DISK_SIZE,
  [PAGE83_GUID]: PAGE83,
  [LOGICAL_SECTOR_SIZE_GUID]: SECTOR_SIZE,
  [PHYSICAL_SECTOR_SIZE_GUID]: SECTOR_SIZE,
};

/** A log entry read back into what `serializeLogEntry` takes, through the declarations only. */
function parseLogEntry(entry: Uint8Array): LogEntryValue {
  const h = LOG_ENTRY_HEADER.get(entry, 0);
  const updates: LogUpdate[] = [];
  let dataAt = descriptorSectors(h.descriptorCount) * LOG_SECTOR_SIZE;
  for (let i = 0; i < h.descriptorCount; i++) {
    const at = LOG_DESCRIPTORS_AT + i * LOG_DESCRIPTOR_SIZE;
    if (DATA_DESCRIPTOR.get(entry, at).signature === DATA_DESCRIPTOR_SIGNATURE) {
      const d = rewritesItself(DATA_DESCRIPTOR, entry, at);
      const s = rewritesItself(LOG_DATA_SECTOR, entry, dataAt);
      expect((BigInt(s.sequenceHigh) << 32n) | BigInt(s.sequenceLow)).toBe(h.sequenceNumber);
      updates.push({ fileOffset: d.fileOffset, sector: joinLogSector(d, s) });
      dataAt += LOG_SECTOR_SIZE;
    } else {
      const z = rewritesItself(ZERO_DESCRIPTOR, entry, at);
      updates.push({ fileOffset: z.fileOffset, zeroLength: z.zeroLength });
    }
  }
  const { sequenceNumber, logGuid, tail, flushedFileOffset, lastFileOffset } = h;
  return { sequenceNumber, logGuid, tail, flushedFileOffset, lastFileOffset, updates };
}

/** What `roundTripFile` went through, to show it went through everything. */
interface Seen {
  items: string[];
  batEntries: number;
  logEntries: number;
  /** Log entries with stale bytes after their last descriptor (see roundTripFile). */
  stalePadding: number;
}

/**
 * Round-trips every structure of a whole VHDX file, found as the reader finds them: identifier, headers, region
 * tables, metadata table and items, the whole BAT, and every log entry with a valid checksum. The structures that
 * carry a checksum are also rebuilt whole by their serialiser, which must compute the checksum stored.
 */
function roundTripFile(file: Uint8Array): Seen {
  const seen: Seen = { items: [], batEntries: 0, logEntries: 0, stalePadding: 0 };
  expect(rewritesItself(FILE_IDENTIFIER, file, 0).signature).toBe('vhdxfile');

  const headers = HEADER_OFFSETS.map((at) => rewritesItself(HEADER, file, at));
  for (const [i, at] of HEADER_OFFSETS.entries()) expectSame(serializeHeader(headers[i]!), file.subarray(at, at + HEADER_SIZE), 'header');

  const regions = new Map<string, { offset: number; length: number }>();
  for (const at of REGION_TABLE_OFFSETS) {
    const { entryCount } = rewritesItself(REGION_TABLE_HEADER, file, at);
    expect(entryCount).toBeGreaterThanOrEqual(2);
    const entries = Array.from({ length: entryCount }, (_, i) => rewritesItself(REGION_ENTRY, file, at + regionEntryAt(i)));
    expectSame(serializeRegionTable(entries), file.subarray(at, at + REGION_TABLE_SIZE), 'region table');
    for (const e of entries) regions.set(e.guid, { offset: Number(e.fileOffset), length: e.length });
  }

  const metadataAt = regions.get(METADATA_REGION_GUID)!.offset;
  const { entryCount } = rewritesItself(METADATA_TABLE_HEADER, file, metadataAt);
  for (let i = 0; i < entryCount; i++) {
    const e = rewritesItself(METADATA_ENTRY, file, metadataAt + metadataEntryAt(i));
    const itemAt = metadataAt + e.offset;
    if (ITEMS[e.itemId]) rewritesItself(ITEMS[e.itemId]!, file, itemAt);
    if (e.itemId === PARENT_LOCATOR_GUID) {
      const { keyValueCount } = rewritesItself(PARENT_LOCATOR_HEADER, file, itemAt);
      for (let k = 0; k < keyValueCount; k++) rewritesItself(PARENT_LOCATOR_ENTRY, file, itemAt + PARENT_LOCATOR_HEADER.len + k * PARENT_LOCATOR_ENTRY.len);
    }
    seen.items.push(e.itemId);
  }

  // The whole BAT region, sector bitmap entries and unused entries included, decoded and encoded again.
  const bat = regions.get(BAT_REGION_GUID)!;
  const batBytes = file.subarray(bat.offset, bat.offset + bat.length);
  const rewritten = new Uint8Array(batBytes.length);
  for (let at = 0; at < batBytes.length; at += BAT_ENTRY_SIZE) BAT_ENTRY.put(rewritten, at, BAT_ENTRY.get(batBytes, at));
  expectSame(rewritten, batBytes, 'BAT');
  seen.batEntries = batBytes.length / BAT_ENTRY_SIZE;

  // Every sealed log entry, wherever it lies in the log (entries of other LogGuids too: they are well formed).
  const current = headers[0]!.sequenceNumber >= headers[1]!.sequenceNumber ? headers[0]! : headers[1]!;
  const logAt = Number(current.logOffset);
  for (let at = logAt; at < logAt + current.logLength; at += LOG_SECTOR_SIZE) {
    if (LOG_ENTRY_HEADER.get(file, at).signature !== LOG_ENTRY_SIGNATURE) continue;
    const h = rewritesItself(LOG_ENTRY_HEADER, file, at);
    const entry = file.subarray(at, at + h.entryLength);
    if (at + h.entryLength > logAt + current.logLength || checksumOf(LOG_ENTRY_HEADER, entry) !== h.checksum) continue;
    const rebuilt = serializeLogEntry(parseLogEntry(entry));
    seen.logEntries++;
    // The rest of the last descriptor sector is defined by no field; the serialiser writes zeros there. qemu 1.6 left
    // stale bytes in it, which the checksum covers: those entries match once that span is zeroed and resealed.
    const unused = [LOG_DESCRIPTORS_AT + h.descriptorCount * LOG_DESCRIPTOR_SIZE, descriptorSectors(h.descriptorCount) * LOG_SECTOR_SIZE];
    if (entry.subarray(...unused).every((b) => b === 0)) {
      expectSame(rebuilt, entry, `log entry at ${at}`);
    } else {
      seen.stalePadding++;
      const zeroed = entry.slice();
      zeroed.fill(0, ...unused);
      expectSame(rebuilt, sealChecksum(LOG_ENTRY_HEADER, zeroed), `log entry at ${at}, unused descriptor bytes zeroed`);
    }
  }
  return seen;
}

const ALL_ITEMS = [FILE_PARAMETERS_GUID, VIRTUAL_DISK_SIZE_GUID, PAGE83_GUID, LOGICAL_SECTOR_SIZE_GUID, PHYSICAL_SECTOR_SIZE_GUID];

describe('VHDX structures read and write the same bytes', () => {
  it.skipIf(!HAS_BZIP2).each([
    { name: 'test-disk2vhd.vhdx.bz2', batEntries: 131072, logEntries: 0, stalePadding: 0 },
    // Hyper-V left two stale entries (their LogGuid is not the header's, which is zero).
    { name: 'iotest-dynamic-1G.vhdx.bz2', batEntries: 131072, logEntries: 2, stalePadding: 0 },
    // qemu 1.6 left seven entries of one data sector each, two of them with stale bytes after their descriptor.
    { name: 'iotest-dirtylog-10G-4M.vhdx.bz2', batEntries: 131072, logEntries: 7, stalePadding: 2 },
  ])(`on $name${SKIP_BZIP2}`, async ({ name, ...counts }) => {
    const seen = roundTripFile(new Uint8Array(readFileSync(await bunzip(name))));
    expect(seen).toMatchObject(counts);
    expect(seen.items).toEqual(expect.arrayContaining(ALL_ITEMS));
  });

  it('on a file and a log entry from the test writer', () => {
    roundTripFile(buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [2, 0] }).file);
    const sector = new Uint8Array(4096).map((_, i) => i * 13);
    const entry = logEntry({ seq: 0x1_0000_0002n, tail: 0, fileSize: 8 * MiB, descs: [{ target: 4096, data: sector }, { target: 8192, zero: 4096 }] });
    expect(rewritesItself(LOG_ENTRY_HEADER, entry, 0)).toMatchObject({ signature: 'loge', descriptorCount: 2 });
    const data = rewritesItself(DATA_DESCRIPTOR, entry, 64);
    expect([...data.leadingBytes]).toEqual([...sector.subarray(0, 8)]);
    expect(rewritesItself(ZERO_DESCRIPTOR, entry, 96)).toMatchObject({ signature: 'zero', zeroLength: 4096n });
    expect(rewritesItself(LOG_DATA_SECTOR, entry, 4096)).toMatchObject({ signature: 'data', sequenceHigh: 1, sequenceLow: 2 });
  });

  it('on a differencing file: the parent locator header, its entries and its strings', () => {
    const parent = { parent_linkage: '{83ffb7a5-2f1c-4b3d-8b4e-7d9b0e5f1a2c}', relative_path: '..\\parent.vhdx' };
    const { file } = buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, parent });
    expect(roundTripFile(file).items).toEqual([...ALL_ITEMS, PARENT_LOCATOR_GUID]);
  });

  it('a log entry keeps its updates: data sectors split and joined again, zero ranges, in order', () => {
    const sector = (fill: number) => new Uint8Array(LOG_SECTOR_SIZE).map((_, i) => (i * fill) & 0xff);
    const value: LogEntryValue = {
      sequenceNumber: 0x1234_5678_9abcn,
      logGuid: G.logGuid,
      tail: 3 * LOG_SECTOR_SIZE,
      flushedFileOffset: 9n * BigInt(MiB),
      lastFileOffset: 10n * BigInt(MiB),
      // 130 descriptors: more than fit beside the header (126), so the descriptors take two sectors.
      updates: Array.from({ length: 130 }, (_, i): LogUpdate =>
        i % 3 === 1 ? { fileOffset: BigInt(i * LOG_SECTOR_SIZE), zeroLength: BigInt(LOG_SECTOR_SIZE * (i + 1)) } : { fileOffset: BigInt(i * LOG_SECTOR_SIZE), sector: sector(i + 1) },
      ),
    };
    const entry = serializeLogEntry(value);
    const dataSectors = value.updates.filter((u) => 'sector' in u).length;
    expect(entry.length).toBe((2 + dataSectors) * LOG_SECTOR_SIZE);
    const h = LOG_ENTRY_HEADER.get(entry, 0);
    expect(h).toMatchObject({ entryLength: entry.length, descriptorCount: 130, sequenceNumber: value.sequenceNumber });
    expect(h.checksum).toBe(checksumOf(LOG_ENTRY_HEADER, entry));
    expect(parseLogEntry(entry)).toEqual(value);
  });
});

describe('VHDX structures read back what was written', () => {
  const guidA = '01234567-89ab-cdef-0123-456789abcdef';
  const guidB = 'fedcba98-7654-3210-fedc-ba9876543210';
  const cases: Array<[Struct<any>, Record<string, unknown>]> = [
    [FILE_IDENTIFIER, { signature: 'vhdxfile', creator: 'Créateur Hyper-V' }],
    [
      HEADER,
      {
        signature: 'head',
        checksum: 0xdeadbeef,
        sequenceNumber: 2n ** 64n - 1n,
        fileWriteGuid: guidA,
        dataWriteGuid: guidB,
        logGuid: G.logGuid,
        logVersion: 0,
        version: 1,
        logLength: MiB,
        logOffset: 2n ** 63n,
      },
    ],
    [REGION_TABLE_HEADER, { signature: 'regi', checksum: 0x01020304, entryCount: 2047 }],
    [REGION_ENTRY, { guid: BAT_REGION_GUID, fileOffset: 2n ** 64n - 1n, length: 0xfff00000, flags: 0x80000001 }],
    [METADATA_TABLE_HEADER, { signature: 'metadata', entryCount: 0xffff }],
    [METADATA_ENTRY, { itemId: PAGE83_GUID, offset: 0x10000, length: MiB, flags: 7 }],
    [FILE_PARAMETERS, { blockSize: 256 * MiB, flags: 3 }],
    [VIRTUAL_DISK_SIZE, { size: 2n ** 63n + 1n }],
    [PAGE83, { diskId: guidA }],
    [SECTOR_SIZE, { size: 4096 }],
    [PARENT_LOCATOR_HEADER, { locatorType: G.vhdxParentType, keyValueCount: 5 }],
    [PARENT_LOCATOR_ENTRY, { keyOffset: 80, valueOffset: 108, keyLength: 28, valueLength: 0xfffe }],
    [
      LOG_ENTRY_HEADER,
      {
        signature: 'loge',
        checksum: 0xcafef00d,
        entryLength: 3 * LOG_SECTOR_SIZE,
        tail: 0xff000,
        sequenceNumber: 2n ** 64n - 2n,
        descriptorCount: 126,
        logGuid: G.logGuid,
        flushedFileOffset: 2n ** 53n,
        lastFileOffset: 2n ** 63n,
      },
    ],
    [ZERO_DESCRIPTOR, { signature: 'zero', reserved: 0, zeroLength: 2n ** 40n, fileOffset: 4096n, sequenceNumber: 17n }],
    [
      DATA_DESCRIPTOR,
      { signature: 'desc', trailingBytes: new Uint8Array([1, 2, 3, 4]), leadingBytes: new Uint8Array([5, 6, 7, 8, 9, 10, 11, 12]), fileOffset: 8192n, sequenceNumber: 17n },
    ],
    [LOG_DATA_SECTOR, { signature: 'data', sequenceHigh: 0, data: new Uint8Array(4084).fill(0xa5), sequenceLow: 17 }],
  ];

  it.each(cases.map(([decl, value]) => ({ name: decl.name, decl, value })))('$name', ({ decl, value }) => {
    readsBack(decl, value);
    rewritesItself(decl, decl.serialize(value), 0);
  });

  it('VHDX BAT entry: State, Reserved and FileOffsetMB, up to the 44-bit offset', () => {
    for (const value of [
      { state: 6, reserved: 0, fileOffsetMB: 3 },
      { state: 7, reserved: 0x1ffff, fileOffsetMB: 2 ** 44 - 1 },
      { state: 0, reserved: 0, fileOffsetMB: 0 },
    ]) {
      const bytes = new Uint8Array(BAT_ENTRY_SIZE);
      BAT_ENTRY.put(bytes, 0, value);
      expect(BAT_ENTRY.get(bytes, 0)).toEqual(value);
    }
    // A FULLY_PRESENT block at 3 MiB is the word 3 MiB | 6 [MS-VHDX §2.5.1].
    const bytes = new Uint8Array(BAT_ENTRY_SIZE);
    BAT_ENTRY.put(bytes, 0, { state: 6, reserved: 0, fileOffsetMB: 3 });
    expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(BigInt(3 * MiB) | 6n);
  });

  it('serialised headers and region tables carry the CRC-32C the reader checks', () => {
    const header = serializeHeader({ ...(cases[1]![1] as StructValue<typeof HEADER.fields>), checksum: 0 });
    expect(header.length).toBe(HEADER_SIZE);
    expect(HEADER.get(header, 0).checksum).toBe(checksumOf(HEADER, header));
    const table = serializeRegionTable([{ guid: METADATA_REGION_GUID, fileOffset: 2n * BigInt(MiB), length: MiB, flags: 1 }]);
    expect(table.length).toBe(REGION_TABLE_SIZE);
    expect(REGION_TABLE_HEADER.get(table, 0)).toMatchObject({ signature: 'regi', entryCount: 1, checksum: checksumOf(REGION_TABLE_HEADER, table) });
    expect(() => serializeRegionTable(new Array(2048).fill(REGION_ENTRY.get(table, regionEntryAt(0))))).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });
});
