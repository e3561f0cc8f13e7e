/**
 * The `Volume` of an ext2/3/4 filesystem: paths resolved from the root inode through directory entries, symbolic
 * links followed as the kernel's path walk does (relative targets from the link's directory, ".." to the physical
 * parent, at most 40 links per resolution as MAXSYMLINKS), and files read lazily through their block mapping.
 */
import { VerityError } from '../../errors.js';
import { readExactly, type ByteSource } from '../../io/source.js';
import type { DirEntry, Volume } from '../volume.js';
import { DirCursor, refuseEncrypted, type RawEntry } from './directory.js';
import { badImage, Ext4Filesystem, inodeKind, type Ext4Info, type Inode, type InodeKind } from './filesystem.js';
import { blockLookup, inlineContent, isFastSymlink, isInline } from './mapping.js';
import { EXT4_INODE, FT, ROOT_INO } from './structures.js';

/** Symbolic links followed in one resolution (the kernel's MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;
/** The longest symlink target read (PATH_MAX). */
export const MAX_SYMLINK_BYTES = 4096;

const SLASH = 0x2f;
const DOT = 0x2e;

function components(path: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      if (i > start) out.push(path.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes as a string of the same length, one character per byte, to key a Map by exact bytes. */
function latin1(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4096) out += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return out;
}

/** What the names kept for lookups may cost, across all directories: each name's bytes and 64 for its entry. */
const MAX_CACHED_BYTES = 4 << 20;
const ENTRY_COST = 64;

const isDot = (c: Uint8Array) => c.length === 1 && c[0] === DOT;
const isDotDot = (c: Uint8Array) => c.length === 2 && c[0] === DOT && c[1] === DOT;

/** A reader over an inode's bytes, mapping each read through its extents or block map when it is made. */
export function inodeSource(fs: Ext4Filesystem, inode: Inode): ByteSource {
  refuseEncrypted(fs, inode);
  const bs = fs.blockSize;
  const size = inode.size;
  const inline = isInline(fs, inode) ? inlineContent(fs, inode) : null;
  const map = inline ? null : blockLookup(fs, inode);
  return {
    size,
    async read(dst, position) {
      if (!Number.isSafeInteger(position) || position < 0) {
        throw new VerityError('E_PARAM', `Invalid read position ${position}.`);
      }
      if (position >= size) return 0;
      const n = Math.min(dst.length, size - position);
      if (inline) {
        const stored = inline.subarray(Math.min(position, inline.length), Math.min(position + n, inline.length));
        dst.set(stored);
        dst.fill(0, stored.length, n);
        return n;
      }
      for (let done = 0; done < n; ) {
        const at = position + done;
        const logical = Math.floor(at / bs);
        const run = await map!.lookup(logical);
        const take = Math.min(n - done, (run.logical + run.length) * bs - at);
        const out = dst.subarray(done, done + take);
        if (run.physical === null || run.zero) out.fill(0);
        else {
          const first = run.physical + (logical - run.logical);
          fs.checkBlocks(first, Math.ceil(((at % bs) + take) / bs), `the data of inode ${inode.ino}`);
          await readExactly(fs.source, out, first * bs + (at % bs), `ext4 inode ${inode.ino}`);
        }
        done += take;
      }
      return n;
    },
  };
}

export class Ext4Volume implements Volume, Ext4Info {
  readonly kind = 'ext4' as const;
  readonly uuid: string;
  readonly label: string;
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly inodeCount: number;
  readonly inodeSize: number;
  readonly groupCount: number;
  readonly blocksPerGroup: number;
  readonly inodesPerGroup: number;
  readonly firstDataBlock: number;
  readonly features: Ext4Info['features'];
  readonly needsRecovery: boolean;

  private readonly names = new Map<number, { entries: Map<string, RawEntry>; cost: number }>();
  private cachedBytes = 0;

  constructor(readonly fs: Ext4Filesystem) {
    this.uuid = fs.uuid;
    this.label = fs.label;
    this.blockSize = fs.blockSize;
    this.blocksCount = fs.blocksCount;
    this.inodeCount = fs.inodeCount;
    this.inodeSize = fs.inodeSize;
    this.groupCount = fs.groupCount;
    this.blocksPerGroup = fs.blocksPerGroup;
    this.inodesPerGroup = fs.inodesPerGroup;
    this.firstDataBlock = fs.firstDataBlock;
    this.features = fs.features;
    this.needsRecovery = fs.needsRecovery;
  }

  /**
   * The entry named `name` (bytes) in directory `dir`, or null. Directories are scanned linearly (the htree index is
   * not used), so the names of recently searched directories are kept, up to MAX_CACHED_BYTES in all: reading many
   * files of one large directory costs one scan, not one per file.
   */
  private async find(dir: Inode, name: Uint8Array): Promise<RawEntry | null> {
    const key = latin1(name);
    const cached = this.names.get(dir.ino);
    if (cached) {
      this.names.delete(dir.ino);
      this.names.set(dir.ino, cached);
      return cached.entries.get(key) ?? null;
    }
    const cursor = new DirCursor(this.fs, dir);
    let all: Map<string, RawEntry> | null = new Map();
    let cost = 0;
    let found: RawEntry | null = null;
    for (let e = await cursor.next(); e; e = await cursor.next()) {
      if (!found && sameBytes(e.name, name)) {
        found = e;
        if (!all) break;
      }
      if (all) {
        const k = latin1(e.name);
        if (!all.has(k)) all.set(k, e);
        cost += e.name.length + ENTRY_COST;
        if (cost > MAX_CACHED_BYTES) {
          all = null;
          if (found) break;
        }
      }
    }
    if (all) {
      this.names.set(dir.ino, { entries: all, cost });
      this.cachedBytes += cost;
      for (const [ino, kept] of this.names) {
        if (this.cachedBytes <= MAX_CACHED_BYTES || ino === dir.ino) break;
        this.names.delete(ino);
        this.cachedBytes -= kept.cost;
      }
    }
    return found;
  }

  /** A symbolic link's target bytes. */
  async readLink(inode: Inode): Promise<Uint8Array> {
    if (inode.size > MAX_SYMLINK_BYTES) {
      throw badImage(`symbolic link inode ${inode.ino} is ${inode.size} bytes long, above PATH_MAX (${MAX_SYMLINK_BYTES}).`, {
        offset: inode.offset + EXT4_INODE.fields.sizeLo.offset,
        field: 'i_size',
        actual: inode.size,
        expected: `<= ${MAX_SYMLINK_BYTES}`,
      });
    }
    refuseEncrypted(this.fs, inode);
    if (isFastSymlink(this.fs, inode)) return inode.block.slice(0, inode.size);
    const out = new Uint8Array(inode.size);
    const source = inodeSource(this.fs, inode);
    await readExactly(source, out, 0, `ext4 symbolic link inode ${inode.ino}`);
    return out;
  }

  /**
   * The inode `path` names, following symbolic links (the last one too when `followLast`), or null when a component
   * does not exist or is not a directory where one is needed. The walk keeps the chain of directories it went
   * through, so ".." is the physical parent, also after a link.
   */
  async resolve(path: string, followLast = true): Promise<Inode | null> {
    const root = await this.fs.inode(ROOT_INO);
    const stack: Inode[] = [root];
    const pending = components(new TextEncoder().encode(path)).reverse();
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      const dir = stack[stack.length - 1]!;
      if (inodeKind(dir) !== 'directory') return null;
      if (isDot(part)) continue;
      if (isDotDot(part)) {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const entry = await this.find(dir, part);
      if (!entry) return null;
      const inode = await this.fs.inode(entry.ino);
      if (inodeKind(inode) === 'symlink' && (pending.length > 0 || followLast)) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw badImage(`too many levels of symbolic links (more than ${MAX_SYMLINK_HOPS}) resolving "${path}": the links form a loop.`, {
            path,
            expected: `<= ${MAX_SYMLINK_HOPS} links`,
          });
        }
        const target = await this.readLink(inode);
        if (target.length === 0) return null;
        if (target[0] === SLASH) stack.length = 1;
        pending.push(...components(target).reverse());
        continue;
      }
      stack.push(inode);
    }
    return stack[stack.length - 1]!;
  }

  async list(path: string): Promise<DirEntry[] | null> {
    const dir = await this.resolve(path);
    if (!dir || inodeKind(dir) !== 'directory') return null;
    const decoder = new TextDecoder();
    const out: DirEntry[] = [];
    const cursor = new DirCursor(this.fs, dir);
    for (let e = await cursor.next(); e; e = await cursor.next()) {
      if (isDot(e.name) || isDotDot(e.name)) continue;
      let kind: InodeKind | null = null;
      if (e.fileType === FT.directory) kind = 'directory';
      else if (e.fileType >= 3 && e.fileType <= 6) kind = 'other';
      let size = 0;
      if (kind === null) {
        const inode = await this.fs.inode(e.ino);
        kind = inodeKind(inode);
        size = kind === 'file' || kind === 'symlink' ? inode.size : 0;
      }
      out.push({ name: decoder.decode(e.name), kind, size });
    }
    return out;
  }

  /** The regular file at `path` (after links), or null when there is none or it is not a regular file. */
  private async regularFile(path: string): Promise<Inode | null> {
    const inode = await this.resolve(path);
    return inode && inodeKind(inode) === 'file' ? inode : null;
  }

  async readFile(path: string, maxBytes: number): Promise<Uint8Array | null> {
    const inode = await this.regularFile(path);
    if (!inode) return null;
    if (inode.size > maxBytes) {
      throw new VerityError('E_UNSUPPORTED', `ext4: ${path} is ${inode.size} bytes, above the ${maxBytes}-byte limit for reading it whole.`, {
        data: { path, field: 'i_size', actual: inode.size, expected: `<= ${maxBytes}` },
      });
    }
    const out = new Uint8Array(inode.size);
    await readExactly(inodeSource(this.fs, inode), out, 0, `ext4 ${path}`);
    return out;
  }

  async open(path: string): Promise<ByteSource | null> {
    const inode = await this.regularFile(path);
    return inode ? inodeSource(this.fs, inode) : null;
  }
}

/** Opens an ext2, ext3 or ext4 filesystem: reads and checks its superblock; everything else is read on demand. */
export async function openExt4(source: ByteSource): Promise<Ext4Volume> {
  return new Ext4Volume(await Ext4Filesystem.open(source));
}
