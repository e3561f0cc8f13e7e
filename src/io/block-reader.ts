import { VerityError } from '../errors.js';
import type { ByteRange, ByteSource, FileSpan } from './source.js';
import { readExactly } from './source.js';

export interface BlockChunk {
  /** Index of the first block in this chunk. */
  first: number;
  count: number;
  /** `count * blockSize` bytes; valid only until the next chunk is requested. Empty when `zero` is set. */
  bytes: Uint8Array;
  /** The source knows these blocks are zero (ByteSource.knownZero): they were not read. */
  zero?: boolean;
  /** Where these blocks lie in files (ByteSource.fileSpans), with `files` set: they were not read. */
  spans?: FileSpan[];
}

/** Default bytes per chunk: large enough to amortise calls, small enough to stay in L2 (docs/performance.md). */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

/**
 * Bytes of the source asked about known zeros at once: the answer's length is bounded by this window, never by the
 * source's size, and a window costs one lookup in an image's block table.
 */
const ZERO_WINDOW_BYTES = 256 << 20;

export interface ReadOptions {
  /** Bytes per chunk (rounded down to whole blocks, at least one). */
  chunkBytes?: number;
  /** Where the two chunk buffers come from (e.g. memory shared with hashing threads). */
  allocate?: (bytes: number) => Uint8Array;
  /**
   * Yields the whole blocks the source knows are zero (ByteSource.knownZero) as chunks with `zero` set and no bytes,
   * without reading them. A consumer that sets this must handle such chunks.
   */
  skipKnownZero?: boolean;
  /**
   * Yields the blocks that lie in files (ByteSource.fileSpans) as chunks of up to `chunkBytes` with `spans` set and
   * no bytes, without reading them: for a consumer whose threads read them by themselves. Other blocks are read.
   */
  files?: { chunkBytes: number };
}

const NO_BYTES = new Uint8Array(0);

interface Segment {
  first: number;
  count: number;
  zero: boolean;
  spans?: FileSpan[];
}

/**
 * Reads blocks [0, blocks) of `source` in chunks, into two reused buffers: the next chunk is read while the
 * consumer works on the current one. No allocation per block or per chunk.
 */
export async function* readBlocks(
  source: ByteSource,
  blockSize: number,
  blocks: number,
  what: string,
  options: ReadOptions = {},
): AsyncGenerator<BlockChunk> {
  const perChunk = Math.max(1, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK_BYTES) / blockSize));
  if (blocks <= 0) return;
  const size = Math.min(blocks, perChunk) * blockSize;
  const allocate = options.allocate ?? ((n: number) => new Uint8Array(n));
  // Allocated at the first read: a pass whose blocks all lie in files reads nothing here.
  let buffers: Uint8Array[] | undefined;
  const spans = options.files && source.fileSpans?.bind(source);
  const perFileChunk = spans ? Math.max(perChunk, Math.floor(options.files!.chunkBytes / blockSize)) : perChunk;
  const planned = plan(source, blockSize, blocks, perFileChunk, options.skipKnownZero === true);
  const segments = spans ? inFiles(planned, spans, blockSize, perChunk) : planned;
  // Consecutive reads alternate between the buffers: when one starts, the consumer has asked for the chunk before
  // it, so it no longer holds the chunk two reads back, which used the same buffer. Zero chunks use none.
  let slot = 0;
  const start = (s: Segment): Promise<BlockChunk> => {
    if (s.zero) return Promise.resolve({ first: s.first, count: s.count, bytes: NO_BYTES, zero: true });
    if (s.spans) return Promise.resolve({ first: s.first, count: s.count, bytes: NO_BYTES, spans: s.spans });
    buffers ??= [allocate(size), allocate(size)];
    const bytes = buffers[slot]!.subarray(0, s.count * blockSize);
    slot ^= 1;
    return readExactly(source, bytes, s.first * blockSize, what).then(() => ({ first: s.first, count: s.count, bytes }));
  };
  // The read-ahead in flight, if any. A consumer that stops early must not return while it can still write into a
  // buffer: with buffers shared across passes (a worker pool's arena) it would land in the next pass's data.
  let inflight: Promise<BlockChunk> | undefined = start(segments.next().value as Segment);
  inflight.catch(() => {});
  try {
    for (;;) {
      const chunk = await inflight!;
      inflight = undefined;
      const next = segments.next();
      if (!next.done) {
        inflight = start(next.value);
        // Marks a failed read-ahead as handled while the consumer works; it still throws when awaited above.
        inflight.catch(() => {});
      }
      yield chunk;
      if (next.done) return;
    }
  } finally {
    await inflight?.catch(() => {});
  }
}

/** The segments of `planned` with where they lie in files, or cut into chunks of `perChunk` blocks to read. */
function* inFiles(
  planned: Iterable<Segment>,
  spans: (offset: number, length: number) => FileSpan[] | undefined,
  blockSize: number,
  perChunk: number,
): Generator<Segment> {
  for (const s of planned) {
    const found = s.zero ? undefined : spans(s.first * blockSize, s.count * blockSize);
    if (s.zero || found) {
      yield found ? { ...s, spans: found } : s;
      continue;
    }
    for (let p = s.first, end = s.first + s.count; p < end; p += perChunk) {
      yield { first: p, count: Math.min(perChunk, end - p), zero: false };
    }
  }
}

/** Blocks [0, blocks) as chunks to read (at most `perChunk` blocks) and, with `skip`, runs of known-zero blocks. */
function* plan(source: ByteSource, blockSize: number, blocks: number, perChunk: number, skip: boolean): Generator<Segment> {
  const zeros = skip ? source.knownZero?.bind(source) : undefined;
  const window = zeros ? Math.max(perChunk, Math.floor(ZERO_WINDOW_BYTES / blockSize)) : blocks;
  for (let w = 0; w < blocks; w += window) {
    const end = Math.min(blocks, w + window);
    let p = w;
    if (zeros) {
      for (const z of zeroBlocks(zeros(w * blockSize, (end - w) * blockSize), blockSize, w, end)) {
        for (; p < z.first; p += Math.min(perChunk, z.first - p)) yield { first: p, count: Math.min(perChunk, z.first - p), zero: false };
        yield { first: z.first, count: z.count, zero: true };
        p = z.first + z.count;
      }
    }
    for (; p < end; p += Math.min(perChunk, end - p)) yield { first: p, count: Math.min(perChunk, end - p), zero: false };
  }
}

/**
 * The whole blocks of [first, end) inside `ranges` (a source's known-zero answer), as sorted runs. Ranges that touch
 * are merged first, so a block split between two of them still counts. A source that answers out of order has a bug.
 */
function zeroBlocks(ranges: ByteRange[], blockSize: number, first: number, end: number): Segment[] {
  const out: Segment[] = [];
  const lo = first * blockSize;
  const hi = end * blockSize;
  let runAt = -1;
  let runEnd = -1;
  const close = () => {
    const a = Math.ceil(runAt / blockSize);
    const b = Math.floor(runEnd / blockSize);
    if (a < b) out.push({ first: a, count: b - a, zero: true });
  };
  for (const r of ranges) {
    const at = Math.max(lo, r.at);
    const until = Math.min(hi, r.at + r.length);
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(until)) {
      throw new VerityError('E_INTERNAL', `A source named known-zero bytes at ${r.at} (${r.length} bytes): not a byte range.`);
    }
    if (at >= until) continue;
    if (at < runEnd) throw new VerityError('E_INTERNAL', `A source named known-zero bytes out of order (at ${r.at}).`);
    if (at === runEnd) {
      runEnd = until;
      continue;
    }
    if (runEnd > runAt) close();
    runAt = at;
    runEnd = until;
  }
  if (runEnd > runAt) close();
  return out;
}
