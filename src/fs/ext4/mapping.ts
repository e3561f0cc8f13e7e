/**
 * Where an inode's logical blocks are: extent trees [ifork.rst "Extent Tree"], ext2/ext3 block maps (12 direct
 * pointers, then single, double and triple indirect blocks [ifork.rst "Direct/Indirect Block Addressing"]), and
 * inline data [inlinedata.rst].
 *
 * Two ways in: `lookup` finds the run around one logical block (random access for files opened lazily, with a few
 * parsed nodes cached), and `walkBlocks` visits every block an inode owns, tree blocks included (the block-owner
 * search). Both are bounded whatever the image says: an extent tree is at most 5 levels deep and each level's depth
 * must be its parent's minus one (so there is no cycle), entries are checked against eh_max and the node's capacity
 * and must ascend; a walk also spends a budget of one unit per node and per run.
 */
import { VerityError } from '../../errors.js';
import {
  BLOCK_POINTER,
  DIRECT_BLOCKS,
  EXTENT,
  EXTENT_ENTRY_SIZE,
  EXTENT_HEADER,
  EXTENT_INDEX,
  EXTENT_INIT_MAX_LEN,
  EXTENT_MAGIC,
  EXT4_INODE,
  I_BLOCK_BYTES,
  INLINE_DATA_XATTR_NAME,
  INODE_FLAGS,
  MAX_EXTENT_DEPTH,
  S_IFLNK,
  S_IFMT,
  XATTR_ENTRY,
  XATTR_ENTRY_SIZE,
  XATTR_IBODY_HEADER,
  XATTR_INDEX_SYSTEM,
  XATTR_MAGIC,
} from './structures.js';
import { badImage, type Ext4Filesystem, type Inode } from './filesystem.js';

/** Logical block numbers are 32-bit in extents; block maps reach less far. */
const LOGICAL_LIMIT = 2 ** 32;

/** `length` logical blocks from `logical`: at `physical` onwards, or a hole (null) or an uninitialized extent (zero). */
export interface Run {
  logical: number;
  length: number;
  physical: number | null;
  zero: boolean;
}

export interface BlockLookup {
  lookup(logical: number): Promise<Run>;
  /** Drops what the lookup caches (a suspended directory walk keeps many lookups alive). */
  forget(): void;
}

interface ExtentNode {
  depth: number;
  /** First logical block of each entry, strictly ascending. */
  starts: number[];
  /** Leaves: blocks of each extent; interior nodes: unused. */
  lengths: number[];
  /** Leaves: first physical block; interior nodes: the child node's block. */
  targets: number[];
  uninit: boolean[];
}

/**
 * Parses one extent tree node: the root in i_block (room for 4 entries) or a tree block. `base` is where `bytes` are
 * in the source, for the offsets errors report.
 */
function parseNode(bytes: Uint8Array, ino: number, where: string, expectedDepth: number | null, base: number): ExtentNode {
  const capacity = Math.floor((bytes.length - EXTENT_HEADER.len) / EXTENT_ENTRY_SIZE);
  const h = EXTENT_HEADER.get(bytes, 0);
  const ctx = `inode ${ino}: the extent ${where}`;
  const at = (key: keyof typeof EXTENT_HEADER.fields) => base + EXTENT_HEADER.fields[key].offset;
  if (h.magic !== EXTENT_MAGIC) {
    throw badImage(`${ctx} has magic 0x${h.magic.toString(16)}, expected 0xf30a.`, { offset: at('magic'), field: 'eh_magic', actual: h.magic, expected: EXTENT_MAGIC });
  }
  if (h.depth > MAX_EXTENT_DEPTH || (expectedDepth !== null && h.depth !== expectedDepth)) {
    throw badImage(`${ctx} has depth ${h.depth}, expected ${expectedDepth ?? `at most ${MAX_EXTENT_DEPTH}`}.`, {
      offset: at('depth'),
      field: 'eh_depth',
      actual: h.depth,
      expected: expectedDepth ?? `0..${MAX_EXTENT_DEPTH}`,
    });
  }
  if (h.max > capacity || h.entries > h.max) {
    throw badImage(`${ctx} has ${h.entries} entries of at most ${h.max}, in room for ${capacity}.`, {
      offset: at('entries'),
      field: 'eh_entries',
      actual: h.entries,
      expected: `<= ${Math.min(h.max, capacity)}`,
    });
  }
  const node: ExtentNode = { depth: h.depth, starts: [], lengths: [], targets: [], uninit: [] };
  let end = 0;
  for (let i = 0; i < h.entries; i++) {
    const entry = EXTENT_HEADER.len + i * EXTENT_ENTRY_SIZE;
    if (h.depth > 0) {
      const e = EXTENT_INDEX.get(bytes, entry);
      if (i > 0 && e.block <= end) {
        throw badImage(`${ctx}: index ${i} starts at logical block ${e.block}, not after the one before.`, {
          offset: base + entry,
          field: 'ei_block',
          actual: e.block,
          expected: `> ${end}`,
        });
      }
      node.starts.push(e.block);
      node.targets.push(e.leafLo + e.leafHi * 2 ** 32);
      node.lengths.push(0);
      node.uninit.push(false);
      end = e.block;
    } else {
      const e = EXTENT.get(bytes, entry);
      const uninit = e.len > EXTENT_INIT_MAX_LEN;
      const len = uninit ? e.len - EXTENT_INIT_MAX_LEN : e.len;
      if (len === 0 || (i > 0 && e.block < end) || e.block + len > LOGICAL_LIMIT) {
        throw badImage(`${ctx}: extent ${i} (logical ${e.block}, ${len} blocks) is empty, overlaps the one before or passes 2^32.`, {
          offset: base + entry,
          field: 'ee_block',
          actual: e.block,
          expected: `>= ${end}`,
        });
      }
      node.starts.push(e.block);
      node.lengths.push(len);
      node.targets.push(e.startLo + e.startHi * 2 ** 32);
      node.uninit.push(uninit);
      end = e.block + len;
    }
  }
  return node;
}

/** Index of the last entry starting at or before `logical`, or -1. */
function entryAt(starts: number[], logical: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid]! <= logical) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** Where an inode's i_block is in the source. */
function iBlockOffset(inode: Inode): number {
  return inode.offset + EXT4_INODE.fields.block.offset;
}

class ExtentLookup implements BlockLookup {
  private readonly ino: number;
  private readonly root: ExtentNode;
  private readonly nodes = new Map<number, ExtentNode>();

  constructor(
    private readonly fs: Ext4Filesystem,
    inode: Inode,
  ) {
    this.ino = inode.ino;
    this.root = parseNode(inode.block, inode.ino, 'root', null, iBlockOffset(inode));
  }

  forget(): void {
    this.nodes.clear();
  }

  private async node(block: number, depth: number): Promise<ExtentNode> {
    const hit = this.nodes.get(block);
    if (hit && hit.depth === depth) return hit;
    const bytes = await this.fs.block(block, `the extent tree of inode ${this.ino}`);
    const node = parseNode(bytes, this.ino, `tree block ${block}`, depth, block * this.fs.blockSize);
    if (this.nodes.size >= 8) this.nodes.delete(this.nodes.keys().next().value as number);
    this.nodes.set(block, node);
    return node;
  }

  async lookup(logical: number): Promise<Run> {
    if (logical >= LOGICAL_LIMIT) return hole(logical, Number.POSITIVE_INFINITY);
    let node = this.root;
    let upper = LOGICAL_LIMIT;
    for (;;) {
      const i = entryAt(node.starts, logical);
      const next = i + 1 < node.starts.length ? node.starts[i + 1]! : upper;
      if (node.depth === 0) {
        if (i >= 0 && logical < node.starts[i]! + node.lengths[i]!) {
          const into = logical - node.starts[i]!;
          return { logical, length: node.lengths[i]! - into, physical: node.targets[i]! + into, zero: node.uninit[i]! };
        }
        return hole(logical, Math.min(next, upper));
      }
      if (i < 0) return hole(logical, Math.min(next, upper));
      upper = Math.min(upper, next);
      node = await this.node(node.targets[i]!, node.depth - 1);
    }
  }
}

function hole(logical: number, end: number): Run {
  return { logical, length: Math.max(1, end - logical), physical: null, zero: true };
}

/** The run of `words` (block pointers) around index `i`: equal-stepped pointers, or zeros (a hole). */
function pointerRun(words: Uint8Array, i: number, count: number, logicalBase: number): Run {
  const word = (k: number) => BLOCK_POINTER.get(words, k * BLOCK_POINTER.len);
  const first = word(i);
  let n = 1;
  while (i + n < count && word(i + n) === (first === 0 ? 0 : first + n)) n++;
  return { logical: logicalBase + i, length: n, physical: first === 0 ? null : first, zero: first === 0 };
}

class IndirectLookup implements BlockLookup {
  private readonly perBlock: number;

  constructor(
    private readonly fs: Ext4Filesystem,
    private readonly ino: number,
    private readonly iBlock: Uint8Array,
  ) {
    this.perBlock = fs.blockSize / BLOCK_POINTER.len;
  }

  forget(): void {}

  async lookup(logical: number): Promise<Run> {
    if (logical < DIRECT_BLOCKS) return pointerRun(this.iBlock, logical, DIRECT_BLOCKS, 0);
    let base = DIRECT_BLOCKS;
    for (let level = 1; level <= 3; level++) {
      let span = this.perBlock ** level;
      if (logical < base + span) {
        let pointer = BLOCK_POINTER.get(this.iBlock, (DIRECT_BLOCKS + level - 1) * BLOCK_POINTER.len);
        for (let d = level; d >= 1; d--) {
          if (pointer === 0) return hole(logical, base + span);
          const words = await this.fs.block(pointer, `an indirect block of inode ${this.ino}`);
          span /= this.perBlock;
          const index = Math.floor((logical - base) / span);
          if (d === 1) return pointerRun(words, index, this.perBlock, base);
          pointer = BLOCK_POINTER.get(words, index * BLOCK_POINTER.len);
          base += index * span;
        }
      }
      base += span;
    }
    return hole(logical, Number.POSITIVE_INFINITY);
  }
}

/** Whether the inode's blocks are an extent tree (else a block map). */
function usesExtents(inode: Inode): boolean {
  return (inode.flags & INODE_FLAGS.extents) !== 0;
}

export function blockLookup(fs: Ext4Filesystem, inode: Inode): BlockLookup {
  return usesExtents(inode) ? new ExtentLookup(fs, inode) : new IndirectLookup(fs, inode.ino, inode.block);
}

/** A bound on the work of walks over many inodes: one unit per tree node and per run of blocks. */
export class Budget {
  constructor(
    public left: number,
    private readonly what: string,
  ) {}

  spend(n = 1): void {
    this.left -= n;
    if (this.left < 0) {
      throw badImage(`${this.what} took more steps than the image has blocks: its block pointers repeat or loop.`);
    }
  }
}

/**
 * Called for each run of blocks an inode owns: data (`logical` is its first logical block) or tree blocks (`logical`
 * null: extent tree nodes and indirect blocks). Returning true stops the walk.
 */
export type BlockVisitor = (physical: number, count: number, logical: number | null) => boolean;

/** Visits every block of an extent-mapped or block-mapped inode (not inline data); true when the visitor stopped it. */
export async function walkBlocks(fs: Ext4Filesystem, inode: Inode, visit: BlockVisitor, budget: Budget): Promise<boolean> {
  if (usesExtents(inode)) {
    const walk = async (node: ExtentNode): Promise<boolean> => {
      for (let i = 0; i < node.starts.length; i++) {
        budget.spend();
        if (node.depth === 0) {
          if (visit(node.targets[i]!, node.lengths[i]!, node.starts[i]!)) return true;
          continue;
        }
        const block = node.targets[i]!;
        if (visit(block, 1, null)) return true;
        const bytes = await fs.block(block, `the extent tree of inode ${inode.ino}`);
        if (await walk(parseNode(bytes, inode.ino, `tree block ${block}`, node.depth - 1, block * fs.blockSize))) return true;
      }
      return false;
    };
    return walk(parseNode(inode.block, inode.ino, 'root', null, iBlockOffset(inode)));
  }
  const perBlock = fs.blockSize / BLOCK_POINTER.len;
  const runs = async (words: Uint8Array, count: number, base: number): Promise<boolean> => {
    for (let i = 0; i < count; ) {
      const run = pointerRun(words, i, count, base);
      // Holes cost nothing: they are bounded by the words of a block already paid for (or the 12 direct pointers).
      if (run.physical !== null) {
        budget.spend();
        if (visit(run.physical, run.length, run.logical)) return true;
      }
      i += run.length;
    }
    return false;
  };
  const indirect = async (pointer: number, level: number, base: number): Promise<boolean> => {
    if (pointer === 0) return false;
    budget.spend();
    if (visit(pointer, 1, null)) return true;
    const words = await fs.block(pointer, `an indirect block of inode ${inode.ino}`);
    if (level === 1) return runs(words, perBlock, base);
    const span = perBlock ** (level - 1);
    for (let i = 0; i < perBlock; i++) {
      if (await indirect(BLOCK_POINTER.get(words, i * BLOCK_POINTER.len), level - 1, base + i * span)) return true;
    }
    return false;
  };
  if (await runs(inode.block, DIRECT_BLOCKS, 0)) return true;
  let base = DIRECT_BLOCKS;
  for (let level = 1; level <= 3; level++) {
    if (await indirect(BLOCK_POINTER.get(inode.block, (DIRECT_BLOCKS + level - 1) * BLOCK_POINTER.len), level, base)) return true;
    base += perBlock ** level;
  }
  return false;
}

/**
 * Whether a symlink keeps its target in i_block: shorter than i_block's 60 bytes (e2fsprogs' ext2fs_is_fast_symlink),
 * unless its data is inline or it is extent-mapped (a slow link of a short target, as encrypted links are).
 */
export function isFastSymlink(fs: Ext4Filesystem, inode: Inode): boolean {
  if ((inode.mode & S_IFMT) !== S_IFLNK || inode.size >= I_BLOCK_BYTES || isInline(fs, inode)) return false;
  return !(usesExtents(inode) && EXTENT_HEADER.get(inode.block, 0).magic === EXTENT_MAGIC);
}

/** Whether the inode keeps its data in i_block and its extended attributes (inline_data). */
export function isInline(fs: Ext4Filesystem, inode: Inode): boolean {
  return fs.hasInlineData && (inode.flags & INODE_FLAGS.inlineData) !== 0;
}

/** The value of the in-inode xattr "system.data": the part of inline data past i_block's 60 bytes. */
function inlineXattr(fs: Ext4Filesystem, inode: Inode): Uint8Array {
  const start = fs.ibodyStart(inode);
  if (start === null || XATTR_IBODY_HEADER.get(inode.raw, start).magic !== XATTR_MAGIC) return new Uint8Array(0);
  const first = start + XATTR_IBODY_HEADER.len;
  const end = inode.raw.length;
  // Each entry is at least 16 bytes, so this ends after at most (inode size / 16) steps.
  for (let at = first; at + 4 <= end; ) {
    if (inode.raw.subarray(at, at + 4).every((b) => b === 0)) break; // the list ends with four zero bytes
    const e = XATTR_ENTRY.get(inode.raw, at);
    const nameEnd = at + XATTR_ENTRY_SIZE + e.nameLen;
    if (nameEnd > end) {
      throw badImage(`inode ${inode.ino}: an extended attribute name runs past the inode.`, {
        offset: inode.offset + at,
        field: 'e_name_len',
        actual: e.nameLen,
        expected: `<= ${end - at - XATTR_ENTRY_SIZE}`,
      });
    }
    const name = String.fromCharCode(...inode.raw.subarray(at + XATTR_ENTRY_SIZE, nameEnd));
    if (e.nameIndex === XATTR_INDEX_SYSTEM && name === INLINE_DATA_XATTR_NAME) {
      if (e.valueInum !== 0) {
        throw new VerityError('E_UNSUPPORTED', `ext4: inode ${inode.ino} keeps its inline data in inode ${e.valueInum} (ea_inode).`, {
          data: { offset: inode.offset + at + XATTR_ENTRY.fields.valueInum.offset, field: 'e_value_inum', actual: e.valueInum },
        });
      }
      const valueStart = first + e.valueOffs;
      if (valueStart + e.valueSize > end) {
        throw badImage(`inode ${inode.ino}: its inline data value (${e.valueSize} bytes at ${e.valueOffs}) runs past the inode.`, {
          offset: inode.offset + at + XATTR_ENTRY.fields.valueSize.offset,
          field: 'e_value_size',
          actual: e.valueSize,
          expected: `<= ${Math.max(0, end - valueStart)}`,
        });
      }
      return inode.raw.subarray(valueStart, valueStart + e.valueSize);
    }
    at += (XATTR_ENTRY_SIZE + e.nameLen + 3) & ~3;
  }
  return new Uint8Array(0);
}

/**
 * Inline data: i_block's 60 bytes, then the "system.data" value (at most an inode's size), with where each is in
 * the source.
 */
export function inlineBytes(fs: Ext4Filesystem, inode: Inode): { head: Uint8Array; tail: Uint8Array; headOffset: number; tailOffset: number } {
  const tail = inlineXattr(fs, inode);
  return {
    head: inode.block.subarray(0, I_BLOCK_BYTES),
    tail,
    headOffset: iBlockOffset(inode),
    // The value is a view into the inode's bytes (or empty).
    tailOffset: inode.offset + (tail.length > 0 ? tail.byteOffset - inode.raw.byteOffset : 0),
  };
}

/**
 * The bytes an inline inode stores (i_block, then "system.data"), at most `inode.size`. Past them a file reads as
 * zeros, as the kernel's ext4_read_inline_folio zero-fills: mke2fs -d stores a file that is all hole this way.
 */
export function inlineContent(fs: Ext4Filesystem, inode: Inode): Uint8Array {
  const { head, tail } = inlineBytes(fs, inode);
  const stored = Math.min(inode.size, head.length + tail.length);
  const out = new Uint8Array(stored);
  out.set(head.subarray(0, Math.min(stored, head.length)));
  if (stored > head.length) out.set(tail.subarray(0, stored - head.length), head.length);
  return out;
}
