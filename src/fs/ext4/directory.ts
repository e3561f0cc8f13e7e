/**
 * Directory entries, read by a linear scan of the directory's blocks [directory.rst "Linear (Classic) Directories"].
 * This also reads hashed (htree) directories: their tree blocks present themselves as unused entries (inode 0) whose
 * rec_len covers the block, and the root block as "." and a ".." whose rec_len covers the tree data, so the scan
 * steps over them, as e2fsprogs' directory iterator does. Checksum tails (metadata_csum) are unused entries too.
 * Inline directories [inlinedata.rst] keep the parent's inode number in i_block's first 4 bytes, then entries in the
 * other 56 bytes and in the "system.data" extended attribute.
 */
import { VerityError } from '../../errors.js';
import { DIR_ENTRY, DIR_ENTRY_HEADER, INLINE_DOTDOT_SIZE, INODE_FLAGS, I_BLOCK_BYTES } from './structures.js';
import { badImage, type Ext4Filesystem, type Inode } from './filesystem.js';
import { blockLookup, inlineBytes, isInline, type BlockLookup } from './mapping.js';

export interface RawEntry {
  ino: number;
  /** The name's bytes as stored (ext4 names are bytes; UTF-8 in practice). */
  name: Uint8Array;
  /** ext4_dir_entry_2's file_type, or 0 when the filesystem has no filetype feature. */
  fileType: number;
}

/**
 * The in-use entries of one directory block (or inline region), checked so that every record stays inside it.
 * `base` is where `bytes` are in the source, for the offsets errors report.
 */
export function parseEntries(fs: Ext4Filesystem, bytes: Uint8Array, where: string, base: number): RawEntry[] {
  const out: RawEntry[] = [];
  for (let at = 0; at < bytes.length; ) {
    if (at + DIR_ENTRY_HEADER > bytes.length) {
      throw badImage(`${where}: a directory entry at byte ${at} is cut off by the end of the block.`, {
        offset: base + at,
        field: 'rec_len',
        expected: `${DIR_ENTRY_HEADER} bytes`,
        actual: bytes.length - at,
      });
    }
    const e = DIR_ENTRY.get(bytes, at);
    // With 64 KiB blocks a record spanning the whole block cannot say 65536 in 16 bits: 0 or 65535 stand for it
    // (ext4_rec_len_from_disk).
    const recLen = bytes.length >= 65536 && (e.recLen === 0 || e.recLen === 65535) ? 65536 : e.recLen;
    if (recLen < DIR_ENTRY_HEADER || recLen % 4 !== 0 || at + recLen > bytes.length || DIR_ENTRY_HEADER + e.nameLen > recLen) {
      throw badImage(`${where}: the directory entry at byte ${at} has rec_len ${e.recLen} and name_len ${e.nameLen}, which do not fit the ${bytes.length - at} bytes left.`, {
        offset: base + at + DIR_ENTRY.fields.recLen.offset,
        field: 'rec_len',
        actual: e.recLen,
        expected: `a multiple of 4 in ${DIR_ENTRY_HEADER + e.nameLen}..${bytes.length - at}`,
      });
    }
    if (e.inode !== 0 && e.nameLen > 0) {
      const name = bytes.slice(at + DIR_ENTRY_HEADER, at + DIR_ENTRY_HEADER + e.nameLen);
      out.push({ ino: e.inode, name, fileType: fs.hasFiletype ? e.fileType & 7 : 0 });
    }
    at += recLen;
  }
  return out;
}

export function refuseEncrypted(fs: Ext4Filesystem, inode: Inode): void {
  if (fs.hasEncryption && (inode.flags & INODE_FLAGS.encrypt) !== 0) {
    throw new VerityError('E_UNSUPPORTED', `ext4: inode ${inode.ino} is encrypted (fscrypt); its contents cannot be read without the key.`, {
      data: { field: 'i_flags', actual: inode.flags },
    });
  }
}

/**
 * The entries of a directory, one block at a time. A cursor keeps its place as (block, entry), so a walk can drop a
 * suspended cursor's entries and read its block again when it resumes: a deep walk holds one block's entries per
 * level at most, and only the current level's while it runs. Each cursor reads at most as many blocks as the source
 * has, and skips holes and uninitialized extents by whole runs.
 */
export class DirCursor {
  private readonly lookup: BlockLookup | null;
  private readonly blockCount: number;
  private readonly inline: Array<{ bytes: Uint8Array; offset: number }> | null;
  private block = 0;
  private entryIndex = 0;
  private entries: RawEntry[] | null = null;
  private reads = 0;
  private counted = -1;
  /** Only the inode's number and size are kept, not the inode: a walk holds a cursor per level. */
  private readonly ino: number;
  private readonly size: number;

  constructor(
    private readonly fs: Ext4Filesystem,
    inode: Inode,
  ) {
    refuseEncrypted(fs, inode);
    this.ino = inode.ino;
    this.size = inode.size;
    if (isInline(fs, inode)) {
      const { head, tail, headOffset, tailOffset } = inlineBytes(fs, inode);
      this.inline = [
        { bytes: head.slice(INLINE_DOTDOT_SIZE, I_BLOCK_BYTES), offset: headOffset + INLINE_DOTDOT_SIZE },
        { bytes: tail.slice(), offset: tailOffset },
      ];
      this.lookup = null;
      this.blockCount = this.inline.length;
    } else {
      this.inline = null;
      this.lookup = blockLookup(fs, inode);
      this.blockCount = Math.ceil(inode.size / fs.blockSize);
    }
  }

  /** Forgets the current block's entries (read again on resume). */
  suspend(): void {
    this.entries = null;
    this.lookup?.forget();
  }

  /** The next in-use entry, or null at the end of the directory. */
  async next(): Promise<RawEntry | null> {
    for (;;) {
      if (this.entries === null) {
        if (this.block >= this.blockCount) return null;
        const entries = await this.load();
        if (entries === null) continue;
        this.entries = entries;
      }
      if (this.entryIndex < this.entries.length) return this.entries[this.entryIndex++]!;
      this.entries = null;
      this.entryIndex = 0;
      this.block++;
    }
  }

  /** The entries of block `this.block`, or null after moving past a hole. */
  private async load(): Promise<RawEntry[] | null> {
    const where = `directory inode ${this.ino}, block ${this.block}`;
    if (this.inline) {
      const region = this.inline[this.block]!;
      return region.bytes.length === 0 ? [] : parseEntries(this.fs, region.bytes, `inline ${where}`, region.offset);
    }
    const run = await this.lookup!.lookup(this.block);
    if (run.physical === null || run.zero) {
      this.block = run.logical + run.length;
      this.entryIndex = 0;
      return null;
    }
    if (this.block > this.counted) this.reads++;
    this.counted = Math.max(this.counted, this.block);
    if (this.reads > this.fs.readableBlocks) {
      throw badImage(`directory inode ${this.ino} maps more blocks than the image has: its block pointers repeat.`, { field: 'i_size', actual: this.size });
    }
    const bytes = new Uint8Array(this.fs.blockSize);
    await this.fs.readBlocksInto(bytes, run.physical, `the blocks of directory inode ${this.ino}`);
    return parseEntries(this.fs, bytes, where, run.physical * this.fs.blockSize);
  }
}
