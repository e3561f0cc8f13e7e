/**
 * One GPT disk with a root and a root-verity partition (sgdisk + veritysetup), read in every form a user keeps it:
 * raw, VHDX (qemu-img), a stored zip entry and a deflated zip entry (Info-ZIP `zip`), and the data on stdin. Every
 * form must give the same verify result, the same corrupted block, the same discovered pair, and format must write
 * veritysetup's hash device byte for byte from each.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamSource } from '../../src/io/sequential.js';
import { bytesSource, readExactly } from '../../src/io/source.js';
import { BUILT_CLI, expectFailure, runCaptured } from '../support/cli-harness.js';
import { makeData } from '../support/data.js';
import { NEEDS_VERITYSETUP, veritysetup, hasVeritysetup } from '../support/veritysetup-bin.js';
import { findTool } from '../support/tools.js';

const SGDISK = findTool('sgdisk', '/usr/sbin/sgdisk');
const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const ZIP = findTool('zip', '/usr/bin/zip');
const missing = [
  !hasVeritysetup && 'veritysetup',
  !SGDISK && 'sgdisk (gdisk)',
  !QEMU_IMG && 'qemu-img (qemu-utils)',
  !ZIP && 'zip',
].filter(Boolean);
const canRun = missing.length === 0;
const SKIP = canRun ? '' : ` [SKIPPED: needs ${missing.join(', ')}]${NEEDS_VERITYSETUP}`;

function run(cmd: string, args: string[], options: { cwd?: string } = {}): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

const MiB = 1024 * 1024;
const DATA_BLOCKS = 2048; // 8 MiB of root
const SALT = 'ab'.repeat(32);
const UUID = '12345678-9abc-def0-1234-56789abcdef0';
const ROOT_TYPE = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';
const VERITY_TYPE = '2c7357ed-ebd2-46d9-aec1-23d437ec2bf5';
const CORRUPT_BLOCK = 1234;

let work = '';
let rootHash = '';
let hashBytes: Uint8Array;

function uuidOf(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A 20 MiB GPT disk: partition 1 = root at 1 MiB, 2 = verity at 10 MiB, with the root-hash partition UUIDs. */
function makeDisk(root: Uint8Array, hash: Uint8Array, path: string): void {
  writeFileSync(path, new Uint8Array(20 * MiB));
  run(SGDISK!, [
    '-n', '1:2048:+8M', '-t', `1:${ROOT_TYPE}`, '-c', '1:root-a', '-u', `1:${uuidOf(rootHash.slice(0, 32))}`,
    '-n', '2:20480:+2M', '-t', `2:${VERITY_TYPE}`, '-c', '2:verity-a', '-u', `2:${uuidOf(rootHash.slice(32))}`,
    path,
  ]);
  const disk = readFileSync(path);
  disk.set(root, 1 * MiB);
  disk.set(hash, 10 * MiB);
  writeFileSync(path, disk);
}

/** Every form of the disk at `raw`, as addresses of the whole disk. */
function makeForms(raw: string, tag: string): Record<string, string> {
  const vhdx = join(work, `${tag}.vhdx`);
  run(QEMU_IMG!, ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, vhdx]);
  run(ZIP!, ['-q', '-0', '-j', join(work, `${tag}-stored.zip`), vhdx, raw]);
  run(ZIP!, ['-q', '-6', '-j', join(work, `${tag}-deflated.zip`), vhdx, raw]);
  const base = (p: string) => p.slice(work.length + 1);
  return {
    raw,
    vhdx,
    'stored zip, VHDX': `${join(work, `${tag}-stored.zip`)}::${base(vhdx)}`,
    'deflated zip, VHDX': `${join(work, `${tag}-deflated.zip`)}::${base(vhdx)}`,
    'deflated zip, raw': `${join(work, `${tag}-deflated.zip`)}::${base(raw)}`,
  };
}

let clean: Record<string, string> = {};
let corrupt: Record<string, string> = {};

beforeAll(() => {
  if (!canRun) return;
  work = mkdtempSync(join(tmpdir(), 'verity-containers-'));
  const root = makeData({ blocks: DATA_BLOCKS, blockSize: 4096, tailBytes: 0, fill: 'mixed', seed: 7 });
  writeFileSync(join(work, 'root.img'), root);
  const out = veritysetup(['format', '--salt', SALT, '--uuid', UUID, join(work, 'root.img'), join(work, 'hash.img')]);
  rootHash = /Root hash:\s+([0-9a-f]+)/.exec(out.stdout)![1]!;
  hashBytes = readFileSync(join(work, 'hash.img'));
  makeDisk(root, hashBytes, join(work, 'disk.raw'));
  clean = makeForms(join(work, 'disk.raw'), 'disk');
  const damaged = readFileSync(join(work, 'disk.raw'));
  damaged[1 * MiB + CORRUPT_BLOCK * 4096 + 100]! ^= 0x10;
  writeFileSync(join(work, 'bad.raw'), damaged);
  corrupt = makeForms(join(work, 'bad.raw'), 'bad');
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const FORMS = ['raw', 'vhdx', 'stored zip, VHDX', 'deflated zip, VHDX', 'deflated zip, raw'];

describe.skipIf(!canRun)(`the same disk as raw, VHDX, stored and deflated zip${SKIP}`, () => {
  for (const form of FORMS) {
    it(`${form}: verify of partitions 1 and 2 is clean, and a flipped byte is data block ${CORRUPT_BLOCK}`, async () => {
      const ok = await runCaptured(['verify', `${clean[form]}::1`, `${clean[form]}::2`, rootHash, '--json']);
      expect(ok.code, ok.stderr).toBe(0);
      const report = JSON.parse(ok.stdout);
      expect(report.status).toBe('ok');
      expect(report.data.layers.at(-1)).toMatch(/^GPT partition #1 "root-a"/);

      const bad = await runCaptured(['verify', `${corrupt[form]}::root-a`, `${corrupt[form]}::root-x86-64-verity`, rootHash, '--json']);
      expect(bad.code, bad.stderr).toBe(2);
      const r = JSON.parse(bad.stdout);
      expect(r.data.corrupt).toEqual([{ first: CORRUPT_BLOCK, last: CORRUPT_BLOCK, count: 1, offset: CORRUPT_BLOCK * 4096, length: 4096 }]);
      expect(r.tree.corruptBlocks).toBe(0);
    });

    it(`${form}: the image alone is verified against the root hash its partition UUIDs give, labelled not authenticated`, async () => {
      const r = await runCaptured(['verify', clean[form]!, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.status).toBe('ok');
      expect(j.targets).toHaveLength(1);
      expect(j.targets[0]).toMatchObject({
        name: 'root x86-64',
        via: 'dps',
        status: 'ok',
        exitCode: 0,
        rootHash: { expected: rootHash, matches: true, from: "the UUIDs of partitions #1 and #2 (systemd's convention)", authenticated: false },
      });
      expect(j.targets[0].description).toMatch(/^data #1 "root-a" .*; hash #2 "verity-a" .*matched by the root-hash partition UUIDs/);
      expect((await runCaptured(['verify', clean[form]!])).stdout).toMatch(/NOT AUTHENTICATED: the image vouches for itself/);

      const bad = await runCaptured(['verify', corrupt[form]!, '--json']);
      expect(bad.code).toBe(2);
      expect(JSON.parse(bad.stdout).targets[0].data.corrupt).toMatchObject([{ first: CORRUPT_BLOCK, count: 1 }]);
    });

    it(`${form}: with the root hash given, the target it names is verified and labelled authenticated; a wrong one is exit 3`, async () => {
      const r = await runCaptured(['verify', clean[form]!, rootHash, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).targets[0].rootHash).toMatchObject({ expected: rootHash, from: 'given by the user', authenticated: true });
      expect((await runCaptured(['verify', corrupt[form]!, rootHash])).code).toBe(2);
      const wrong = await runCaptured(['verify', clean[form]!, 'f'.repeat(64), '--json']);
      expect(wrong.code).toBe(3);
      expect(JSON.parse(wrong.stdout).targets[0].status).toBe('root-mismatch');
    });

    it(`${form}: format of partition 1 writes veritysetup's hash device byte for byte`, async () => {
      const out = join(work, `format-${form.replace(/\W+/g, '-')}.img`);
      const r = await runCaptured(['format', `${clean[form]}::1`, out, '--salt', SALT, '--uuid', UUID, '--data-blocks', String(DATA_BLOCKS)]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Root hash:      \t${rootHash}`);
      expect(sha256(readFileSync(out))).toBe(sha256(hashBytes));
    });
  }

  it('partitions that overlap (the data partition running into the hash one) are a damaged image: exit 4, not a usage error', async () => {
    const disk = readFileSync(join(work, 'disk.raw'));
    // Primary GPT: header at LBA 1, entries from LBA 2. Shift partition 1 by 2 MiB so its 8 MiB of data run over the
    // start of partition 2 (LBA 20480), then reseal the entry array's and the header's CRCs: only the overlap is wrong.
    const view = new DataView(disk.buffer, disk.byteOffset, disk.length);
    view.setBigUint64(1024 + 32, 2048n + 4096n, true);
    view.setBigUint64(1024 + 40, 2048n + 4096n + 16384n - 1n, true);
    view.setUint32(512 + 88, crc32(disk.subarray(1024, 1024 + 128 * 128)), true);
    view.setUint32(512 + 16, 0, true);
    view.setUint32(512 + 16, crc32(disk.subarray(512, 512 + 92)), true);
    const path = join(work, 'overlapping.raw');
    writeFileSync(path, disk);
    const r = await runCaptured(['verify', `${path}::1`, `${path}::2`, rootHash]);
    expectFailure(r, 4, /Data area overlaps with hash area: .*::1 and .*::2 are in the same file/);
  });

  it('inspect lists the containers, partitions, the superblock and the DPS pair (text and JSON)', async () => {
    const r = await runCaptured(['inspect', clean['stored zip, VHDX']!, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.layers.map((l: { kind: string }) => l.kind)).toEqual(['file', 'zip', 'zip-entry', 'vhdx']);
    expect(j.partitions.map((p: { name: string; type: string }) => [p.name, p.type])).toEqual([
      ['root-a', 'root-x86-64'],
      ['verity-a', 'root-x86-64-verity'],
    ]);
    expect(j.superblocks).toMatchObject([{ partition: 2, offset: 0, where: 'start', dataBlocks: DATA_BLOCKS, uuid: UUID, salt: SALT }]);
    expect(j.verityPairs).toEqual([{ role: 'root', architecture: 'x86-64', data: 1, hash: 2, signature: null }]);
    const text = await runCaptured(['inspect', join(work, 'disk-stored.zip')]);
    expect(text.stdout).toMatch(/Zip entries \(2\):\n {2}disk\.vhdx {2}stored/);
  });

  it('an image without any verity target: exit 5, status no-verity, and what was searched', async () => {
    const r = await runCaptured(['verify', join(work, 'root.img'), '--json']);
    expect(r.code, r.stderr).toBe(5);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ status: 'no-verity', exitCode: 5, targets: [] });
    expect(j.searched).toContain('0 verity superblocks at the start of a partition or after a filesystem');
    const text = await runCaptured(['verify', join(work, 'root.img')]);
    expect(text.code).toBe(5);
    expect(text.stdout).toMatch(/^No dm-verity target found in .*root\.img\. Searched:\n {2}no partition table/);
  });

  it('inspect on a zip names the entries that start with a verity superblock, and says when none does', async () => {
    for (const level of ['-0', '-6']) {
      const zip = join(work, `hash${level}.zip`);
      run(ZIP!, ['-q', level, '-j', zip, join(work, 'root.img'), join(work, 'hash.img')]);
      const r = await runCaptured(['inspect', zip, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).superblocks).toMatchObject([
        { entry: 'hash.img', partition: null, offset: 0, where: 'start', dataBlocks: DATA_BLOCKS, uuid: UUID, salt: SALT },
      ]);
      const text = await runCaptured(['inspect', zip]);
      expect(text.stdout).toMatch(/Verity superblocks:\n {2}entry hash\.img at byte 0 \(start\): sha256/);
      expect(text.stdout).not.toMatch(/No verity superblock/);
    }
    const none = await runCaptured(['inspect', join(work, 'disk-stored.zip')]);
    expect(none.stdout).toMatch(/No zip entry starts with a verity superblock \(`verity inspect ARCHIVE::ENTRY` looks inside one\)\./);
  });

  it('a zip without an entry step, a missing entry and a step into a raw partition are usage errors naming the fix', async () => {
    const zip = join(work, 'disk-stored.zip');
    expectFailure(await runCaptured(['verify', zip, rootHash]), 1, /is a zip archive: name the entry, as in .*::disk\.vhdx/);
    expectFailure(await runCaptured(['verify', `${zip}::nope.vhdx`, rootHash]), 4, /has no entry "nope\.vhdx"\. It holds: disk\.vhdx, disk\.raw/);
    expectFailure(await runCaptured(['verify', `${clean.raw}::1::2`, rootHash]), 1, /nothing to select "2"/);
    expectFailure(await runCaptured(['format', clean.raw!, `${zip}::x`]), 4, /not into a container/);
  });

  it('stdin: a pipe of raw data formats (with --data-blocks) and verifies like the file', () => {
    const root = readFileSync(join(work, 'root.img'));
    const out = join(work, 'stdin-hash.img');
    const f = spawnSync(process.execPath, [BUILT_CLI, 'format', '-', out, '--salt', SALT, '--uuid', UUID, '--data-blocks', String(DATA_BLOCKS)], { input: root });
    expect(f.status, String(f.stderr)).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(hashBytes));
    const v = spawnSync(process.execPath, [BUILT_CLI, 'verify', '-', out, rootHash, '--json'], { input: root });
    expect(v.status, String(v.stderr)).toBe(0);
    const short = spawnSync(process.execPath, [BUILT_CLI, 'verify', '-', out, rootHash], { input: root.subarray(0, 5 * MiB) });
    expect(short.status).toBe(4);
    expect(String(short.stderr)).toMatch(/stdin ended after 5242880 bytes\./);
    const noCount = spawnSync(process.execPath, [BUILT_CLI, 'format', '-', out], { input: root });
    expect(noCount.status).toBe(1);
    expect(String(noCount.stderr)).toMatch(/unknown length: give the number of blocks with --data-blocks/);
  });
});

const BZIP2 = findTool('bzip2', '/usr/bin/bzip2', '/bin/bzip2');
describe.skipIf(!ZIP || !BZIP2)(`Hyper-V and qemu VHDX samples inside a deflated zip${ZIP && BZIP2 ? '' : ' [SKIPPED: needs zip and bzip2]'}`, () => {
  // test-disk2vhd (Disk2VHD, 2 MiB blocks) and the dirty-log image (a log to replay while streaming): hashed in
  // stream order from the zip, the tree must equal the one hashed in disk order from the file. Their payload blocks
  // are in disk order or hold equal bytes, so block placement is pinned by the shuffled test below.
  for (const [name, blocks] of [['test-disk2vhd', 65536], ['iotest-dirtylog-10G-4M', 16384]] as const) {
    it(`${name}: format from the deflated entry writes the same hash device as from the file`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'verity-vhdx-zip-'));
      try {
        const vhdx = join(dir, `${name}.vhdx`);
        const raw = spawnSync(BZIP2!, ['-dc', join(import.meta.dirname, '../fixtures/vhdx', `${name}.vhdx.bz2`)], { maxBuffer: 1 << 30 });
        writeFileSync(vhdx, raw.stdout);
        run(ZIP!, ['-q', '-6', '-j', join(dir, 'z.zip'), vhdx]);
        const args = ['--salt', '5a', '--uuid', UUID, '--data-blocks', String(blocks), '--threads', '2'];
        const a = await runCaptured(['format', vhdx, join(dir, 'a.img'), ...args]);
        const b = await runCaptured(['format', `${join(dir, 'z.zip')}::${name}.vhdx`, join(dir, 'b.img'), ...args]);
        expect(a.code, a.stderr).toBe(0);
        expect(b.code, b.stderr).toBe(0);
        expect(sha256(readFileSync(join(dir, 'b.img')))).toBe(sha256(readFileSync(join(dir, 'a.img'))));
        const root = /Root hash:\s+(\w+)/.exec(a.stdout)![1]!;
        const v = await runCaptured(['verify', `${join(dir, 'z.zip')}::${name}.vhdx`, join(dir, 'a.img'), root]);
        expect(v.code, v.stderr).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  }
});

const QEMU_IO = findTool('qemu-io', '/usr/bin/qemu-io');
const shuffledReady = Boolean(QEMU_IO && QEMU_IMG && SGDISK && ZIP);
describe.skipIf(!shuffledReady)(`payload blocks out of disk order${shuffledReady ? '' : ' [SKIPPED: needs qemu-io, qemu-img, sgdisk and zip]'}`, () => {
  it('a VHDX written in shuffled order, partition at an unaligned offset: the deflated entry hashes like the file', async () => {
    // Partition 1 starts at LBA 35 (byte 17920), so data blocks straddle the 1 MiB payload blocks; qemu-io writes
    // 512 KiB pieces with distinct patterns in shuffled order, so payload blocks are allocated out of disk order.
    const dir = mkdtempSync(join(tmpdir(), 'verity-shuffled-'));
    try {
      const raw = join(dir, 'disk.raw');
      writeFileSync(raw, new Uint8Array(16 * MiB));
      run(SGDISK!, ['-a', '1', '-n', '1:35:+12M', raw]);
      const vhdx = join(dir, 'disk.vhdx');
      run(QEMU_IMG!, ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, vhdx]);
      const pieces = [7, 2, 19, 11, 4, 23, 14, 9, 3, 21, 16, 6, 12, 5, 18, 10]; // 512 KiB pieces; some left empty
      const writes = pieces.flatMap((p) => ['-c', `write -P ${(p * 37) & 0xff} ${p * 512 * 1024} 512k`]);
      run(QEMU_IO!, ['-f', 'vhdx', ...writes, vhdx]);
      run(ZIP!, ['-q', '-6', '-j', join(dir, 'z.zip'), vhdx]);
      const args = ['--salt', '5a', '--uuid', UUID];
      const a = await runCaptured(['format', `${vhdx}::1`, join(dir, 'a.img'), ...args]);
      const b = await runCaptured(['format', `${join(dir, 'z.zip')}::disk.vhdx::1`, join(dir, 'b.img'), ...args]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(sha256(readFileSync(join(dir, 'b.img')))).toBe(sha256(readFileSync(join(dir, 'a.img'))));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('front-to-back sources', () => {
  const bytes = makeData({ blocks: 512, blockSize: 4096, tailBytes: 0, fill: 'random', seed: 3 });
  function chunked(reopenable: boolean, budget?: number) {
    const stream = {
      size: bytes.length,
      name: 'test stream',
      reopenable,
      async *open() {
        for (let at = 0, step = 1; at < bytes.length; at += step, step = (step * 7 + 13) % 70001) {
          yield bytes.slice(at, Math.min(bytes.length, at + step));
        }
      },
    };
    return streamSource(stream, { budget });
  }

  it('reads forward, serves recent bytes again, restarts for older ones, and counts its passes', async () => {
    const s = chunked(true);
    const out = new Uint8Array(10_000);
    for (const at of [5, 1_500_000, 1_400_000, 2_000_000, 3]) {
      await readExactly(s, out, at, 'test');
      expect(out).toEqual(bytes.subarray(at, at + out.length));
    }
    expect(s.passes).toBe(2);
  });

  it('a stream that cannot be reopened refuses to go back, with a clear error', async () => {
    const s = chunked(false);
    await readExactly(s, new Uint8Array(10), 2_000_000, 'test');
    await expect(readExactly(s, new Uint8Array(10), 0, 'test')).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: /cannot be read again/ });
  });

  it('re-reading beyond the budget fails instead of running on', async () => {
    const s = chunked(true, 5_000_000);
    const out = new Uint8Array(10);
    await expect(
      (async () => {
        for (let i = 0; i < 10; i++) {
          await readExactly(s, out, 2_000_000, 'test');
          await readExactly(s, out, 0, 'test');
        }
      })(),
    ).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: /needs it read out of order/ });
  });

  it('a stream shorter or longer than it declares is an error', async () => {
    const short = streamSource({ size: 100, name: 's', reopenable: true, open: async function* () { yield new Uint8Array(50); } });
    await expect(readExactly(short, new Uint8Array(100), 0, 'x')).rejects.toMatchObject({ code: 'E_TRUNCATED' });
    const long = streamSource({ size: 10, name: 'l', reopenable: true, open: async function* () { yield new Uint8Array(50); } });
    await expect(readExactly(long, new Uint8Array(10), 0, 'x')).rejects.toMatchObject({ code: 'E_BAD_IMAGE' });
    // Running on after a chunk that ends exactly at the declared size is the same lie, not a matter of chunking.
    const exact = streamSource({ size: 10, name: 'e', reopenable: true, open: async function* () { yield new Uint8Array(10); yield new Uint8Array(0); yield new Uint8Array(1); } });
    await expect(readExactly(exact, new Uint8Array(10), 0, 'x')).rejects.toThrow(/holds more than the 10 bytes it declares/);
    const honest = streamSource({ size: 10, name: 'h', reopenable: true, open: async function* () { yield new Uint8Array(10); yield new Uint8Array(0); } });
    await expect(readExactly(honest, new Uint8Array(10), 0, 'x')).resolves.toBeUndefined();
    expect(bytesSource(bytes).sequential).toBeUndefined();
  });
});

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
