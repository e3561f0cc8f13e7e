/**
 * Naming the files that damaged data blocks belong to (src/report/owners.ts), end to end: ext4 images made by mke2fs -d
 * from a directory of known files, sealed with our `format`, bytes flipped at places e2fsprogs' debugfs locates
 * (`blocks`, `icheck`, `ncheck`, `ffb`, `testb`, `stats`), then `verity verify` (text and --json) must name the same
 * file and byte range, or free space and the inode table. The expectations come from debugfs, not from our reader.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatFiles } from '../../src/index.js';
import { streamSource } from '../../src/io/sequential.js';
import { bytesSource } from '../../src/io/source.js';
import { damagedFiles, type DamagedFile } from '../../src/report/owners.js';
import { runCaptured } from '../support/cli-harness.js';
import { buildCustomizerDisk, osImageTools, seeded } from '../support/os-images.js';
import { findTool } from '../support/tools.js';
import { flipByte, writeAt } from '../support/tree-damage.js';

const MKE2FS = findTool('mke2fs', '/usr/sbin/mke2fs', '/sbin/mke2fs');
const DEBUGFS = findTool('debugfs', '/usr/sbin/debugfs', '/sbin/debugfs');
const MISSING = [...(MKE2FS ? [] : ['mke2fs']), ...(DEBUGFS ? [] : ['debugfs'])];
const SKIP = MISSING.length === 0 ? '' : ` [SKIPPED: needs ${MISSING.join(', ')} (e2fsprogs)]`;

const BIG = 300_000;
const SMALL = 10_000;
const UUID = '5d2f7b1e-8a41-4c3e-9f60-2b7d8e9a1c04';

let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'verity-owners-'));
  const tree = join(work, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  mkdirSync(join(tree, 'data/sub'), { recursive: true });
  writeFileSync(join(tree, 'etc/os-release'), 'NAME="Owners test"\n');
  writeFileSync(join(tree, 'data/big.bin'), seeded('owners-big', BIG));
  writeFileSync(join(tree, 'data/sub/small.bin'), seeded('owners-small', SMALL));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function debugfs(image: string, request: string): string {
  const r = spawnSync(DEBUGFS!, ['-R', request, image], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  expect(r.status, `debugfs -R "${request}": ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** The physical blocks of `path`, in file order (debugfs `blocks`). */
function fileBlocks(image: string, path: string): number[] {
  return debugfs(image, `blocks ${path}`).trim().split(/\s+/).map(Number);
}

/** The inode that owns `block` (debugfs `icheck`), null when none does. */
function inodeOf(image: string, block: number): number | null {
  const m = new RegExp(`^${block}\\s+(\\d+)\\s*$`, 'm').exec(debugfs(image, `icheck ${block}`));
  return m ? Number(m[1]) : null;
}

/** A path of `inode` (debugfs `ncheck`; it prints children of the root with two slashes). */
function pathOf(image: string, inode: number): string {
  const m = new RegExp(`^${inode}\\s+(\\S.*)$`, 'm').exec(debugfs(image, `ncheck ${inode}`));
  expect(m, `ncheck ${inode}`).not.toBeNull();
  return m![1]!.replace(/^\/\//, '/');
}

/** An ext4 image of 8 MiB with `blockSize`-byte blocks holding the tree, copied to `name`. */
function ext4(name: string, blockSize: number): string {
  const image = join(work, name);
  rmSync(image, { force: true });
  const r = spawnSync(MKE2FS!, ['-q', '-F', '-t', 'ext4', '-b', String(blockSize), '-U', UUID, '-E', `hash_seed=${UUID}`, '-d', join(work, 'tree'), image, '8M'], {
    encoding: 'utf8',
    env: { ...process.env, LC_ALL: 'C' },
  });
  expect(r.status, r.stderr).toBe(0);
  return image;
}

interface Sealed {
  data: string;
  hash: string;
  root: string;
}

/** `image` sealed by our format with `dataBlockSize`-byte verity blocks. */
async function seal(image: string, dataBlockSize = 4096): Promise<Sealed> {
  const hash = `${image}.hash`;
  rmSync(hash, { force: true });
  const r = await formatFiles(image, hash, { dataBlockSize, salt: 'ab12' });
  return { data: image, hash, root: Buffer.from(r.rootHash).toString('hex') };
}

async function verifyBoth(s: Sealed) {
  const text = await runCaptured(['verify', s.data, s.hash, s.root]);
  const json = await runCaptured(['verify', s.data, s.hash, s.root, '--json']);
  expect(json.code, json.stderr).toBe(2);
  expect(text.code, text.stderr).toBe(2);
  expect(text.stderr).not.toMatch(/verity verify:/);
  return { text: text.stdout, doc: JSON.parse(json.stdout) };
}

describe.skipIf(SKIP !== '')(`damaged blocks named in an ext4 data device${SKIP}`, () => {
  it('names each damaged file with the byte ranges of it that debugfs places in the damaged blocks', async () => {
    const image = ext4('files.img', 4096);
    const sealed = await seal(image);
    const big = fileBlocks(image, '/data/big.bin');
    const small = fileBlocks(image, '/data/sub/small.bin');
    expect(big).toHaveLength(Math.ceil(BIG / 4096));
    expect(small).toHaveLength(3);
    // Blocks 2 and 3 of big.bin (adjacent in the file: one range), its block 40, and the last block of small.bin.
    for (const block of [big[2]!, big[3]!, big[40]!, small[2]!]) flipByte(image, block * 4096 + 100);
    const bigInode = inodeOf(image, big[2]!)!;
    const smallInode = inodeOf(image, small[2]!)!;
    expect(pathOf(image, bigInode)).toBe('/data/big.bin');
    expect(pathOf(image, smallInode)).toBe('/data/sub/small.bin');

    const { text, doc } = await verifyBoth(sealed);
    const expected: Record<string, DamagedFile> = {
      '/data/big.bin': {
        path: '/data/big.bin',
        inode: bigInode,
        kind: 'file',
        size: BIG,
        corrupt: [
          { offset: 2 * 4096, length: 2 * 4096 },
          { offset: 40 * 4096, length: 4096 },
        ],
        unverified: [],
        mappingBlocks: 0,
      },
      '/data/sub/small.bin': {
        path: '/data/sub/small.bin',
        inode: smallInode,
        kind: 'file',
        size: SMALL,
        corrupt: [{ offset: 2 * 4096, length: 4096 }],
        unverified: [],
        mappingBlocks: 0,
      },
    };
    // In device order of their first damaged block.
    const order = Math.min(big[2]!, big[3]!, big[40]!) < small[2]! ? ['/data/big.bin', '/data/sub/small.bin'] : ['/data/sub/small.bin', '/data/big.bin'];
    expect(doc.data.files).toEqual(order.map((p) => expected[p]));
    expect(doc.data.filesystem).toEqual({ type: 'ext4', blockSize: 4096, damagedBlocks: 4, lookedUpBlocks: 4, truncated: false, other: [], error: null });
    // The existing fields are unchanged.
    expect(doc.data.corruptBlocks).toBe(4);
    expect(text).toContain('The damaged blocks in the ext4 filesystem (4096-byte blocks) hold:\n');
    expect(text).toContain('\n  /data/big.bin: bytes 8192-16383, 163840-167935 of 300000\n');
    expect(text).toContain('\n  /data/sub/small.bin: bytes 8192-12287 of 10000\n');
  });

  it('reports damage in free space and in the inode table as such, with no file', async () => {
    const image = ext4('meta.img', 4096);
    const sealed = await seal(image);
    const free = Number(/Free blocks found: (\d+)/.exec(debugfs(image, 'ffb 1 1500'))![1]);
    expect(debugfs(image, `testb ${free}`)).toMatch(new RegExp(`Block ${free} not in use`));
    const table = Number(/Group {2}0: .*inode table at (\d+)/.exec(debugfs(image, 'stats'))![1]);
    // A block of the table past the inodes in use, so that reading the files is not disturbed.
    const tableBlock = table + 100;
    expect(inodeOf(image, tableBlock)).toBeNull();
    for (const block of [free, tableBlock]) flipByte(image, block * 4096 + 7);

    const { text, doc } = await verifyBoth(sealed);
    expect(doc.data.files).toEqual([]);
    expect(doc.data.filesystem.other).toEqual([
      { kind: 'free', blocks: 1, corruptBlocks: 1, unverifiedBlocks: 0 },
      { kind: 'inode-table', blocks: 1, corruptBlocks: 1, unverifiedBlocks: 0 },
    ]);
    expect(text).toContain('\n  free space: 1 block\n');
    expect(text).toContain('\n  inode table: 1 block\n');
  });

  it('maps 4096-byte verity blocks onto 1024-byte filesystem blocks: each owner gets its part', async () => {
    const image = ext4('small-blocks.img', 1024);
    const sealed = await seal(image, 4096);
    const big = fileBlocks(image, '/data/big.bin');
    const index = 50;
    flipByte(image, big[index]! * 1024 + 5);
    // The verity block holding it covers four filesystem blocks; what debugfs says each of them is.
    const verityBlock = Math.floor((big[index]! * 1024) / 4096);
    const expectedRanges: Array<{ offset: number; length: number }> = [];
    const owners = new Set<number | null>();
    for (let q = verityBlock * 4; q < verityBlock * 4 + 4; q++) {
      const inode = inodeOf(image, q);
      owners.add(inode);
      const at = big.indexOf(q);
      if (at >= 0) expectedRanges.push({ offset: at * 1024, length: 1024 });
    }
    const merged = expectedRanges.reduce<Array<{ offset: number; length: number }>>((out, r) => {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === r.offset) last.length += r.length;
      else out.push({ ...r });
      return out;
    }, []);

    const { doc } = await verifyBoth(sealed);
    expect(doc.data.corrupt.map((r: { first: number }) => r.first)).toEqual([verityBlock]);
    const entry = doc.data.files.find((f: DamagedFile) => f.path === '/data/big.bin');
    expect(entry).toMatchObject({ kind: 'file', size: BIG, corrupt: merged });
    expect(doc.data.filesystem).toMatchObject({ blockSize: 1024, damagedBlocks: 4, lookedUpBlocks: 4 });
    // Every file debugfs finds among the four blocks is named.
    const inodes = [...owners].filter((i): i is number => i !== null).sort((a, b) => a - b);
    expect(doc.data.files.map((f: DamagedFile) => f.inode).sort((a: number, b: number) => a - b)).toEqual(inodes);
  });

  it('maps 1024-byte verity blocks into a 4096-byte filesystem block: the range is the damaged quarter', async () => {
    const image = ext4('large-blocks.img', 4096);
    const sealed = await seal(image, 1024);
    const big = fileBlocks(image, '/data/big.bin');
    flipByte(image, big[5]! * 4096 + 2000);
    const { text, doc } = await verifyBoth(sealed);
    expect(doc.data.files).toEqual([
      { path: '/data/big.bin', inode: inodeOf(image, big[5]!), kind: 'file', size: BIG, corrupt: [{ offset: 5 * 4096 + 1024, length: 1024 }], unverified: [], mappingBlocks: 0 },
    ]);
    expect(text).toContain(`\n  /data/big.bin: bytes ${5 * 4096 + 1024}-${5 * 4096 + 2047} of ${BIG}\n`);
  });

  it('a filesystem whose superblock no longer reads is reported as unreadable, and verify still reports the blocks', async () => {
    const image = ext4('bad-super.img', 4096);
    const sealed = await seal(image);
    // s_log_block_size (superblock offset 0x18) past 64 KiB blocks; the magic stays.
    writeAt(image, 1024 + 0x18, new Uint8Array([9, 0, 0, 0]));
    const { text, doc } = await verifyBoth(sealed);
    expect(doc.data.corrupt.map((r: { first: number }) => r.first)).toEqual([0]);
    expect(doc.data.files).toEqual([]);
    expect(doc.data.filesystem.error).toMatch(/^the filesystem could not be read: .*s_log_block_size 9/);
    expect(text).toMatch(/\n {2}the filesystem could not be read: .*s_log_block_size 9/);
  });

  it('lists unverified bytes apart, and caps the blocks looked up (truncated)', async () => {
    const image = ext4('capped.img', 4096);
    const big = fileBlocks(image, '/data/big.bin');
    const source = bytesSource(new Uint8Array(readFileSync(image)));
    const corrupt = [{ first: big[10]!, count: 1 }];
    const unverified = [{ first: big[11]!, count: 2 }];
    const all = await damagedFiles(source, 4096, corrupt, unverified);
    expect(all!.files).toEqual([
      {
        path: '/data/big.bin',
        inode: inodeOf(image, big[10]!),
        kind: 'file',
        size: BIG,
        corrupt: [{ offset: 10 * 4096, length: 4096 }],
        unverified: [{ offset: 11 * 4096, length: 2 * 4096 }],
        mappingBlocks: 0,
      },
    ]);
    expect(all).toMatchObject({ damagedBlocks: 3, lookedUpBlocks: 3, truncated: false });
    const capped = await damagedFiles(source, 4096, corrupt, unverified, { maxBlocks: 2 });
    expect(capped).toMatchObject({ damagedBlocks: 3, lookedUpBlocks: 2, truncated: true });
    expect(capped!.files[0]!.unverified).toEqual([{ offset: 11 * 4096, length: 4096 }]);
  });

  it('data read as a front-to-back stream is not read again, not even its superblock: a reason instead', async () => {
    const bytes = new Uint8Array(readFileSync(ext4('streamed.img', 4096)));
    let opened = 0;
    const stream = streamSource({
      size: bytes.length,
      name: 'test stream',
      reopenable: true,
      async *open() {
        opened++;
        for (let at = 0; at < bytes.length; at += 65536) yield bytes.slice(at, at + 65536);
      },
    });
    const r = await damagedFiles(stream, 4096, [{ first: 1500, count: 1 }], []);
    expect(r).toMatchObject({ filesystem: null, files: [], other: [], error: expect.stringMatching(/read as a stream/) });
    expect(opened).toBe(0);
  });
});

describe('a data device that is not ext4', () => {
  it('gives no file list and no error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verity-owners-raw-'));
    try {
      const data = join(dir, 'data.img');
      writeFileSync(data, seeded('not-ext4', 256 * 4096));
      const sealed = await seal(data);
      flipByte(data, 17 * 4096 + 3);
      const { text, doc } = await verifyBoth(sealed);
      expect(doc.data.corrupt.map((r: { first: number }) => r.first)).toEqual([17]);
      expect(doc.data.files).toBeNull();
      expect(doc.data.filesystem).toBeNull();
      expect(text).not.toMatch(/ext4|filesystem/);
      expect(await damagedFiles(bytesSource(readFileSync(data)), 4096, [{ first: 17, count: 1 }], [])).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const OS_MISSING = [...osImageTools(), ...(DEBUGFS ? [] : ['debugfs'])];
const OS_SKIP = OS_MISSING.length === 0 ? '' : ` [SKIPPED: needs ${OS_MISSING.join(', ')}]`;

describe.skipIf(OS_SKIP !== '')(`verify IMAGE names the damaged files of each target${OS_SKIP}`, () => {
  it('an image-customizer disk damaged in verity block 5: the owner debugfs gives (icheck, ncheck)', async () => {
    const dir = join(work, 'azl');
    const azl = buildCustomizerDisk(dir, { boot: 'bls', idType: 'partlabel', damage: [5] });
    // The root filesystem as it went into the disk, damaged; verity and filesystem blocks are both 4096 bytes.
    const rootfs = join(dir, 'rootfs.ext4');
    const copy = join(work, 'azl-rootfs.ext4');
    copyFileSync(rootfs, copy);
    const inode = inodeOf(copy, 5);
    const r = await runCaptured(['verify', azl.raw, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const [target] = JSON.parse(r.stdout).targets;
    expect(target.data.corrupt.map((c: { first: number }) => c.first)).toEqual([5]);
    expect(target.data.filesystem).toMatchObject({ type: 'ext4', blockSize: 4096, damagedBlocks: 1, error: null });
    const text = (await runCaptured(["verify", azl.raw])).stdout;
    if (inode === null) {
      // Metadata: no file, one block of another kind.
      expect(target.data.files).toEqual([]);
      expect(target.data.filesystem.other).toHaveLength(1);
    } else {
      const path = pathOf(copy, inode);
      const index = fileBlocks(copy, path).indexOf(5);
      expect(index).toBeGreaterThanOrEqual(0);
      expect(target.data.files).toHaveLength(1);
      expect(target.data.files[0]).toMatchObject({ path, inode, corrupt: [{ offset: index * 4096, length: 4096 }] });
      expect(text).toContain(`    ${path}${target.data.files[0].kind === 'file' ? '' : ` (${target.data.files[0].kind})`}: bytes ${index * 4096}-${index * 4096 + 4095}`);
    }
    expect(text).toContain('  The damaged blocks in the ext4 filesystem (4096-byte blocks) hold:\n');
  });
});
