/**
 * Offsets past 2^32 and 2^40 bytes stay exact end to end: a sparse disk of (almost) 16 TiB, as a raw file and as a
 * VHDX of the same virtual size, whose verity data and hash partitions lie in its last 64 MiB (offsets ≈ 2^44).
 * The oracle is veritysetup on the same partition bytes copied to small files, and qemu-img for the VHDX.
 *
 * dm-verity's data area always starts at offset 0 of its device, so blocks at such offsets are reached the way real
 * images put them there: a partition far into a disk, and a hash area at a large --hash-offset.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCaptured } from '../support/cli-harness.js';
import { findTool } from '../support/tools.js';
import { flipByte, readAt, tempDirPerTest, writeAt } from '../support/tree-damage.js';
import { veritysetup, hasVeritysetup } from '../support/veritysetup-bin.js';

const sgdisk = findTool('sgdisk');
const qemuImg = findTool('qemu-img');
const dir = tempDirPerTest('verity-large-');

const TiB = 2 ** 40;
const MiB = 2 ** 20;
const SALT = 'a1'.repeat(32);
const UUID = '7d0c8a4e-2f1b-4c3d-9e8f-1a2b3c4d5e6f';
const FIXED = [`--salt=${SALT}`, `--uuid=${UUID}`];
const DATA_BYTES = 8 * MiB;

/**
 * A sparse file of 16 TiB, or 16 TiB − 4 KiB where the filesystem stops just short of it (ext4 with 4 KiB blocks).
 * Returns its size.
 */
function sparseFile(path: string): number {
  const fd = openSync(path, 'w');
  try {
    for (const size of [16 * TiB, 16 * TiB - 4096]) {
      try {
        ftruncateSync(fd, size);
        return size;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EFBIG') throw e;
      }
    }
    throw new Error('the filesystem holds no file of 16 TiB − 4 KiB');
  } finally {
    closeSync(fd);
  }
}

interface Disk {
  path: string;
  size: number;
  /** Byte offsets of partition 2 (data, 8 MiB) and 3 (hash, 1 MiB). */
  dataAt: number;
  hashAt: number;
  content: Buffer;
}

/** A GPT disk with a root partition (random data) and a root-verity partition in its last 64 MiB. */
function makeDisk(path: string): Disk {
  const size = sparseFile(path);
  const lastUsable = Math.floor(size / 512) - 34;
  const dataLba = (Math.floor((size - 64 * MiB) / MiB) * MiB) / 512;
  const hashLba = dataLba + DATA_BYTES / 512;
  const r = spawnSync(sgdisk!, [
    '-o',
    `-n`, `2:${dataLba}:${hashLba - 1}`, '-t', '2:4f68bce3-e8cd-4db1-96e7-fbcaf984b709',
    `-n`, `3:${hashLba}:${hashLba + 2048 - 1}`, '-t', '3:2c7357ed-ebd2-46d9-aec3-23d0cee13b9a',
    path,
  ], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(hashLba + 2048 - 1).toBeLessThanOrEqual(lastUsable);
  const content = randomBytes(DATA_BYTES);
  writeAt(path, dataLba * 512, content);
  return { path, size, dataAt: dataLba * 512, hashAt: hashLba * 512, content };
}

/** Corrupt data ranges of a JSON report as {first, count}. */
function corruptData(report: any): { first: number; count: number }[] {
  return report.data.corrupt.map((r: { first: number; count: number }) => ({ first: r.first, count: r.count }));
}

function json(run: { code: number; stdout: string; stderr: string }): any {
  expect(run.stderr).not.toMatch(/^ {4}at /m);
  return JSON.parse(run.stdout);
}

const NEEDS = `${sgdisk ? '' : ' (sgdisk absent: skipped)'}`;

describe.skipIf(!sgdisk)(`a sparse 16 TiB disk${NEEDS}`, () => {
  it(`a partition at ${'≈'}2^44 bytes: format is byte-identical to veritysetup on its bytes, verify names a damaged last block exactly${hasVeritysetup ? '' : ' (veritysetup absent: no cross-check)'}`, async () => {
    const disk = makeDisk(join(dir(), 'disk.img'));
    expect(disk.dataAt).toBeGreaterThan(2 ** 43);
    const hash = join(dir(), 'hash.img');
    const f = json(await runCaptured(['format', `${disk.path}::2`, hash, ...FIXED, '--json']));
    if (hasVeritysetup) {
      const copy = join(dir(), 'partition.img');
      writeFileSync(copy, disk.content);
      const theirs = join(dir(), 'theirs.img');
      const v = veritysetup(['format', copy, theirs, ...FIXED]);
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout).toContain(f.rootHash);
      expect(readFileSync(hash).equals(readFileSync(theirs))).toBe(true);
    }
    expect(json(await runCaptured(['verify', `${disk.path}::2`, hash, f.rootHash, '--json'])).status).toBe('ok');

    // The last byte of the last data block: disk offset just under 16 TiB − 56 MiB.
    const last = DATA_BYTES / 4096 - 1;
    flipByte(disk.path, disk.dataAt + DATA_BYTES - 1);
    flipByte(disk.path, disk.dataAt + 1234 * 4096 + 17);
    const r = await runCaptured(['verify', `${disk.path}::2`, hash, f.rootHash, '--json']);
    expect(r.code).toBe(2);
    expect(corruptData(json(r))).toEqual([
      { first: 1234, count: 1 },
      { first: last, count: 1 },
    ]);
  });

  it('a hash area at --hash-offset ≈ 2^44 in the same file: written and read exactly where asked; an offset inside the data partition is refused', async () => {
    const disk = makeDisk(join(dir(), 'disk.img'));
    // The hash "partition" is read through the same raw file at its byte offset.
    const f = json(await runCaptured(['format', `${disk.path}::2`, disk.path, `--hash-offset=${disk.hashAt}`, ...FIXED, '--json']));
    expect(readAt(disk.path, disk.hashAt, 8)).toEqual(new Uint8Array(Buffer.from('verity\0\0', 'latin1')));
    // Partition 3 now holds a complete hash device: verify finds the pair by itself, and by address.
    expect(json(await runCaptured(['verify', `${disk.path}::2`, `${disk.path}::3`, f.rootHash, '--json'])).status).toBe('ok');
    const found = json(await runCaptured(['verify', disk.path, f.rootHash, '--json']));
    expect(found.status).toBe('ok');
    expect(found.targets).toHaveLength(1);
    expect(found.targets[0].description).toMatch(/^data #2 .*hash #3 /);
    expect(found.targets[0].rootHash).toMatchObject({ from: 'given by the user', authenticated: true });

    // Inside partition 2, and straddling its start: the data would be overwritten, so nothing is written.
    for (const offset of [disk.dataAt + 4 * MiB, disk.dataAt - 4096]) {
      const snapshot = readAt(disk.path, disk.dataAt, DATA_BYTES);
      const r = await runCaptured(['format', `${disk.path}::2`, disk.path, `--hash-offset=${offset}`, ...FIXED]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/Data area overlaps with hash area: .* the data covers its bytes \d+\.\.\d+ and the hash area starts at \d+\./);
      expect(Buffer.from(readAt(disk.path, disk.dataAt, DATA_BYTES)).equals(Buffer.from(snapshot))).toBe(true);
    }
  });

  it.skipIf(!hasVeritysetup)(`the whole disk file with --data-blocks and the tree at --hash-offset ≈ 2^44: the same bytes there as veritysetup writes${hasVeritysetup ? '' : ' (veritysetup absent)'}`, async () => {
    const files = ['ours.img', 'theirs.img'].map((name) => join(dir(), name));
    const head = randomBytes(MiB);
    let size = 0;
    for (const path of files) {
      size = sparseFile(path);
      writeAt(path, 0, head);
    }
    const offset = size - 4 * MiB;
    const args = ['--data-blocks=256', `--hash-offset=${offset}`, ...FIXED];
    const ours = json(await runCaptured(['format', files[0]!, files[0]!, ...args, '--json']));
    const theirs = veritysetup(['format', files[1]!, files[1]!, ...args]);
    expect(theirs.code, theirs.stderr).toBe(0);
    expect(theirs.stdout).toContain(ours.rootHash);
    expect(Buffer.from(readAt(files[0]!, offset, 3 * 4096)).equals(Buffer.from(readAt(files[1]!, offset, 3 * 4096)))).toBe(true);
    const v = await runCaptured(['verify', files[0]!, files[0]!, ours.rootHash, ...args.slice(0, 2)]);
    expect(v.code, v.stderr).toBe(0);
  });

  it.skipIf(!qemuImg)(`the same disk as a VHDX of 16 TiB virtual size: the same root, the same damaged blocks${qemuImg ? '' : ' (qemu-img absent)'}`, async () => {
    const disk = makeDisk(join(dir(), 'disk.img'));
    const f = json(await runCaptured(['format', `${disk.path}::2`, disk.path, `--hash-offset=${disk.hashAt}`, ...FIXED, '--json']));
    flipByte(disk.path, disk.dataAt + DATA_BYTES - 4096);
    const vhdx = join(dir(), 'disk.vhdx');
    const c = spawnSync(qemuImg!, ['convert', '-O', 'vhdx', '-o', 'subformat=dynamic', disk.path, vhdx], { encoding: 'utf8' });
    expect(c.status, c.stderr).toBe(0);
    const info = JSON.parse(spawnSync(qemuImg!, ['info', '--output=json', vhdx], { encoding: 'utf8' }).stdout);
    expect(info['virtual-size']).toBeGreaterThanOrEqual(disk.size);

    const r = await runCaptured(['verify', `${vhdx}::2`, `${vhdx}::3`, f.rootHash, '--json']);
    expect(r.code, r.stderr).toBe(2);
    expect(corruptData(json(r))).toEqual([{ first: DATA_BYTES / 4096 - 1, count: 1 }]);
    const found = json(await runCaptured(['verify', vhdx, f.rootHash, '--json']));
    expect(found.targets).toHaveLength(1);
    expect(corruptData(found.targets[0])).toEqual([{ first: DATA_BYTES / 4096 - 1, count: 1 }]);
    // Writing a tree into the VHDX file itself would damage the container: refused, file untouched.
    const snapshot = readFileSync(vhdx);
    const w = await runCaptured(['format', `${vhdx}::2`, vhdx, `--hash-offset=${4 * MiB}`, ...FIXED]);
    expect(w.code, w.stderr).toBe(1);
    expect(w.stderr).toMatch(/inside a container in it/);
    expect(readFileSync(vhdx).equals(snapshot)).toBe(true);
  });
});
