/**
 * The ext2/3/4 geometry (superblock, block groups, inode tables) and checked block reads. Everything the image says
 * is untrusted: the superblock is validated once here, and every block number read later goes through `checkBlocks`
 * before any byte of it is read, so a damaged pointer is an error naming the field, never a read of the wrong bytes.
 */
import { VerityError, type VerityErrorData } from '../../errors.js';
import { readExactly, type ByteSource } from '../../io/source.js';
import {
  BG_FLAGS,
  COMPAT,
  EXT4_GROUP_DESC,
  EXT4_GROUP_DESC_HI,
  EXT4_INODE,
  EXT4_INODE_EXTRA,
  EXT4_MAGIC,
  EXT4_SUPERBLOCK,
  GOOD_OLD_FIRST_INO,
  GOOD_OLD_INODE_SIZE,
  GROUP_DESC_HI_OFFSET,
  INCOMPAT,
  INCOMPAT_NAMES,
  INCOMPAT_SUPPORTED,
  RO_COMPAT,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  SUPERBLOCK_OFFSET,
} from './structures.js';

export function badImage(message: string, data: VerityErrorData = {}): VerityError {
  return new VerityError('E_BAD_IMAGE', `ext4: ${message}`, { data });
}

/** What `openExt4` reports about the filesystem, beside the `Volume` interface. */
export interface Ext4Info {
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly inodeCount: number;
  readonly inodeSize: number;
  readonly groupCount: number;
  readonly blocksPerGroup: number;
  readonly inodesPerGroup: number;
  readonly firstDataBlock: number;
  /** The filesystem UUID in lower case. */
  readonly uuid: string;
  readonly label: string;
  readonly features: { readonly compat: number; readonly incompat: number; readonly roCompat: number };
  /**
   * The journal holds transactions not yet written to their places (needs_recovery): files read as of the last
   * checkpoint, which may be older than what the kernel would show after replaying the journal.
   */
  readonly needsRecovery: boolean;
}

export interface GroupDesc {
  group: number;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  itableUnused: number;
}

export interface Inode {
  ino: number;
  mode: number;
  size: number;
  flags: number;
  linksCount: number;
  fileAcl: number;
  /** The 60 bytes of i_block. */
  block: Uint8Array;
  /** The whole on-disk inode (inline data keeps part of a file in its extended attributes). */
  raw: Uint8Array;
  /** Where the inode is in the source, for the offsets errors report. */
  offset: number;
}

export type InodeKind = 'file' | 'directory' | 'symlink' | 'other';

export function inodeKind(inode: Inode): InodeKind {
  switch (inode.mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/** A least-recently-used cache of a few blocks, so that tree walks do not read the same block again and again. */
class BlockCache {
  private readonly map = new Map<number, Uint8Array>();
  constructor(private readonly capacity: number) {}

  get(block: number): Uint8Array | undefined {
    const hit = this.map.get(block);
    if (hit) {
      this.map.delete(block);
      this.map.set(block, hit);
    }
    return hit;
  }

  set(block: number, data: Uint8Array): void {
    this.map.set(block, data);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as number);
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The names of the INCOMPAT bits in `bits` (unknown ones as hex). */
export function incompatNames(bits: number): string[] {
  const out: string[] = [];
  for (let bit = 1; bit !== 0 && bit <= bits; bit = (bit << 1) >>> 0) {
    if ((bits & bit) >>> 0) out.push(INCOMPAT_NAMES[bit] ?? `unknown ${hex(bit)}`);
  }
  return out;
}

function isPowerOfThree5or7(group: number): boolean {
  for (const base of [3, 5, 7]) {
    let n = base;
    while (n < group) n *= base;
    if (n === group) return true;
  }
  return false;
}

export class Ext4Filesystem implements Ext4Info {
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly inodeCount: number;
  readonly inodeSize: number;
  readonly groupCount: number;
  readonly blocksPerGroup: number;
  readonly inodesPerGroup: number;
  readonly firstDataBlock: number;
  readonly uuid: string;
  readonly label: string;
  readonly features: { readonly compat: number; readonly incompat: number; readonly roCompat: number };
  readonly needsRecovery: boolean;
  /** Blocks per allocation cluster (bigalloc), 1 otherwise: block bitmaps have one bit per cluster. */
  readonly clusterRatio: number;
  readonly descSize: number;
  readonly firstIno: number;
  readonly journalInum: number;
  readonly reservedGdtBlocks: number;
  readonly firstMetaBg: number;
  readonly backupBgs: readonly number[];
  /** Blocks that exist both in the filesystem and in the source: the bound of every walk over the image. */
  readonly readableBlocks: number;
  readonly hasFiletype: boolean;
  readonly hasInlineData: boolean;
  readonly hasEncryption: boolean;
  /** With gdt_csum or metadata_csum, the group flags and bg_itable_unused are to be trusted (the kernel's rule). */
  readonly hasGroupCsum: boolean;
  private readonly cache = new BlockCache(32);

  private constructor(
    readonly source: ByteSource,
    sbBytes: Uint8Array,
  ) {
    const sb = EXT4_SUPERBLOCK.get(sbBytes, 0);
    // The error data of a superblock field: its C name and its offset in the source.
    const field = (key: keyof typeof EXT4_SUPERBLOCK.fields, name: string, actual: number, expected: string) => ({
      offset: SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK.fields[key].offset,
      field: name,
      actual,
      expected,
    });
    if (sb.magic !== EXT4_MAGIC) {
      throw badImage(`no ext2/3/4 superblock: s_magic is ${hex(sb.magic)}, expected 0xef53.`, field('magic', 's_magic', sb.magic, '0xef53'));
    }
    const unsupported = (sb.featureIncompat & ~INCOMPAT_SUPPORTED) >>> 0;
    if (unsupported !== 0) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `ext4: incompatible features ${hex(unsupported)} (${incompatNames(unsupported).join(', ')}) are not supported by this reader.`,
        { data: field('featureIncompat', 's_feature_incompat', sb.featureIncompat, `no bits of ${hex(unsupported)}`) },
      );
    }
    this.features = { compat: sb.featureCompat, incompat: sb.featureIncompat, roCompat: sb.featureRoCompat };
    const incompat = (bit: number) => (sb.featureIncompat & bit) !== 0;
    const roCompat = (bit: number) => (sb.featureRoCompat & bit) !== 0;
    const is64 = incompat(INCOMPAT.is64bit);

    if (sb.logBlockSize > 6) throw badImage(`s_log_block_size ${sb.logBlockSize} is above 6 (64 KiB blocks).`, field('logBlockSize', 's_log_block_size', sb.logBlockSize, '0..6'));
    this.blockSize = 1024 << sb.logBlockSize;
    const bs = this.blockSize;
    this.blocksCount = sb.blocksCountLo + (is64 ? sb.blocksCountHi * 2 ** 32 : 0);
    if (!Number.isSafeInteger(this.blocksCount)) {
      throw badImage(`s_blocks_count_hi ${sb.blocksCountHi} makes a block count beyond 2^53.`, field('blocksCountHi', 's_blocks_count_hi', sb.blocksCountHi, '< 2^21'));
    }
    this.firstDataBlock = sb.firstDataBlock;
    if (this.firstDataBlock > 1 || this.firstDataBlock >= this.blocksCount) {
      throw badImage(`s_first_data_block ${this.firstDataBlock} with ${this.blocksCount} blocks.`, field('firstDataBlock', 's_first_data_block', this.firstDataBlock, '0 or 1'));
    }
    if (roCompat(RO_COMPAT.bigalloc)) {
      const shift = sb.logClusterSize - sb.logBlockSize;
      if (!(sb.logClusterSize >= sb.logBlockSize && sb.logClusterSize <= 19)) {
        throw badImage(`s_log_cluster_size ${sb.logClusterSize} with s_log_block_size ${sb.logBlockSize}.`, field('logClusterSize', 's_log_cluster_size', sb.logClusterSize, `${sb.logBlockSize}..19`));
      }
      this.clusterRatio = 2 ** shift;
      if (sb.clustersPerGroup < 1 || sb.clustersPerGroup > 8 * bs || sb.blocksPerGroup !== sb.clustersPerGroup * this.clusterRatio) {
        throw badImage(`s_clusters_per_group ${sb.clustersPerGroup} and s_blocks_per_group ${sb.blocksPerGroup} disagree.`, field('clustersPerGroup', 's_clusters_per_group', sb.clustersPerGroup, `1..${8 * bs}`));
      }
    } else {
      this.clusterRatio = 1;
      if (sb.blocksPerGroup < 8 || sb.blocksPerGroup > 8 * bs) {
        throw badImage(`s_blocks_per_group ${sb.blocksPerGroup} is outside 8..${8 * bs} (one bitmap block).`, field('blocksPerGroup', 's_blocks_per_group', sb.blocksPerGroup, `8..${8 * bs}`));
      }
    }
    this.blocksPerGroup = sb.blocksPerGroup;
    this.groupCount = Math.ceil((this.blocksCount - this.firstDataBlock) / this.blocksPerGroup);
    this.inodesPerGroup = sb.inodesPerGroup;
    if (this.inodesPerGroup < 1 || this.inodesPerGroup > 8 * bs) {
      throw badImage(`s_inodes_per_group ${this.inodesPerGroup} is outside 1..${8 * bs} (one bitmap block).`, field('inodesPerGroup', 's_inodes_per_group', this.inodesPerGroup, `1..${8 * bs}`));
    }
    this.inodeCount = sb.inodesCount;
    const maxInodes = this.groupCount * this.inodesPerGroup;
    if (this.inodeCount < 2 || this.inodeCount > maxInodes) {
      throw badImage(
        `s_inodes_count ${this.inodeCount} does not fit ${this.groupCount} groups of ${this.inodesPerGroup} inodes.`,
        field('inodesCount', 's_inodes_count', this.inodeCount, `2..${maxInodes}`),
      );
    }
    this.inodeSize = sb.revLevel === 0 ? GOOD_OLD_INODE_SIZE : sb.inodeSize;
    if (this.inodeSize < GOOD_OLD_INODE_SIZE || this.inodeSize > bs || (this.inodeSize & (this.inodeSize - 1)) !== 0) {
      throw badImage(`s_inode_size ${this.inodeSize} is not a power of two in 128..${bs}.`, field('inodeSize', 's_inode_size', this.inodeSize, `128..${bs}`));
    }
    this.firstIno = sb.revLevel === 0 ? GOOD_OLD_FIRST_INO : sb.firstIno;
    this.descSize = is64 ? sb.descSize : 32;
    if (is64 && (this.descSize < 64 || this.descSize > 1024 || (this.descSize & (this.descSize - 1)) !== 0)) {
      throw badImage(`s_desc_size ${this.descSize} is not a power of two in 64..1024.`, field('descSize', 's_desc_size', this.descSize, '64..1024'));
    }
    this.uuid = sb.uuid;
    const nul = sb.volumeName.indexOf(0);
    this.label = new TextDecoder().decode(nul < 0 ? sb.volumeName : sb.volumeName.subarray(0, nul));
    this.needsRecovery = incompat(INCOMPAT.recover);
    this.journalInum = (sb.featureCompat & COMPAT.hasJournal) !== 0 ? sb.journalInum : 0;
    this.reservedGdtBlocks = (sb.featureCompat & COMPAT.resizeInode) !== 0 ? sb.reservedGdtBlocks : 0;
    this.firstMetaBg = incompat(INCOMPAT.metaBg) ? sb.firstMetaBg : Number.POSITIVE_INFINITY;
    this.backupBgs = sb.backupBgs;
    this.hasFiletype = incompat(INCOMPAT.filetype);
    this.hasInlineData = incompat(INCOMPAT.inlineData);
    this.hasEncryption = incompat(INCOMPAT.encrypt);
    this.hasGroupCsum = roCompat(RO_COMPAT.gdtCsum) || roCompat(RO_COMPAT.metadataCsum);
    this.readableBlocks = Math.min(this.blocksCount, Math.floor(source.size / bs));
  }

  static async open(source: ByteSource): Promise<Ext4Filesystem> {
    if (source.size < SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK.len) {
      throw new VerityError('E_TRUNCATED', `ext4: a ${source.size}-byte source is too small to hold a superblock (2048 bytes).`, {
        data: { expected: SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK.len, actual: source.size },
      });
    }
    const sb = new Uint8Array(EXT4_SUPERBLOCK.len);
    await readExactly(source, sb, SUPERBLOCK_OFFSET, 'ext4 superblock');
    return new Ext4Filesystem(source, sb);
  }

  /** Refuses `count` blocks from `block` unless they lie inside the filesystem and inside the source. */
  checkBlocks(block: number, count: number, what: string): void {
    if (!(Number.isSafeInteger(block) && block >= 0 && count >= 1 && block + count <= this.blocksCount)) {
      throw badImage(`${what} points at block ${block}${count > 1 ? ` (+${count})` : ''}, outside the ${this.blocksCount} blocks of the filesystem.`, {
        field: what,
        actual: block,
        expected: `< ${this.blocksCount}`,
      });
    }
    if (block + count > this.readableBlocks) {
      throw new VerityError(
        'E_TRUNCATED',
        `ext4: ${what} points at block ${block}, past the end of the ${this.source.size}-byte source (the filesystem declares ${this.blocksCount} blocks of ${this.blockSize}).`,
        { data: { field: what, offset: block * this.blockSize, expected: (block + count) * this.blockSize, actual: this.source.size } },
      );
    }
  }

  /** Reads whole blocks into `dst` (a multiple of the block size) from `block`, checked first. */
  async readBlocksInto(dst: Uint8Array, block: number, what: string): Promise<void> {
    this.checkBlocks(block, dst.length / this.blockSize, what);
    await readExactly(this.source, dst, block * this.blockSize, `ext4 ${what}`);
  }

  /** One block through the metadata cache. The array is shared: callers must not change it. */
  async block(block: number, what: string): Promise<Uint8Array> {
    const hit = this.cache.get(block);
    if (hit) return hit;
    const data = new Uint8Array(this.blockSize);
    await this.readBlocksInto(data, block, what);
    this.cache.set(block, data);
    return data;
  }

  /** The block that holds group `g`'s descriptor (ext2fs_descriptor_block_loc2 in e2fsprogs). */
  private descriptorBlock(g: number): number {
    const perBlock = this.blockSize / this.descSize;
    const index = Math.floor(g / perBlock);
    if (index < this.firstMetaBg) return this.superblockBlock(0) + 1 + index;
    const first = index * perBlock;
    return this.superblockBlock(first) + (this.hasSuperblock(first) ? 1 : 0);
  }

  groupFirstBlock(g: number): number {
    return this.firstDataBlock + g * this.blocksPerGroup;
  }

  /**
   * Where group `g`'s superblock copy is, when it has one: its first block, except with 1 KiB blocks and bigalloc,
   * where s_first_data_block is 0 but the primary superblock is still at byte 1024, block 1 (e2fsprogs'
   * ext2fs_super_and_bgd_loc2).
   */
  superblockBlock(g: number): number {
    const first = this.groupFirstBlock(g);
    return first === 0 && this.blockSize === 1024 ? 1 : first;
  }

  /** Whether group `g` holds a superblock backup: sparse_super's 0, 1 and powers of 3, 5, 7, or sparse_super2's two. */
  hasSuperblock(g: number): boolean {
    if (g === 0) return true;
    if ((this.features.compat & COMPAT.sparseSuper2) !== 0) return g === this.backupBgs[0] || g === this.backupBgs[1];
    if (g === 1 || (this.features.roCompat & RO_COMPAT.sparseSuper) === 0) return true;
    return g % 2 === 1 && isPowerOfThree5or7(g);
  }

  /** Blocks of one group's inode table. */
  get inodeTableBlocks(): number {
    return Math.ceil((this.inodesPerGroup * this.inodeSize) / this.blockSize);
  }

  async group(g: number): Promise<GroupDesc> {
    if (!(Number.isInteger(g) && g >= 0 && g < this.groupCount)) {
      throw new VerityError('E_INTERNAL', `ext4: group ${g} of ${this.groupCount}.`);
    }
    const perBlock = this.blockSize / this.descSize;
    const where = `the descriptor block of group ${g}`;
    const bytes = await this.block(this.descriptorBlock(g), where);
    const at = (g % perBlock) * this.descSize;
    const lo = EXT4_GROUP_DESC.get(bytes, at);
    const hi = this.descSize >= 64 ? EXT4_GROUP_DESC_HI.get(bytes, at + GROUP_DESC_HI_OFFSET) : null;
    const desc: GroupDesc = {
      group: g,
      blockBitmap: lo.blockBitmapLo + (hi ? hi.blockBitmapHi * 2 ** 32 : 0),
      inodeBitmap: lo.inodeBitmapLo + (hi ? hi.inodeBitmapHi * 2 ** 32 : 0),
      inodeTable: lo.inodeTableLo + (hi ? hi.inodeTableHi * 2 ** 32 : 0),
      flags: this.hasGroupCsum ? lo.flags : 0,
      itableUnused: this.hasGroupCsum ? lo.itableUnusedLo + (hi ? hi.itableUnusedHi * 2 ** 16 : 0) : 0,
    };
    this.checkBlocks(desc.inodeTable, this.inodeTableBlocks, `the inode table of group ${g} (bg_inode_table)`);
    return desc;
  }

  async inode(ino: number): Promise<Inode> {
    if (!(Number.isInteger(ino) && ino >= 1 && ino <= this.inodeCount)) {
      throw badImage(`inode number ${ino} is outside 1..${this.inodeCount}.`, { field: 'inode', actual: ino, expected: `1..${this.inodeCount}` });
    }
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const index = (ino - 1) % this.inodesPerGroup;
    const desc = await this.group(g);
    const byte = index * this.inodeSize;
    const block = await this.block(desc.inodeTable + Math.floor(byte / this.blockSize), `the inode table of group ${g}`);
    const offset = byte % this.blockSize;
    return this.parseInode(ino, block.slice(offset, offset + this.inodeSize), desc.inodeTable * this.blockSize + byte);
  }

  /** The inode `ino` from its `raw` bytes, read at `offset` of the source. */
  parseInode(ino: number, raw: Uint8Array, offset: number): Inode {
    const i = EXT4_INODE.get(raw, 0);
    const size = i.sizeLo + i.sizeHigh * 2 ** 32;
    if (!Number.isSafeInteger(size)) {
      throw badImage(`inode ${ino} has a size of ${i.sizeHigh} × 2^32 + ${i.sizeLo} bytes, beyond 2^53.`, {
        offset: offset + EXT4_INODE.fields.sizeHigh.offset,
        field: 'i_size_high',
        actual: i.sizeHigh,
        expected: '< 2^21',
      });
    }
    return {
      ino,
      mode: i.mode,
      size,
      flags: i.flags,
      linksCount: i.linksCount,
      fileAcl: i.fileAclLo + (this.features.incompat & INCOMPAT.is64bit ? i.fileAclHigh * 2 ** 32 : 0),
      block: i.block,
      raw,
      offset,
    };
  }

  /** Where the in-inode extended attributes start (after the extra fields), or null when there are none. */
  ibodyStart(inode: Inode): number | null {
    if (this.inodeSize <= GOOD_OLD_INODE_SIZE) return null;
    const extra = EXT4_INODE_EXTRA.get(inode.raw, GOOD_OLD_INODE_SIZE).extraIsize;
    const start = GOOD_OLD_INODE_SIZE + extra;
    if (extra % 4 !== 0 || start + 4 > this.inodeSize) return null;
    return start;
  }

  isFree(bitmap: Uint8Array, bit: number): boolean {
    return ((bitmap[bit >> 3] ?? 0) & (1 << (bit & 7))) === 0;
  }

  /** Whether group flags say a group's inode table holds no inode in use. */
  inodesUninit(desc: GroupDesc): boolean {
    return (desc.flags & BG_FLAGS.inodeUninit) !== 0;
  }

  blocksUninit(desc: GroupDesc): boolean {
    return (desc.flags & BG_FLAGS.blockUninit) !== 0;
  }
}
