/**
 * The superblocks of the filesystems a dm-verity data device usually holds, declared far enough to tell what a volume
 * is and how many bytes it occupies: a verity hash tree is often appended right after them (`--hash-offset`).
 *
 * Sources: ext4, Linux fs/ext4/ext4.h `struct ext4_super_block` (Documentation/filesystems/ext4/super.rst);
 * squashfs, fs/squashfs/squashfs_fs.h `struct squashfs_super_block`; EROFS, fs/erofs/erofs_fs.h
 * `struct erofs_super_block`. All little-endian.
 */
import { at, bytes, latin1, struct, u16le, u32le, u64leBig, u8, uuid } from '../binary/struct.js';

/** Where the ext4 and EROFS superblocks start on their volume. */
export const FS_SUPERBLOCK_OFFSET = 1024;

/** The leading fields of `struct ext4_super_block` (super.rst, "The Super Block"), and `s_blocks_count_hi`. */
export const EXT4_SUPERBLOCK = struct(
  'ext4 superblock',
  {
    inodesCount: at(0x0, u32le), // s_inodes_count
    blocksCountLo: at(0x4, u32le), // s_blocks_count_lo
    rBlocksCountLo: at(0x8, u32le), // s_r_blocks_count_lo
    freeBlocksCountLo: at(0xc, u32le), // s_free_blocks_count_lo
    freeInodesCount: at(0x10, u32le), // s_free_inodes_count
    firstDataBlock: at(0x14, u32le), // s_first_data_block
    logBlockSize: at(0x18, u32le), // s_log_block_size: block size = 2 ^ (10 + this)
    logClusterSize: at(0x1c, u32le), // s_log_cluster_size
    blocksPerGroup: at(0x20, u32le), // s_blocks_per_group
    clustersPerGroup: at(0x24, u32le), // s_clusters_per_group
    inodesPerGroup: at(0x28, u32le), // s_inodes_per_group
    mtime: at(0x2c, u32le), // s_mtime
    wtime: at(0x30, u32le), // s_wtime
    mntCount: at(0x34, u16le), // s_mnt_count
    maxMntCount: at(0x36, u16le), // s_max_mnt_count
    magic: at(0x38, u16le), // s_magic: 0xEF53
    state: at(0x3a, u16le), // s_state
    errors: at(0x3c, u16le), // s_errors
    minorRevLevel: at(0x3e, u16le), // s_minor_rev_level
    lastCheck: at(0x40, u32le), // s_lastcheck
    checkInterval: at(0x44, u32le), // s_checkinterval
    creatorOs: at(0x48, u32le), // s_creator_os
    revLevel: at(0x4c, u32le), // s_rev_level
    defResuid: at(0x50, u16le), // s_def_resuid
    defResgid: at(0x52, u16le), // s_def_resgid
    firstIno: at(0x54, u32le), // s_first_ino
    inodeSize: at(0x58, u16le), // s_inode_size
    blockGroupNr: at(0x5a, u16le), // s_block_group_nr
    featureCompat: at(0x5c, u32le), // s_feature_compat
    featureIncompat: at(0x60, u32le), // s_feature_incompat: 0x80 = INCOMPAT_64BIT
    featureRoCompat: at(0x64, u32le), // s_feature_ro_compat
    uuid: at(0x68, uuid), // s_uuid
    volumeName: at(0x78, latin1(16)), // s_volume_name
    descSize: at(0xfe, u16le), // s_desc_size
    blocksCountHi: at(0x150, u32le), // s_blocks_count_hi: only with INCOMPAT_64BIT
  },
  { size: 1024 },
);
/** `EXT4_SUPER_MAGIC`. */
export const EXT4_MAGIC = 0xef53;
/** `EXT4_FEATURE_INCOMPAT_64BIT`: block counts take their high 32 bits from `s_blocks_count_hi`. */
export const EXT4_FEATURE_INCOMPAT_64BIT = 0x80;

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
