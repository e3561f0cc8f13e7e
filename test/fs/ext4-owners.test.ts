/**
 * ownersOfBlocks against e2fsprogs: dumpe2fs for the group layout, debugfs `testb` for free blocks, `icheck` for the
 * inode owning a block, `ncheck` for its names, `bmap` for where a file offset lies and `stat` for extent tree and
 * indirect blocks. Images: ext4 with a journal and a hashed directory, ext2 block maps up to triple indirect, and
 * a file written into fragmented free space.
 */
import { closeSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openExt4, type Ext4Volume } from '../../src/fs/ext4.js';
import { ownersOfBlocks, type BlockOwner, type BlockOwnerKind } from '../../src/fs/ext4-owners.js';
import { bytesSource, type ByteSource } from '../../src/io/source.js';
import { failure } from '../support/sources.js';
import { findTool } from '../support/tools.js';
import { DEBUGFS, debugfs, fragmentedImage, MKE2FS, mkfs, random, run, statBlocks } from './ext4-images.js';

const DUMPE2FS = findTool('dumpe2fs', '/usr/sbin/dumpe2fs', '/sbin/dumpe2fs');
const READY = Boolean(MKE2FS && DEBUGFS && DUMPE2FS);
const SKIP = READY ? '' : ' [SKIPPED: mke2fs, debugfs and dumpe2fs (e2fsprogs) not installed]';

function writeOwnersTree(root: string): void {
  mkdirSync(join(root, 'a/b/c'), { recursive: true });
  mkdirSync(join(root, 'many'));
  writeFileSync(join(root, 'a/b/c/file'), random(20_000, 1));
  writeFileSync(join(root, 'a/x'), 'x');
  writeFileSync(join(root, 'multi'), random(100_000, 2));
  const sparse = new Uint8Array(49 * 8192 + 1024);
  for (let i = 0; i < 50; i++) sparse.set(random(1024, 10 + i), i * 8192);
  writeFileSync(join(root, 'sparse'), sparse);
  // 70 MiB, almost all hole: its last block needs the triple-indirect block of a 1 KiB block map.
  const far = join(root, 'far');
  writeFileSync(far, new Uint8Array(0));
  const fd = openSync(far, 'r+');
  writeSync(fd, random(1024, 3), 0, 1024, 70 << 20);
  closeSync(fd);
  for (let i = 0; i < 500; i++) writeFileSync(join(root, 'many', `a-fairly-long-entry-name-${i}`), i % 50 === 0 ? random(2000, i) : '');
  symlinkSync(`${'./'.repeat(40)}a/b/c/file`, join(root, 'link-slow'));
  symlinkSync('a/x', join(root, 'link-fast'));
  linkSync(join(root, 'multi'), join(root, 'a/hard'));
}

/** Runs debugfs requests from a command file; each request's output lines, in order. */
function debugfsBatch(dir: string, image: string, requests: string[]): string[][] {
  const file = join(dir, 'batch.cmds');
  writeFileSync(file, `${requests.join('\n')}\n`);
  const out = run(DEBUGFS!, ['-f', file, image]);
  const answers: string[][] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('debugfs: ')) answers.push([]);
    else if (answers.length > 0 && line.trim() !== '') answers[answers.length - 1]!.push(line);
  }
  expect(answers.length).toBe(requests.length);
  return answers;
}

/** Block → kind, from dumpe2fs's per-group layout. */
function layoutOracle(image: string): Map<number, BlockOwnerKind> {
  const out = run(DUMPE2FS!, [image]);
  const kinds = new Map<number, BlockOwnerKind>();
  const range = (a: string, b: string | undefined, kind: BlockOwnerKind) => {
    for (let x = Number(a); x <= Number(b ?? a); x++) kinds.set(x, kind);
  };
  for (const m of out.matchAll(/(?:Primary|Backup) superblock at (\d+)/g)) range(m[1]!, undefined, 'superblock');
  // "Group descriptors at A-B", or one block of meta_bg: "Group descriptor at A".
  for (const m of out.matchAll(/Group descriptors? at (\d+)(?:-(\d+))?/g)) range(m[1]!, m[2], 'group-descriptors');
  for (const m of out.matchAll(/Reserved GDT blocks at (\d+)-(\d+)/g)) range(m[1]!, m[2], 'metadata');
  for (const m of out.matchAll(/(?:Block|Inode) bitmap at (\d+)/g)) range(m[1]!, undefined, 'bitmap');
  for (const m of out.matchAll(/Inode table at (\d+)-(\d+)/g)) range(m[1]!, m[2], 'inode-table');
  return kinds;
}

/** Checks every answer against e2fsprogs; returns how many blocks each kind had. */
function checkAgainstE2fsprogs(dir: string, image: string, volume: Ext4Volume, answers: BlockOwner[]): Record<string, number> {
  const layout = layoutOracle(image);
  const blocks = answers.map((a) => a.block);
  const testb = debugfsBatch(dir, image, blocks.map((b) => `testb ${b}`));
  const icheck = new Map<number, number | null>();
  for (let i = 0; i < blocks.length; i += 200) {
    const chunk = blocks.slice(i, i + 200);
    for (const line of debugfs(image, `icheck ${chunk.join(' ')}`).split('\n').slice(1)) {
      const m = /^(\d+)\s+(\d+|<block not found>)/.exec(line);
      if (m) icheck.set(Number(m[1]), m[2] === '<block not found>' ? null : Number(m[2]));
    }
  }
  const inodes = [...new Set([...icheck.values()].filter((x): x is number => x !== null))];
  const names = new Map<number, string[]>([[2, ['/']]]);
  if (inodes.length > 0) {
    for (const line of debugfs(image, `ncheck ${inodes.join(' ')}`).split('\n').slice(1)) {
      const m = /^(\d+)\s+(.*)$/.exec(line);
      if (m) names.set(Number(m[1]), [...(names.get(Number(m[1])) ?? []), m[2]!.replace(/^\/\//, '/')]);
    }
  }
  const withOffset = answers.filter((a) => a.fileOffset !== undefined);
  const bmaps = debugfsBatch(dir, image, withOffset.map((a) => `bmap <${a.inode}> ${a.fileOffset! / volume.blockSize}`));
  const treeBlocks = new Map<number, Set<number>>();
  const counts: Record<string, number> = {};

  answers.forEach((a, i) => {
    const b = a.block;
    const ctx = `block ${b}: ${JSON.stringify(a)}`;
    counts[a.kind] = (counts[a.kind] ?? 0) + 1;
    // Before the first data block, or before the superblock of a 1 KiB bigalloc filesystem (testb then says only
    // "Invalid block number", on stderr): the boot block.
    const laid = layout.get(b);
    if (laid) return expect(a.kind, ctx).toBe(laid);
    const tested = testb[i]!.join(' ');
    if (b < volume.firstDataBlock || tested === '') return expect(a.kind, ctx).toBe('metadata');
    const inUse = /marked in use/.test(tested);
    if (!inUse) return expect(a.kind, ctx).toBe('free');
    const owner = icheck.get(b);
    if (owner === undefined) return expect.fail(`icheck did not answer for ${ctx}`);
    if (owner === null) return expect(a.kind, ctx).toBe('metadata');
    expect(a.inode, ctx).toBe(owner);
    if (owner === 8) expect(a.kind, ctx).toBe('journal');
    else if (owner < 11 && owner !== 2) expect(a.kind, ctx).toBe('metadata');
    else {
      expect(['file', 'directory', 'symlink'], ctx).toContain(a.kind);
      expect(names.get(owner) ?? [], ctx).toContain(a.path);
    }
    if (a.fileOffset === undefined && owner !== 7) {
      let tree = treeBlocks.get(owner);
      if (!tree) {
        const stat = debugfs(image, `stat <${owner}>`);
        tree = new Set([...statBlocks(image, `<${owner}>`).tree, Number(/File ACL: (\d+)/.exec(stat)?.[1] ?? 0)]);
        treeBlocks.set(owner, tree);
      }
      expect(tree.has(b), ctx).toBe(true);
    }
  });
  withOffset.forEach((a, k) => expect(Number(bmaps[k]![0]), JSON.stringify(a)).toBe(a.block));
  return counts;
}

/**
 * Every block of the first 400 (the first group's superblock, descriptors, bitmaps and first inode table blocks),
 * then every `step`th block, the first 3 blocks of group 1 (a backup superblock and descriptors), and every block of
 * the files named; ascending.
 */
function wantedBlocks(image: string, volume: Ext4Volume, step: number, files: string[]): number[] {
  const set = new Set<number>();
  for (let b = 0; b < volume.blocksCount; b += b < 400 ? 1 : step) set.add(b);
  for (let k = 0; k < 3; k++) if (volume.groupCount > 1) set.add(volume.firstDataBlock + volume.blocksPerGroup + k);
  for (const f of files) {
    const { tree, data } = statBlocks(image, f);
    for (const b of [...tree, ...data]) set.add(b);
  }
  return [...set].sort((x, y) => x - y);
}

/** A source that counts the bytes read through it. */
function counting(bytes: Uint8Array): ByteSource & { readBytes: number } {
  const inner = bytesSource(bytes);
  const out = {
    size: inner.size,
    readBytes: 0,
    read: async (dst: Uint8Array, position: number) => {
      const n = await inner.read(dst, position);
      out.readBytes += n;
      return n;
    },
  };
  return out;
}

describe.skipIf(!READY)(`ownersOfBlocks against debugfs icheck/ncheck/testb/bmap and dumpe2fs${SKIP}`, () => {
  let dir = '';
  let tree = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ext4-owners-'));
    tree = join(dir, 'tree');
    mkdirSync(tree);
    writeOwnersTree(tree);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const FILES = ['/a/b/c/file', '/multi', '/sparse', '/far', '/link-slow', '/many', '/a/b', '/'];
  const images: Array<[string, string[]]> = [
    ['ext4 with a journal and a hashed directory, 1 KiB blocks', ['-t', 'ext4', '-b', '1024']],
    ['ext2 block maps to triple indirect, 1 KiB blocks', ['-t', 'ext2', '-b', '1024']],
    ['ext4 4 KiB blocks, 32-byte descriptors, 128-byte inodes', ['-t', 'ext4', '-b', '4096', '-O', '^64bit', '-I', '128']],
    ['ext4 meta_bg, 1 KiB blocks', ['-t', 'ext4', '-b', '1024', '-O', 'meta_bg,^resize_inode']],
    ['ext4 bigalloc, 4 KiB clusters of 1 KiB blocks', ['-t', 'ext4', '-b', '1024', '-O', 'bigalloc', '-C', '4096']],
  ];
  for (const [name, options] of images) {
    it(`${name}: every answer agrees with e2fsprogs`, async () => {
      const image = join(dir, 'owners.img');
      mkfs(image, tree, options, 24, true);
      const volume = await openExt4(bytesSource(new Uint8Array(readFileSync(image))));
      const blocks = wantedBlocks(image, volume, volume.blockSize === 1024 ? 17 : 5, FILES);
      const answers = await ownersOfBlocks(volume, blocks);
      expect(answers.map((a) => a.block)).toEqual(blocks);
      const counts = checkAgainstE2fsprogs(dir, image, volume, answers);
      for (const kind of ['file', 'directory', 'symlink', 'free', 'superblock', 'group-descriptors', 'bitmap', 'inode-table', 'metadata']) {
        expect(counts[kind] ?? 0, `${kind} in ${JSON.stringify(counts)}`).toBeGreaterThan(0);
      }
      if (options.includes('ext4') && !options.includes('-I')) expect(counts.journal).toBeGreaterThan(0);
      // Tree blocks (extent or indirect) were asked about and placed without a file offset.
      expect(answers.some((a) => a.kind === 'file' && a.fileOffset === undefined)).toBe(true);
      expect(answers.find((a) => a.path === '/a/hard' || a.path === '/multi')).toBeDefined();
    }, 60_000);
  }

  it('a fragmented file: each block at its offset', async () => {
    const data = random(250_000, 5);
    const image = fragmentedImage(dir, data);
    const volume = await openExt4(bytesSource(new Uint8Array(readFileSync(image))));
    const { tree: etb, data: blocks } = statBlocks(image, '/frag');
    const answers = await ownersOfBlocks(volume, [...etb, ...blocks].sort((a, b) => a - b));
    checkAgainstE2fsprogs(dir, image, volume, answers);
    const byBlock = new Map(answers.map((a) => [a.block, a]));
    blocks.forEach((b, logical) => expect(byBlock.get(b)).toMatchObject({ kind: 'file', path: '/frag', fileOffset: logical * 1024 }));
    expect(byBlock.get(etb[0]!)).toEqual({ block: etb[0], kind: 'file', inode: expect.any(Number), path: '/frag' });
  });

  it('stops reading inode tables once every block is placed, and checks its input', async () => {
    const image = join(dir, 'early.img');
    mkfs(image, tree, ['-t', 'ext4', '-b', '1024'], 24);
    const bytes = new Uint8Array(readFileSync(image));
    const source = counting(bytes);
    const volume = await openExt4(source);
    const rootBlock = Number(debugfs(image, 'bmap / 0').trim());
    const [answer] = await ownersOfBlocks(volume, [rootBlock]);
    expect(answer).toEqual({ block: rootBlock, kind: 'directory', inode: 2, path: '/', fileOffset: 0 });
    const tableBytes = volume.groupCount * Math.ceil((volume.inodesPerGroup * volume.inodeSize) / volume.blockSize) * volume.blockSize;
    expect(source.readBytes).toBeLessThan(tableBytes / 10);

    expect(await failure(ownersOfBlocks(volume, [5, 4]))).toMatchObject({ code: 'E_PARAM' });
    expect(await failure(ownersOfBlocks(volume, [volume.blocksCount]))).toMatchObject({ code: 'E_PARAM' });
    expect(await failure(ownersOfBlocks(volume, [1.5]))).toMatchObject({ code: 'E_PARAM' });
    expect(await ownersOfBlocks(volume, [])).toEqual([]);
    const twice = await ownersOfBlocks(volume, [rootBlock, rootBlock]);
    expect(twice).toEqual([answer, answer]);
  });
});
