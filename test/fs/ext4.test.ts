/**
 * The ext4 reader against images made by the real mke2fs from a tree on disk, in the variants the reader must handle
 * (extents of depth 0 to 2, block maps to triple indirect, 32- and 64-byte descriptors, inline data, 128-byte inodes,
 * no filetype, meta_bg, bigalloc, 1 and 4 KiB blocks, hashed directories). The tree is the oracle for contents
 * (symlinks are resolved by the host's own kernel in the tree) and debugfs for the structures each image really has.
 */
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFileSource, type FileSource } from '../../src/files/files.js';
import { bytesSource } from '../../src/io/source.js';
import { MAX_SYMLINK_HOPS, openExt4, type Ext4Volume } from '../../src/fs/ext4.js';
import { failure } from '../support/sources.js';
import { debugfs, E2FSCK, fragmentedImage, random, statBlocks, HOPS, MANY_ENTRIES, MKE2FS, mkfs, NEEDS_E2FSPROGS, DEBUGFS, SLOW_TARGET, TAIL_HOLE, writeTree } from './ext4-images.js';

interface Variant {
  name: string;
  options: string[];
  /** What debugfs must show in this image, so the test exercises what its name says. */
  shows: Array<[request: string, pattern: RegExp]>;
  /**
   * mke2fs 1.47.0 with inline_data gives a file that ends in a hole the size of its last data block (debugfs shows
   * that size too): that file is compared with what debugfs says, not with the tree.
   */
  dropsTailHole?: boolean;
}

const EXTENT_TREE: [string, RegExp] = ['stat /sparse', /\(ETB0\)/];
const TWO_LEVEL_TREE: [string, RegExp] = ['stat /sparse', /\(ETB1\)/];
const TRIPLE_INDIRECT: [string, RegExp] = ['stat /far', /\(TIND\)/];
const DOUBLE_INDIRECT: [string, RegExp] = ['stat /big', /\(DIND\)/];
const HASHED_DIR: [string, RegExp] = ['stat /many', /Flags: 0x[0-9a-f]*1[0-9a-f]{3}\b/];
const SLOW_LINK: [string, RegExp] = ['stat /link-slow', /(EXTENTS|BLOCKS|Size of inline data)/];
const FAST_LINK: [string, RegExp] = ['stat /link-rel', /Fast link dest: "a\/b\/c\/d\/deep.txt"/];

const VARIANTS: Variant[] = [
  { name: 'ext4, 4 KiB blocks', options: ['-t', 'ext4', '-b', '4096'], shows: [EXTENT_TREE, HASHED_DIR, SLOW_LINK, FAST_LINK] },
  { name: 'ext4 64bit, 1 KiB blocks', options: ['-t', 'ext4', '-b', '1024', '-O', '64bit'], shows: [TWO_LEVEL_TREE, HASHED_DIR, ['htree /many', /Indirect levels: 1/], ['stats', /Group descriptor size:\s+64/]] },
  { name: 'ext4 ^64bit (32-byte descriptors), 1 KiB blocks', options: ['-t', 'ext4', '-b', '1024', '-O', '^64bit'], shows: [TWO_LEVEL_TREE, ['stats', /^(?![\s\S]*Group descriptor size)/]] },
  { name: 'ext2, 1 KiB blocks (block maps)', options: ['-t', 'ext2', '-b', '1024'], shows: [TRIPLE_INDIRECT, DOUBLE_INDIRECT, HASHED_DIR] },
  { name: 'ext3, 4 KiB blocks', options: ['-t', 'ext3', '-b', '4096'], shows: [['stat /big', /\(DIND\)/], ['stats', /has_journal/]] },
  { name: 'ext4 -O ^extent, 1 KiB blocks', options: ['-t', 'ext4', '-O', '^extent,^64bit', '-b', '1024'], shows: [TRIPLE_INDIRECT, DOUBLE_INDIRECT] },
  { name: 'ext2 -O ^filetype, 4 KiB blocks', options: ['-t', 'ext2', '-O', '^filetype', '-b', '4096'], shows: [['stats', /^(?![\s\S]*filetype)/]] },
  {
    name: 'ext4 -O inline_data, 512-byte inodes',
    options: ['-t', 'ext4', '-O', 'inline_data', '-I', '512', '-b', '4096'],
    shows: [['stat /medium', /Size of inline data: \d+/], ['stat /inline-dir', /Size of inline data/], ['stat /small61', /Size of inline data/]],
    dropsTailHole: true,
  },
  { name: 'ext4 -I 128', options: ['-t', 'ext4', '-I', '128'], shows: [['stats', /Inode size:\s+128/]] },
  { name: 'ext4 -O meta_bg, 1 KiB blocks', options: ['-t', 'ext4', '-O', 'meta_bg,^resize_inode', '-b', '1024'], shows: [['stats', /meta_bg/]] },
  { name: 'ext4 -O bigalloc, 4 KiB clusters of 1 KiB blocks', options: ['-t', 'ext4', '-O', 'bigalloc', '-C', '4096', '-b', '1024'], shows: [['stats', /bigalloc/], ['stats', /First block:\s+0/]] },
];

const READ_WHOLE = 8 << 20;
const CHUNK = 1 << 20;

type Outcome = { data: Uint8Array } | { missing: true } | { loop: true } | { error: string };

/** What the host kernel makes of `path` in the tree (following symlinks). */
function hostRead(path: string): Outcome {
  try {
    return { data: new Uint8Array(readFileSync(path)) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return { loop: true };
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return { missing: true };
    return { error: String(code) };
  }
}

async function ourRead(volume: Ext4Volume, path: string): Promise<Outcome> {
  try {
    const data = await volume.readFile(path, READ_WHOLE);
    return data ? { data } : { missing: true };
  } catch (e) {
    const err = e as { code?: string; message: string };
    if (err.code === 'E_BAD_IMAGE' && /too many levels of symbolic links/.test(err.message)) return { loop: true };
    return { error: `${err.code}: ${err.message}` };
  }
}

/** Every path of the tree (relative, with a leading '/'), depth first. */
function treePaths(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = `${rel}/${name}`;
    out.push(p);
    if (lstatSync(join(root, p)).isDirectory()) out.push(...treePaths(root, p));
  }
  return out;
}

function hostKind(path: string): 'file' | 'directory' | 'symlink' | 'other' {
  const st = lstatSync(path);
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
}

describe.skipIf(!MKE2FS || !DEBUGFS)(`ext4 reader on images made by mke2fs -d${NEEDS_E2FSPROGS}`, () => {
  let work = '';
  let tree = '';
  let paths: string[] = [];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'ext4-'));
    tree = join(work, 'tree');
    mkdirSync(tree);
    writeTree(tree);
    paths = treePaths(tree);
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const variant of VARIANTS) {
    describe(variant.name, () => {
      let image = '';
      let source: FileSource;
      let volume: Ext4Volume;

      beforeAll(async () => {
        image = join(work, `${variant.name.replace(/[^a-z0-9]+/gi, '-')}.img`);
        mkfs(image, tree, [...variant.options, '-L', 'vol-label', '-U', '01234567-89ab-cdef-0123-456789abcdef'], 64, true);
        source = await openFileSource(image);
        volume = await openExt4(source);
      });
      afterAll(async () => {
        await source?.close();
      });

      it('has the structures its name promises (debugfs)', () => {
        // Hashed directories come from e2fsck -D: without e2fsck, /many stays a linear directory.
        const shows = variant.shows.filter(([request, pattern]) => E2FSCK || !(request.startsWith('htree') || pattern === HASHED_DIR[1]));
        for (const [request, pattern] of shows) expect(debugfs(image, request), request).toMatch(pattern);
      });

      it('reports the geometry, UUID and label debugfs reports', () => {
        const stats = debugfs(image, 'stats');
        const num = (label: string) => Number(new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(stats)?.[1]);
        expect(volume.blockSize).toBe(num('Block size'));
        expect(volume.blocksCount).toBe(num('Block count'));
        expect(volume.inodeCount).toBe(num('Inode count'));
        expect(volume.inodesPerGroup).toBe(num('Inodes per group'));
        expect(volume.blocksPerGroup).toBe(num('Blocks per group'));
        expect(volume.firstDataBlock).toBe(num('First block'));
        expect(volume.uuid).toBe('01234567-89ab-cdef-0123-456789abcdef');
        expect(volume.label).toBe('vol-label');
        expect(volume.kind).toBe('ext4');
        expect(volume.needsRecovery).toBe(false);
      });

      it('reads every regular file byte for byte as the tree has it', async () => {
        let files = 0;
        for (const p of paths) {
          if (hostKind(join(tree, p)) !== 'file') continue;
          let want = readFileSync(join(tree, p));
          if (variant.dropsTailHole && p === `/${TAIL_HOLE}`) {
            want = want.subarray(0, Number(/Size: (\d+)/.exec(debugfs(image, `stat ${p}`))![1]));
            expect(want.length).toBeLessThan(lstatSync(join(tree, p)).size);
          }
          const opened = await volume.open(p);
          expect(opened?.size, p).toBe(want.length);
          if (want.length <= READ_WHOLE) {
            const got = await volume.readFile(p, READ_WHOLE);
            if (!got || !Buffer.from(got.buffer, got.byteOffset, got.length).equals(want)) expect.fail(`${p} reads differently (${got?.length} bytes)`);
          } else {
            // Large files through the lazy source, in chunks that start inside blocks.
            const chunk = new Uint8Array(CHUNK);
            for (let at = 0; at < want.length; at += CHUNK - 1000) {
              const n = await opened!.read(chunk, at);
              expect(n).toBe(Math.min(CHUNK, want.length - at));
              if (!Buffer.from(chunk.subarray(0, n)).equals(want.subarray(at, at + n))) expect.fail(`${p} differs in ${at}..${at + n}`);
            }
            expect(await failure(volume.readFile(p, READ_WHOLE))).toMatchObject({ code: 'E_UNSUPPORTED' });
          }
          files++;
        }
        expect(files).toBeGreaterThan(MANY_ENTRIES);
      });

      it('lists every directory as the tree has it (names, kinds, sizes)', async () => {
        for (const p of ['', ...paths]) {
          if (p !== '' && hostKind(join(tree, p)) !== 'directory') continue;
          const listed = await volume.list(p === '' ? '/' : p);
          expect(listed, p).not.toBeNull();
          const mine = listed!.filter((e) => !(p === '' && e.name === 'lost+found')).sort((a, b) => (a.name < b.name ? -1 : 1));
          const want = readdirSync(join(tree, p))
            .sort()
            .map((name) => {
              const full = join(tree, p, name);
              const kind = hostKind(full);
              const size = variant.dropsTailHole && name === TAIL_HOLE ? Number(/Size: (\d+)/.exec(debugfs(image, `stat ${p}/${name}`))![1]) : kind === 'file' ? lstatSync(full).size : kind === 'symlink' ? Buffer.byteLength(readlinkSync(full)) : 0;
              return { name, kind, size };
            })
            .sort((a, b) => (a.name < b.name ? -1 : 1));
          // Compared as text: a deep comparison of thousands of entries is slow in the test runner.
          expect(JSON.stringify(mine), p).toBe(JSON.stringify(want));
        }
      });

      it('follows relative symlinks as the host kernel does in the tree (chains, loops, the 40-link limit, dangling)', async () => {
        let links = 0;
        for (const p of paths) {
          if (hostKind(join(tree, p)) !== 'symlink' || readlinkSync(join(tree, p)).startsWith('/')) continue;
          const host = hostRead(join(tree, p));
          expect(host, p).not.toHaveProperty('error');
          expect(await ourRead(volume, p), p).toEqual(host);
          links++;
        }
        expect(links).toBeGreaterThan(HOPS);
        expect(hostRead(join(tree, 'hop0'))).toEqual({ loop: true });
        expect(await ourRead(volume, '/hop1')).toEqual({ data: new TextEncoder().encode('x') });
        const loop = await failure(volume.readFile('/loop1', 100));
        expect(loop.code).toBe('E_BAD_IMAGE');
        expect(loop.message).toContain(`more than ${MAX_SYMLINK_HOPS}`);
        expect(await failure(volume.list('/self'))).toMatchObject({ code: 'E_BAD_IMAGE' });
        expect(await volume.readFile('/dangling', 100)).toBeNull();
      });

      it('resolves absolute links, links to directories, "." and ".." (the physical parent after a link)', async () => {
        const text = async (p: string) => {
          const d = await volume.readFile(p, 1000);
          return d && new TextDecoder().decode(d);
        };
        expect((await volume.list('/link-abs'))?.map((e) => e.name).sort()).toEqual(['c', 'file', 'up']);
        expect(await text('/link-abs/../x.txt')).toBe('the x file\n');
        expect(await text('/link-abs/up')).toBe('the x file\n');
        expect(await text('/link-dir/b/c/d/deep.txt')).toBe('deep\n');
        expect(await text('//a/./b/../x.txt')).toBe('the x file\n');
        expect(await text('/../../one')).toBe('x');
        expect(await text('a/hard')).toBe('x');
        expect(await text('/ünïcødé name.txt')).toBe('utf-8 name\n');
        expect(await text('/link-slow')).toBe('deep\n');
        expect(SLOW_TARGET.length).toBeGreaterThan(60);
        expect(await text('/a/x.txt/..')).toBeNull();
        expect(await text('/one/')).toBe('x');
        expect(await text('/missing')).toBeNull();
        expect(await text('/a')).toBeNull();
        expect(await volume.open('/a')).toBeNull();
        expect(await volume.list('/one')).toBeNull();
        expect(await volume.list('/missing/x')).toBeNull();
        expect((await volume.list('/empty-dir'))?.length).toBe(0);
        expect((await volume.list('/'))?.find((e) => e.name === 'lost+found')).toEqual({ name: 'lost+found', kind: 'directory', size: 0 });
      });

      it('reads a file lazily at any offset: holes and the end as zeros, short reads only at the end', async () => {
        const holes = readFileSync(join(tree, 'holes'));
        const src = (await volume.open('/holes'))!;
        for (const [at, len] of [[0, 10], [4990, 20], [5000, 100_000], [(1 << 20) + 100, 50], [(3 << 20) - 10, 100], [3 << 20, 10]] as const) {
          const dst = new Uint8Array(len).fill(0xee);
          const n = await src.read(dst, at);
          expect(n).toBe(Math.max(0, Math.min(len, holes.length - at)));
          expect(Buffer.from(dst.subarray(0, n)).equals(holes.subarray(at, at + n)), `${at}+${len}`).toBe(true);
        }
        expect(await failure(src.read(new Uint8Array(1), -1))).toMatchObject({ code: 'E_PARAM' });
      });
    });
  }
});

describe.skipIf(!MKE2FS || !DEBUGFS)(`ext4 reader on a file written into fragmented free space${NEEDS_E2FSPROGS}`, () => {
  it('reads a file of many extents (a tree of depth 1) that debugfs wrote into the gaps between files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4-frag-'));
    try {
      const data = random(250_000, 77);
      const image = fragmentedImage(dir, data);
      const stat = debugfs(image, 'stat /frag');
      expect(stat).toMatch(/\(ETB0\)/);
      expect(statBlocks(image, '/frag').data.length).toBe(Math.ceil(data.length / 1024));
      const volume = await openExt4(bytesSource(new Uint8Array(readFileSync(image))));
      const got = await volume.readFile('/frag', 1 << 20);
      expect(got && Buffer.from(got).equals(data)).toBe(true);
      expect((await volume.list('/'))?.map((e) => e.name).sort()).toEqual(
        ['frag', 'lost+found', ...Array.from({ length: 100 }, (_, i) => `f${2 * i + 2}`)].sort(),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!MKE2FS || !DEBUGFS)(`ext4 reader on uninitialized extents${NEEDS_E2FSPROGS}`, () => {
  it('reads an uninitialized extent (debugfs fallocate into a hole) as zeros, whatever its blocks hold', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4-uninit-'));
    try {
      const tree = join(dir, 'tree');
      mkdirSync(tree);
      const want = new Uint8Array(16 * 1024);
      want.fill(0x41, 0, 4096);
      want.fill(0x42, 12 * 1024);
      writeFileSync(join(tree, 'gap'), want.subarray(0, 4096));
      const fd = openSync(join(tree, 'gap'), 'r+');
      writeSync(fd, want.subarray(12 * 1024), 0, 4096, 12 * 1024);
      closeSync(fd);
      const image = join(dir, 'uninit.img');
      mkfs(image, tree, ['-t', 'ext4', '-b', '1024'], 4);
      debugfs(image, 'fallocate /gap 4 11', true);
      const stat = debugfs(image, 'stat /gap');
      const m = /\(4-11\[u\]\):(\d+)-(\d+)/.exec(stat);
      expect(m, stat).not.toBeNull();
      const bytes = new Uint8Array(readFileSync(image));
      bytes.fill(0xaa, Number(m![1]) * 1024, (Number(m![2]) + 1) * 1024);
      const volume = await openExt4(bytesSource(bytes));
      const got = await volume.readFile('/gap', 1 << 20);
      expect(got && Buffer.from(got).equals(want)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
