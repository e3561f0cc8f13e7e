import type { ByteSource } from './source.js';
import { readExactly } from './source.js';

export interface BlockChunk {
  /** Index of the first block in this chunk. */
  first: number;
  count: number;
  /** `count * blockSize` bytes; valid only until the next chunk is requested. */
  bytes: Uint8Array;
}

/** Default bytes per chunk: large enough to amortise calls, small enough to stay in L2 (docs/performance.md). */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

export interface ReadOptions {
  /** Bytes per chunk (rounded down to whole blocks, at least one). */
  chunkBytes?: number;
  /** Where the two chunk buffers come from (e.g. memory shared with hashing threads). */
  allocate?: (bytes: number) => Uint8Array;
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
  const size = Math.min(blocks, perChunk) * blockSize;
  const allocate = options.allocate ?? ((n: number) => new Uint8Array(n));
  const buffers = [allocate(size), allocate(size)];
  const start = (first: number, slot: number): Promise<BlockChunk> => {
    const count = Math.min(perChunk, blocks - first);
    const bytes = buffers[slot]!.subarray(0, count * blockSize);
    return readExactly(source, bytes, first * blockSize, what).then(() => ({ first, count, bytes }));
  };
  if (blocks <= 0) return;
  // The read-ahead in flight, if any. A consumer that stops early must not return while it can still write into a
  // buffer: with buffers shared across passes (a worker pool's arena) it would land in the next pass's data.
  let inflight: Promise<BlockChunk> | undefined = start(0, 0);
  inflight.catch(() => {});
  let slot = 0;
  try {
    for (;;) {
      const chunk = await inflight!;
      inflight = undefined;
      const next = chunk.first + chunk.count;
      slot ^= 1;
      if (next < blocks) {
        inflight = start(next, slot);
        // Marks a failed read-ahead as handled while the consumer works; it still throws when awaited above.
        inflight.catch(() => {});
      }
      yield chunk;
      if (next >= blocks) return;
    }
  } finally {
    await inflight?.catch(() => {});
  }
}
