/**
 * Damaged and hostile ext4 images: fields overwritten where debugfs says the structures are. Each case must end in a
 * VerityError with a sensible code, quickly, and without an allocation sized by the damaged field (the fuzz
 * harness's allocation guard is installed around every call).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { u16le, u32le } from '../../src/binary/struct.js';
import { openExt4, type Ext4Volume } from '../../src/fs/ext4.js';
import { ownersOfBlocks } from '../../src/fs/ext4-owners.js';
import { EXT4_GROUP_DESC, EXT4_INODE, EXT4_SUPERBLOCK, EXTENT, EXTENT_HEADER, SUPERBLOCK_OFFSET, XATTR_ENTRY } from '../../src/fs/ext4/structures.js';
import { bytesSource } from '../../src/io/source.js';
import { AllocationGuard } from '../fuzz/guard.js';
import { bmap, DEBUGFS, inodeOffset, MKE2FS, mkfs, NEEDS_E2FSPROGS, random, run, statBlocks } from './ext4-images.js';

const BS = 1024;
const I_BLOCK = EXT4_INODE.fields.block.offset;
const MAX_ALLOCATION = 16 << 20;
const TIME_LIMIT = 2000;

interface Outcome {
  code: string;
  message: string;
  data?: Record<string, unknown>;
}

/**
 * Runs `f` under the allocation guard and a time limit: its VerityError's code and message, or `ok` when it returns.
 * Anything else (another error, a refused allocation, a hang) fails the test.
 */
async function outcome(f: () => Promise<unknown>): Promise<Outcome> {
  const guard = new AllocationGuard(MAX_ALLOCATION);
  guard.install();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([f(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${TIME_LIMIT} ms`)), TIME_LIMIT)))]);
    return { code: 'ok', message: '' };
  } catch (e) {
    const err = e as { name?: string; code?: string; message: string; data: Record<string, unknown> };
    if (err.name !== 'VerityError') throw e;
    return { code: err.code!, message: err.message, data: err.data };
  } finally {
    clearTimeout(timer);
    guard.uninstall();
    expect(guard.violation).toBeNull();
  }
}

const open = (bytes: Uint8Array) => openExt4(bytesSource(bytes));

async function read(bytes: Uint8Array, path: string, maxBytes = 1 << 20): Promise<Outcome> {
  return outcome(async () => (await open(bytes)).readFile(path, maxBytes));
}

async function list(bytes: Uint8Array, path: string): Promise<Outcome> {
  return outcome(async () => (await open(bytes)).list(path));
}

const put16 = (b: Uint8Array, at: number, v: number) => u16le.put(b, at, v);
const put32 = (b: Uint8Array, at: number, v: number) => u32le.put(b, at, v);
const sbField = (name: keyof typeof EXT4_SUPERBLOCK.fields) => SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK.fields[name].offset;

describe.skipIf(!MKE2FS || !DEBUGFS)(`ext4 reader on damaged images${NEEDS_E2FSPROGS}`, () => {
  let dir = '';
  /** ext4, 1 KiB blocks: /file (3 blocks, extents), /sparse (a tree of depth 1), /dir, /link (slow), /fast (fast link). */
  let ext4: { path: string; bytes: Uint8Array };
  /** ext2, 1 KiB blocks: /big (double indirect), /dir. */
  let ext2: { path: string; bytes: Uint8Array };
  /** ext4 with inline_data: /medium (inline, part in the xattr). */
  let inline: { path: string; bytes: Uint8Array };
  const copy = (img: { bytes: Uint8Array }) => img.bytes.slice();

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ext4-hostile-'));
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'dir'), { recursive: true });
    writeFileSync(join(tree, 'file'), random(3000, 1));
    writeFileSync(join(tree, 'big'), random(300_000, 2));
    writeFileSync(join(tree, 'medium'), random(200, 3));
    for (let i = 0; i < 20; i++) writeFileSync(join(tree, 'dir', `entry${i}`), `${i}`);
    const sparse = new Uint8Array(40 * 2048);
    for (let i = 0; i < 40; i++) sparse.set(random(1024, 10 + i), i * 2048);
    writeFileSync(join(tree, 'sparse'), sparse);
    const make = (name: string, options: string[]) => {
      const path = join(dir, `${name}.img`);
      mkfs(path, tree, options, 4);
      return { path, bytes: new Uint8Array(readFileSync(path)) };
    };
    // debugfs makes the symlinks (the slow one through 40 missing directories, never followed).
    ext4 = make('ext4', ['-t', 'ext4', '-b', '1024', '-O', '^metadata_csum']);
    ext2 = make('ext2', ['-t', 'ext2', '-b', '1024']);
    inline = make('inline', ['-t', 'ext4', '-b', '1024', '-O', 'inline_data', '-I', '512']);
    for (const img of [ext4]) {
      const cmds = join(dir, 'links.cmds');
      writeFileSync(cmds, `symlink /link /${'x/'.repeat(40)}file\nsymlink /fast /file\n`);
      run(DEBUGFS!, ['-w', '-f', cmds, img.path]);
      img.bytes = new Uint8Array(readFileSync(img.path));
    }
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the undamaged images read', async () => {
    const v = await open(copy(ext4));
    expect((await v.readFile('/file', 1 << 20))?.length).toBe(3000);
    expect((await v.readFile('/sparse', 1 << 20))?.length).toBe(40 * 2048);
    expect(await read(copy(ext2), '/big')).toEqual({ code: 'ok', message: '' });
    expect(statBlocks(ext4.path, '/sparse').tree.length).toBe(1);
  });

  it('superblock: wrong magic, short source, absurd sizes and counts', async () => {
    const cases: Array<[string, (b: Uint8Array) => void, string, RegExp]> = [
      ['magic', (b) => put16(b, sbField('magic'), 0x1234), 'E_BAD_IMAGE', /s_magic/],
      ['log block size 30', (b) => put32(b, sbField('logBlockSize'), 30), 'E_BAD_IMAGE', /s_log_block_size/],
      ['blocks per group 0', (b) => put32(b, sbField('blocksPerGroup'), 0), 'E_BAD_IMAGE', /s_blocks_per_group/],
      ['inodes per group 2^32 - 1', (b) => put32(b, sbField('inodesPerGroup'), 0xffffffff), 'E_BAD_IMAGE', /s_inodes_per_group/],
      ['inode count 2^32 - 1', (b) => put32(b, sbField('inodesCount'), 0xffffffff), 'E_BAD_IMAGE', /s_inodes_count/],
      ['inode size 100', (b) => put16(b, sbField('inodeSize'), 100), 'E_BAD_IMAGE', /s_inode_size/],
      ['desc size 48 with 64bit', (b) => (put32(b, sbField('featureIncompat'), u32le.get(b, sbField('featureIncompat')) | 0x80), put16(b, sbField('descSize'), 48)), 'E_BAD_IMAGE', /s_desc_size/],
      ['blocks count hi 2^32 - 1', (b) => (put32(b, sbField('featureIncompat'), u32le.get(b, sbField('featureIncompat')) | 0x80), put16(b, sbField('descSize'), 64), put32(b, sbField('blocksCountHi'), 0xffffffff)), 'E_BAD_IMAGE', /beyond 2\^53/],
      ['first data block past the end', (b) => put32(b, sbField('firstDataBlock'), 0xfffffff0), 'E_BAD_IMAGE', /s_first_data_block/],
      ['unknown incompat bit', (b) => put32(b, sbField('featureIncompat'), u32le.get(b, sbField('featureIncompat')) | 0x80000), 'E_UNSUPPORTED', /unknown 0x80000/],
      ['journal_dev, dirdata', (b) => put32(b, sbField('featureIncompat'), u32le.get(b, sbField('featureIncompat')) | 0x1008), 'E_UNSUPPORTED', /0x1008 \(journal_dev, dirdata\)/],
    ];
    for (const [name, damage, code, pattern] of cases) {
      const b = copy(ext4);
      damage(b);
      const r = await outcome(() => open(b));
      expect(r.code, name).toBe(code);
      expect(r.message, name).toMatch(pattern);
    }
    expect((await outcome(() => open(copy(ext4).subarray(0, 1500)))).code).toBe('E_TRUNCATED');
    const b = copy(ext4);
    put16(b, sbField('magic'), 0x1234);
    expect((await outcome(() => open(b))).data).toEqual({ offset: 1080, field: 's_magic', actual: 0x1234, expected: '0xef53' });
  });

  it('a group descriptor whose inode table lies outside the filesystem', async () => {
    const b = copy(ext4);
    put32(b, 2 * BS + EXT4_GROUP_DESC.fields.inodeTableLo.offset, 0xffffff00);
    const r = await read(b, '/file');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/inode table of group 0.*outside/);
  });

  it('extent headers: depth 60000, depth 6, entries and max beyond the room, bad magic', async () => {
    const root = inodeOffset(ext4.path, '/file', BS) + I_BLOCK;
    const h = EXTENT_HEADER.fields;
    const cases: Array<[string, (b: Uint8Array) => void, RegExp]> = [
      ['depth 60000', (b) => put16(b, root + h.depth.offset, 60000), /depth 60000/],
      ['depth 6', (b) => put16(b, root + h.depth.offset, 6), /depth 6/],
      ['entries 65535', (b) => put16(b, root + h.entries.offset, 0xffff), /65535 entries/],
      ['max 65535', (b) => put16(b, root + h.max.offset, 0xffff), /room for 4/],
      ['magic', (b) => put16(b, root + h.magic.offset, 0), /magic/],
    ];
    for (const [name, damage, pattern] of cases) {
      const b = copy(ext4);
      damage(b);
      const r = await read(b, '/file');
      expect(r.code, name).toBe('E_BAD_IMAGE');
      expect(r.message, name).toMatch(pattern);
      expect(r.data?.offset, name).toBeGreaterThanOrEqual(root);
      expect(r.data?.offset, name).toBeLessThan(root + 12);
    }
    const b = copy(ext4);
    put16(b, root + h.depth.offset, 60000);
    expect((await read(b, '/file')).data).toEqual({ offset: root + 6, field: 'eh_depth', actual: 60000, expected: '0..5' });
  });

  it('an extent tree block that claims its parent\'s depth and points at itself', async () => {
    const [etb] = statBlocks(ext4.path, '/sparse').tree;
    const b = copy(ext4);
    const at = etb! * BS;
    put16(b, at + EXTENT_HEADER.fields.depth.offset, 1);
    put32(b, at + EXTENT_HEADER.len + 4, etb!); // the first entry, read as an index, leads back here
    const r = await read(b, '/sparse');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/depth 1, expected 0/);
  });

  it('extents: a start past the end of the filesystem, past the end of the source, unsorted, empty', async () => {
    const first = inodeOffset(ext4.path, '/file', BS) + I_BLOCK + EXTENT_HEADER.len;
    let b = copy(ext4);
    put32(b, first + EXTENT.fields.startLo.offset, 0xffffff00);
    let r = await read(b, '/file');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/outside the 4096 blocks/);

    const data = bmap(ext4.path, '/file', 0);
    r = await read(copy(ext4).subarray(0, data * BS), '/file');
    expect(r.code).toBe('E_TRUNCATED');

    b = copy(ext4);
    put16(b, first + EXTENT.fields.len.offset, 0);
    expect((await read(b, '/file')).code).toBe('E_BAD_IMAGE');

    // The sparse file's leaf: make the second extent start before the first.
    const [etb] = statBlocks(ext4.path, '/sparse').tree;
    b = copy(ext4);
    put32(b, etb! * BS + EXTENT_HEADER.len + 12 + EXTENT.fields.block.offset, 0);
    r = await read(b, '/sparse');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/overlaps/);
  });

  it('sizes: a file of 2^52 bytes is refused by readFile before any read and reads lazily as holes by open', async () => {
    const ino = inodeOffset(ext4.path, '/file', BS);
    const b = copy(ext4);
    put32(b, ino + EXT4_INODE.fields.sizeHigh.offset, 2 ** 20);
    const r = await read(b, '/file', 1 << 20);
    expect(r.code).toBe('E_UNSUPPORTED');
    expect(r.message).toMatch(/above the 1048576-byte limit/);
    expect(
      await outcome(async () => {
        const src = (await (await open(b)).open('/file'))!;
        expect(src.size).toBe(2 ** 52 + 3000);
        const dst = new Uint8Array(1 << 20).fill(1);
        expect(await src.read(dst, 2 ** 51)).toBe(1 << 20);
        expect(dst.every((x) => x === 0)).toBe(true);
      }),
    ).toEqual({ code: 'ok', message: '' });
    put32(b, ino + EXT4_INODE.fields.sizeHigh.offset, 0xffffffff);
    expect((await read(b, '/file')).message).toMatch(/beyond 2\^53/);
  });

  it('directories: rec_len 0, past the block, not a multiple of 4, a name longer than its record, an inode past the count', async () => {
    const block = bmap(ext4.path, '/dir', 0) * BS;
    const cases: Array<[string, (b: Uint8Array) => void]> = [
      ['rec_len 0', (b) => put16(b, block + 4, 0)],
      ['rec_len past the block', (b) => put16(b, block + 12 + 4, 2000)],
      ['rec_len 13', (b) => put16(b, block + 4, 13)],
      ['name_len 255 in a 12-byte record', (b) => (b[block + 6] = 255)],
    ];
    for (const [name, damage] of cases) {
      const b = copy(ext4);
      damage(b);
      for (const r of [await list(b, '/dir'), await read(b, '/dir/entry3')]) {
        expect(r.code, name).toBe('E_BAD_IMAGE');
        expect(r.message, name).toMatch(/rec_len/);
        expect(r.data, name).toMatchObject({ field: 'rec_len', offset: expect.any(Number) });
        expect((r.data!.offset as number) - block, name).toBeLessThan(BS);
      }
    }
    const b = copy(ext4);
    put32(b, block + 24, 0xfffffff0); // the entry after "." and ".."
    expect((await list(b, '/dir')).message).toMatch(/inode number 4294967280 is outside/);
  });

  it('a directory of a huge size reads only the blocks it maps', async () => {
    const b = copy(ext4);
    put32(b, inodeOffset(ext4.path, '/dir', BS) + EXT4_INODE.fields.sizeLo.offset, 0xfffffc00);
    const v = await open(b);
    expect((await outcome(() => v.list('/dir'))).code).toBe('ok');
    expect((await v.list('/dir'))?.length).toBe(20);
  });

  it('block maps: pointers past the end, an indirect block pointing at itself, a directory that maps one block forever', async () => {
    const ino = inodeOffset(ext2.path, '/big', BS) + I_BLOCK;
    let b = copy(ext2);
    put32(b, ino + 12 * 4, 0xfffffff0);
    let r = await read(b, '/big');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/indirect block of inode/);

    // The double-indirect block's first entry leads back to it: read as an indirect block, its words then point at
    // the double-indirect block as data. Bounded (each block is read through the cache); the bytes are garbage.
    const dind = u32le.get(b, ino + 13 * 4);
    b = copy(ext2);
    put32(b, dind * BS, dind);
    expect((await read(b, '/big')).code).toBe('ok');

    // A directory whose double-indirect block maps 65536 logical blocks, all to its first block: the scan stops at
    // the number of blocks the image has.
    const dirInode = inodeOffset(ext2.path, '/dir', BS);
    const dirBlock = bmap(ext2.path, '/dir', 0);
    const spare = dind; // reuse /big's double-indirect block as the repeating table
    b = copy(ext2);
    for (let i = 0; i < BS / 4; i++) put32(b, spare * BS + 4 * i, spare);
    put32(b, dirInode + I_BLOCK + 13 * 4, spare);
    put32(b, dirInode + EXT4_INODE.fields.sizeLo.offset, (12 + 256 + 256 * 256) * BS);
    // Make the first level's words point at a table of directory blocks.
    const table = u32le.get(b, ino + 12 * 4);
    for (let i = 0; i < BS / 4; i++) put32(b, table * BS + 4 * i, dirBlock);
    for (let i = 0; i < BS / 4; i++) put32(b, spare * BS + 4 * i, table);
    r = await list(b, '/dir');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/maps more blocks than the image has/);
  });

  it('symlinks: a target longer than PATH_MAX, an empty target, a loop through directories', async () => {
    const ino = inodeOffset(ext4.path, '/link', BS);
    let b = copy(ext4);
    put32(b, ino + EXT4_INODE.fields.sizeLo.offset, 100_000);
    let r = await read(b, '/link');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/PATH_MAX/);

    b = copy(ext4);
    put32(b, inodeOffset(ext4.path, '/fast', BS) + EXT4_INODE.fields.sizeLo.offset, 0);
    expect(await read(b, '/fast')).toEqual({ code: 'ok', message: '' });
    expect(await (await open(b)).readFile('/fast', 100)).toBeNull();

    // A fast link whose target is its own directory followed by itself: /fast -> /fast/fast/... never ends.
    b = copy(ext4);
    const fast = inodeOffset(ext4.path, '/fast', BS);
    b.set(new TextEncoder().encode('fast/x'), fast + I_BLOCK);
    put32(b, fast + EXT4_INODE.fields.sizeLo.offset, 6);
    r = await read(b, '/fast');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/too many levels of symbolic links/);
  });

  it('inline data: a system.data value larger than the inode', async () => {
    const ino = inodeOffset(inline.path, '/medium', BS);
    const b = copy(inline);
    const extra = u16le.get(b, ino + 128);
    const entry = ino + 128 + extra + 4;
    expect(b[entry]).toBe(4); // e_name_len of "data"
    put32(b, entry + XATTR_ENTRY.fields.valueSize.offset, 0xffff);
    const r = await read(b, '/medium');
    expect(r.code).toBe('E_BAD_IMAGE');
    expect(r.message).toMatch(/inline data value/);
  });

  it('ownersOfBlocks over damaged inodes and loops still answers, within bounds', async () => {
    const b = copy(ext2);
    const ino = inodeOffset(ext2.path, '/big', BS) + I_BLOCK;
    const dind = u32le.get(b, ino + 13 * 4);
    for (let i = 0; i < BS / 4; i++) put32(b, dind * BS + 4 * i, dind); // every entry leads back here
    put32(b, inodeOffset(ext2.path, '/dir', BS) + I_BLOCK, 0xfffffff0); // a directory block past the end
    const v: Ext4Volume = await open(b);
    const r = await outcome(() => ownersOfBlocks(v, [1, 100, 2000, 4095]));
    expect(['ok', 'E_BAD_IMAGE']).toContain(r.code);
  });
});
