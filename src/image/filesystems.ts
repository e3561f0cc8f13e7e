/**
 * The superblocks of the filesystems a dm-verity data device usually holds, declared far enough to tell what a volume
 * is and how many bytes it occupies: a verity hash tree is often appended right after them (`--hash-offset`).
 *
 * Sources: ext4, fs/ext4/structures.ts; squashfs, fs/squashfs/squashfs_fs.h `struct squashfs_super_block`; EROFS, fs/erofs/erofs_fs.h
 * `struct erofs_super_block`. All little-endian.
 */
import { at, bytes, struct, u16le, u32le, u64leBig, u8, uuid } from '../binary/struct.js';
import { EXT4_MAGIC, EXT4_SUPERBLOCK, INCOMPAT } from '../fs/ext4/structures.js';

/** Where the ext4 and EROFS superblocks start on their volume. */
export const FS_SUPERBLOCK_OFFSET = 1024;

// ext4's superblock is declared once, with the reader of its files (fs/ext4/structures.ts).
export { EXT4_MAGIC, EXT4_SUPERBLOCK } from '../fs/ext4/structures.js';
/** `EXT4_FEATURE_INCOMPAT_64BIT`: block counts take their high 32 bits from `s_blocks_count_hi`. */
export const EXT4_FEATURE_INCOMPAT_64BIT = INCOMPAT.is64bit;

/** `struct squashfs_super_block`, at the start of the volume. */
export const SQUASHFS_SUPERBLOCK = struct('squashfs superblock', {
  magic: at(0, u32le), // s_magic: "hsqs"
  inodes: at(4, u32le), // inodes
  mkfsTime: at(8, u32le), // mkfs_time
  blockSize: at(12, u32le), // block_size
  fragments: at(16, u32le), // fragments
  compression: at(20, u16le), // compression
  blockLog: at(22, u16le), // block_log
  flags: at(24, u16le), // flags
  noIds: at(26, u16le), // no_ids
  major: at(28, u16le), // s_major
  minor: at(30, u16le), // s_minor
  rootInode: at(32, u64leBig), // root_inode
  bytesUsed: at(40, u64leBig), // bytes_used: the filesystem's size in bytes
  idTableStart: at(48, u64leBig), // id_table_start
  xattrIdTableStart: at(56, u64leBig), // xattr_id_table_start
  inodeTableStart: at(64, u64leBig), // inode_table_start
  directoryTableStart: at(72, u64leBig), // directory_table_start
  fragmentTableStart: at(80, u64leBig), // fragment_table_start
  lookupTableStart: at(88, u64leBig), // lookup_table_start
});
/** `SQUASHFS_MAGIC`: "hsqs" as stored. */
export const SQUASHFS_MAGIC = 0x73717368;

/** The leading fields of `struct erofs_super_block`, at byte 1024 of the volume. */
export const EROFS_SUPERBLOCK = struct('EROFS superblock', {
  magic: at(0, u32le), // magic: 0xE0F5E1E2
  checksum: at(4, u32le), // checksum
  featureCompat: at(8, u32le), // feature_compat
  blkszbits: at(12, u8), // blkszbits: block size = 2 ^ this
  sbExtslots: at(13, u8), // sb_extslots
  rootNid: at(14, u16le), // root_nid
  inos: at(16, u64leBig), // inos
  buildTime: at(24, u64leBig), // build_time
  buildTimeNsec: at(32, u32le), // build_time_nsec
  blocks: at(36, u32le), // blocks: the filesystem's size in blocks
  metaBlkaddr: at(40, u32le), // meta_blkaddr
  xattrBlkaddr: at(44, u32le), // xattr_blkaddr
  uuid: at(48, uuid), // uuid
  volumeName: at(64, bytes(16)), // volume_name
  featureIncompat: at(80, u32le), // feature_incompat
});
/** `EROFS_SUPER_MAGIC_V1`. */
export const EROFS_MAGIC = 0xe0f5e1e2;

/** The filesystems `filesystemOf` recognises. */
export type FilesystemType = 'ext4' | 'squashfs' | 'erofs';

/** Bytes of the volume start that `filesystemOf` needs. */
export const FILESYSTEM_PROBE_BYTES = 2048;

/**
 * The filesystem at the start of `head` (its first 2048 bytes) and the bytes it says it occupies; null when none is
 * recognised or its block size is out of range.
 */
export function filesystemOf(head: Uint8Array): { type: FilesystemType; size: number } | null {
  if (head.length < FILESYSTEM_PROBE_BYTES) return null;
  const ext4 = EXT4_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
  if (ext4.magic === EXT4_MAGIC) {
    const is64 = (ext4.featureIncompat & EXT4_FEATURE_INCOMPAT_64BIT) !== 0;
    const blocks = ext4.blocksCountLo + (is64 ? ext4.blocksCountHi * 2 ** 32 : 0);
    if (ext4.logBlockSize <= 6) return { type: 'ext4', size: blocks * (1024 << ext4.logBlockSize) };
  }
  const squashfs = SQUASHFS_SUPERBLOCK.get(head, 0);
  if (squashfs.magic === SQUASHFS_MAGIC) return { type: 'squashfs', size: Number(squashfs.bytesUsed) };
  const erofs = EROFS_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
  if (erofs.magic === EROFS_MAGIC && erofs.blkszbits >= 9 && erofs.blkszbits <= 16) {
    return { type: 'erofs', size: erofs.blocks * 2 ** erofs.blkszbits };
  }
  return null;
}
