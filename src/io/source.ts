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
