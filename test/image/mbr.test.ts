/**
 * The MBR declaration (src/image/mbr.ts): read and written byte for byte, checked field by field against
 * `sfdisk --json` on MBRs that sfdisk and sgdisk write, and the protective / hybrid classification readGpt and
 * detectContent rely on.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { classifyMbr, GPT_PROTECTIVE_TYPE, MBR, MBR_PARTITION_RECORD, MBR_SIGNATURE, protectiveMbr } from '../../src/image/mbr.js';
import { findTool } from '../support/tools.js';
import { tempDirPerTest } from '../support/tree-damage.js';

const SFDISK = findTool('sfdisk', '/usr/sbin/sfdisk');
const SGDISK = findTool('sgdisk', '/usr/sbin/sgdisk');
const NEEDS_SFDISK = SFDISK ? '' : ' [SKIPPED: sfdisk not installed]';
const NEEDS_SGDISK_SFDISK = SFDISK && SGDISK ? '' : ' [SKIPPED: sgdisk or sfdisk not installed]';
const MiB = 1 << 20;

/** Runs a tool found by findTool; tests that call it are guarded with `it.skipIf` on the same tool. */
function run(cmd: string | null, args: string[], input?: string): string {
  if (cmd === null) throw new Error('tool not installed: guard the test with it.skipIf');
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

function emptyDisk(path: string, bytes: number): void {
  writeFileSync(path, new Uint8Array(0));
  truncateSync(path, bytes);
}

/** Sector 0 read through the declaration must serialise back to itself, byte for byte. */
function expectRoundTrip(sector: Uint8Array): void {
  expect(MBR.serialize(MBR.get(sector, 0))).toEqual(sector.subarray(0, MBR.len));
}

/** One MBR with the given OS types in its four records (0 = unused) and the 55 AA signature. */
function mbrWithTypes(types: readonly number[]): Uint8Array {
  const mbr = MBR.get(protectiveMbr(2048), 0);
  mbr.partitionRecords.forEach((r, i) => {
    r.osType = types[i]!;
  });
  return MBR.serialize(mbr);
}

describe('MBR declaration', () => {
  const dir = tempDirPerTest('mbr-');

  it.skipIf(!SFDISK)(`a DOS MBR written by sfdisk reads as sfdisk --json lists it, and writes back the same bytes${NEEDS_SFDISK}`, () => {
    const path = join(dir(), 'dos.img');
    emptyDisk(path, 16 * MiB);
    run(SFDISK, ['-q', path], [
      'label: dos',
      'label-id: 0x1234abcd',
      'start=2048, size=4096, type=83, bootable',
      'size=2048, type=c',
      'size=1024, type=ee',
      'start=20000, size=500, type=7',
      '',
    ].join('\n'));
    const sector = new Uint8Array(readFileSync(path).subarray(0, 512));
    const mbr = MBR.get(sector, 0);
    const json = JSON.parse(run(SFDISK, ['--json', path])).partitiontable;
    expect(json.label).toBe('dos');
    expect(`0x${mbr.uniqueMbrDiskSignature.toString(16).padStart(8, '0')}`).toBe(json.id);
    expect(mbr.signature).toBe(MBR_SIGNATURE);
    expect(
      mbr.partitionRecords.map((r) => ({ start: r.startingLba, size: r.sizeInLba, type: r.osType.toString(16), bootable: r.bootIndicator === 0x80 })),
    ).toEqual(json.partitions.map((p: { start: number; size: number; type: string; bootable?: boolean }) => ({ start: p.start, size: p.size, type: p.type, bootable: p.bootable === true })));
    expectRoundTrip(sector);
    // A 0xEE record among others is a hybrid MBR.
    expect(classifyMbr(sector)).toBe('hybrid');
  });

  it.skipIf(!SFDISK || !SGDISK)(`the protective MBR sgdisk writes: one 0xEE record over the disk, the same record protectiveMbr writes${NEEDS_SGDISK_SFDISK}`, () => {
    const path = join(dir(), 'gpt.img');
    emptyDisk(path, 8 * MiB);
    run(SGDISK, ['-o', path]);
    const sector = new Uint8Array(readFileSync(path).subarray(0, 512));
    expectRoundTrip(sector);
    expect(classifyMbr(sector)).toBe('protective');
    const [theirs, ...unused] = MBR.get(sector, 0).partitionRecords;
    const [ours] = MBR.get(protectiveMbr((8 * MiB) / 512), 0).partitionRecords;
    const record = { osType: GPT_PROTECTIVE_TYPE, startingLba: 1, sizeInLba: (8 * MiB) / 512 - 1 };
    expect(theirs).toMatchObject(record);
    expect(ours).toMatchObject(record);
    expect(unused.every((r) => r.osType === 0)).toBe(true);
  });

  it('protectiveMbr caps the record at 2^32 - 1 sectors, and serialise ∘ parse ∘ serialise is stable', () => {
    const big = protectiveMbr(2 ** 33);
    expect(MBR.get(big, 0).partitionRecords[0]).toMatchObject({ startingLba: 1, sizeInLba: 0xffffffff });
    expect(MBR.serialize(MBR.get(big, 0))).toEqual(big);
    // The signature is the bytes 55 AA, at the declared offset.
    expect([...big.subarray(MBR.fields.signature.offset, MBR.len)]).toEqual([0x55, 0xaa]);
    expect(MBR.fields.partitionRecords.offset + 4 * MBR_PARTITION_RECORD.len).toBe(MBR.fields.signature.offset);
  });
});

describe('classifyMbr', () => {
  it.each([
    ['0xEE alone, in any of the four records', [0, 0, GPT_PROTECTIVE_TYPE, 0], 'protective'],
    ['0xEE in every record', [GPT_PROTECTIVE_TYPE, GPT_PROTECTIVE_TYPE, GPT_PROTECTIVE_TYPE, GPT_PROTECTIVE_TYPE], 'protective'],
    ['0xEE beside a Linux partition (hybrid)', [GPT_PROTECTIVE_TYPE, 0x83, 0, 0], 'hybrid'],
    ['DOS partitions without 0xEE', [0x83, 0x07, 0, 0], null],
    ['no partitions at all', [0, 0, 0, 0], null],
  ] as const)('%s', (_what, types, expected) => {
    expect(classifyMbr(mbrWithTypes(types))).toBe(expected);
  });

  it('is null without the 55 AA signature or with fewer than 512 bytes', () => {
    const unsigned = MBR.get(protectiveMbr(2048), 0);
    expect(classifyMbr(MBR.serialize({ ...unsigned, signature: 0 }))).toBeNull();
    expect(classifyMbr(protectiveMbr(2048).subarray(0, 511))).toBeNull();
  });
});
