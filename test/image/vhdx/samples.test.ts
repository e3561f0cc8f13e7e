/**
 * The qemu-iotests samples (Hyper-V, Disk2VHD, and a dirty log made by qemu 1.6 and replayed by Hyper-V): they must read as
 * [MS-VHDX] §2.5 says and hash as qemu-img's raw conversion does.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { openVhdx } from '../../../src/image/vhdx/vhdx.js';
import { openFileSource } from '../../../src/files/files.js';
import { MBR, MBR_SIGNATURE } from '../../../src/image/mbr.js';
import { HEADER, HEADER_OFFSETS, LOG_SECTOR_SIZE } from '../../../src/image/vhdx/structures.js';
import { Rng } from '../../support/rng.js';
import { GiB, HAS_BZIP2, MiB, SKIP_BZIP2, bunzip, counted, expectSame, findNot, open, readAll, sha256File, sha256Of, useWorkDir } from './helpers.js';

useWorkDir();

describe(`qemu-iotests samples${SKIP_BZIP2}`, () => {
  const paths: Record<string, string> = {};
  beforeAll(async () => {
    if (!HAS_BZIP2) return;
    const names = ['iotest-dirtylog-10G-4M.vhdx.bz2', 'iotest-dynamic-1G.vhdx.bz2', 'test-disk2vhd.vhdx.bz2'];
    const out = await Promise.all(names.map(bunzip));
    names.forEach((n, i) => (paths[n.replace('.vhdx.bz2', '')] = out[i]!));
  }, 60_000);

  it.skipIf(!HAS_BZIP2)('iotest-dynamic-1G (Hyper-V): 0xa5 to 33 MiB, 0x96 to 66 MiB, zeros to 1 GiB (qemu test 064)', async () => {
    const src = await openFileSource(paths['iotest-dynamic-1G']!);
    try {
      const img = await openVhdx(src);
      expect(img.info).toMatchObject({
        creator: 'Microsoft Windows 6.2.9200.16384',
        virtualSize: GiB,
        blockSize: 32 * MiB,
        logicalSectorSize: 512,
        physicalSectorSize: 4096,
        chunkRatio: 128,
        subformat: 'dynamic',
        header: { current: 2, valid: [true, true], sequenceNumber: 15n },
        regionTable: 1,
        bat: { offset: 3 * MiB, required: true, entries: 32 },
        metadata: { offset: 2 * MiB, required: true },
        replay: null,
        blocks: { fullyPresent: 3, zero: 29, notPresent: 0, total: 32 },
      });
      expect(await findNot(img, 0xa5, 0, 33 * MiB)).toBeNull();
      expect(await findNot(img, 0x96, 33 * MiB, 66 * MiB)).toBeNull();
      expect(await findNot(img, 0x00, 66 * MiB, GiB)).toBeNull();
      // qemu-img convert -O raw of this image hashes to this.
      expect(await sha256Of(img)).toBe('d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478');
    } finally {
      await src.close();
    }
  });

  it.skipIf(!HAS_BZIP2)('test-disk2vhd (Disk2VHD): identical headers with equal sequence numbers, an MBR, 256 MiB (qemu test 070)', async () => {
    const src = await openFileSource(paths['test-disk2vhd']!);
    try {
      const img = await openVhdx(src);
      expect(img.size).toBe(268435456);
      expect(img.info).toMatchObject({
        creator: 'd2v',
        blockSize: 2 * MiB,
        chunkRatio: 2048,
        header: { current: 1, valid: [true, true], sequenceNumber: 1n },
        blocks: { fullyPresent: 128, total: 128 },
      });
      const mbr = MBR.get(await readAll(img, 0, MBR.len), 0);
      expect(mbr.signature).toBe(MBR_SIGNATURE); // bytes 55 aa
      const p = mbr.partitionRecords[0]!;
      expect({ type: p.osType, lba: p.startingLba, sectors: p.sizeInLba }).toEqual({ type: 6, lba: 128, sectors: 518144 });
      expect(await findNot(img, 0, MiB, img.size)).toBeNull();
      expect(await sha256Of(img)).toBe('96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a');
    } finally {
      await src.close();
    }
  });

  it.skipIf(!HAS_BZIP2)('iotest-dirtylog-10G-4M (dirty log): replayed in memory, 0xa5 to 18 MiB, then zeros (qemu test 070)', async () => {
    const before = sha256File(paths['iotest-dirtylog-10G-4M']!);
    const file = await openFileSource(paths['iotest-dirtylog-10G-4M']!);
    try {
      const { src, stats } = counted(file);
      const img = await openVhdx(src);
      expect(stats.largest).toBeLessThanOrEqual(MiB);
      expect(img.info).toMatchObject({
        creator: 'QEMU v1.6.50',
        virtualSize: 10 * GiB,
        blockSize: MiB,
        chunkRatio: 4096,
        header: { current: 2, sequenceNumber: 932638741n, logGuid: 'c82755bc-427f-1245-b72c-da70aaabe031' },
        bat: { offset: 2 * MiB, required: false, entries: 10242 },
        replay: { replayed: true, entries: 1, firstSequence: 7n, lastSequence: 7n, sectorsWritten: 1, discardedEntries: 0 },
        blocks: { fullyPresent: 18, notPresent: 10222, total: 10240 },
      });
      // 0xa5 ends at 0x1200000 after replay (0x1100000 without): exactly what qemu's `read -pP 0xa5 0 18M` checks.
      expect(await findNot(img, 0xa5, 0, 18 * MiB)).toBeNull();
      expect((await readAll(img, 18 * MiB, 1))[0]).toBe(0);
      // The rest of the 10 GiB: zeros at every block boundary region, and no present block beyond 18 MiB.
      const rng = new Rng(70);
      for (let i = 0; i < 64; i++) {
        const at = rng.int(18 * MiB, 10 * GiB - 65536);
        expectSame(await readAll(img, at, 65536), new Uint8Array(65536));
      }
      expect(await findNot(img, 0, 18 * MiB, 64 * MiB)).toBeNull();
    } finally {
      await file.close();
    }
    expect(sha256File(paths['iotest-dirtylog-10G-4M']!), 'the file is never written').toBe(before);
  });

  it.skipIf(!HAS_BZIP2)('iotest-dirtylog-10G-4M with its log entry torn (bad CRC): not replayed, 0xa5 ends at 17 MiB', async () => {
    const bytes = new Uint8Array(readFileSync(paths['iotest-dirtylog-10G-4M']!));
    // Inside the entry's data sector: the entry is at log offset 0xC000 (log at 1 MiB), its data sector the one after.
    const logOffset = Number(HEADER.get(bytes, HEADER_OFFSETS[1]).logOffset);
    bytes[logOffset + 0xc000 + LOG_SECTOR_SIZE + 100]! ^= 0xff;
    const img = await open(bytes);
    expect(img.info.replay).toMatchObject({ replayed: false, entries: 0, discardedEntries: 1 });
    expect(img.info.blocks.fullyPresent).toBe(17);
    expect(await findNot(img, 0xa5, 0, 17 * MiB)).toBeNull();
    expect(await findNot(img, 0, 17 * MiB, 18 * MiB)).toBeNull();
  });

  it.skipIf(!HAS_BZIP2)('a sample corrupted in the current header falls back to the other one', async () => {
    const bytes = new Uint8Array(readFileSync(paths['iotest-dynamic-1G']!));
    bytes[HEADER_OFFSETS[1] + 200]! ^= 1; // a reserved byte of header 2 (current, seq 15): checksum now fails
    const img = await open(bytes);
    expect(img.info.header).toMatchObject({ current: 1, valid: [true, false], sequenceNumber: 14n });
    expect(await findNot(img, 0x96, 33 * MiB, 66 * MiB)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------------------------------
