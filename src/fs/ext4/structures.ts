/**
 * ext2/ext3/ext4 on-disk structures, each declared once with the struct module. Offsets and names follow the
 * kernel's Documentation/filesystems/ext4/ (super.rst, group_descr.rst, inodes.rst, ifork.rst, directory.rst,
 * attributes.rst, inlinedata.rst) and e2fsprogs' lib/ext2fs/ext2_fs.h and ext3_extents.h; each field carries the C
 * name in its comment. Everything is little-endian.
 *
 * Parsing here only decodes; which values are acceptable is decided by the code that uses each structure, since every
 * field of an image is untrusted.
 */
import { array, at, bytes, struct, u16le, u32le, u8, uuid } from '../../binary/struct.js';

/** The primary superblock is at byte 1024 whatever the block size. */
export const SUPERBLOCK_OFFSET = 1024;
export const EXT4_MAGIC = 0xef53;

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
    logClusterSize: at(0x1c, u32le), // s_log_cluster_size (bigalloc)
    blocksPerGroup: at(0x20, u32le), // s_blocks_per_group
    clustersPerGroup: at(0x24, u32le), // s_clusters_per_group
    inodesPerGroup: at(0x28, u32le), // s_inodes_per_group
    magic: at(0x38, u16le), // s_magic: 0xEF53
    state: at(0x3a, u16le), // s_state
    revLevel: at(0x4c, u32le), // s_rev_level: 0 = fixed 128-byte inodes, first inode 11
    firstIno: at(0x54, u32le), // s_first_ino
    inodeSize: at(0x58, u16le), // s_inode_size
    featureCompat: at(0x5c, u32le), // s_feature_compat
    featureIncompat: at(0x60, u32le), // s_feature_incompat
    featureRoCompat: at(0x64, u32le), // s_feature_ro_compat
    uuid: at(0x68, uuid), // s_uuid
    volumeName: at(0x78, bytes(16)), // s_volume_name: NUL-padded, UTF-8 in practice
    reservedGdtBlocks: at(0xce, u16le), // s_reserved_gdt_blocks
    journalInum: at(0xe0, u32le), // s_journal_inum
    descSize: at(0xfe, u16le), // s_desc_size: only with INCOMPAT_64BIT
    firstMetaBg: at(0x104, u32le), // s_first_meta_bg
    blocksCountHi: at(0x150, u32le), // s_blocks_count_hi: only with INCOMPAT_64BIT
    logGroupsPerFlex: at(0x174, u8), // s_log_groups_per_flex
    backupBgs: at(0x24c, array(u32le, 2)), // s_backup_bgs: the only backup groups with COMPAT_SPARSE_SUPER2
  },
  { size: 1024 },
);

export const COMPAT = {
  hasJournal: 0x4, // COMPAT_HAS_JOURNAL
  resizeInode: 0x10, // COMPAT_RESIZE_INODE
  sparseSuper2: 0x200, // COMPAT_SPARSE_SUPER2
} as const;

export const RO_COMPAT = {
  sparseSuper: 0x1, // RO_COMPAT_SPARSE_SUPER
  gdtCsum: 0x10, // RO_COMPAT_GDT_CSUM
  bigalloc: 0x200, // RO_COMPAT_BIGALLOC
  metadataCsum: 0x400, // RO_COMPAT_METADATA_CSUM
} as const;

/** Every INCOMPAT bit the kernel defines, by the name mke2fs -O gives it. */
export const INCOMPAT_NAMES: Readonly<Record<number, string>> = {
  0x1: 'compression',
  0x2: 'filetype',
  0x4: 'needs_recovery',
  0x8: 'journal_dev',
  0x10: 'meta_bg',
  0x40: 'extent',
  0x80: '64bit',
  0x100: 'mmp',
  0x200: 'flex_bg',
  0x400: 'ea_inode',
  0x1000: 'dirdata',
  0x2000: 'metadata_csum_seed',
  0x4000: 'large_dir',
  0x8000: 'inline_data',
  0x10000: 'encrypt',
  0x20000: 'casefold',
};

export const INCOMPAT = {
  filetype: 0x2,
  recover: 0x4,
  metaBg: 0x10,
  extents: 0x40,
  is64bit: 0x80,
  inlineData: 0x8000,
  encrypt: 0x10000,
} as const;

/**
 * What this reader understands. Not here: compression (never merged upstream), journal_dev (an external journal,
 * not a filesystem), dirdata (Lustre's data after names in directory entries) and bits defined after casefold.
 * needs_recovery is read as the last checkpoint left it (a reader cannot replay the journal in place); mmp, flex_bg,
 * ea_inode, the checksum seed, large_dir and casefold change nothing a reader of file contents by exact name needs.
 */
export const INCOMPAT_SUPPORTED = 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;

/** The group descriptor's first 32 bytes: all of it without INCOMPAT_64BIT. */
export const EXT4_GROUP_DESC = struct('ext4 group descriptor', {
  blockBitmapLo: at(0x0, u32le), // bg_block_bitmap_lo
  inodeBitmapLo: at(0x4, u32le), // bg_inode_bitmap_lo
  inodeTableLo: at(0x8, u32le), // bg_inode_table_lo
  freeBlocksCountLo: at(0xc, u16le), // bg_free_blocks_count_lo
  freeInodesCountLo: at(0xe, u16le), // bg_free_inodes_count_lo
  usedDirsCountLo: at(0x10, u16le), // bg_used_dirs_count_lo
  flags: at(0x12, u16le), // bg_flags
  itableUnusedLo: at(0x1c, u16le), // bg_itable_unused_lo
  checksum: at(0x1e, u16le), // bg_checksum
});

/** The upper half of a descriptor of 64 bytes or more (INCOMPAT_64BIT), at offset 0x20. */
export const EXT4_GROUP_DESC_HI = struct('ext4 group descriptor (64-bit half)', {
  blockBitmapHi: at(0x0, u32le), // bg_block_bitmap_hi
  inodeBitmapHi: at(0x4, u32le), // bg_inode_bitmap_hi
  inodeTableHi: at(0x8, u32le), // bg_inode_table_hi
  freeBlocksCountHi: at(0xc, u16le), // bg_free_blocks_count_hi
  freeInodesCountHi: at(0xe, u16le), // bg_free_inodes_count_hi
  usedDirsCountHi: at(0x10, u16le), // bg_used_dirs_count_hi
  itableUnusedHi: at(0x12, u16le), // bg_itable_unused_hi
});
export const GROUP_DESC_HI_OFFSET = 0x20;

export const BG_FLAGS = {
  inodeUninit: 0x1, // EXT4_BG_INODE_UNINIT: no inode in use, inode bitmap and table not initialised
  blockUninit: 0x2, // EXT4_BG_BLOCK_UNINIT: the block bitmap is not initialised: only the group's metadata is in use
} as const;

/** The 128 bytes every inode has (ext2's "good old" inode). */
export const EXT4_INODE = struct('ext4 inode', {
  mode: at(0x0, u16le), // i_mode
  sizeLo: at(0x4, u32le), // i_size_lo
  dtime: at(0x14, u32le), // i_dtime
  linksCount: at(0x1a, u16le), // i_links_count
  blocksLo: at(0x1c, u32le), // i_blocks_lo
  flags: at(0x20, u32le), // i_flags
  block: at(0x28, bytes(60)), // i_block: block map, extent tree root, fast symlink target or inline data
  fileAclLo: at(0x68, u32le), // i_file_acl_lo: the extended attribute block
  sizeHigh: at(0x6c, u32le), // i_size_high
  blocksHigh: at(0x74, u16le), // l_i_blocks_high
  fileAclHigh: at(0x76, u16le), // l_i_file_acl_high
}, { size: 128 });
export const GOOD_OLD_INODE_SIZE = 128;
/** Inodes larger than 128 bytes start their extra part with its length. */
export const EXT4_INODE_EXTRA = struct('ext4 inode extra fields', {
  extraIsize: at(0x0, u16le), // i_extra_isize, counted from byte 128
});
/** i_block: EXT4_N_BLOCKS (15) words. */
export const I_BLOCK_BYTES = 60;

export const INODE_FLAGS = {
  encrypt: 0x800, // EXT4_ENCRYPT_FL
  index: 0x1000, // EXT4_INDEX_FL: a hashed (htree) directory
  extents: 0x80000, // EXT4_EXTENTS_FL
  inlineData: 0x10000000, // EXT4_INLINE_DATA_FL
} as const;

export const S_IFMT = 0xf000;
export const S_IFREG = 0x8000;
export const S_IFDIR = 0x4000;
export const S_IFLNK = 0xa000;

/** Reserved inode numbers (ext2_fs.h): the root directory, and the first ordinary inode of revision 0. */
export const ROOT_INO = 2;
export const GOOD_OLD_FIRST_INO = 11;

/** A word of an indirect block (block maps): a block number, 0 for a hole. */
export const BLOCK_POINTER = u32le;
export const DIRECT_BLOCKS = 12; // EXT2_NDIR_BLOCKS; i_block[12..14] are the single, double and triple indirect blocks

/** ext4_extent_header: starts the root in i_block and every tree block [ifork.rst]. */
export const EXTENT_HEADER = struct('ext4 extent header', {
  magic: at(0x0, u16le), // eh_magic: 0xF30A
  entries: at(0x2, u16le), // eh_entries
  max: at(0x4, u16le), // eh_max
  depth: at(0x6, u16le), // eh_depth: 0 = the entries are extents
  generation: at(0x8, u32le), // eh_generation
});
export const EXTENT_MAGIC = 0xf30a;
/** The kernel's EXT4_MAX_EXTENT_DEPTH. */
export const MAX_EXTENT_DEPTH = 5;

/** ext4_extent_idx: an interior entry. */
export const EXTENT_INDEX = struct('ext4 extent index', {
  block: at(0x0, u32le), // ei_block: first logical block it covers
  leafLo: at(0x4, u32le), // ei_leaf_lo
  leafHi: at(0x8, u16le), // ei_leaf_hi
}, { size: 12 });

/** ext4_extent: a leaf entry. */
export const EXTENT = struct('ext4 extent', {
  block: at(0x0, u32le), // ee_block: first logical block
  len: at(0x4, u16le), // ee_len: above 32768, an uninitialized extent of (len - 32768) blocks
  startHi: at(0x6, u16le), // ee_start_hi
  startLo: at(0x8, u32le), // ee_start_lo
}, { size: 12 });
export const EXTENT_ENTRY_SIZE = 12;
export const EXTENT_INIT_MAX_LEN = 32768;

/**
 * ext4_dir_entry_2. Without INCOMPAT_FILETYPE the two bytes at 6 are ext2_dir_entry's u16 name_len, whose high byte is
 * always zero since names are at most 255 bytes; e2fsprogs reads the low byte either way.
 */
export const DIR_ENTRY = struct('ext4 directory entry', {
  inode: at(0x0, u32le), // inode: 0 = unused record
  recLen: at(0x4, u16le), // rec_len
  nameLen: at(0x6, u8), // name_len
  fileType: at(0x7, u8), // file_type
});
export const DIR_ENTRY_HEADER = 8;
export const FT = { regular: 1, directory: 2, symlink: 7 } as const;

/** In-inode extended attributes begin with this header after the inode's extra fields [attributes.rst]. */
export const XATTR_IBODY_HEADER = struct('ext4 in-inode xattr header', {
  magic: at(0x0, u32le), // h_magic: 0xEA020000
});
export const XATTR_MAGIC = 0xea020000;
export const XATTR_ENTRY = struct('ext4 xattr entry', {
  nameLen: at(0x0, u8), // e_name_len
  nameIndex: at(0x1, u8), // e_name_index: 7 = "system."
  valueOffs: at(0x2, u16le), // e_value_offs: from the first entry (in an inode)
  valueInum: at(0x4, u32le), // e_value_inum: the value lives in that inode (ea_inode)
  valueSize: at(0x8, u32le), // e_value_size
});
export const XATTR_ENTRY_SIZE = 16;
export const XATTR_INDEX_SYSTEM = 7;
/** Inline data: the first 60 bytes in i_block, the rest in the xattr "system.data" [inlinedata.rst]. */
export const INLINE_DATA_XATTR_NAME = 'data';
/** An inline directory starts i_block with the parent's inode number, then entries (EXT4_INLINE_DOTDOT_SIZE). */
export const INLINE_DOTDOT_SIZE = 4;
