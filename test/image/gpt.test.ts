/**
 * The GPT reader: disks made by sgdisk, sfdisk and fdisk compared with `sfdisk --json` / `fdisk -l`, synthetic disks
 * (4096-byte sectors, partitions past 4 GiB, damage), partition selection and root ↔ verity pairing, and the check
 * that matters for the product: a dm-verity root and hash partition found through the GPT of a raw disk, and of the
 * same disk converted to VHD, verify with the core API.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { formatUuid, fromHex, toHex } from '../../src/binary/bytes.js';
import { paramsFromSuperblock } from '../../src/format/options.js';
import { parseSuperblock } from '../../src/format/superblock.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { crc32 } from '../../src/binary/crc32.js';
import { streamSource } from '../../src/io/sequential.js';
import { DPS_TYPES, dpsType, dpsTypeByGuid, dpsTypeByName } from '../../src/image/dps.js';
import {
  GPT_ATTRIBUTE,
  GPT_ENTRY,
  GPT_HEADER,
  serializeGptHeader,
  partitionSource,
  readGpt,
  selectPartition,
  type GptPartition,
  type GptTable,
} from '../../src/image/gpt.js';
import { encodeGuid, formatGuid } from '../../src/binary/guid.js';
import { MBR, type Mbr } from '../../src/image/mbr.js';
import { openVhd } from '../../src/image/vhd.js';
import { sliceSource } from '../../src/io/slice.js';
import { bytesSource, readExactly, type ByteSource } from '../../src/io/source.js';
import { verifyTree } from '../../src/tree/verify.js';
import { findVerityPairs } from '../../src/discovery/dps-pairs.js';
import { buildGpt, EF, HF, LINUX_GENERIC, ROOT_X86_64, ROOT_X86_64_VERITY, setHeader, USR_ARM64, type DiskSpec } from '../support/gpt-writer.js';
import { Rng } from '../support/rng.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';
import { findTool } from '../support/tools.js';
import { failure } from '../support/sources.js';

const MiB = 1 << 20;

const SGDISK = findTool('sgdisk', '/usr/sbin/sgdisk');
const SFDISK = findTool('sfdisk', '/usr/sbin/sfdisk');
const FDISK = findTool('fdisk', '/usr/sbin/fdisk');
const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const DD = findTool('dd', '/usr/bin/dd');
const MKFS_EXT4 = findTool('mkfs.ext4', '/usr/sbin/mkfs.ext4');
const skipReason = (tools: Record<string, string | null>) => {
  const missing = Object.entries(tools).filter(([, path]) => path === null).map(([name]) => name);
  return missing.length ? ` [SKIPPED: ${missing.join(', ')} not installed]` : '';
};

/** Runs a tool found by findTool; tests that call it are guarded with `it.skipIf` on the same tool. */
function run(cmd: string | null, args: string[], input?: string): string {
  if (cmd === null) throw new Error('tool not installed: guard the test with it.skipIf');
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Flips the bits `mask` of the byte at `at`. */
function flip(bytes: Uint8Array, at: number, mask: number): void {
  bytes[at] = bytes[at]! ^ mask;
}

function sgdiskDisk(path: string, sizeMiB: number, args: string[]): Uint8Array {
  writeFileSync(path, new Uint8Array(0));
  truncateSync(path, sizeMiB * MiB);
  run(SGDISK!, [...args, path]);
  return new Uint8Array(readFileSync(path));
}

/** The sfdisk `attrs` text of an attribute word: named low bits, then `GUID:` with the bits from 48 up. */
function sfdiskAttrs(a: bigint): string | undefined {
  const words: string[] = [];
  if (a & GPT_ATTRIBUTE.required) words.push('RequiredPartition');
  if (a & GPT_ATTRIBUTE.noBlockIoProtocol) words.push('NoBlockIOProtocol');
  if (a & GPT_ATTRIBUTE.legacyBiosBootable) words.push('LegacyBIOSBootable');
  const high = [...Array(16).keys()].map((i) => i + 48).filter((b) => (a >> BigInt(b)) & 1n);
  if (high.length) words.push(`GUID:${high.join(',')}`);
  return words.length ? words.join(' ') : undefined;
}

/** Checks the parsed table against `sfdisk --json` of the same file. */
function expectSameAsSfdisk(table: GptTable, path: string): void {
  const json = JSON.parse(run(SFDISK!, ['--json', path])).partitiontable;
  expect(json.label).toBe('gpt');
  expect(table.sectorSize).toBe(json.sectorsize);
  expect(table.diskGuid).toBe(json.id.toLowerCase());
  expect(table.firstUsableLba).toBe(json.firstlba);
  expect(table.lastUsableLba).toBe(json.lastlba);
  const theirs = json.partitions.map((p: Record<string, string | number>) => ({
    index: Number(/(\d+)$/.exec(String(p.node))![1]),
    firstLba: p.start,
    size: Number(p.size) * json.sectorsize,
    typeGuid: String(p.type).toLowerCase(),
    partitionGuid: String(p.uuid).toLowerCase(),
    name: p.name ?? '',
    attrs: p.attrs,
  }));
  const ours = table.partitions.map((p) => ({
    index: p.index,
    firstLba: p.firstLba,
    size: p.size,
    typeGuid: p.typeGuid,
    partitionGuid: p.partitionGuid,
    name: p.name,
    attrs: sfdiskAttrs(p.attributes),
  }));
  expect(ours).toEqual(theirs);
}

async function readBytes(source: ByteSource, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await readExactly(source, out, position, 'test read');
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('declared layouts (MBR, GPT header, GPT entry) read and write the same bytes', () => {
  const roundTrips = (disk: Uint8Array, ss: number) => {
    expect(MBR.serialize(MBR.get(disk, 0))).toEqual(disk.subarray(0, 512));
    const header = disk.subarray(ss, ss + GPT_HEADER.len);
    const h = GPT_HEADER.get(header, 0);
    expect(GPT_HEADER.serialize(h)).toEqual(header);
    // The serialiser computes the CRC itself, and gets the one the writer stored.
    expect(serializeGptHeader({ ...h, headerCrc32: 0 })).toEqual(header);
    const entries = disk.subarray(Number(h.partitionEntryLba) * ss);
    for (let i = 0; i < h.numberOfPartitionEntries; i++) {
      const at = i * h.sizeOfPartitionEntry;
      expect(GPT_ENTRY.serialize(GPT_ENTRY.get(entries, at))).toEqual(entries.subarray(at, at + GPT_ENTRY.len));
    }
  };

  it('on a synthetic disk with names, attributes and an empty slot', () => {
    const disk = buildGpt({
      sectorSize: 512,
      sectors: 4096,
      partitions: [
        { type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: 40, last: 1000, name: 'root-a', attributes: GPT_ATTRIBUTE.noAuto },
        { type: LINUX_GENERIC, guid: '66666666-7777-8888-9999-aaaaaaaaaaaa', first: 1001, last: 2000, name: 'dätä', slot: 3 },
      ],
    });
    roundTrips(disk, 512);
  });

  it('a header and an entry survive serialise then parse: a 36-character name, high attribute bits, LBAs past 2^53', () => {
    const entry = {
      partitionTypeGuid: ROOT_X86_64,
      uniquePartitionGuid: '11111111-2222-3333-4444-555555555555',
      startingLba: 2n ** 60n,
      endingLba: 2n ** 64n - 1n,
      attributes: GPT_ATTRIBUTE.noAuto | GPT_ATTRIBUTE.growFileSystem | GPT_ATTRIBUTE.required,
      partitionName: 'ä'.repeat(36),
    };
    expect(GPT_ENTRY.get(GPT_ENTRY.serialize(entry), 0)).toEqual(entry);
    const header = {
      signature: 'EFI PART',
      revision: 0x00010000,
      headerSize: GPT_HEADER.len,
      headerCrc32: 0,
      reserved: 0,
      myLba: 1n,
      alternateLba: 2n ** 63n,
      firstUsableLba: 34n,
      lastUsableLba: 2n ** 63n - 34n,
      diskGuid: '00112233-4455-6677-8899-aabbccddeeff',
      partitionEntryLba: 2n,
      numberOfPartitionEntries: 128,
      sizeOfPartitionEntry: 128,
      partitionEntryArrayCrc32: 0xdeadbeef,
    };
    const bytes = serializeGptHeader(header);
    const parsed = GPT_HEADER.get(bytes, 0);
    expect(parsed).toEqual({ ...header, headerCrc32: parsed.headerCrc32 });
    // The CRC is zlib's CRC-32 over the header with its CRC field zeroed.
    expect(parsed.headerCrc32).toBe(zlibCrc32(GPT_HEADER.serialize(header)));
  });

  it.skipIf(!SGDISK)(`on a disk written by sgdisk${skipReason({ sgdisk: SGDISK })}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpt-rt-'));
    try {
      const disk = sgdiskDisk(join(dir, 'd.img'), 8, ['-n', '1:2048:+2M', '-c', '1:Linux root', '-t', `1:${ROOT_X86_64}`, '-n', '2:0:+1M', '-A', '2:set:63']);
      roundTrips(disk, 512);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('building blocks', () => {
  it('crc32 is IEEE CRC-32 (zlib), also in pieces', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const rng = new Rng(1);
    const bytes = Uint8Array.from({ length: 10_000 }, () => rng.int(0, 255));
    expect(crc32(bytes)).toBe(zlibCrc32(bytes));
    expect(crc32(bytes.subarray(3333), crc32(bytes.subarray(0, 3333)))).toBe(zlibCrc32(bytes));
  });

  it('GUIDs are mixed-endian on disk (UEFI spec 2.10 Appendix A)', () => {
    const root = fromHex('e3bc684fcde8b14d96e7fbcaf984b709', 'bytes');
    expect(formatGuid(root)).toBe(ROOT_X86_64);
    expect(toHex(encodeGuid(ROOT_X86_64.toUpperCase()))).toBe('e3bc684fcde8b14d96e7fbcaf984b709');
    expect(toHex(encodeGuid('01234567-89ab-cdef-fedc-ba9876543210'))).toBe('67452301ab89efcdfedcba9876543210');
    expect(toHex(encodeGuid('a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90'))).toBe('d4c3b2a1f6e51807293a4b5c6d7e8f90');
    const framed = new Uint8Array(20);
    framed.set(root, 4);
    expect(formatGuid(framed, 4)).toBe(ROOT_X86_64);
    expect(() => formatGuid(framed, 5)).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
    expect(() => encodeGuid('not-a-guid')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('the DPS table holds 18 types (UAPI DPS: x86-64, arm64 and architecture-independent), each once, under systemd names', () => {
    expect(DPS_TYPES).toHaveLength(18);
    expect(new Set(DPS_TYPES.map((t) => t.guid)).size).toBe(18);
    expect(dpsTypeByGuid(ROOT_X86_64.toUpperCase())?.name).toBe('root-x86-64');
    expect(dpsTypeByGuid(ROOT_X86_64_VERITY)?.name).toBe('root-x86-64-verity');
    expect(dpsTypeByGuid('41092b05-9fc8-4523-994f-2def0408b176')?.name).toBe('root-x86-64-verity-sig');
    expect(dpsTypeByGuid(USR_ARM64)?.name).toBe('usr-arm64');
    expect(dpsTypeByGuid('c23ce4ff-44bd-4b00-b2d4-b41b3419e02a')).toMatchObject({ name: 'usr-arm64-verity-sig', role: 'usr-verity-sig', architecture: 'arm64' });
    expect(dpsTypeByName('esp')).toMatchObject({ guid: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b', architecture: null });
    expect(dpsTypeByName('linux-generic')?.guid).toBe(LINUX_GENERIC);
    expect(dpsType('root-verity', 'arm64')?.guid).toBe('df3300ce-d69f-4c92-978c-9bfb0f38d820');
    expect(dpsTypeByGuid('ebd0a0a2-b9e5-4433-87c0-68b6b72699c7')).toBeUndefined();
  });
});

describe('disks made by sgdisk, sfdisk and fdisk', () => {
  const dir = tempDirPerTest('gpt-tools-');

  it.skipIf(!SGDISK || !SFDISK)(`sgdisk, 512-byte sectors: root, verity, a named data partition with attributes; same as sfdisk --json${skipReason({ sgdisk: SGDISK, sfdisk: SFDISK })}`, async () => {
    const path = join(dir(), 'sg.img');
    const disk = sgdiskDisk(path, 64, [
      '-o', '-U', '00112233-4455-6677-8899-aabbccddeeff',
      '-n', `1:2048:+20M`, '-t', `1:${ROOT_X86_64}`, '-u', '1:01234567-89ab-cdef-fedc-ba9876543210', '-c', '1:root-x86-64',
      '-n', '2:0:+4M', '-t', `2:${ROOT_X86_64_VERITY}`, '-u', '2:a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90', '-c', '2:root-x86-64-verity',
      '-n', '4:0:+1M', '-t', `4:${LINUX_GENERIC}`, '-c', '4:dätä ✓ ünï', '-A', '4:set:60', '-A', '4:set:63', '-A', '4:set:0',
    ]);
    const table = await readGpt(bytesSource(disk));
    expect(table).toMatchObject({
      sectorSize: 512,
      header: 'primary',
      headerLba: 1,
      alternateLba: 131071,
      diskGuid: '00112233-4455-6677-8899-aabbccddeeff',
      partitionEntryLba: 2,
      entryCount: 128,
      entrySize: 128,
      mbr: 'protective',
      warnings: [],
    });
    expect(table.partitions.map((p) => [p.index, p.dpsType, p.name])).toEqual([
      [1, 'root-x86-64', 'root-x86-64'],
      [2, 'root-x86-64-verity', 'root-x86-64-verity'],
      [4, 'linux-generic', 'dätä ✓ ünï'],
    ]);
    expect(table.partitions[0]).toMatchObject({ firstLba: 2048, lastLba: 43007, offset: MiB, size: 20 * MiB });
    expect(table.partitions[2]!.attributes).toBe(GPT_ATTRIBUTE.noAuto | GPT_ATTRIBUTE.readOnly | GPT_ATTRIBUTE.required);
    expectSameAsSfdisk(table, path);
    // Given explicitly, the sector size gives the same table.
    expect(await readGpt(bytesSource(disk), 512)).toEqual(table);
  });

  it.skipIf(!SFDISK)(`sfdisk, 512-byte sectors, from a script; same as sfdisk --json${skipReason({ sfdisk: SFDISK })}`, async () => {
    const path = join(dir(), 'sf.img');
    writeFileSync(path, new Uint8Array(0));
    truncateSync(path, 32 * MiB);
    run(SFDISK, ['-q', path], [
      'label: gpt',
      'label-id: 6C1D0E52-3A7B-4E3A-9B43-2C7E0C2A1F00',
      `start=2048, size=20480, type=${ROOT_X86_64}, uuid=11111111-2222-3333-4444-555555555555, name="root-x86-64", attrs="RequiredPartition GUID:60"`,
      `size=4096, type=${ROOT_X86_64_VERITY}, name="root x86-64 verity"`,
      `size=2048, type=${USR_ARM64}, name="usr"`,
      '',
    ].join('\n'));
    const table = await readGpt(bytesSource(new Uint8Array(readFileSync(path))));
    expect(table.partitions.map((p) => p.dpsType)).toEqual(['root-x86-64', 'root-x86-64-verity', 'usr-arm64']);
    expect(table.warnings).toEqual([]);
    expectSameAsSfdisk(table, path);
  });

  it.skipIf(!FDISK)(`fdisk -b 4096: 4096-byte sectors, detected without being told; same as fdisk -l${skipReason({ fdisk: FDISK })}`, async () => {
    const path = join(dir(), '4k.img');
    writeFileSync(path, new Uint8Array(0));
    truncateSync(path, 64 * MiB);
    // fdisk's dialogue: new GPT label, two partitions, their types, then names in expert mode.
    run(FDISK, ['-b', '4096', path], [
      'g', 'n', '1', '', '+20M', 't', ROOT_X86_64,
      'n', '2', '', '+4M', 't', '2', ROOT_X86_64_VERITY,
      'x', 'n', '1', 'root-x86-64', 'n', '2', 'root-x86-64-verity', 'r', 'w', '',
    ].join('\n'));
    const listing = run(FDISK, ['-b', '4096', '-l', '-o', 'Device,Start,End,Type-UUID,UUID,Name', path]);
    const rows = [...listing.matchAll(/^\S+?(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*)$/gm)].map((m) => ({
      index: Number(m[1]),
      firstLba: Number(m[2]),
      lastLba: Number(m[3]),
      typeGuid: m[4]!.toLowerCase(),
      partitionGuid: m[5]!.toLowerCase(),
      name: m[6]!.trim(),
    }));
    expect(rows).toHaveLength(2);
    const disk = bytesSource(new Uint8Array(readFileSync(path)));
    const table = await readGpt(disk);
    expect(table.sectorSize).toBe(4096);
    expect(table.diskGuid).toBe(/Disk identifier: (\S+)/.exec(listing)![1]!.toLowerCase());
    expect(table.partitions.map(({ index, firstLba, lastLba, typeGuid, partitionGuid, name }) => ({ index, firstLba, lastLba, typeGuid, partitionGuid, name }))).toEqual(rows);
    expect(table.partitions[0]).toMatchObject({ offset: 256 * 4096, size: 20 * MiB, dpsType: 'root-x86-64' });
    expect(await readGpt(disk, 4096)).toEqual(table);
    const wrong = await failure(readGpt(disk, 512));
    expect(wrong.code).toBe('E_BAD_IMAGE');
    expect(wrong.message).toMatch(/512-byte sectors: primary header at LBA 1: no "EFI PART" signature/);
  });
});

describe('synthetic disks', () => {
  const twoPartitions = (ss: 512 | 4096): DiskSpec => ({
    sectorSize: ss,
    sectors: (8 * MiB) / ss,
    partitions: [
      { type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: MiB / ss, last: (5 * MiB) / ss - 1, name: 'root-x86-64' },
      { type: ROOT_X86_64_VERITY, guid: '66666666-7777-8888-9999-aaaaaaaaaaaa', first: (5 * MiB) / ss, last: (6 * MiB) / ss - 1, name: 'verity' },
    ],
  });

  it('a disk read front to back (a compressed entry) is read in one pass: the backup GPT at its end is not checked, and says so', async () => {
    const disk = buildGpt(twoPartitions(512));
    const stream = streamSource({
      size: disk.length,
      name: 'streamed disk',
      reopenable: true,
      async *open() {
        for (let at = 0; at < disk.length; at += 64 * 1024) yield disk.slice(at, at + 64 * 1024);
      },
    });
    const table = await readGpt(stream);
    expect(table.partitions.map((p) => p.name)).toEqual(['root-x86-64', 'verity']);
    expect(table.warnings).toEqual(['The backup GPT was not checked: the disk is read front to back (a compressed entry or a pipe).']);
    const partition = partitionSource(stream, table.partitions[1]!);
    await readBytes(partition, 0, 512);
    expect(stream.passes).toBe(1);
    // With random access the backup is checked as always.
    expect((await readGpt(bytesSource(disk))).warnings).toEqual([]);
  });

  for (const ss of [512, 4096] as const) {
    it(`${ss}-byte sectors: detected, partitions at the right byte offsets, readable through partitionSource`, async () => {
      const disk = buildGpt(twoPartitions(ss));
      disk.set([1, 2, 3, 4], MiB);
      disk.set([9, 9], 6 * MiB - 2);
      const table = await readGpt(bytesSource(disk));
      expect(table).toMatchObject({ sectorSize: ss, header: 'primary', warnings: [] });
      expect(table.partitions.map((p) => [p.index, p.offset, p.size, p.name])).toEqual([
        [1, MiB, 4 * MiB, 'root-x86-64'],
        [2, 5 * MiB, MiB, 'verity'],
      ]);
      const root = partitionSource(bytesSource(disk), table.partitions[0]!);
      expect(root.size).toBe(4 * MiB);
      expect([...(await readBytes(root, 0, 4))]).toEqual([1, 2, 3, 4]);
      const verity = partitionSource(bytesSource(disk), table.partitions[1]!);
      expect([...(await readBytes(verity, MiB - 2, 2))]).toEqual([9, 9]);
      expect(await verity.read(new Uint8Array(10), MiB)).toBe(0);
    });
  }

  it('partitions past 4 GiB and past LBA 2^32 keep exact offsets (a sparse 2.5 TiB disk)', async () => {
    const ss = 512;
    const sectors = 5 * 2 ** 31; // 2.5 TiB
    const spec: DiskSpec = {
      sectorSize: ss,
      sectors,
      partitions: [{ type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: 2 ** 32 + 7, last: 2 ** 32 + 7 + 2047 }],
    };
    // Only the GPT sectors at both ends are stored; everything between reads as zeros.
    const { head, tail } = gptSectors(spec);
    const full = sparseDisk(sectors * ss, head, tail);
    const table = await readGpt(full);
    expect(table.alternateLba).toBe(sectors - 1);
    expect(table.partitions[0]).toMatchObject({ firstLba: 2 ** 32 + 7, offset: (2 ** 32 + 7) * 512, size: MiB });
    const p = partitionSource(full, table.partitions[0]!);
    expect(p.size).toBe(MiB);
  });

  /** The first and last sectors of a GPT disk of the given spec, built in a small buffer. */
  function gptSectors(spec: DiskSpec): { head: Uint8Array; tail: Uint8Array } {
    const arrayBytes = 128 * 128;
    const small = buildGpt({ ...spec, sectors: 2 * (2 + arrayBytes / spec.sectorSize) + 2 });
    // Re-point the backup header and usable range at the real end of the disk.
    const ss = spec.sectorSize;
    const last = spec.sectors - 1;
    const smallLast = small.length / ss - 1;
    const arraySectors = arrayBytes / ss;
    const head = small.slice(0, (2 + arraySectors) * ss);
    const tail = small.slice((smallLast - arraySectors) * ss);
    const fix = (buf: Uint8Array, lbaInBuf: number, my: number, alternate: number, entryLba: number) =>
      setHeader(buf, lbaInBuf, ss, {
        myLba: BigInt(my),
        alternateLba: BigInt(alternate),
        lastUsableLba: BigInt(last - 1 - arraySectors),
        partitionEntryLba: BigInt(entryLba),
      });
    fix(head, 1, 1, last, 2);
    fix(tail, arraySectors, last, 1, last - arraySectors);
    const mbr = MBR.get(head, 0);
    mbr.partitionRecords[0]!.sizeInLba = 0xffffffff;
    MBR.put(head, 0, mbr);
    return { head, tail };
  }

  function sparseDisk(size: number, head: Uint8Array, tail: Uint8Array): ByteSource {
    return {
      size,
      async read(dst, position) {
        const n = Math.max(0, Math.min(dst.length, size - position));
        dst.fill(0, 0, n);
        for (const [at, bytes] of [[0, head], [size - tail.length, tail]] as const) {
          const from = Math.max(at, position);
          const to = Math.min(at + bytes.length, position + n);
          if (from < to) dst.set(bytes.subarray(from - at, to - at), from - position);
        }
        return n;
      },
    };
  }

  describe('damage', () => {
    const ss = 512;
    const last = (8 * MiB) / ss - 1;
    const fresh = () => buildGpt(twoPartitions(ss));
    const names = (t: GptTable) => t.partitions.map((p) => p.name);

    it('a damaged primary header falls back to the backup at the last LBA', async () => {
      const disk = fresh();
      flip(disk, ss + HF.diskGuid.offset + 4, 1);
      const t = await readGpt(bytesSource(disk));
      expect(t).toMatchObject({ header: 'backup', headerLba: last, alternateLba: 1, partitionEntryLba: last - 32 });
      expect(names(t)).toEqual(['root-x86-64', 'verity']);
      expect(t.warnings).toEqual([expect.stringMatching(/primary GPT is damaged \(primary header at LBA 1: header CRC mismatch: .*\); the backup at LBA 16383 was used/)]);
    });

    it('a damaged primary entry array falls back to the backup', async () => {
      const disk = fresh();
      flip(disk, 2 * ss + EF.partitionName.offset, 0x20); // first partition's name
      const t = await readGpt(bytesSource(disk));
      expect(t.header).toBe('backup');
      expect(names(t)).toEqual(['root-x86-64', 'verity']);
      expect(t.warnings[0]).toMatch(/partition entry array CRC mismatch/);
    });

    it('a header whose MyLBA is not where it was read is not used', async () => {
      const disk = fresh();
      setHeader(disk, 1, ss, { myLba: 2n });
      const t = await readGpt(bytesSource(disk));
      expect(t.header).toBe('backup');
      expect(t.warnings[0]).toMatch(/MyLBA is 2, but the header was read from LBA 1/);
    });

    it('a damaged backup is a warning when the primary is good', async () => {
      const disk = fresh();
      flip(disk, last * ss + HF.myLba.offset + 6, 1);
      const t = await readGpt(bytesSource(disk));
      expect(t.header).toBe('primary');
      expect(t.warnings).toEqual([expect.stringMatching(/backup GPT is not usable \(backup header at LBA 16383: header CRC mismatch/)]);
    });

    it('both headers damaged is E_BAD_IMAGE naming both failures', async () => {
      const disk = fresh();
      flip(disk, ss + HF.diskGuid.offset + 4, 1);
      flip(disk, (last - 32) * ss, 1);
      const e = await failure(readGpt(bytesSource(disk), 512));
      expect(e.code).toBe('E_BAD_IMAGE');
      expect(e.message).toMatch(/primary header at LBA 1: header CRC mismatch.*backup header at LBA 16383: partition entry array CRC mismatch/);
    });

    it('an absurd entry count or entry size is refused before anything is read or allocated for it', async () => {
      const disk = fresh();
      for (const lba of [1, last]) {
        setHeader(disk, lba, ss, { numberOfPartitionEntries: 0x7fffffff });
      }
      const e = await failure(readGpt(bytesSource(disk), 512));
      expect(e.code).toBe('E_BAD_IMAGE');
      expect(e.message).toMatch(/2147483647 partition entries of 128 bytes make 274877906816 bytes, above the 4194304-byte limit/);

      const sized = fresh();
      for (const lba of [1, last]) {
        setHeader(sized, lba, ss, { sizeOfPartitionEntry: 100 });
      }
      expect((await failure(readGpt(bytesSource(sized), 512))).message).toMatch(/partition entry size 100 is not 128 × 2\^n/);
    });

    it('a truncated disk is E_TRUNCATED', async () => {
      const disk = fresh();
      const cut = await failure(readGpt(bytesSource(disk.subarray(0, 4 * MiB))));
      expect(cut.code).toBe('E_TRUNCATED');
      expect(cut.message).toMatch(/the last usable LBA is 16350, but the 4194304-byte disk ends at LBA 8191/);
      const tiny = await failure(readGpt(bytesSource(disk.subarray(0, 4096))));
      expect(tiny.code).toBe('E_TRUNCATED');
      expect(tiny.message).toMatch(/the 4096-byte disk ends at LBA 7 \(512-byte sectors\)/);
      expect((await failure(readGpt(bytesSource(disk.subarray(0, 600))))).code).toBe('E_TRUNCATED');
    });

    it('a disk grown after partitioning: the backup is found where the primary says it is', async () => {
      const grown = new Uint8Array(8 * MiB + 3 * MiB);
      grown.set(fresh());
      expect(await readGpt(bytesSource(grown))).toMatchObject({ header: 'primary', warnings: [] });
      // A primary with a good header and a bad entry array still tells where its backup is.
      flip(grown, 2 * ss + EF.partitionName.offset, 0x20);
      expect(await readGpt(bytesSource(grown))).toMatchObject({ header: 'backup', headerLba: last });
      // A primary whose header is damaged does not: its AlternateLBA cannot be trusted, and the last LBA is empty.
      flip(grown, ss + HF.diskGuid.offset + 4, 1);
      expect(await failure(readGpt(bytesSource(grown), 512))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/backup header at LBA 22527: no "EFI PART" signature/) });
    });

    it('without a protective MBR the disk is not GPT; a hybrid MBR is reported', async () => {
      const disk = fresh();
      const patchMbr = (change: (mbr: Mbr) => void) => {
        const mbr = MBR.get(disk, 0);
        change(mbr);
        MBR.put(disk, 0, mbr);
      };
      patchMbr((mbr) => {
        mbr.partitionRecords[0]!.osType = 0x83;
      });
      const e = await failure(readGpt(bytesSource(disk)));
      expect(e.code).toBe('E_BAD_IMAGE');
      expect(e.message).toMatch(/no protective MBR/);
      patchMbr((mbr) => {
        mbr.partitionRecords[1]!.osType = 0xee;
      });
      expect((await readGpt(bytesSource(disk))).mbr).toBe('hybrid');
      patchMbr((mbr) => {
        mbr.signature = 0;
      });
      expect((await failure(readGpt(bytesSource(disk)))).code).toBe('E_BAD_IMAGE');
    });

    it('a partition outside the usable LBAs is E_BAD_IMAGE; overlapping partitions are a warning', async () => {
      const outside = buildGpt({ ...twoPartitions(ss), partitions: [{ type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: 40, last: last }] });
      expect(await failure(readGpt(bytesSource(outside)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/partition 1 spans LBAs 40..16383, outside the usable LBAs 34..16350/) });
      const reversed = buildGpt({ ...twoPartitions(ss), partitions: [{ type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: 3000, last: 2999 }] });
      expect((await failure(readGpt(bytesSource(reversed)))).code).toBe('E_BAD_IMAGE');
      const spec = twoPartitions(ss);
      spec.partitions[1]!.first = spec.partitions[0]!.last;
      const t = await readGpt(bytesSource(buildGpt(spec)));
      expect(t.warnings).toEqual(['GPT partitions 1 and 2 overlap.']);
    });

    it('no GPT at all: names both sector sizes; invalid sector size parameter is E_PARAM', async () => {
      const disk = fresh();
      disk.fill(0, ss, 3 * ss);
      disk.fill(0, (last - 32) * ss);
      const e = await failure(readGpt(bytesSource(disk)));
      expect(e.code).toBe('E_BAD_IMAGE');
      expect(e.message).toMatch(/512-byte sectors: .*no "EFI PART" signature.*4096-byte sectors: /);
      expect((await failure(readGpt(bytesSource(fresh()), 1024 as 512))).code).toBe('E_PARAM');
    });
  });
});

describe('selectPartition', () => {
  const table = async () =>
    readGpt(
      bytesSource(
        buildGpt({
          sectorSize: 512,
          sectors: 16384,
          partitions: [
            { type: ROOT_X86_64, guid: '11111111-2222-3333-4444-555555555555', first: 2048, last: 4095, name: 'rootA' },
            { type: ROOT_X86_64, guid: '21111111-2222-3333-4444-555555555555', first: 4096, last: 6143, name: 'rootB' },
            { type: ROOT_X86_64_VERITY, guid: '31111111-2222-3333-4444-555555555555', first: 6144, last: 6655, name: 'hash' },
            { type: LINUX_GENERIC, guid: '41111111-2222-3333-4444-555555555555', first: 8192, last: 8703, name: 'rootA', slot: 9 },
            { type: LINUX_GENERIC, guid: '51111111-2222-3333-4444-555555555555', first: 9000, last: 9099, name: '3', slot: 10 },
          ],
        }),
      ),
    );
  const index = (p: GptPartition) => p.index;

  it('by index, partition GUID (either case), name or DPS type', async () => {
    const t = await table();
    expect(index(selectPartition(t, 2))).toBe(2);
    expect(index(selectPartition(t, '10'))).toBe(10);
    expect(index(selectPartition(t, '41111111-2222-3333-4444-555555555555'))).toBe(10);
    expect(index(selectPartition(t, '51111111-2222-3333-4444-555555555555'.toUpperCase()))).toBe(11);
    expect(index(selectPartition(t, 'rootB'))).toBe(2);
    expect(index(selectPartition(t, 'root-x86-64-verity'))).toBe(3);
    expect(index(selectPartition(t, 'hash'))).toBe(3);
  });

  it('ambiguous or missing: E_PARAM listing the partitions', async () => {
    const t = await table();
    const byType = await failure(() => selectPartition(t, 'root-x86-64'));
    expect(byType.code).toBe('E_PARAM');
    expect(byType.message).toMatch(/"root-x86-64" matches 2 partitions \(#1, #2\)/);
    expect(byType.message).toContain('#10 "rootA" type linux-generic, uuid 41111111-2222-3333-4444-555555555555, LBA 8192..8703 (262144 bytes)');
    // A name shared by two partitions, and digits that are both an index and a name.
    expect((await failure(() => selectPartition(t, 'rootA'))).message).toMatch(/matches 2 partitions \(#1, #10\)/);
    expect((await failure(() => selectPartition(t, '3'))).message).toMatch(/matches 2 partitions \(#3, #11\)/);
    const missing = await failure(() => selectPartition(t, 'usr-arm64'));
    expect(missing.code).toBe('E_PARAM');
    expect(missing.message).toMatch(/No partition matches "usr-arm64".*\nPartitions:\n  #1 "rootA" type root-x86-64/s);
    expect((await failure(() => selectPartition(t, 4))).code).toBe('E_PARAM');
  });

  it('partitionSource refuses a partition the disk is too short for', async () => {
    const t = await table();
    const disk = sliceSource(bytesSource(new Uint8Array(16384 * 512)), 0, 4096 * 512);
    expect(await failure(() => partitionSource(disk, t.partitions[1]!))).toMatchObject({ code: 'E_TRUNCATED', message: expect.stringMatching(/ends at byte 3145728, past the end of the 2097152-byte disk/) });
  });
});

describe('a dm-verity root found through the GPT, verified with the core API', () => {
  const dir = tempDirPerTest('gpt-verity-');
  const tools = { sgdisk: SGDISK, veritysetup: hasVeritysetup ? 'yes' : null, dd: DD, 'qemu-img': QEMU_IMG };

  async function verifyThrough(disk: ByteSource, rootHash: Uint8Array) {
    const table = await readGpt(disk);
    const pairs = findVerityPairs(table, rootHash);
    expect(pairs).toHaveLength(1);
    const { data, hash } = pairs[0]!;
    expect(data.name).toBe('root-x86-64');
    expect(selectPartition(table, 'root-x86-64-verity')).toEqual(hash);
    const dataSource = partitionSource(disk, data);
    const hashSource = partitionSource(disk, hash);
    const superblock = parseSuperblock(await readBytes(hashSource, 0, 512));
    const params = paramsFromSuperblock(superblock, 0);
    return { table, result: await verifyTree(params, dataSource, hashSource, rootHash, nodeCryptoEngine) };
  }

  it.skipIf(!SGDISK || !hasVeritysetup || !DD || !QEMU_IMG)(`raw GPT disk (sgdisk, ${MKFS_EXT4 ? 'ext4' : 'random'} root, veritysetup hash), then the same disk as dynamic and fixed VHD${skipReason(tools)}${NEEDS_VERITYSETUP}`, async () => {
    const path = (f: string) => join(dir(), f);
    // 12 MiB root at LBA 2048, 1 MiB hash partition after it, on a 16 MiB disk.
    sgdiskDisk(path('disk.raw'), 16, [
      '-o', '-n', '1:2048:+12M', '-t', `1:${ROOT_X86_64}`, '-c', '1:root-x86-64',
      '-n', '2:0:+1M', '-t', `2:${ROOT_X86_64_VERITY}`, '-c', '2:root-x86-64-verity',
    ]);
    if (MKFS_EXT4) {
      run(MKFS_EXT4, ['-q', '-F', '-b', '4096', '-L', 'testroot', '-U', '11111111-2222-3333-4444-555555555555', '-E', 'root_owner=0:0', path('fs.img'), '12M']);
    } else {
      const rng = new Rng(11);
      writeFileSync(path('fs.img'), Uint8Array.from({ length: 12 * MiB }, () => rng.int(0, 255)));
    }
    run(DD!, [`if=${path('fs.img')}`, `of=${path('disk.raw')}`, 'bs=512', 'seek=2048', 'conv=notrunc', 'status=none']);
    // As a build would: take the partition's contents out, format them, put the hash tree into the verity partition.
    run(DD!, [`if=${path('disk.raw')}`, `of=${path('root.img')}`, 'bs=512', 'skip=2048', `count=${(12 * MiB) / 512}`, 'status=none']);
    const formatted = veritysetup(['format', path('root.img'), path('hash.img'), '--salt', 'aa'.repeat(32), '--uuid', '01234567-89ab-cdef-0123-456789abcdef']);
    expect(formatted.code).toBe(0);
    const rootHex = /^Root hash:\s+([0-9a-f]+)$/m.exec(formatted.stdout)![1]!;
    const rootHash = fromHex(rootHex, 'root hash');
    run(DD!, [`if=${path('hash.img')}`, `of=${path('disk.raw')}`, 'bs=512', `seek=${2048 + (12 * MiB) / 512}`, 'conv=notrunc', 'status=none']);
    // PARTUUIDs from the root hash, as DPS asks: first and last 128 bits.
    run(SGDISK, ['-u', `1:${formatUuid(rootHash.subarray(0, 16))}`, '-u', `2:${formatUuid(rootHash.subarray(16))}`, path('disk.raw')]);

    const raw = new Uint8Array(readFileSync(path('disk.raw')));
    const { table, result } = await verifyThrough(bytesSource(raw), rootHash);
    expect(table.header).toBe('primary');
    expect(result.status).toBe('ok');
    expect(result.geometry.hashDeviceSize).toBeLessThanOrEqual(MiB);

    // One flipped byte in the root partition is found, and blamed on its data block.
    const damaged = raw.slice();
    flip(damaged, MiB + 5 * 4096 + 77, 1);
    const bad = await verifyThrough(bytesSource(damaged), rootHash);
    expect(bad.result.status).toBe('corrupt');
    expect(bad.result.data.corrupt).toEqual([{ first: 5, count: 1 }]);

    for (const options of ['subformat=dynamic,force_size=on', 'subformat=fixed,force_size=on', 'subformat=dynamic']) {
      run(QEMU_IMG, ['convert', '-f', 'raw', '-O', 'vpc', '-o', options, path('disk.raw'), path('disk.vhd')]);
      const image = await openVhd(bytesSource(new Uint8Array(readFileSync(path('disk.vhd')))));
      const viaVhd = await verifyThrough(image, rootHash);
      expect(viaVhd.result.status).toBe('ok');
      // Without force_size qemu rounds the disk up to whole CHS cylinders: the backup GPT is no longer at the end,
      // and is found where the primary's AlternateLBA says.
      expect(viaVhd.table.warnings).toEqual([]);
      if (options === 'subformat=dynamic') expect(image.size).toBeGreaterThan(raw.length);
      else expect(image.size).toBe(raw.length);
    }
  });
});
