/**
 * The ext4 and ext2 fuzz targets: seeds made by mke2fs (test/fixtures/ext4/README.md), the layout of their
 * structures found by walking them here with plain DataView reads (independently of src/fs/ext4, so that a misreading
 * there is not repeated here), and the entry points run on each mutated image: a walk of every directory and file,
 * lazy reads of the large files, and ownersOfBlocks.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { openFileSource } from '../../src/files/files.js';
import { openExt4 } from '../../src/fs/ext4.js';
import { ownersOfBlocks } from '../../src/fs/ext4-owners.js';
import type { Field, Layout, Region } from '../fuzz/mutate.js';
import type { Target } from '../fuzz/targets.js';

/** The harness reports an error of this name as a bad result (test/fuzz/harness.ts). */
class BadResult extends Error {
  override readonly name = 'BadResult';
}

function acceptable(e: unknown): boolean {
  const err = e as { name?: string; code?: string };
  return err?.name === 'VerityError' && err.code !== 'E_INTERNAL';
}

function seed(name: string): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL(`../fixtures/ext4/${name}.gz`, import.meta.url))));
}

/**
 * Where the fields worth mutating are: the superblock's geometry, each group descriptor, every in-use inode of
 * group 0 (size, flags, i_block, extent headers and entries, the in-inode xattr of inline data), extent tree blocks
 * and every directory block's entries. Follows kernel Documentation/filesystems/ext4/ offsets.
 */
export function ext4Layout(image: Uint8Array): Layout {
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const fields: Field[] = [];
  const regions: Region[] = [];
  const add = (name: string, at: number, size: number) => {
    if (at + size <= image.length) fields.push({ name, at, size, littleEndian: true });
  };
  const sb = 1024;
  const u32 = (at: number) => dv.getUint32(at, true);
  const u16 = (at: number) => dv.getUint16(at, true);
  const SB: Array<[string, number, number]> = [
    ['s_inodes_count', 0x0, 4], ['s_blocks_count_lo', 0x4, 4], ['s_first_data_block', 0x14, 4], ['s_log_block_size', 0x18, 4],
    ['s_blocks_per_group', 0x20, 4], ['s_inodes_per_group', 0x28, 4], ['s_magic', 0x38, 2], ['s_rev_level', 0x4c, 4],
    ['s_first_ino', 0x54, 4], ['s_inode_size', 0x58, 2], ['s_feature_incompat', 0x60, 4], ['s_feature_ro_compat', 0x64, 4],
    ['s_desc_size', 0xfe, 2], ['s_first_meta_bg', 0x104, 4], ['s_blocks_count_hi', 0x150, 4],
  ];
  for (const [name, at, size] of SB) add(`superblock ${name}`, sb + at, size);
  regions.push({ name: 'superblock', at: sb, length: 256 });

  const bs = 1024 << u32(sb + 0x18);
  const firstData = u32(sb + 0x14);
  const blocksCount = u32(sb + 0x4);
  const groups = Math.ceil((blocksCount - firstData) / u32(sb + 0x20));
  const inodeSize = u16(sb + 0x58);
  const descSize = (u32(sb + 0x60) & 0x80) !== 0 ? u16(sb + 0xfe) : 32;
  const gdt = (firstData + 1) * bs;
  for (let g = 0; g < groups; g++) {
    const d = gdt + g * descSize;
    for (const [name, at, size] of [['bg_block_bitmap', 0, 4], ['bg_inode_bitmap', 4, 4], ['bg_inode_table', 8, 4], ['bg_flags', 0x12, 2], ['bg_itable_unused', 0x1c, 2]] as const) {
      add(`group ${g} ${name}`, d + at, size);
    }
  }
  regions.push({ name: 'group descriptors', at: gdt, length: groups * descSize });

  const inodeBitmap = u32(gdt + 4) * bs;
  const table = u32(gdt + 8) * bs;
  const perGroup = u32(sb + 0x28);
  const directories: number[] = [];
  const extentNode = (name: string, at: number, length: number, follow: boolean) => {
    if (u16(at) !== 0xf30a) return;
    add(`${name} eh_entries`, at + 2, 2);
    add(`${name} eh_max`, at + 4, 2);
    add(`${name} eh_depth`, at + 6, 2);
    const depth = u16(at + 6);
    for (let i = 0; i < Math.min(u16(at + 2), (length - 12) / 12); i++) {
      const e = at + 12 + 12 * i;
      add(`${name} entry ${i} block`, e, 4);
      if (depth > 0) {
        add(`${name} index ${i} leaf_lo`, e + 4, 4);
        add(`${name} index ${i} leaf_hi`, e + 8, 2);
        const child = u32(e + 4) * bs;
        if (follow && child + bs <= image.length) {
          regions.push({ name: `${name} tree block`, at: child, length: bs });
          extentNode(`${name} tree block`, child, bs, false);
        }
      } else {
        add(`${name} extent ${i} len`, e + 4, 2);
        add(`${name} extent ${i} start_hi`, e + 6, 2);
        add(`${name} extent ${i} start_lo`, e + 8, 4);
      }
    }
  };
  for (let i = 0; i < perGroup && table + (i + 1) * inodeSize <= image.length; i++) {
    const ino = i + 1;
    if (ino !== 2 && ino < u32(sb + 0x54)) continue;
    if (((image[inodeBitmap + (i >> 3)] ?? 0) & (1 << (i & 7))) === 0) continue;
    const at = table + i * inodeSize;
    const name = `inode ${ino}`;
    for (const [field, off, size] of [['i_mode', 0, 2], ['i_size_lo', 4, 4], ['i_links_count', 0x1a, 2], ['i_flags', 0x20, 4], ['i_file_acl', 0x68, 4], ['i_size_high', 0x6c, 4]] as const) {
      add(`${name} ${field}`, at + off, size);
    }
    regions.push({ name: `${name}`, at, length: inodeSize });
    const flags = u32(at + 0x20);
    if ((flags & 0x80000) !== 0) extentNode(`${name} extent root`, at + 0x28, 60, true);
    else for (let k = 0; k < 15; k++) add(`${name} i_block[${k}]`, at + 0x28 + 4 * k, 4);
    if (inodeSize > 128) {
      add(`${name} i_extra_isize`, at + 0x80, 2);
      const xattrs = at + 128 + u16(at + 0x80);
      if (xattrs + 4 <= at + inodeSize && u32(xattrs) === 0xea020000) {
        for (let e = xattrs + 4; e + 16 <= at + inodeSize && u32(e) !== 0; e += (16 + image[e]! + 3) & ~3) {
          add(`${name} xattr e_name_len`, e, 1);
          add(`${name} xattr e_value_offs`, e + 2, 2);
          add(`${name} xattr e_value_inum`, e + 4, 4);
          add(`${name} xattr e_value_size`, e + 8, 4);
        }
      }
    }
    if ((u16(at) & 0xf000) === 0x4000 && (flags & 0x10000000) === 0) {
      // The directory's first blocks: the root's first extents, or the direct pointers.
      if ((flags & 0x80000) !== 0 && u16(at + 0x28 + 6) === 0) {
        for (let k = 0; k < u16(at + 0x28 + 2) && k < 4; k++) {
          const e = at + 0x28 + 12 + 12 * k;
          for (let b = 0; b < u16(e + 4) && b < 8; b++) directories.push(u32(e + 8) + b);
        }
      } else if ((flags & 0x80000) === 0) {
        for (let k = 0; k < 12; k++) if (u32(at + 0x28 + 4 * k) !== 0) directories.push(u32(at + 0x28 + 4 * k));
      }
    }
  }
  for (const block of directories) {
    const start = block * bs;
    if (start + bs > image.length) continue;
    regions.push({ name: `directory block ${block}`, at: start, length: bs });
    for (let at = start, n = 0; at + 8 <= start + bs && n < 64; n++) {
      add(`directory block ${block} entry ${n} inode`, at, 4);
      add(`directory block ${block} entry ${n} rec_len`, at + 4, 2);
      add(`directory block ${block} entry ${n} name_len`, at + 6, 1);
      const recLen = u16(at + 4);
      if (recLen < 8) break;
      at += recLen;
    }
  }
  return { fields, regions, fixups: [] };
}

/** Lists every directory (8 levels, 64 entries each) and reads every file, as the boot-configuration search would. */
async function walk(file: string): Promise<number> {
  const source = await openFileSource(file);
  try {
    const volume = await openExt4(source);
    if (!(Number.isSafeInteger(volume.blocksCount) && volume.blockSize >= 1024)) throw new BadResult(`geometry ${volume.blocksCount} × ${volume.blockSize}`);
    let files = 0;
    // A damaged entry can name an ancestor (a cycle): the walk lists at most 200 directories.
    let lists = 0;
    const visit = async (path: string, depth: number): Promise<void> => {
      if (++lists > 200) return;
      const entries = await volume.list(path);
      if (entries === null) return;
      const names = entries.map((e) => e.name);
      const unique = (name: string) => names.indexOf(name) === names.lastIndexOf(name);
      for (const e of entries.slice(0, 64)) {
        const child = `${path === '/' ? '' : path}/${e.name}`;
        try {
          if (e.kind === 'directory') {
            if (depth < 8) await visit(child, depth + 1);
          } else if (e.kind === 'file') {
            const data = await volume.readFile(child, 1 << 20);
            if (unique(e.name) && !e.name.includes('/') && data !== null && data.length !== e.size) {
              throw new BadResult(`readFile(${child}) gave ${data.length} bytes; list said ${e.size}`);
            }
            files++;
          } else if (e.kind === 'symlink') {
            await volume.readFile(child, 1 << 20);
          }
        } catch (err) {
          if (!acceptable(err)) throw err;
        }
      }
    };
    await visit('/', 0);
    return files;
  } finally {
    await source.close();
  }
}

/** Lazy reads of the files with extents, holes and indirect blocks, at offsets that start inside blocks. */
async function readWindows(file: string): Promise<number> {
  const source = await openFileSource(file);
  try {
    const volume = await openExt4(source);
    let total = 0;
    for (const path of ['/big', '/sparse', '/slow', '/boot/grub/grub.cfg']) {
      const src = await volume.open(path);
      if (!src) continue;
      const buffer = new Uint8Array(3000);
      for (let at = 0; at < Math.min(src.size, 1 << 20); at += 2999) {
        const n = await src.read(buffer, at);
        if (!(Number.isInteger(n) && n > 0 && n <= buffer.length)) throw new BadResult(`read at ${at} of ${src.size} returned ${n}`);
        total += n;
      }
    }
    return total;
  } finally {
    await source.close();
  }
}

/** ownersOfBlocks for every third block: one answer each, in order. */
async function owners(file: string): Promise<number> {
  const source = await openFileSource(file);
  try {
    const volume = await openExt4(source);
    const blocks: number[] = [];
    for (let b = 0; b < Math.min(volume.blocksCount, 4096); b += 3) blocks.push(b);
    const answers = await ownersOfBlocks(volume, blocks);
    if (answers.length !== blocks.length || answers.some((a, i) => a.block !== blocks[i])) throw new BadResult('answers do not match the blocks asked about');
    return answers.length;
  } finally {
    await source.close();
  }
}

function target(name: string, seedName: string): Target {
  const bytes = seed(seedName);
  return {
    name,
    seed: seedName,
    bytes,
    layout: ext4Layout(bytes),
    companions: [],
    weight: 4,
    entries: [
      { name: 'walk', run: (p) => walk(p(seedName)) },
      { name: 'read windows', run: (p) => readWindows(p(seedName)) },
      { name: 'owners', run: (p) => owners(p(seedName)) },
    ],
  };
}

/** The ext4 (extents, inline data) and ext2 (block maps) targets. */
export function ext4Targets(): Target[] {
  return [target('ext4', 'ext4.img'), target('ext2', 'ext2.img')];
}
