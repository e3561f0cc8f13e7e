/**
 * Sources that can only be read front to back: a deflated zip entry, a pipe on stdin.
 *
 * `streamSource` gives such a stream the random-access `ByteSource` interface. Forward reads skip ahead; a read behind
 * the stream position is served from the last few hundred KiB kept, or else by starting the stream again from the
 * top, which only a re-openable stream (a zip entry) allows. Small structures (headers, partition tables, a
 * superblock) are read this way. Bulk data is read in origin order by the passes that consult `sequential.runs`.
 *
 * Re-reading is bounded: all the restarts of one source together may decompress at most `budget` extra bytes
 * (default: twice its size plus 256 MiB), so a layout that would need a restart per block (a dynamic VHD in a
 * deflated entry) fails with a clear error instead of running for hours.
 */
import { VerityError } from '../errors.js';
import type { ByteSource, SequentialMap } from './source.js';

export interface ByteStream {
  /** The length; a stream that ends before it or runs past it is an error. */
  readonly size: number;
  /** False when `size` is only an upper bound (a pipe): ending early is then reported without it. */
  readonly declared?: boolean;
  /** What to call the stream in messages ("zip entry rootfs.img", "stdin"). */
  readonly name: string;
  /** A new pass over the bytes from the start. Called again for each restart, when `reopenable`. */
  open(): AsyncIterable<Uint8Array>;
  readonly reopenable: boolean;
}

export interface StreamSource extends ByteSource {
  readonly sequential: SequentialMap;
  /** Passes started over the stream so far (1 for a single front-to-back read). */
  readonly passes: number;
}

const HISTORY_BYTES = 512 * 1024;

export function streamSource(stream: ByteStream, options: { budget?: number } = {}): StreamSource {
  return new FrontToBack(stream, options.budget ?? 2 * stream.size + 256 * 1024 * 1024);
}

class FrontToBack implements StreamSource {
  readonly size: number;
  readonly sequential: SequentialMap;
  passes = 0;
  private iterator: AsyncIterator<Uint8Array> | null = null;
  /** Stream offset of the next byte the iterator yields. */
  private position = 0;
  /** The most recent chunks (the unread tail of the last one included), oldest first, ending at `position`. */
  private history: Uint8Array[] = [];
  private historyBytes = 0;
  private reread = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly stream: ByteStream,
    private readonly budget: number,
  ) {
    if (!Number.isSafeInteger(stream.size) || stream.size < 0) {
      throw new VerityError('E_BAD_IMAGE', `${stream.name} declares an invalid size ${stream.size}.`);
    }
    this.size = stream.size;
    this.sequential = { origin: this, runs: (at, length) => (length > 0 ? [{ at, length, from: at }] : []) };
  }

  read(dst: Uint8Array, position: number): Promise<number> {
    // One read at a time: callers such as a header parser may issue several at once.
    const run = this.queue.then(() => this.readNow(dst, position));
    this.queue = run.catch(() => {});
    return run;
  }

  private async readNow(dst: Uint8Array, position: number): Promise<number> {
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new VerityError('E_PARAM', `Invalid read position ${position}.`);
    }
    if (position >= this.size) return 0;
    const n = Math.min(dst.length, this.size - position);
    let done = 0;
    if (position < this.position - this.historyBytes) await this.restart(position);
    // Serve what the history still holds.
    if (position < this.position) {
      let chunkStart = this.position - this.historyBytes;
      for (const chunk of this.history) {
        const from = Math.max(position + done, chunkStart);
        const until = Math.min(position + n, chunkStart + chunk.length);
        if (from < until) {
          dst.set(chunk.subarray(from - chunkStart, until - chunkStart), from - position);
          done = until - position;
        }
        chunkStart += chunk.length;
      }
    }
    while (done < n) {
      const chunk = await this.next();
      const chunkStart = this.position - chunk.length;
      const from = position + done;
      if (chunkStart + chunk.length <= from) continue; // skipping ahead
      const until = Math.min(position + n, this.position);
      dst.set(chunk.subarray(from - chunkStart, until - chunkStart), done);
      done = until - position;
    }
    return n;
  }

  /** The next chunk of the stream; `position` then points past it and it is the newest history entry. */
  private async next(): Promise<Uint8Array> {
    if (!this.iterator) await this.restart(0);
    const r = await this.pull();
    if (r.done) {
      throw new VerityError(
        'E_TRUNCATED',
        `${this.stream.name} ended after ${this.position} bytes` +
          (this.stream.declared === false ? '.' : `; it declares ${this.size}.`),
      );
    }
    const chunk = r.value;
    if (this.position + chunk.length > this.size) {
      throw new VerityError('E_BAD_IMAGE', `${this.stream.name} holds more than the ${this.size} bytes it declares.`);
    }
    this.position += chunk.length;
    this.history.push(chunk);
    this.historyBytes += chunk.length;
    while (this.history.length > 1 && this.historyBytes - this.history[0]!.length >= HISTORY_BYTES) {
      this.historyBytes -= this.history.shift()!.length;
    }
    if (this.position === this.size) await this.expectEnd();
    return chunk;
  }

  /**
   * A stream that runs on past its declared size lies about it (a zip bomb, a damaged entry), however few of the
   * extra bytes a reader wants: say so whether or not a chunk happened to end exactly at the declared size.
   */
  private async expectEnd(): Promise<void> {
    for (;;) {
      const r = await this.pull();
      if (r.done) return;
      if (r.value.length > 0) {
        throw new VerityError('E_BAD_IMAGE', `${this.stream.name} holds more than the ${this.size} bytes it declares.`);
      }
    }
  }

  private pull(): Promise<IteratorResult<Uint8Array>> {
    return this.iterator!.next().catch((e: unknown) => {
      throw e instanceof VerityError
        ? e
        : new VerityError('E_IO', `Reading ${this.stream.name} failed: ${(e as Error).message}`, { cause: e });
    });
  }

  private async restart(position: number): Promise<void> {
    if (this.iterator) {
      if (!this.stream.reopenable) {
        throw new VerityError(
          'E_UNSUPPORTED',
          `${this.stream.name} cannot be read again, but byte ${position} was needed after byte ${this.position} had ` +
            'passed. Give the image as a file instead.',
        );
      }
      this.reread += this.position;
      if (this.reread > this.budget) {
        throw new VerityError(
          'E_UNSUPPORTED',
          `${this.stream.name} is compressed and its layout needs it read out of order: the ${this.passes} passes so ` +
            `far re-read ${this.reread} bytes. Extract it, or store it in the zip uncompressed.`,
        );
      }
      await this.iterator.return?.();
    }
    this.iterator = this.stream.open()[Symbol.asyncIterator]();
    this.passes++;
    this.position = 0;
    this.history = [];
    this.historyBytes = 0;
  }
}
