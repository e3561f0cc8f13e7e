/**
 * Hostile and damaged VHDX files: each gives a typed error, quickly, with bounded reads.
 */
import { describe, expect, it } from 'vitest';
import { VerityError } from '../../../src/errors.js';
import { openVhdx } from '../../../src/image/vhdx/vhdx.js';
import { bytesSource } from '../../../src/io/source.js';
import { Rng } from '../../support/rng.js';
import {
  BAT_ENTRY,
  FILE_PARAMETERS,
  HEADER,
  HEADER_OFFSETS,
  LOG_ENTRY_HEADER,
  LOG_SECTOR_SIZE,
  METADATA_ENTRY,
  METADATA_IS_REQUIRED,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_SIZE,
  PayloadState,
  REGION_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS,
  SECTOR_SIZE,
  VIRTUAL_DISK_SIZE,
  metadataEntryAt,
  regionEntryAt,
} from '../../../src/image/vhdx/structures.js';
import {
  BAT_OFFSET,
  batEntry,
  buildVhdx,
  G,
  itemAt,
  LOG_LENGTH,
  LOG_OFFSET,
  logEntry,
  META_OFFSET,
  patch,
  placeLog,
  resealHeader,
  resealRegionTable,
  type Built,
} from '../../support/vhdx-writer.js';
import { KiB, MiB, counted, expectError, expectMatchesModel, open, readAll } from './helpers.js';

describe('hostile and damaged images: a typed error, quickly, with bounded reads', () => {
  const base = () => buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, present: [3, 0, 7] });
  const setRegionEntry = (file: Uint8Array, index: number, fields: { offset?: number; length?: number; guid?: string; flags?: number }) => {
    for (const copy of REGION_TABLE_OFFSETS) {
      const e = copy + regionEntryAt(index);
      patch(file, REGION_ENTRY, e, {
        ...(fields.guid !== undefined ? { guid: fields.guid } : {}),
        ...(fields.offset !== undefined ? { fileOffset: BigInt(fields.offset) } : {}),
        ...(fields.length !== undefined ? { length: fields.length } : {}),
        ...(fields.flags !== undefined ? { flags: fields.flags } : {}),
      });
      if (index >= REGION_TABLE_HEADER.get(file, copy).entryCount) patch(file, REGION_TABLE_HEADER, copy, { entryCount: index + 1 });
      resealRegionTable(file, copy);
    }
  };
  /** Adds metadata table entry `index` for an 8-byte item at 128 KiB of the region, and counts it in. */
  const addMetadataEntry = (file: Uint8Array, index: number, itemId: string, flags: number) => {
    METADATA_ENTRY.put(file, META_OFFSET + metadataEntryAt(index), { itemId, offset: 128 * KiB, length: 8, flags });
    patch(file, METADATA_TABLE_HEADER, META_OFFSET, { entryCount: index + 1 });
  };
  const setBat = (b: Built, block: number, state: number, fileOffset = 0) => BAT_ENTRY.put(b.file, b.batEntryAt(block), batEntry(state, fileOffset));
  const { FULLY_PRESENT, PARTIALLY_PRESENT } = PayloadState;

  interface HostileCase {
    name: string;
    make: () => Uint8Array;
    code: string;
    message: RegExp;
  }
  const hostile: HostileCase[] = [
    { name: 'not VHDX at all', make: () => new Uint8Array(2 * MiB).fill(7), code: 'E_BAD_IMAGE', message: /no "vhdxfile" signature/ },
    { name: 'a 4-byte file', make: () => new Uint8Array(4), code: 'E_BAD_IMAGE', message: /too small/ },
    { name: 'truncated inside the header section', make: () => base().file.slice(0, 300 * KiB), code: 'E_TRUNCATED', message: /header section .* truncated/ },
    { name: 'truncated inside the BAT region', make: () => base().file.slice(0, BAT_OFFSET + 4096), code: 'E_TRUNCATED', message: /BAT region .* truncated/ },
    {
      name: 'truncated inside the payload',
      make: () => {
        const b = base();
        return b.file.slice(0, b.file.length - MiB / 2);
      },
      code: 'E_TRUNCATED',
      message: /BAT entry 7 \(payload block 7\) .* truncated/,
    },
    {
      name: 'both header checksums wrong',
      make: () => {
        const f = base().file;
        f[HEADER_OFFSETS[0] + 100]! ^= 1; // past the defined fields, in the reserved bytes: still covered by the checksum
        f[HEADER_OFFSETS[1] + 4000]! ^= 1;
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /neither header/,
    },
    {
      name: 'both headers valid, equal sequence numbers, different contents',
      make: () => {
        const b = base();
        b.writeHeaders([4n, 4n], G.logGuid);
        b.file[HEADER_OFFSETS[0] + 3000] = 1; // in the reserved bytes the checksum covers
        resealHeader(b.file, HEADER_OFFSETS[0]);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /same|sequence number 4 but differ/,
    },
    {
      name: 'both region tables corrupt',
      make: () => {
        const f = base().file;
        for (const copy of REGION_TABLE_OFFSETS) f[copy + regionEntryAt(0) + REGION_ENTRY.fields.guid.offset + 4]! ^= 1;
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /neither region table/,
    },
    { name: 'overlapping regions (BAT on the metadata)', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: META_OFFSET }); return f; }, code: 'E_BAD_IMAGE', message: /overlaps the BAT region|overlaps the metadata region/ },
    { name: 'a region overlapping the log', make: () => { const f = base().file; setRegionEntry(f, 1, { offset: LOG_OFFSET }); return f; }, code: 'E_BAD_IMAGE', message: /metadata region .* overlaps the log/ },
    { name: 'a region inside the header section', make: () => { const f = base().file; setRegionEntry(f, 1, { offset: 0 }); return f; }, code: 'E_BAD_IMAGE', message: /after the header section/ },
    { name: 'a region past the end of the file', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: 1024 * MiB }); return f; }, code: 'E_TRUNCATED', message: /BAT region .* truncated/ },
    { name: 'a region at offset 2^63', make: () => { const f = base().file; setRegionEntry(f, 0, { offset: 2 ** 63 }); return f; }, code: 'E_BAD_IMAGE', message: /BAT region offset .* beyond/ },
    { name: 'an unknown required region', make: () => { const f = base().file; setRegionEntry(f, 2, { guid: G.diskId, offset: 40 * MiB, length: MiB, flags: 1 }); return f; }, code: 'E_UNSUPPORTED', message: /required region 11223344/ },
    { name: 'no metadata region', make: () => { const f = base().file; setRegionEntry(f, 1, { guid: G.diskId, flags: 0 }); return f; }, code: 'E_BAD_IMAGE', message: /lacks the metadata region/ },
    { name: 'BAT entry past the end of the file', make: () => { const b = base(); setBat(b, 3, FULLY_PRESENT, 64 * MiB); return b.file; }, code: 'E_TRUNCATED', message: /BAT entry 3 \(payload block 3\) lies at bytes 67108864/ },
    { name: 'BAT entry at 2^63', make: () => { const b = base(); setBat(b, 3, FULLY_PRESENT, 2 ** 63); return b.file; }, code: 'E_BAD_IMAGE', message: /BAT entry 3 .* beyond 8 PiB/ },
    { name: 'BAT entry inside the header section', make: () => { const b = base(); setBat(b, 3, FULLY_PRESENT, 0); return b.file; }, code: 'E_BAD_IMAGE', message: /inside the 1 MiB header section/ },
    { name: 'BAT entry on the BAT region', make: () => { const b = base(); setBat(b, 3, FULLY_PRESENT, BAT_OFFSET); return b.file; }, code: 'E_BAD_IMAGE', message: /overlaps the BAT region/ },
    { name: 'two blocks at the same offset', make: () => { const b = base(); setBat(b, 9, FULLY_PRESENT, b.offsetOf.get(0)!); return b.file; }, code: 'E_BAD_IMAGE', message: /two payload blocks overlap/ },
    { name: 'PARTIALLY_PRESENT in a non-differencing disk', make: () => { const b = base(); setBat(b, 7, PARTIALLY_PRESENT, b.offsetOf.get(7)!); return b.file; }, code: 'E_BAD_IMAGE', message: /PARTIALLY_PRESENT/ },
    { name: 'reserved BAT state 4', make: () => { const b = base(); setBat(b, 1, 4); return b.file; }, code: 'E_BAD_IMAGE', message: /reserved state 4/ },
    { name: 'virtual size 2^63', make: () => { const f = base().file; patch(f, VIRTUAL_DISK_SIZE, itemAt(f, G.virtualDiskSize), { size: 1n << 63n }); return f; }, code: 'E_BAD_IMAGE', message: /exceeds the 64 TiB/ },
    { name: 'virtual size 64 TiB in a 6 MiB file', make: () => { const f = base().file; patch(f, VIRTUAL_DISK_SIZE, itemAt(f, G.virtualDiskSize), { size: 1n << 46n }); return f; }, code: 'E_BAD_IMAGE', message: /BAT region holds 131072 entries.* needs 67125247/ },
    { name: 'virtual size not a multiple of the sector', make: () => { const f = base().file; patch(f, VIRTUAL_DISK_SIZE, itemAt(f, G.virtualDiskSize), { size: 1000n }); return f; }, code: 'E_BAD_IMAGE', message: /not a multiple of the 512-byte/ },
    { name: 'block size 3 MiB', make: () => { const f = base().file; patch(f, FILE_PARAMETERS, itemAt(f, G.fileParameters), { blockSize: 3 * MiB }); return f; }, code: 'E_BAD_IMAGE', message: /block size 3145728/ },
    { name: 'block size 512 MiB', make: () => { const f = base().file; patch(f, FILE_PARAMETERS, itemAt(f, G.fileParameters), { blockSize: 512 * MiB }); return f; }, code: 'E_BAD_IMAGE', message: /block size 536870912/ },
    { name: 'block size 0', make: () => { const f = base().file; patch(f, FILE_PARAMETERS, itemAt(f, G.fileParameters), { blockSize: 0 }); return f; }, code: 'E_BAD_IMAGE', message: /block size 0 / },
    { name: 'logical sector size 1024', make: () => { const f = base().file; patch(f, SECTOR_SIZE, itemAt(f, G.logicalSectorSize), { size: 1024 }); return f; }, code: 'E_BAD_IMAGE', message: /logical sector size 1024/ },
    { name: 'physical sector size 2^32-1', make: () => { const f = base().file; patch(f, SECTOR_SIZE, itemAt(f, G.physicalSectorSize), { size: 0xffffffff }); return f; }, code: 'E_BAD_IMAGE', message: /physical sector size 4294967295/ },
    {
      name: 'a required metadata item missing',
      make: () => {
        const f = base().file;
        patch(f, METADATA_TABLE_HEADER, META_OFFSET, { entryCount: 4 }); // drops the last entry: Physical Sector Size
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /Physical Sector Size metadata item is missing/,
    },
    {
      name: 'an unknown required metadata item',
      make: () => {
        const f = base().file;
        addMetadataEntry(f, 5, G.diskId, METADATA_IS_REQUIRED);
        return f;
      },
      code: 'E_UNSUPPORTED',
      message: /required system metadata item 11223344/,
    },
    {
      name: 'a metadata item outside the region',
      make: () => {
        const f = base().file;
        patch(f, METADATA_ENTRY, META_OFFSET + metadataEntryAt(0), { offset: MiB - 4 });
        return f;
      },
      code: 'E_BAD_IMAGE',
      message: /File Parameters at offset 1048572/,
    },
    {
      name: 'a differencing disk',
      make: () =>
        buildVhdx({
          virtualSize: 16 * MiB,
          blockSize: 2 * MiB,
          parent: {
            parent_linkage: '{83ffb7a5-2f1c-4b3d-8b4e-7d9b0e5f1a2c}',
            relative_path: '..\\base\\parent.vhdx',
            absolute_win32_path: 'C:\\VMs\\base\\parent.vhdx',
          },
        }).file,
      code: 'E_UNSUPPORTED',
      message: /differencing disk.*parent_linkage "\{83ffb7a5-2f1c-4b3d-8b4e-7d9b0e5f1a2c\}", relative_path "\.\.\\base\\parent\.vhdx", absolute_win32_path "C:\\VMs\\base\\parent\.vhdx"/,
    },
    { name: 'HasParent without a parent locator', make: () => buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, parent: 'no-locator' }).file, code: 'E_UNSUPPORTED', message: /differencing disk.*no Parent Locator/ },
    {
      name: 'a log entry written when the file was longer (FlushedFileOffset)',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        placeLog(b.file, logEntry({ seq: 1n, tail: 0, fileSize: b.file.length + MiB, descs: [] }), 0);
        return b.file;
      },
      code: 'E_TRUNCATED',
      message: /log entry 1 was written when the file had/,
    },
    {
      name: 'a log entry with a valid checksum and a misaligned descriptor',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        placeLog(b.file, logEntry({ seq: 1n, tail: 0, fileSize: b.file.length, descs: [{ target: BAT_OFFSET + 8, data: new Uint8Array(4096) }] }), 0);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /log entry .* targets offset 3145736, not 4 KiB aligned/,
    },
    {
      name: 'a dirty log past the end of the file',
      make: () => {
        const b = base();
        b.writeHeaders([1n, 2n], G.logGuid);
        patch(b.file, HEADER, HEADER_OFFSETS[1], { logLength: 0xfff00000 }); // ~4 GiB
        resealHeader(b.file, HEADER_OFFSETS[1]);
        return b.file;
      },
      code: 'E_TRUNCATED',
      message: /log lies at bytes/,
    },
    {
      name: 'a misaligned log offset',
      make: () => {
        const b = base();
        patch(b.file, HEADER, HEADER_OFFSETS[1], { logOffset: BigInt(LOG_OFFSET + 4096) });
        resealHeader(b.file, HEADER_OFFSETS[1]);
        return b.file;
      },
      code: 'E_BAD_IMAGE',
      message: /log offset 1052672/,
    },
  ];

  it.each(hostile)('$name → $code', async ({ make, code, message }) => {
    const { src, stats } = counted(bytesSource(make()));
    const started = performance.now();
    await expectError(openVhdx(src), code, message);
    expect(performance.now() - started).toBeLessThan(2000);
    // No read (hence no buffer for a file structure) larger than 1 MiB, whatever the image claims.
    expect(stats.largest).toBeLessThanOrEqual(MiB);
  }, 5000);

  it('one corrupt header: the other one is used', async () => {
    const b = base();
    b.writeHeaders([9n, 4n], '00000000-0000-0000-0000-000000000000');
    expect((await open(b.file)).info.header).toMatchObject({ current: 1, valid: [true, true], sequenceNumber: 9n });
    b.file[HEADER_OFFSETS[0] + HEADER.fields.sequenceNumber.offset]! ^= 1; // header 1's sequence number: checksum fails
    const img = await open(b.file);
    expect(img.info.header).toMatchObject({ current: 2, valid: [false, true], sequenceNumber: 4n });
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('one corrupt region table: the second copy is used', async () => {
    const b = base();
    b.file[REGION_TABLE_OFFSETS[0] + REGION_TABLE_HEADER.len + REGION_ENTRY.fields.length.offset]! ^= 1;
    const img = await open(b.file);
    expect(img.info.regionTable).toBe(2);
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('an unknown optional region and an unknown optional metadata item are ignored', async () => {
    const b = base();
    setRegionEntry(b.file, 2, { guid: G.diskId, offset: 60 * MiB, length: MiB, flags: 0 });
    addMetadataEntry(b.file, 5, G.diskId, 0);
    const img = await open(b.file);
    await expectMatchesModel(img, b, MiB);
  }, 5000);

  it('a log whose every sector claims to be a whole-log entry with a bad checksum: scanned in linear time', async () => {
    const b = base();
    b.writeHeaders([1n, 2n], G.logGuid);
    const e = logEntry({ seq: 1n, tail: 0, fileSize: b.file.length, descs: [] });
    for (let s = 0; s < 256; s++) {
      const h = e.slice(0, LOG_SECTOR_SIZE);
      // EntryLength = the whole log, so each CRC would cover 1 MiB; the stored CRC is wrong anyway.
      patch(h, LOG_ENTRY_HEADER, 0, { entryLength: LOG_LENGTH, checksum: 0x12345678 });
      b.file.set(h, LOG_OFFSET + s * LOG_SECTOR_SIZE);
    }
    const started = performance.now();
    const img = await open(b.file);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(img.info.replay).toMatchObject({ replayed: false, discardedEntries: 1 });
  }, 5000);

  it('bit flips anywhere in the metadata structures give a VerityError or a readable image, never a hang', async () => {
    const rng = new Rng(4242);
    const pristine = base().file;
    const areas = [
      [HEADER_OFFSETS[0], HEADER_OFFSETS[0] + 96],
      [REGION_TABLE_OFFSETS[0], REGION_TABLE_OFFSETS[0] + 96],
      [META_OFFSET, META_OFFSET + 256],
      [META_OFFSET + METADATA_TABLE_SIZE, META_OFFSET + METADATA_TABLE_SIZE + 64],
      [BAT_OFFSET, BAT_OFFSET + 128],
    ] as const;
    for (let i = 0; i < 300; i++) {
      const f = pristine.slice();
      const [from, to] = rng.pick(areas);
      f[rng.int(from, to - 1)]! ^= 1 << rng.int(0, 7);
      const { src, stats } = counted(bytesSource(f));
      try {
        const img = await openVhdx(src);
        await readAll(img, 0, Math.min(img.size, 16 * MiB));
      } catch (e) {
        expect(e).toBeInstanceOf(VerityError);
      }
      expect(stats.largest).toBeLessThanOrEqual(16 * MiB);
    }
  }, 10_000);
});

// ---------------------------------------------------------------------------------------------------------------------
