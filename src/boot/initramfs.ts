/**
 * An initramfs as the kernel unpacks it (init/initramfs.c, unpack_to_rootfs; the format is described in
 * Documentation/driver-api/early-userspace/buffer-format.rst): a sequence of segments, each either uncompressed newc
 * cpio data starting on a multiple of 4, zero padding, or one compressed stream (a gzip member, a zstd frame, an xz
 * stream) whose output is itself newc cpio data. The dracut and mkinitcpio layout is an uncompressed "early" archive
 * (CPU microcode) followed by a compressed one; ukify and systemd-stub concatenate several.
 *
 * The archives are replayed onto a model of the tree the kernel builds, by name: a later entry replaces an earlier
 * one, and hard links (entries with c_nlink >= 2 and the same c_maj, c_min and c_ino, until the next TRAILER!!!) share
 * one set of contents. GNU cpio and the kernel's gen_init_cpio put a hard-linked file's data on its last name, with
 * size 0 on the others; the kernel writes through whichever name carries data.
 *
 * Only the contents of the files asked for are kept; everything else streams through a window, so memory is bounded
 * by the wanted files and the limits below, never by the size of the decompressed initramfs.
 *
 * Not modelled: the kernel's path walk. Names are taken as stored (normalised lexically), so a file under a directory
 * that is a symbolic link in the archive (`lib -> usr/lib`) is found under the name it was stored with; symbolic
 * links are returned for callers that resolve paths.
 */
import { VerityError } from '../errors.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { CpioParser, type CpioEntry, type CpioHandler, type CpioKind } from './cpio.js';
import { compressionOf, decompressStream, DEFAULT_MAX_WINDOW_BYTES, type Compression } from './decompress.js';

export interface InitramfsLimits {
  /** The largest wanted file kept; a larger one is refused (E_UNSUPPORTED) before its data is read. Default 64 MiB. */
  maxFileBytes?: number;
  /** The most bytes of wanted files kept at once. Default 256 MiB. */
  maxTotalBytes?: number;
  /** The most decompressed bytes processed, over all compressed segments (compression bombs). Default 4 GiB. */
  maxExpandedBytes?: number;
  /** The largest zstd window allocated. Default 128 MiB. */
  maxWindowBytes?: number;
}

export interface InitramfsOptions extends InitramfsLimits {
  /** Which names (normalised, without a leading '/') to keep; all when absent. */
  wanted?: (name: string) => boolean;
}

export interface InitramfsSegment {
  /** Where the segment starts in the initramfs and how many bytes it occupies there. */
  offset: number;
  length: number;
  compression: 'none' | Compression;
  /** Bytes of cpio data it holds (its decompressed size, or `length`). */
  cpioBytes: number;
  /** Archives (trailers) and entries read in it. */
  archives: number;
  entries: number;
}

export interface Initramfs {
  /** The wanted regular files as the unpacked tree holds them, by name. */
  files: Map<string, Uint8Array>;
  /** The wanted symbolic links: name → target as stored. */
  symlinks: Map<string, string>;
  /** The wanted directories and other entries (devices, FIFOs, sockets), by name. */
  others: Map<string, Exclude<CpioKind, 'file' | 'symlink'>>;
  segments: InitramfsSegment[];
}

export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_EXPANDED_BYTES = 4 * 1024 * 1024 * 1024;
/** Names of hard-link groups and wanted entries tracked at once. */
const MAX_TRACKED_NAMES = 1_000_000;
const CHUNK = 64 * 1024;
const DIGIT_ZERO = 0x30;

function checkLimit(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!(Number.isSafeInteger(v) && v >= 0)) {
    throw new VerityError('E_PARAM', `${what} must be a non-negative integer, not ${v}.`, { data: { field: what, actual: String(v) } });
  }
  return v;
}

/** One inode of the unpacked tree. */
interface Node {
  kind: CpioKind;
  /** Whether a wanted name refers to it: only then are its contents kept. */
  watched: boolean;
  /** Contents (files) or target (symbolic links) when watched; null otherwise. */
  data: Uint8Array | null;
  /** Contents were written while unwatched, so they are not known. */
  lost: boolean;
  /** Its names, as far as they are tracked. */
  names: Set<string>;
}

/** Applies entries to the tree model, as init/initramfs.c's do_name, maybe_link and do_symlink do. */
class Rootfs implements CpioHandler {
  /** Every tracked name: those of watched inodes and of hard-link groups. */
  readonly owner = new Map<string, Node>();
  /** The kernel's link hash: (c_maj, c_min, c_ino, file type) → the inode its first name created. */
  private links = new Map<string, Node>();
  private kept = 0;
  /** The watched inode whose body is being collected, and where. */
  private target: { node: Node; buffer: Uint8Array; filled: number; entry: CpioEntry } | null = null;

  constructor(
    private readonly wanted: (name: string) => boolean,
    private readonly maxFileBytes: number,
    private readonly maxTotalBytes: number,
  ) {}

  entry(e: CpioEntry): boolean {
    if (e.name === '') return false; // "." or "/": the root, which exists.
    const w = this.wanted(e.name);
    const h = e.header;
    if (e.kind === 'file') {
      const key = h.nlink >= 2 ? `${h.devmajor}:${h.devminor}:${h.ino}` : null;
      const first = key === null ? undefined : this.links.get(key);
      let node: Node;
      if (first) {
        // A further name of a hard link: the name is replaced by a link to the first name's inode.
        this.detach(e.name);
        node = first;
      } else {
        // A new file, or an existing regular file opened with O_TRUNC: its inode (and its other names) is reused.
        const old = this.owner.get(e.name);
        if (old && old.kind === 'file') node = old;
        else {
          this.detach(e.name);
          node = { kind: 'file', watched: false, data: null, lost: false, names: new Set() };
        }
        if (key !== null) this.links.set(key, node);
      }
      this.attach(e.name, node, w || key !== null);
      if (w) this.watch(node, e);
      // A linked name without data leaves the inode as it is (no O_TRUNC); any other entry writes it whole.
      if (first && e.size === 0) return false;
      return this.write(node, e);
    }
    if (e.kind === 'symlink') {
      this.detach(e.name); // clean_path(name, 0): whatever was there goes.
      if (!w) return false;
      const node: Node = { kind: 'symlink', watched: true, data: null, lost: false, names: new Set() };
      this.attach(e.name, node, true);
      return this.write(node, e);
    }
    // Directories and special files: an existing entry of another type is removed (clean_path); mkdir and mknod
    // keep an existing one of the same type.
    const old = this.owner.get(e.name);
    if (old && old.kind === e.kind) return false;
    this.detach(e.name);
    if (w) this.attach(e.name, { kind: e.kind, watched: true, data: null, lost: false, names: new Set() }, true);
    return false;
  }

  body(chunk: Uint8Array): void {
    const t = this.target!;
    t.buffer.set(chunk, t.filled);
    t.filled += chunk.length;
  }

  bodyEnd(): void {
    const t = this.target!;
    this.target = null;
    this.setData(t.node, t.buffer);
  }

  trailer(): void {
    // free_hash(): hard links do not reach across archives.
    this.links = new Map();
  }

  /** The contents of `node` become `e`'s body: collected when watched, else forgotten. */
  private write(node: Node, e: CpioEntry): boolean {
    if (!node.watched) {
      node.lost = e.size > 0;
      return false;
    }
    if (e.kind === 'file' && e.size > this.maxFileBytes) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `"${e.name}" in the initramfs is ${e.size} bytes, larger than the ${this.maxFileBytes} bytes allowed for one file.`,
        { data: { offset: e.offset, field: 'c_filesize', expected: `<= ${this.maxFileBytes}`, actual: e.size, path: e.name } },
      );
    }
    const old = node.data?.length ?? 0;
    if (this.kept - old + e.size > this.maxTotalBytes) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `The wanted initramfs files take more than the ${this.maxTotalBytes} bytes allowed (at "${e.name}", ${e.size} bytes).`,
        { data: { offset: e.offset, field: 'maxTotalBytes', expected: `<= ${this.maxTotalBytes}`, actual: this.kept - old + e.size, path: e.name } },
      );
    }
    node.lost = false;
    const buffer = new Uint8Array(e.size);
    if (e.size === 0) {
      this.setData(node, buffer);
      return false;
    }
    this.target = { node, buffer, filled: 0, entry: e };
    return true;
  }

  private setData(node: Node, data: Uint8Array): void {
    this.kept += data.length - (node.data?.length ?? 0);
    node.data = data;
  }

  /** Makes `name` refer to `node`, tracking the name when asked. */
  private attach(name: string, node: Node, track: boolean): void {
    if (!track && !node.watched) return;
    if (!this.owner.has(name) && this.owner.size >= MAX_TRACKED_NAMES) {
      throw new VerityError('E_UNSUPPORTED', `The initramfs has more than ${MAX_TRACKED_NAMES} hard-linked or wanted names.`, {
        data: { field: 'entries', expected: `<= ${MAX_TRACKED_NAMES}` },
      });
    }
    this.owner.set(name, node);
    node.names.add(name);
  }

  /** Unlinks `name`; an inode left without names no longer holds memory. */
  private detach(name: string): void {
    const node = this.owner.get(name);
    if (!node) return;
    this.owner.delete(name);
    node.names.delete(name);
    if (node.names.size === 0 && node.data) {
      this.kept -= node.data.length;
      node.data = null;
    }
  }

  /** A wanted name refers to `node`: from now on its contents are kept. */
  private watch(node: Node, e: CpioEntry): void {
    if (node.watched) return;
    node.watched = true;
    if (node.lost && !(e.size > 0)) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `"${e.name}" is a hard link to data that came earlier under another name, which was not kept ` +
          '(GNU cpio and gen_init_cpio put the data on the last name); ask for that name too.',
        { data: { offset: e.offset, path: e.name } },
      );
    }
  }

  /** The wanted entries of the final tree. */
  result(): Pick<Initramfs, 'files' | 'symlinks' | 'others'> {
    const files = new Map<string, Uint8Array>();
    const symlinks = new Map<string, string>();
    const others = new Map<string, Exclude<CpioKind, 'file' | 'symlink'>>();
    const decoder = new TextDecoder();
    for (const [name, node] of this.owner) {
      if (!node.watched || !this.wanted(name)) continue;
      if (node.kind === 'file') files.set(name, node.data ?? new Uint8Array(0));
      else if (node.kind === 'symlink') symlinks.set(name, decoder.decode(node.data ?? new Uint8Array(0)));
      else others.set(name, node.kind);
    }
    return { files, symlinks, others };
  }
}

async function readUpTo(source: ByteSource, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(Math.max(0, Math.min(length, source.size - position)));
  await readExactly(source, out, position, 'initramfs');
  return out;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

/**
 * Unpacks the initramfs in `source` as the kernel would, keeping the entries `wanted` selects. Throws E_BAD_IMAGE
 * for malformed data, E_TRUNCATED when it ends inside an entry or a compressed stream, and E_UNSUPPORTED for a
 * compression it does not decode (bzip2, lzma, lzo, lz4) or past a limit.
 */
export async function readInitramfs(source: ByteSource, options: InitramfsOptions = {}): Promise<Initramfs> {
  const maxFileBytes = checkLimit(options.maxFileBytes, DEFAULT_MAX_FILE_BYTES, 'maxFileBytes');
  const maxTotalBytes = checkLimit(options.maxTotalBytes, DEFAULT_MAX_TOTAL_BYTES, 'maxTotalBytes');
  const maxExpanded = checkLimit(options.maxExpandedBytes, DEFAULT_MAX_EXPANDED_BYTES, 'maxExpandedBytes');
  const maxWindowBytes = checkLimit(options.maxWindowBytes, DEFAULT_MAX_WINDOW_BYTES, 'maxWindowBytes');
  const rootfs = new Rootfs(options.wanted ?? (() => true), maxFileBytes, maxTotalBytes);
  const segments: InitramfsSegment[] = [];
  let expanded = 0;
  let pos = 0;
  while (pos < source.size) {
    const head = await readUpTo(source, pos, CHUNK);
    let zeros = 0;
    while (zeros < head.length && head[zeros] === 0) zeros++;
    pos += zeros;
    if (zeros === head.length) continue;
    if (head[zeros] === DIGIT_ZERO && pos % 4 === 0) {
      const start = pos;
      const parser = new CpioParser(rootfs, { offset: start, end: source.size, what: `initramfs cpio data at offset ${start}` });
      while (pos < source.size) {
        const chunk = await readUpTo(source, pos, CHUNK);
        const took = parser.write(chunk);
        pos += took;
        if (took < chunk.length) break;
      }
      parser.finish();
      segments.push({ offset: start, length: pos - start, compression: 'none', cpioBytes: pos - start, archives: parser.archiveCount, entries: parser.entryCount });
      continue;
    }
    const magic = await readUpTo(source, pos, 2);
    const kind = compressionOf(magic);
    if (!kind) {
      const aligned = head[zeros] === DIGIT_ZERO ? ' (cpio data must start on a multiple of 4)' : '';
      throw new VerityError(
        'E_BAD_IMAGE',
        `Junk in the initramfs at offset ${pos}: ${hex(magic)} starts neither a cpio archive nor a known compressed stream${aligned}.`,
        { data: { offset: pos, field: 'magic', actual: hex(magic) } },
      );
    }
    const what = `initramfs ${kind} stream at offset ${pos}`;
    const parser = new CpioParser(rootfs, { offset: 0, what: `the cpio data of the ${what}` });
    const result = await decompressStream(
      kind,
      source,
      pos,
      (chunk) => {
        const took = parser.write(chunk);
        if (took < chunk.length) {
          throw new VerityError('E_BAD_IMAGE', `Junk within the ${what}: byte ${chunk[took]} after the cpio data.`, {
            data: { offset: pos, field: 'cpio data', actual: chunk[took]! },
          });
        }
      },
      { maxOutput: maxExpanded - expanded, maxWindowBytes, what },
    );
    parser.finish();
    expanded += result.outputBytes;
    segments.push({
      offset: pos,
      length: result.compressedBytes,
      compression: kind,
      cpioBytes: result.outputBytes,
      archives: parser.archiveCount,
      entries: parser.entryCount,
    });
    pos += result.compressedBytes;
  }
  return { ...rootfs.result(), segments };
}

/** The wanted regular files of the initramfs in `source`, by name (see readInitramfs). */
export async function findFiles(source: ByteSource, wanted: (name: string) => boolean, limits: InitramfsLimits = {}): Promise<Map<string, Uint8Array>> {
  return (await readInitramfs(source, { ...limits, wanted })).files;
}

