/**
 * Images converted by `qemu-img convert -O vhdx` from sparse raw images, compared byte for byte.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openVhdx } from '../../../src/image/vhdx/vhdx.js';
import { openFileSource } from '../../../src/files/files.js';
import { Rng } from '../../support/rng.js';
import { GiB, HAS_QEMU_IMG, HAS_QEMU_IO, MiB, SKIP_QEMU, SKIP_QEMU_IO, counted, expectSame, readAll, run, sha256Of, useWorkDir, workDir, writeSparseRaw } from './helpers.js';

useWorkDir();

describe(`images converted by qemu-img 7.2${SKIP_QEMU}`, () => {
  /** A sparse raw disk: random data in scattered regions (and at both ends), zeros elsewhere. */
  function makeRaw(name: string, size: number, seed: number, regions: Array<[number, number]> = []): string {
    const rng = new Rng(seed);
    const spots: Array<[number, number]> = [[0, 4096], [size - 1536, 1536], ...regions];
    for (let i = 0; i < 14; i++) spots.push([rng.int(0, size - 1), rng.logInt(1, 3 * MiB)]);
    return writeSparseRaw(join(workDir(), `${name}.raw`), size, spots);
  }

  async function compareWithRaw(vhdxPath: string, rawPath: string, opts: { fullHash: boolean }) {
    const file = await openFileSource(vhdxPath);
    const rawFile = await openFileSource(rawPath);
    try {
      const { src, stats } = counted(file);
      const img = await openVhdx(src);
      expect(stats.largest).toBeLessThanOrEqual(MiB);
      expect(img.size).toBe(rawFile.size);
      expect(img.info.creator).toMatch(/^QEMU v7\.2/);
      if (opts.fullHash) expect(await sha256Of(img)).toBe(await sha256Of(rawFile));
      // Random reads, and reads across the first block boundaries (payload blocks are mapped one by one).
      const rng = new Rng(img.size % 100_003);
      const reads: Array<[number, number]> = [];
      for (let i = 0; i < 60; i++) reads.push([rng.int(0, img.size - 1), rng.logInt(1, 4 * MiB)]);
      const bs = img.info.blockSize;
      for (let b = 1; b < Math.min(16, img.size / bs); b++) reads.push([b * bs - rng.int(1, 70_000), rng.int(2, 140_000)]);
      for (const [at, len] of reads) expectSame(await readAll(img, at, len), await readAll(rawFile, at, len), `${len} bytes at ${at}`);
      return img;
    } finally {
      await file.close();
      await rawFile.close();
    }
  }

  const variants = [
    { subformat: 'dynamic', blockSize: '1M', size: 100 * MiB },
    { subformat: 'dynamic', blockSize: '8M', size: 100 * MiB },
    { subformat: 'dynamic', blockSize: '32M', size: 300 * MiB },
    { subformat: 'dynamic', blockSize: '256M', size: 300 * MiB },
    { subformat: 'fixed', blockSize: '1M', size: 64 * MiB },
    { subformat: 'fixed', blockSize: '32M', size: 100 * MiB },
  ];

  it.skipIf(!HAS_QEMU_IMG).each(variants)('subformat=$subformat,block_size=$blockSize: byte for byte', async ({ subformat, blockSize, size }) => {
    const name = `qemu-${subformat}-${blockSize}`;
    const raw = makeRaw(name, size, size + blockSize.length);
    const vhdx = join(workDir(), `${name}.vhdx`);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', `subformat=${subformat},block_size=${blockSize},log_size=1M`, raw, vhdx]);
    const img = await compareWithRaw(vhdx, raw, { fullHash: true });
    expect(img.info).toMatchObject({ subformat, blockSize: parseInt(blockSize) * MiB, replay: null, logicalSectorSize: 512 });
  });

  it.skipIf(!HAS_QEMU_IMG)('qemu-img convert -O raw of the VHDX gives the same bytes as reading it here', async () => {
    const raw = makeRaw('roundtrip', 48 * MiB, 5);
    const vhdx = join(workDir(), 'roundtrip.vhdx');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=2M,log_size=1M', raw, vhdx]);
    const back = join(workDir(), 'roundtrip-back.raw');
    run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', vhdx, back]);
    await compareWithRaw(vhdx, back, { fullHash: true });
  });

  it.skipIf(!HAS_QEMU_IMG)('4 GiB + 8 MiB, 1 MiB blocks: data either side of the sector bitmap entry (BAT index 4096)', async () => {
    const size = 4 * GiB + 8 * MiB;
    const raw = makeRaw('qemu-sb', size, 9, [
      [4095 * MiB - 1000, 2 * MiB + 2000],
      [4097 * MiB + 5, 3 * MiB],
    ]);
    const vhdx = join(workDir(), 'qemu-sb.vhdx');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M,log_size=1M', raw, vhdx]);
    const img = await compareWithRaw(vhdx, raw, { fullHash: false });
    expect(img.info.bat.entries).toBe(4104 + 1);
    const file = await openFileSource(vhdx);
    const rawFile = await openFileSource(raw);
    try {
      const reopened = await openVhdx(file);
      for (const at of [4094 * MiB, 4095 * MiB, 4096 * MiB, 4097 * MiB, 4098 * MiB, size - 8 * MiB]) {
        expectSame(await readAll(reopened, at, 8 * MiB), await readAll(rawFile, at, 8 * MiB));
      }
    } finally {
      await file.close();
      await rawFile.close();
    }
  });

  it.skipIf(!HAS_QEMU_IO || !HAS_QEMU_IMG)(`blocks written by qemu-io out of virtual order (allocated in write order; stale log entries)${SKIP_QEMU_IO}`, async () => {
    const vhdx = join(workDir(), 'qemu-io.vhdx');
    run('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M,log_size=1M', vhdx, '64M']);
    const writes: Array<[number, number, number]> = [
      [40 * MiB + 4096, 0x11, 65536],
      [3 * MiB, 0x22, 3 * MiB],
      [63 * MiB + 512, 0x33, 512],
      [0, 0x44, 1024],
      [20 * MiB - 2048, 0x55, 8192],
    ];
    run('qemu-io', ['-f', 'vhdx', ...writes.flatMap(([at, p, len]) => ['-c', `write -q -P ${p} ${at} ${len}`]), vhdx]);
    const expected = new Uint8Array(64 * MiB);
    for (const [at, p, len] of writes) expected.fill(p, at, at + len);
    const file = await openFileSource(vhdx);
    try {
      const img = await openVhdx(file);
      expect(img.info.replay).toBeNull();
      expectSame(await readAll(img, 0, img.size), expected);
    } finally {
      await file.close();
    }
  });
});
