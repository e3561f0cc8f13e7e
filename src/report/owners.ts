/**
 * What the damaged data blocks of a verification hold when the data device is an ext4 filesystem: each damaged
 * file, directory or symbolic link with its path and the byte ranges of it, and how many damaged filesystem blocks
 * are free space or metadata (superblock, group descriptors, bitmaps, inode tables, journal, other).
 *
 * Bounded whatever the image: only the filesystem blocks under damaged verity blocks are looked up (corrupt ones
 * first, then unverified ones), at most `MAX_LOOKED_UP_BLOCKS` of them, and fs/ext4-owners.ts builds its map for those
 * blocks only. A filesystem too damaged to read is reported as such; this never throws.
 */
import { openExt4 } from '../fs/ext4.js';
import { ownersOfBlocks, type BlockOwner, type BlockOwnerKind } from '../fs/ext4-owners.js';
import { EXT4_MAGIC } from '../fs/ext4/structures.js';
import type { ByteSource } from '../io/source.js';
import type { BlockRange } from '../tree/ranges.js';

/** Filesystem blocks looked up at most; more damage is reported as `truncated`. */
export const MAX_LOOKED_UP_BLOCKS = 65536;

/** Bytes [offset, offset + length) of a file. */
export interface FileByteRange {
  offset: number;
  length: number;
}

export interface DamagedFile {
  /** A path of the inode, or `<inode N>` when no directory entry names it. */
  path: string;
  inode: number;
  kind: 'file' | 'directory' | 'symlink';
  /** Its size in bytes (i_size); null when its inode could not be read again. */
  size: number | null;
  /**
   * Its bytes in corrupt data blocks, merged and in file order. Whole damaged blocks: a range may run past `size`
   * when the file's last block is damaged (the kernel refuses the whole block).
   */
  corrupt: FileByteRange[];
  /** Its bytes in unverified data blocks (below a corrupted hash block). */
  unverified: FileByteRange[];
  /** Damaged filesystem blocks of the inode that hold none of its bytes: extent tree, indirect and extended-attribute blocks. */
  mappingBlocks: number;
}

/** What a damaged filesystem block that is no file's data is. */
export type OtherDamageKind = Exclude<BlockOwnerKind, 'file' | 'directory' | 'symlink'> | 'beyond-filesystem';

export interface OtherDamage {
  kind: OtherDamageKind;
  /** Filesystem blocks of this kind in corrupt data blocks. */
  corruptBlocks: number;
  /** In unverified data blocks only. */
  unverifiedBlocks: number;
}

export interface DamagedFiles {
  /** null: not known, the data could not be read again to find out (a stream). */
  filesystem: 'ext4' | null;
  /** The filesystem's block size: the unit of the block counts here (0 when the filesystem could not be opened). */
  blockSize: number;
  /** Filesystem blocks under the damaged (corrupt or unverified) data blocks (0 when it could not be opened). */
  damagedBlocks: number;
  /** How many of them were looked up (corrupt ones first). */
  lookedUpBlocks: number;
  /** Some damaged blocks were not looked up (more than `MAX_LOOKED_UP_BLOCKS`): the lists cover the first ones. */
  truncated: boolean;
  /** Files with corrupt bytes first, then those with unverified bytes only; each group in device order. */
  files: DamagedFile[];
  /** Counts of the other kinds, in a fixed order; kinds with no block are left out. */
  other: OtherDamage[];
  /**
   * Why the blocks could not be named, "the filesystem could not be read: …" (or that the data was a stream that
   * cannot be read again); `files` and `other` then hold what was named before (often nothing). Null when they were.
   */
  error: string | null;
}

const OTHER_ORDER: OtherDamageKind[] = [
  'free',
  'superblock',
  'group-descriptors',
  'bitmap',
  'inode-table',
  'journal',
  'metadata',
  'beyond-filesystem',
];

/** The part [start, end) of filesystem block `block` that lies in a damaged data block. */
interface Piece {
  block: number;
  start: number;
  end: number;
  corrupt: boolean;
}

/** Byte intervals of data block ranges. */
function byteIntervals(ranges: readonly BlockRange[], dataBlockSize: number): Array<[number, number]> {
  return ranges.filter((r) => r.count > 0).map((r) => [r.first * dataBlockSize, (r.first + r.count) * dataBlockSize]);
}

/** Filesystem blocks touched by the union of `intervals` (each sorted, the two lists disjoint). */
function blocksUnder(intervals: Array<[number, number]>, blockSize: number): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let last = -1;
  for (const [s, e] of sorted) {
    const first = Math.max(Math.floor(s / blockSize), last + 1);
    const end = Math.floor((e - 1) / blockSize);
    if (end >= first) total += end - first + 1;
    last = Math.max(last, end);
  }
  return total;
}

/** The head of the ext4 superblock says ext2/3/4: s_magic at byte 1024 + 0x38. */
async function looksLikeExt4(data: ByteSource): Promise<boolean> {
  const at = 1024 + 0x38;
  if (data.size < 2048) return false;
  const magic = new Uint8Array(2);
  try {
    if ((await data.read(magic, at)) !== 2) return false;
  } catch {
    return false;
  }
  return (magic[0]! | (magic[1]! << 8)) === EXT4_MAGIC;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function mergeRanges(ranges: FileByteRange[]): FileByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const out: FileByteRange[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.offset <= prev.offset + prev.length) prev.length = Math.max(prev.length, r.offset + r.length - prev.offset);
    else out.push({ ...r });
  }
  return out;
}

/**
 * What the damaged data blocks (`corrupt` and `unverified`, in data blocks of `dataBlockSize`) hold in the ext4
 * filesystem on `data`; null when `data` does not start with an ext4 superblock or nothing is damaged. At most
 * `maxBlocks` filesystem blocks are looked up (default `MAX_LOOKED_UP_BLOCKS`).
 */
export async function damagedFiles(
  data: ByteSource,
  dataBlockSize: number,
  corrupt: readonly BlockRange[],
  unverified: readonly BlockRange[],
  options: { maxBlocks?: number } = {},
): Promise<DamagedFiles | null> {
  const maxBlocks = options.maxBlocks ?? MAX_LOOKED_UP_BLOCKS;
  if (corrupt.length === 0 && unverified.length === 0) return null;
  const bad = byteIntervals(corrupt, dataBlockSize);
  const unsure = byteIntervals(unverified, dataBlockSize);
  const report = (blockSize: number, error: string | null, filesystem: 'ext4' | null = 'ext4'): DamagedFiles => ({
    filesystem,
    blockSize,
    damagedBlocks: blockSize > 0 ? blocksUnder([...bad, ...unsure], blockSize) : 0,
    lookedUpBlocks: 0,
    truncated: false,
    files: [],
    other: [],
    error,
  });
  // A stream (stdin, a compressed zip entry) has been read once by the verification: reading it again in any order
  // could mean decompressing it once per block, so not even its filesystem is probed.
  if (data.sequential) {
    return report(0, 'the data was read as a stream (stdin or a compressed entry), which cannot be read again in any order; verify an uncompressed copy to name the files', null);
  }
  if (!(await looksLikeExt4(data))) return null;
  let volume: Awaited<ReturnType<typeof openExt4>>;
  try {
    volume = await openExt4(data);
  } catch (err) {
    return report(0, `the filesystem could not be read: ${message(err)}`);
  }
  const bs = volume.blockSize;

  // The damaged parts of filesystem blocks, corrupt before unverified, until `maxBlocks` blocks are taken.
  const pieces: Piece[] = [];
  const taken = new Set<number>();
  let truncated = false;
  for (const [intervals, isCorrupt] of [
    [bad, true],
    [unsure, false],
  ] as const) {
    for (const [s, e] of intervals) {
      for (let b = Math.floor(s / bs); b * bs < e; b++) {
        if (!taken.has(b)) {
          if (taken.size >= maxBlocks) {
            truncated = true;
            break;
          }
          taken.add(b);
        }
        pieces.push({ block: b, start: Math.max(s, b * bs), end: Math.min(e, (b + 1) * bs), corrupt: isCorrupt });
      }
    }
  }
  const out = report(bs, null);
  out.lookedUpBlocks = taken.size;
  out.truncated = truncated;

  const inside = [...taken].filter((b) => b < volume.blocksCount).sort((a, b) => a - b);
  const owners = new Map<number, BlockOwner>();
  try {
    const answers = await ownersOfBlocks(volume, inside);
    for (const a of answers) owners.set(a.block, a);
  } catch (err) {
    out.error = `the filesystem could not be read: ${message(err)}`;
  }

  // A block is corrupt when any damaged part of it is.
  const blockCorrupt = new Map<number, boolean>();
  for (const p of pieces) blockCorrupt.set(p.block, (blockCorrupt.get(p.block) ?? false) || p.corrupt);

  const files = new Map<number, DamagedFile & { firstAt: number; mapping: Set<number> }>();
  const counts = new Map<OtherDamageKind, OtherDamage>();
  const countOther = (kind: OtherDamageKind, block: number) => {
    const c = counts.get(kind) ?? { kind, corruptBlocks: 0, unverifiedBlocks: 0 };
    counts.set(kind, c);
    if (blockCorrupt.get(block)) c.corruptBlocks++;
    else c.unverifiedBlocks++;
  };
  const counted = new Set<number>();
  for (const p of pieces) {
    const first = !counted.has(p.block);
    counted.add(p.block);
    if (p.block >= volume.blocksCount) {
      if (first) countOther('beyond-filesystem', p.block);
      continue;
    }
    const owner = owners.get(p.block);
    if (!owner) continue;
    const { kind, inode } = owner;
    if ((kind === 'file' || kind === 'directory' || kind === 'symlink') && inode !== undefined) {
      let f = files.get(inode);
      if (!f) {
        f = { path: owner.path ?? `<inode ${inode}>`, inode, kind, size: null, corrupt: [], unverified: [], mappingBlocks: 0, firstAt: p.start, mapping: new Set() };
        files.set(inode, f);
      }
      if (owner.fileOffset === undefined) {
        f.mapping.add(p.block);
      } else {
        const range = { offset: owner.fileOffset + (p.start - p.block * bs), length: p.end - p.start };
        (p.corrupt ? f.corrupt : f.unverified).push(range);
      }
    } else if (first) {
      countOther(kind === 'file' || kind === 'directory' || kind === 'symlink' ? 'metadata' : kind, p.block);
    }
  }

  const list = [...files.values()];
  for (const f of list) {
    try {
      f.size = (await volume.fs.inode(f.inode)).size;
    } catch {
      f.size = null;
    }
  }
  const rank = (f: DamagedFile & { firstAt: number }) => (f.corrupt.length > 0 ? 0 : 1);
  list.sort((a, b) => rank(a) - rank(b) || a.firstAt - b.firstAt);
  out.files = list.map((f) => ({
    path: f.path,
    inode: f.inode,
    kind: f.kind,
    size: f.size,
    corrupt: mergeRanges(f.corrupt),
    unverified: mergeRanges(f.unverified),
    mappingBlocks: f.mapping.size,
  }));
  out.other = OTHER_ORDER.flatMap((k) => {
    const c = counts.get(k);
    return c ? [c] : [];
  });
  return out;
}
