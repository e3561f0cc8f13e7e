/**
 * ext2/3/4 images for the reader's tests, made at test time by the real mke2fs from a directory tree written here:
 * the tree on disk is the oracle for contents, and debugfs (e2fsprogs) for where things are inside the image.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, symlinkSync, linkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { makeData } from '../support/data.js';
import { findTool } from '../support/tools.js';

export const MKE2FS = findTool('mke2fs', '/usr/sbin/mke2fs', '/sbin/mke2fs');
export const DEBUGFS = findTool('debugfs', '/usr/sbin/debugfs', '/sbin/debugfs');
export const E2FSCK = findTool('e2fsck', '/usr/sbin/e2fsck', '/sbin/e2fsck');
export const MKFIFO = findTool('mkfifo', '/usr/bin/mkfifo', '/bin/mkfifo');
/** Empty when mke2fs and debugfs are there, else the reason the tests that need them are skipped. */
export const NEEDS_E2FSPROGS = MKE2FS && DEBUGFS ? '' : ' [SKIPPED: mke2fs and debugfs (e2fsprogs) not installed]';

export function random(length: number, seed: number): Uint8Array {
  return makeData({ blocks: length, blockSize: 1, tailBytes: 0, fill: 'random', seed });
}

/** Writes `pieces` at their offsets into a file of `size` bytes, leaving holes between them. */
function sparseFile(path: string, size: number, pieces: Array<[offset: number, data: Uint8Array]>): void {
  writeFileSync(path, new Uint8Array(0));
  const fd = openSync(path, 'r+');
  try {
    for (const [offset, data] of pieces) writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
  truncateSync(path, size);
}

/** Entries of /many: with names of 160 bytes, a hashed directory of two levels with 1 KiB blocks. */
export const MANY_ENTRIES = 1200;
/** A file whose last bytes are a hole. */
export const TAIL_HOLE = 'tailhole';
export const HOPS = 41;
/** A symlink target longer than i_block's 60 bytes (a slow symlink). */
export const SLOW_TARGET = `${'./'.repeat(40)}a/b/c/d/deep.txt`;

/**
 * The tree every image is made from. Sizes cover 0, 1, around 60 bytes (fast symlinks and inline data), a block,
 * many blocks (single and double indirect with 1 KiB blocks), holes (hundreds of extents: a tree of depth 1 or 2),
 * a file reaching the triple-indirect block of 1 KiB block maps (70 MiB, almost all hole), hashed directories,
 * hard links and symlinks (fast, slow, relative, absolute, chains, loops, dangling).
 */
export function writeTree(root: string): void {
  const file = (rel: string, data: Uint8Array | string) => writeFileSync(join(root, rel), data);
  for (const d of ['a/b/c/d', 'many', 'empty-dir', 'inline-dir']) mkdirSync(join(root, d), { recursive: true });
  file('empty', '');
  file('one', 'x');
  file('small59', random(59, 1));
  file('small60', random(60, 2));
  file('small61', random(61, 3));
  file('medium', random(300, 4));
  file('block1k', random(1024, 5));
  file('block4k', random(4096, 6));
  file('multi', random(100_000, 7));
  file('big', random(5_000_000, 8));
  file('a/x.txt', 'the x file\n');
  file('a/b/file', random(3000, 9));
  file('a/b/c/d/deep.txt', 'deep\n');
  file('inline-dir/tiny', 'tiny\n');
  file('ünïcødé name.txt', 'utf-8 name\n');
  sparseFile(join(root, 'sparse'), 399 * 8192 + 1024, Array.from({ length: 400 }, (_, i) => [i * 8192, random(1024, 100 + i)] as [number, Uint8Array]));
  sparseFile(join(root, 'holes'), 3 << 20, [[0, random(5000, 10)], [(1 << 20) + 123, random(5000, 11)], [(3 << 20) - 7, random(7, 13)]]);
  sparseFile(join(root, TAIL_HOLE), 3 << 20, [[0, random(5000, 14)]]);
  sparseFile(join(root, 'allhole'), 5 << 20, []);
  sparseFile(join(root, 'far'), 70 * (1 << 20) + 4096, [[70 * (1 << 20), random(4096, 12)]]);
  for (let i = 1; i <= MANY_ENTRIES; i++) file(`many/entry-${'n'.repeat(148)}-${String(i).padStart(5, '0')}`, i % 100 === 0 ? String(i) : '');
  linkSync(join(root, 'one'), join(root, 'a/hard'));
  const link = (target: string, rel: string) => symlinkSync(target, join(root, rel));
  link('a/b/c/d/deep.txt', 'link-rel');
  link('/a/b', 'link-abs');
  link('../x.txt', 'a/b/up');
  link(SLOW_TARGET, 'link-slow');
  link('chain2', 'chain1');
  link('chain3', 'chain2');
  link('one', 'chain3');
  link('loop2', 'loop1');
  link('loop1', 'loop2');
  link('self', 'self');
  link('nowhere', 'dangling');
  link('a', 'link-dir');
  for (let i = 0; i < HOPS; i++) link(i === HOPS - 1 ? 'one' : `hop${i + 1}`, `hop${i}`);
  if (MKFIFO) spawnSync(MKFIFO, [join(root, 'fifo')]);
}

/** Runs a tool and returns its stdout, or throws with its stderr. */
export function run(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 && !(tool === E2FSCK && r.status !== null && r.status <= 2)) {
    throw new Error(`${tool} ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  }
  return r.stdout;
}

/** Makes an image of `sizeMiB` from `tree` with mke2fs `options`; with `index`, e2fsck -D then hashes directories. */
export function mkfs(image: string, tree: string | null, options: string[], sizeMiB: number, index = false): void {
  writeFileSync(image, new Uint8Array(0));
  truncateSync(image, sizeMiB << 20);
  run(MKE2FS!, ['-q', '-F', ...options, ...(tree ? ['-d', tree] : []), image]);
  if (index && E2FSCK) run(E2FSCK, ['-fyD', image]);
}

/** debugfs -R `request` on `image`: its stdout. */
export function debugfs(image: string, request: string, writable = false): string {
  return run(DEBUGFS!, [...(writable ? ['-w'] : []), '-R', request, image]);
}

/** Where debugfs says inode `spec` (a path or <n>) is stored: its byte offset in the image. */
export function inodeOffset(image: string, spec: string, blockSize: number): number {
  const out = debugfs(image, `imap ${spec}`);
  const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
  if (!m) throw new Error(`imap ${spec}: ${out}`);
  return Number(m[1]) * blockSize + Number.parseInt(m[2]!, 16);
}

/** The physical block of logical block `logical` of `path` (debugfs bmap); 0 for a hole. */
export function bmap(image: string, path: string, logical: number): number {
  return Number(debugfs(image, `bmap ${path} ${logical}`).trim());
}

/** The blocks debugfs stat lists for `path`: tree blocks (ETB/IND/DIND/TIND) and data. */
export function statBlocks(image: string, path: string): { tree: number[]; data: number[] } {
  const out = debugfs(image, `stat ${path}`);
  const tree: number[] = [];
  const data: number[] = [];
  for (const m of out.matchAll(/\((ETB\d+|IND|DIND|TIND)\):(\d+)/g)) tree.push(Number(m[2]));
  // Data runs are "(logical[-last]):first[-last]"; uninitialized extents add "[u]" to the logical range.
  for (const m of out.matchAll(/\(\d+(?:-\d+)?(?:\[u\])?\):(\d+)(?:-(\d+))?/g)) {
    for (let b = Number(m[1]); b <= Number(m[2] ?? m[1]); b++) data.push(b);
  }
  return { tree, data };
}

/**
 * A 4 MiB ext4 (1 KiB blocks) whose free space is fragmented: 200 files of 3000 bytes, every other one removed by
 * debugfs, then `data` written by debugfs into the gaps: a file of many extents, so an extent tree of depth 1, that
 * is not sparse. Returns the image path.
 */
export function fragmentedImage(dir: string, data: Uint8Array, options: string[] = ['-t', 'ext4', '-b', '1024']): string {
  const tree = join(dir, 'frag-tree');
  mkdirSync(tree);
  for (let i = 1; i <= 200; i++) writeFileSync(join(tree, `f${i}`), random(3000, 1000 + i));
  const image = join(dir, 'frag.img');
  mkfs(image, tree, options, 4);
  const commands = join(dir, 'frag.cmds');
  writeFileSync(commands, Array.from({ length: 100 }, (_, i) => `rm /f${2 * i + 1}\n`).join(''));
  run(DEBUGFS!, ['-w', '-f', commands, image]);
  const host = join(dir, 'frag.data');
  writeFileSync(host, data);
  debugfs(image, `write ${host} /frag`, true);
  return image;
}
