/**
 * VHDX files built in memory by the test writer (test/support/vhdx-writer.ts): any block size, 4096-byte logical sectors,
 * sector bitmap entries. When qemu-img is installed, it reads the same files and must agree.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openVhdx } from '../../../src/image/vhdx/vhdx.js';
import { bytesSource } from '../../../src/io/source.js';
import { Rng } from '../../support/rng.js';
import { u64leBig } from '../../../src/binary/struct.js';
import { BAT_ENTRY_SIZE, PayloadState } from '../../../src/image/vhdx/structures.js';
import { BAT_OFFSET, buildVhdx, G, type Spec } from '../../support/vhdx-writer.js';
import { GiB, HAS_QEMU_IMG, MiB, SKIP_QEMU, counted, expectError, expectMatchesModel, expectSame, open, qemuRaw, readAll, useWorkDir } from './helpers.js';

const { NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, UNMAPPED_V095 } = PayloadState;

useWorkDir();

describe('images from the test writer', () => {
  const cases: Array<{ name: string; spec: Spec }> = [
    { name: '1 MiB blocks, allocation order shuffled', spec: { virtualSize: 64 * MiB, blockSize: MiB, present: [40, 3, 0, 63, 17, 18, 19, 5] } },
    { name: '2 MiB blocks, size not a multiple of the block size', spec: { virtualSize: 33 * MiB + 512, blockSize: 2 * MiB, present: [16, 0, 7] } },
    { name: 'ZERO, UNMAPPED, UNDEFINED and legacy UNMAPPED (5) states read as zeros', spec: { virtualSize: 16 * MiB, blockSize: MiB, present: [1, 6], states: { 0: ZERO, 2: UNMAPPED, 3: UNDEFINED, 4: UNMAPPED_V095, 5: NOT_PRESENT } } },
    { name: '4096-byte logical sectors (chunk ratio 32768)', spec: { virtualSize: 24 * MiB, blockSize: MiB, lss: 4096, pss: 4096, present: [23, 2, 11] } },
    { name: 'fixed (LeaveBlocksAllocated), 8 MiB blocks', spec: { virtualSize: 48 * MiB, blockSize: 8 * MiB, fixed: true, present: [5, 4, 3, 2, 1, 0] } },
    { name: 'an empty disk (size 0)', spec: { virtualSize: 0, blockSize: MiB } },
  ];

  it.each(cases)('$name', async ({ spec }) => {
    const built = buildVhdx(spec);
    const img = await open(built.file);
    expect(img.size).toBe(spec.virtualSize);
    expect(img.info).toMatchObject({
      logicalSectorSize: spec.lss ?? 512,
      chunkRatio: built.chunkRatio,
      subformat: spec.fixed ? 'fixed' : 'dynamic',
      diskId: G.diskId,
      creator: 'verity test writer',
      blocks: { fullyPresent: spec.present?.length ?? 0 },
    });
    await expectMatchesModel(img, built, spec.blockSize);
    // Unaligned reads across block boundaries, and one read of the whole disk.
    const rng = new Rng(spec.virtualSize + spec.blockSize);
    for (let i = 0; i < 40 && spec.virtualSize > 0; i++) {
      const at = rng.int(0, spec.virtualSize - 1);
      const len = rng.logInt(1, 3 * spec.blockSize);
      expectSame(await readAll(img, at, len), built.expected(at, len));
    }
    expectSame(await readAll(img, 0, spec.virtualSize + 4096), built.expected(0, spec.virtualSize));
  });

  it('sector bitmap entries are interleaved every chunk ratio entries (5 GiB, 1 MiB blocks: entries 4096 and 8193)', async () => {
    // Blocks either side of both sector bitmap entries; the SB entries themselves hold garbage, as qemu < 7.2.2 left
    // them (qemu issue 727), and must be ignored.
    const spec: Spec = { virtualSize: 5 * GiB, blockSize: MiB, present: [4095, 4096, 4097, 8191, 8192, 5119] };
    const built = buildVhdx(spec);
    u64leBig.put(built.file, BAT_OFFSET + 4096 * BAT_ENTRY_SIZE, 0x1234567890abcdefn); // entry 4096: chunk 0's bitmap
    expect(built.batIndex(4096)).toBe(4097);
    expect(built.batEntries).toBe(5121);
    const img = await open(built.file);
    expect(img.info.bat.entries).toBe(5121);
    for (const b of [...spec.present!, 0, 4094, 4098, 8190, 8193, 5118]) {
      expectSame(await readAll(img, b * MiB, MiB), built.expected(b * MiB, MiB));
    }
    // One read across the whole interleaved region.
    expectSame(await readAll(img, 4094 * MiB + 12345, 5 * MiB), built.expected(4094 * MiB + 12345, 5 * MiB));
  });

  it('4096-byte logical sectors with a sector bitmap entry inside the disk (40 GiB, 1 MiB blocks: entry 32768)', async () => {
    const spec: Spec = { virtualSize: 40 * GiB, blockSize: MiB, lss: 4096, present: [32767, 32768, 40959] };
    const built = buildVhdx(spec);
    expect(built.chunkRatio).toBe(32768);
    const img = await open(built.file);
    expect(img.info).toMatchObject({ chunkRatio: 32768, bat: { entries: 40961 }, blocks: { fullyPresent: 3, total: 40960 } });
    for (const b of [32766, 32767, 32768, 32769, 40959]) {
      expectSame(await readAll(img, b * MiB, MiB), built.expected(b * MiB, MiB));
    }
  });

  it('a read larger than the remaining disk is short; reads at or past the end return 0', async () => {
    const built = buildVhdx({ virtualSize: 3 * MiB, blockSize: MiB, present: [2] });
    const img = await open(built.file);
    const buf = new Uint8Array(2 * MiB);
    expect(await img.read(buf, 2 * MiB + 100)).toBe(MiB - 100);
    expectSame(buf.subarray(0, MiB - 100), built.expected(2 * MiB + 100, MiB));
    expect(await img.read(buf, 3 * MiB)).toBe(0);
    expect(await img.read(buf, 10 * GiB)).toBe(0);
    expect(await img.read(new Uint8Array(0), 0)).toBe(0);
    await expectError(img.read(buf, -1), 'E_PARAM', /position/);
  });

  it('a contiguous run of present blocks is read with one read of the file', async () => {
    const built = buildVhdx({ virtualSize: 16 * MiB, blockSize: MiB, present: [0, 1, 2, 3, 4, 5, 6, 7, 9, 8] });
    const { src, stats } = counted(bytesSource(built.file));
    const img = await openVhdx(src);
    stats.reads = 0;
    stats.largest = 0;
    const buf = new Uint8Array(16 * MiB);
    await img.read(buf, 0);
    // blocks 0-7 are contiguous in the file (one read), 8 and 9 are swapped (two reads), 10-15 are zero-filled.
    expect(stats).toEqual({ reads: 3, largest: 8 * MiB });
    expectSame(buf, built.expected(0, 16 * MiB));
  });

  it.skipIf(!HAS_QEMU_IMG)(`qemu-img reads the writer's images the same way${SKIP_QEMU}`, async () => {
    for (const [i, c] of cases.entries()) {
      if ((c.spec.lss ?? 512) !== 512) continue; // qemu 7.2 only supports 512-byte logical sectors (-ENOTSUP)
      if (c.spec.virtualSize === 0) continue;
      const built = buildVhdx(c.spec);
      const raw = qemuRaw(built.file, `writer-${i}`);
      expectSame(new Uint8Array(readFileSync(raw)), built.expected(0, c.spec.virtualSize), c.name);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------------
