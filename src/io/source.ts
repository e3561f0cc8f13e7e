/**
 * Byte sources and sinks: the only I/O the pure core sees. Node files, browser Blobs or in-memory arrays implement
 * them; the core never imports `node:*`.
 */
import { VerityError } from '../errors.js';

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Reads up to `dst.length` bytes at `position` into `dst`; returns how many were read (fewer only at the end). */
  read(dst: Uint8Array, position: number): Promise<number>;
  /**
   * Set when the bytes ultimately come from a source that is cheap to read only front to back (a compressed zip
   * entry, stdin): says where they lie in it, so a pass can visit them in that order (io/sequential.ts).
   */
  readonly sequential?: SequentialMap;
  /**
   * Set when the source knows, without reading, that some of its bytes are zero (the unallocated blocks of a disk
   * image): the parts of [offset, offset + length) it vouches for, sorted by `at`. Bytes outside them may still be
   * zero. A pass skips reading and hashing what is listed (tree/build.ts); `read` still returns zeros there.
   */
  knownZero?(offset: number, length: number): ByteRange[];
  /**
   * Set when the source's bytes lie as they are in files this process holds open (a raw image, a partition of one):
   * where [offset, offset + length) lies, as spans in order that cover it exactly, or undefined when some of it does
   * not lie in a file as is (a container's metadata, a replayed log). A thread of this process can then read the
   * bytes by itself (threads/hash-pool.ts), so the calling thread does not have to. Valid while the source is open.
   */
  fileSpans?(offset: number, length: number): FileSpan[] | undefined;
}

/** `length` bytes at offset `at` of the file open as descriptor `fd`; `path` names it in errors. */
export interface FileSpan {
  fd: number;
  at: number;
  length: number;
  path: string;
}

/** The bytes [at, at + length) of a source. */
export interface ByteRange {
  at: number;
  length: number;
}

/** `length` bytes at offset `at` of a source are the bytes at offset `from` of its sequential origin. */
export interface OriginRun extends ByteRange {
  from: number;
}

export interface SequentialMap {
  /** The front-to-back source the bytes come from (reading it backwards is slow or impossible). */
  readonly origin: ByteSource;
  /**
   * Where the bytes [offset, offset + length) come from, sorted by origin offset. Bytes no run covers read as zeros
   * (unallocated blocks of a disk image).
   */
  runs(offset: number, length: number): OriginRun[];
  /** Applies what a layer changes in origin bytes (a replayed VHDX log) to `bytes` read at origin offset `from`. */
  patch?(bytes: Uint8Array, from: number): void;
}

export interface ByteSink {
  /** Writes all of `src` at `position`. */
  write(src: Uint8Array, position: number): Promise<void>;
}

/** A sink that can read back what it holds (short reads past its end), for read-modify-write. */
export interface ReadWriteSink extends ByteSink {
  read(dst: Uint8Array, position: number): Promise<number>;
}

/** The part [offset, offset + length) of the bytes that `spans` cover in order, as spans. */
export function spansWithin(spans: readonly FileSpan[], offset: number, length: number): FileSpan[] {
  const out: FileSpan[] = [];
  let base = 0;
  for (const span of spans) {
    const from = Math.max(offset, base);
    const to = Math.min(offset + length, base + span.length);
    if (from < to) out.push({ ...span, at: span.at + (from - base), length: to - from });
    base += span.length;
    if (base >= offset + length) break;
  }
  if (out.reduce((n, s) => n + s.length, 0) !== length) {
    throw new VerityError('E_INTERNAL', `File spans of ${base} bytes do not cover ${length} bytes at ${offset}.`);
  }
  return out;
}

/**
 * Where the byte ranges `ranges` of `file` (in order) lie in files, as spans (adjacent ones merged), or undefined when
 * `file` cannot say for one of them: how a container maps its own file spans through the file it reads.
 */
export function spansOf(file: ByteSource, ranges: Iterable<ByteRange>): FileSpan[] | undefined {
  if (!file.fileSpans) return undefined;
  const out: FileSpan[] = [];
  for (const range of ranges) {
    const found = file.fileSpans(range.at, range.length);
    if (!found) return undefined;
    for (const span of found) {
      const last = out.at(-1);
      if (last && last.fd === span.fd && last.at + last.length === span.at) last.length += span.length;
      else out.push({ ...span });
    }
  }
  return out;
}

/** Fills `dst` from `position` or throws E_TRUNCATED naming `what`. */
export async function readExactly(source: ByteSource, dst: Uint8Array, position: number, what: string): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const n = await source.read(dst.subarray(done), position + done);
    if (n <= 0) {
      throw new VerityError(
        'E_TRUNCATED',
        `${what} ended early: needed ${dst.length} bytes at offset ${position}, got ${done}.`,
      );
    }
    done += n;
  }
}

/** Fills `dst` from `position` of `source`; what lies past its end reads as zeros (a device that ends early). */
export async function readOrZeros(source: Pick<ByteSource, 'read'>, dst: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const n = await source.read(dst.subarray(done), position + done);
    if (n <= 0) break;
    done += n;
  }
  dst.fill(0, done);
}

/** An in-memory source, for tests and for callers that already hold the bytes. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    async read(dst, position) {
      if (position >= bytes.length) return 0;
      const chunk = bytes.subarray(position, Math.min(bytes.length, position + dst.length));
      dst.set(chunk);
      return chunk.length;
    },
  };
}

/** An in-memory sink that grows as written, for tests and browsers. */
export class MemorySink implements ReadWriteSink {
  private data = new Uint8Array(0);
  private length = 0;

  async write(src: Uint8Array, position: number): Promise<void> {
    const end = position + src.length;
    if (end > this.data.length) {
      const grown = new Uint8Array(Math.max(end, this.data.length * 2));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    this.data.set(src, position);
    this.length = Math.max(this.length, end);
  }

  async read(dst: Uint8Array, position: number): Promise<number> {
    if (position >= this.length) return 0;
    const chunk = this.data.subarray(position, Math.min(this.length, position + dst.length));
    dst.set(chunk);
    return chunk.length;
  }

  get bytes(): Uint8Array {
    return this.data.subarray(0, this.length);
  }
}
