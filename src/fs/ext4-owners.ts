/**
 * What each of some filesystem blocks holds: a file's data (with its path and offset), directory or symlink blocks,
 * free space, or filesystem metadata. For reporting which files a damaged block belongs to.
 *
 * Three passes, each bounded whatever the image says, and holding memory in proportion to the blocks asked about:
 * - the group layout: superblock copies, descriptor blocks, reserved descriptor blocks, bitmaps and inode tables
 *   (e2fsprogs' ext2fs_super_and_bgd_loc2 and the descriptors), then the block bitmaps for free blocks;
 * - one pass over the inode tables, in-use inodes only (inode bitmaps, bg_itable_unused), walking each inode's
 *   extent tree or block map and stopping as soon as every block is placed;
 * - names: a depth-first walk of the directory tree from the root that stops once every owning inode is named.
 */
import { VerityError } from '../errors.js';
import { DirCursor } from './ext4/directory.js';
import { inodeKind, type Ext4Filesystem, type InodeKind } from './ext4/filesystem.js';
import { Budget, isFastSymlink, isInline, walkBlocks } from './ext4/mapping.js';
import { FT, ROOT_INO } from './ext4/structures.js';
import type { Ext4Volume } from './ext4/volume.js';

export type BlockOwnerKind =
  | 'file'
  | 'directory'
  | 'symlink'
  | 'free'
  | 'superblock'
  | 'group-descriptors'
  | 'bitmap'
  | 'inode-table'
  | 'journal'
  | 'metadata';

export interface BlockOwner {
  /** The filesystem block number asked about. */
  block: number;
  /**
   * `metadata`: reserved descriptor blocks, the boot block before the superblock, blocks of reserved inodes other than
   * the journal, and blocks in use that no inode claims (also when the inode that owns them has a mapping too
   * damaged to walk: such an inode is stepped over, not reported).
   */
  kind: BlockOwnerKind;
  /** The owning inode (file, directory, symlink, journal and reserved inodes). */
  inode?: number;
  /** A path of the owning inode, when the directory tree names it (an inode in use may have no name). */
  path?: string;
  /**
   * Where the block's bytes are in the file. Absent for the inode's own metadata: extent tree blocks, indirect
   * blocks and its extended attribute block.
   */
  fileOffset?: number;
}

/** Deepest directory searched for names (PATH_MAX allows 2048 levels of one-letter names). */
const MAX_NAME_DEPTH = 2048;

/** Index of the first of `sorted` that is >= `value`. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface Claim {
  ino: number;
  logical: number | null;
}

class Search {
  readonly kinds: Array<BlockOwnerKind | undefined>;
  readonly claims: Array<Claim | undefined>;
  pending: number;

  constructor(readonly wanted: readonly number[]) {
    this.kinds = new Array(wanted.length);
    this.claims = new Array(wanted.length);
    this.pending = wanted.length;
  }

  /** Gives `kind` to the wanted blocks in [start, start + count) that have none yet. */
  mark(start: number, count: number, kind: BlockOwnerKind): void {
    for (let i = lowerBound(this.wanted, start); i < this.wanted.length && this.wanted[i]! < start + count; i++) {
      if (this.kinds[i] === undefined) {
        this.kinds[i] = kind;
        this.pending--;
      }
    }
  }

  /** Records `ino` as the owner of the wanted blocks in [physical, physical + count); true once none is left. */
  claim(physical: number, count: number, ino: number, logical: number | null): boolean {
    for (let i = lowerBound(this.wanted, physical); i < this.wanted.length && this.wanted[i]! < physical + count; i++) {
      if (this.kinds[i] === undefined && this.claims[i] === undefined) {
        this.claims[i] = { ino, logical: logical === null ? null : logical + (this.wanted[i]! - physical) };
        this.pending--;
      }
    }
    return this.pending === 0;
  }
}

async function markLayout(fs: Ext4Filesystem, s: Search): Promise<void> {
  // What precedes the primary superblock's block: the boot block of 1 KiB block filesystems.
  s.mark(0, fs.superblockBlock(0), 'metadata');
  const perBlock = fs.blockSize / fs.descSize;
  const oldDescBlocks = Number.isFinite(fs.firstMetaBg) ? fs.firstMetaBg : Math.ceil(fs.groupCount / perBlock);
  for (let g = 0; g < fs.groupCount && s.pending > 0; g++) {
    const first = fs.superblockBlock(g);
    const hasSuper = fs.hasSuperblock(g);
    if (hasSuper) s.mark(first, 1, 'superblock');
    if (Math.floor(g / perBlock) < fs.firstMetaBg) {
      if (hasSuper) {
        s.mark(first + 1, oldDescBlocks, 'group-descriptors');
        s.mark(first + 1 + oldDescBlocks, fs.reservedGdtBlocks, 'metadata');
      }
    } else if ([0, 1, perBlock - 1].includes(g % perBlock)) {
      s.mark(first + (hasSuper ? 1 : 0), 1, 'group-descriptors');
    }
    const desc = await fs.group(g);
    s.mark(desc.blockBitmap, 1, 'bitmap');
    s.mark(desc.inodeBitmap, 1, 'bitmap');
    s.mark(desc.inodeTable, fs.inodeTableBlocks, 'inode-table');
  }
}

async function markFree(fs: Ext4Filesystem, s: Search): Promise<void> {
  for (let i = 0; i < s.wanted.length; i++) {
    if (s.kinds[i] !== undefined) continue;
    const block = s.wanted[i]!;
    const g = Math.floor((block - fs.firstDataBlock) / fs.blocksPerGroup);
    const desc = await fs.group(g);
    let free: boolean;
    if (fs.blocksUninit(desc)) free = true;
    else {
      const bitmap = await fs.block(desc.blockBitmap, `the block bitmap of group ${g}`);
      free = fs.isFree(bitmap, Math.floor((block - fs.groupFirstBlock(g)) / fs.clusterRatio));
    }
    if (free) s.mark(block, 1, 'free');
  }
}

/**
 * Whether `err` is damage confined to one inode or directory, which the search steps over: the blocks asked about are
 * often damaged, and so may be the metadata of the files around them. A spent budget is not: it ends the search.
 */
function damage(err: unknown, budget: Budget): boolean {
  return err instanceof VerityError && (err.code === 'E_BAD_IMAGE' || err.code === 'E_TRUNCATED' || err.code === 'E_UNSUPPORTED') && budget.left >= 0;
}

/** One pass over the inode tables; returns the kind of each inode that owns a wanted block. */
async function claimByInodes(fs: Ext4Filesystem, s: Search): Promise<Map<number, InodeKind>> {
  const owners = new Map<number, InodeKind>();
  const budget = new Budget(4 * fs.readableBlocks + 1024, 'the walk over every inode\'s blocks');
  const perTableBlock = fs.blockSize / fs.inodeSize;
  for (let g = 0; g < fs.groupCount && s.pending > 0; g++) {
    const desc = await fs.group(g);
    if (fs.inodesUninit(desc)) continue;
    const bitmap = await fs.block(desc.inodeBitmap, `the inode bitmap of group ${g}`);
    const inUse = Math.max(0, fs.inodesPerGroup - desc.itableUnused);
    let table: Uint8Array | null = null;
    let tableIndex = -1;
    for (let i = 0; i < inUse && s.pending > 0; i++) {
      const ino = g * fs.inodesPerGroup + i + 1;
      if (ino > fs.inodeCount) break;
      if (fs.isFree(bitmap, i)) continue;
      if (Math.floor(i / perTableBlock) !== tableIndex) {
        tableIndex = Math.floor(i / perTableBlock);
        // Read past the cache: a pass over every table would only evict the blocks worth keeping.
        table = new Uint8Array(fs.blockSize);
        await fs.readBlocksInto(table, desc.inodeTable + tableIndex, `the inode table of group ${g}`);
      }
      const at = (i % perTableBlock) * fs.inodeSize;
      const inode = fs.parseInode(ino, table!.slice(at, at + fs.inodeSize), (desc.inodeTable + tableIndex) * fs.blockSize + at);
      const before = s.pending;
      if (inode.fileAcl !== 0) s.claim(inode.fileAcl, 1, ino, null);
      if (s.pending > 0 && !isInline(fs, inode) && !isFastSymlink(fs, inode) && inode.mode !== 0) {
        try {
          await walkBlocks(fs, inode, (physical, count, logical) => s.claim(physical, count, ino, logical), budget);
        } catch (err) {
          if (!damage(err, budget)) throw err;
        }
      }
      if (s.pending < before) owners.set(ino, inodeKind(inode));
    }
  }
  return owners;
}

interface Level {
  cursor: DirCursor;
  path: string;
  ino: number;
}

/** Names the inodes of `unnamed` by a walk from the root; stops when all are named. */
async function nameInodes(fs: Ext4Filesystem, unnamed: Set<number>): Promise<Map<number, string>> {
  const names = new Map<number, string>();
  if (unnamed.size === 0) return names;
  const decoder = new TextDecoder();
  // Each entry is at least 8 bytes of a block the source holds, so a walk that visits each directory once fits.
  const budget = new Budget(Math.ceil((fs.readableBlocks * fs.blockSize) / 8), 'the directory walk');
  if (unnamed.delete(ROOT_INO)) names.set(ROOT_INO, '/');
  let root: DirCursor;
  try {
    root = new DirCursor(fs, await fs.inode(ROOT_INO));
  } catch (err) {
    if (damage(err, budget)) return names;
    throw err;
  }
  const stack: Level[] = [{ cursor: root, path: '', ino: ROOT_INO }];
  const onPath = new Set<number>([ROOT_INO]);
  while (stack.length > 0 && unnamed.size > 0) {
    const top = stack[stack.length - 1]!;
    let e: Awaited<ReturnType<DirCursor['next']>>;
    try {
      e = await top.cursor.next();
    } catch (err) {
      if (!damage(err, budget)) throw err;
      e = null;
    }
    if (!e) {
      stack.pop();
      onPath.delete(top.ino);
      continue;
    }
    budget.spend();
    const name = decoder.decode(e.name);
    if (name === '.' || name === '..') continue;
    const path = `${top.path}/${name}`;
    if (unnamed.delete(e.ino)) names.set(e.ino, path);
    const maybeDir = e.fileType === FT.directory || e.fileType === 0;
    if (!maybeDir || onPath.has(e.ino) || stack.length >= MAX_NAME_DEPTH || unnamed.size === 0) continue;
    let cursor: DirCursor;
    try {
      const child = await fs.inode(e.ino);
      if (inodeKind(child) !== 'directory') continue;
      cursor = new DirCursor(fs, child);
    } catch (err) {
      if (damage(err, budget)) continue;
      throw err;
    }
    top.cursor.suspend();
    stack.push({ cursor, path, ino: e.ino });
    onPath.add(e.ino);
  }
  return names;
}

/**
 * What each of `blocks` (filesystem block numbers, ascending) holds, one answer per block in the same order.
 * Checksums are not verified, so a block is placed by what the metadata says.
 */
export async function ownersOfBlocks(volume: Ext4Volume, blocks: readonly number[]): Promise<BlockOwner[]> {
  const fs = volume.fs;
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    if (!(Number.isSafeInteger(b) && b >= 0 && b < fs.blocksCount) || (i > 0 && b < blocks[i - 1]!)) {
      throw new VerityError('E_PARAM', `Block ${b} (at ${i}) is not a block of the filesystem (0..${fs.blocksCount - 1}) in ascending order.`, {
        data: { field: 'blocks', actual: b, expected: `0..${fs.blocksCount - 1}, ascending` },
      });
    }
  }
  const wanted = blocks.filter((b, i) => i === 0 || b !== blocks[i - 1]);
  const s = new Search(wanted);
  await markLayout(fs, s);
  if (s.pending > 0) await markFree(fs, s);
  const owners = s.pending > 0 ? await claimByInodes(fs, s) : new Map<number, InodeKind>();
  const named = new Set<number>();
  for (const [ino, kind] of owners) if (ino === ROOT_INO || (ino >= fs.firstIno && ino !== fs.journalInum && kind !== 'other')) named.add(ino);
  const names = await nameInodes(fs, named);

  const answers = wanted.map((block, i): BlockOwner => {
    const kind = s.kinds[i];
    if (kind !== undefined) return { block, kind };
    const claim = s.claims[i];
    if (!claim) return { block, kind: 'metadata' };
    const ownKind = owners.get(claim.ino);
    if (!ownKind) throw new VerityError('E_INTERNAL', `ext4: inode ${claim.ino} claimed block ${block} but was not kept.`);
    const out: BlockOwner = {
      block,
      kind:
        claim.ino === fs.journalInum
          ? 'journal'
          : claim.ino !== ROOT_INO && claim.ino < fs.firstIno
            ? 'metadata'
            : ownKind === 'other'
              ? 'metadata'
              : ownKind,
      inode: claim.ino,
    };
    const path = names.get(claim.ino);
    if (path !== undefined) out.path = path;
    if (claim.logical !== null) out.fileOffset = claim.logical * fs.blockSize;
    return out;
  });
  // Repeated blocks in the input get the same answer.
  let k = 0;
  return blocks.map((b, i) => {
    if (i > 0 && b !== blocks[i - 1]) k++;
    return { ...answers[k]! };
  });
}
