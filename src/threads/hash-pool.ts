/**
 * A worker_threads pool that hashes level-0 data blocks across cores without copying them; this file is its public
 * face (createHashPool) and the dispatch of batches.
 *
 * The block reader reads data chunks into buffers from `allocate`: views of one shared arena (arena.ts), so the
 * threads hash the reader's buffers in place. A large batch in the arena is cut into contiguous pieces (about 8 per
 * thread, whole groups of 4 blocks); one message sends the whole batch to every thread, and the threads claim the
 * pieces in order through a shared counter (Atomics.add), so a thread that wakes late or runs on a busy core simply
 * takes fewer. Each thread hashes its pieces where they lie and writes the digests packed into the arena's digest
 * area, at the blocks' positions, so they are in order whichever thread finishes first; once every thread has
 * answered, they are copied (32–64 bytes per block) to the caller's destination at its stride. Small batches and
 * batches outside the arena (the upper tree levels) are hashed on the calling thread with node:crypto, which costs
 * less than a round trip.
 *
 * Data that lies in files (ByteSource.fileSpans: a raw image, a partition of one, a VHDX's present blocks) is not
 * read by the calling thread at all: `fromFiles` sends the batch as file spans, and each thread reads the pieces it
 * claims into its own region of the arena (positional reads of the same descriptors, threads/file-reads.ts) and
 * hashes them there while they are still in its core's cache. Reading then scales with the threads, and the calling
 * thread only places digests and builds the upper levels.
 *
 * The arena's two slots are reused pass after pass, so a pool runs ONE PASS AT A TIME; a buffer used after its slot
 * was handed out again fails the pool with E_INTERNAL rather than hash another pass's data.
 *
 * The other pieces: protocol.ts (the messages and errors between pool and threads), thread-set.ts (the threads and
 * their requests), arena.ts (the arena and its leases), hash-worker.ts and worker-hashing.ts (one thread).
 */
import type { Worker } from 'node:worker_threads';
import { VerityError, type VerityErrorJson } from '../errors.js';
import { digestSize, type HashAlgorithm } from '../format/algorithms.js';
import { MAX_SALT_SIZE } from '../format/params.js';
import type { BlockHasher, BlockHasherOptions, HashEngine } from '../hash/engine.js';
import { KERNEL_CALL_BYTES, KERNEL_LANES } from '../hash/wasm-kernel.js';
import { spansWithin, type FileSpan } from '../io/source.js';
import { type Arena, Arenas, MIN_DISPATCH_BLOCKS, READ_BYTES } from './arena.js';
import { readSpans } from './file-reads.js';
import { nodeCryptoEngine } from './node-crypto-engine.js';
import { type HasherConfig, type HashMessage, internal, type PoolInner, type ToWorker } from './protocol.js';
import { type ThreadSet, takeThreads } from './thread-set.js';

export type { PoolInner } from './protocol.js';
export { MIN_DISPATCH_BLOCKS } from './arena.js';

/** What createHashPool takes. */
export interface HashPoolOptions {
  /** Hashing threads (1–64). */
  threads: number;
  /** What each thread hashes with: node:crypto (every algorithm) or the WASM SIMD kernel (sha256 only). */
  inner: PoolInner;
}

/** Data per thread and batch: two kernel calls' worth (KERNEL_CALL_BYTES). */
const BYTES_PER_THREAD = 2 << 20;
/** The largest batch, whatever the thread count: the arena holds two, so it stays under ~40 MiB. */
const MAX_BATCH_BYTES = 16 << 20;
/**
 * Data per batch that lies in files (BlockHasher.fromFiles). The threads read it themselves, so it needs no slot in
 * the arena, only digests; a larger batch leaves the threads idle less often, waiting for the others to finish.
 */
const FILE_BATCH_BYTES = 32 << 20;
/** Pieces per thread and batch: small enough that the threads finish together, large enough to amortise a claim. */
const PIECES_PER_THREAD = 8;
/** The most bytes in a piece: one kernel call (KERNEL_CALL_BYTES: V8 tiers wasm up only between calls). */
const MAX_PIECE_BYTES = KERNEL_CALL_BYTES;
/** The SIMD kernel hashes 4 blocks at once; pieces are whole groups so only a batch's last call pads lanes. */
const LANES = KERNEL_LANES;
export { MAX_THREADS } from './limits.js';
import { MAX_THREADS } from './limits.js';

/** @internal Test hooks, reached through this symbol so they stay out of the engine's public shape. */
export const POOL_TESTING = Symbol('hash-pool testing');

/** What POOL_TESTING gives tests: fault injection and a look at the threads and the dispatch count. */
export interface PoolTesting {
  /**
   * Makes thread `index` crash (`throw`: an uncaught exception) or exit, as a bug or an OOM kill would, or fail its
   * next hash job (`reject`) with `error`: a VerityError's JSON, or a plain Error's message (FaultMessage).
   */
  fault(index: number, mode: 'throw' | 'exit' | 'reject', error?: VerityErrorJson | string): void;
  readonly threads: readonly Worker[];
  /** Batches the threads have hashed (the rest went to the calling thread). */
  readonly dispatched: number;
}

class HashPool implements HashEngine {
  readonly name: string;
  readonly batchBytes: number;
  readonly inner: PoolInner;
  private readonly workers: ThreadSet;
  private readonly arenas: Arenas;
  private nextConfig = 1;
  /** Dispatched batches run one at a time: they share the arena's digest area. */
  private queue: Promise<unknown> = Promise.resolve();
  private dispatched = 0;

  constructor(options: HashPoolOptions) {
    const { threads, inner } = options;
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      const range = `1 to ${MAX_THREADS}`;
      throw new VerityError('E_PARAM', `Hash pool threads must be an integer from ${range}; got ${threads}.`);
    }
    if (inner !== 'node-crypto' && inner !== 'wasm-simd') {
      throw new VerityError('E_PARAM', `Unknown hash pool inner engine "${String(inner)}".`);
    }
    this.inner = inner;
    this.name = `pool(${inner}×${threads})`;
    this.batchBytes = Math.min(MAX_BATCH_BYTES, threads * BYTES_PER_THREAD);
    // A failed pool drops its arena: nothing is dispatched to threads that are gone.
    this.workers = takeThreads(threads);
    this.workers.start(inner, () => (this.arenas.current = undefined));
    const workers = this.workers;
    const pool = this;
    this.arenas = new Arenas({
      name: this.name,
      inner,
      batchBytes: this.batchBytes,
      threadCount: threads,
      get scratchBytes() {
        return workers.scratchBytes;
      },
      post: (index, message) => workers.post(index, message),
      fail(error): never {
        workers.fail(error);
        throw pool.failure!;
      },
    });
  }

  private get failure(): VerityError | undefined {
    return this.workers.failure;
  }

  supports(algorithm: HashAlgorithm): boolean {
    return this.inner === 'node-crypto' ? true : algorithm === 'sha256';
  }

  allocate(bytes: number): Uint8Array {
    if (this.failure) throw this.failure;
    return this.arenas.allocate(bytes);
  }

  async createBlockHasher(options: BlockHasherOptions): Promise<BlockHasher> {
    const { algorithm, salt, saltPlacement } = options;
    if (!this.supports(algorithm)) {
      throw new VerityError('E_PARAM', `Hash engine ${this.name} does not support ${algorithm}.`);
    }
    if (salt.length > MAX_SALT_SIZE) {
      throw new VerityError('E_PARAM', `Salt is ${salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`);
    }
    await this.workers.whenReady();
    const config: HasherConfig = { id: this.nextConfig++, algorithm, salt: salt.slice(), placement: saltPlacement };
    await Promise.all(this.workers.threads.map((_, i) => this.workers.request(i, { t: 'config', req: 0, config })));
    const local = await nodeCryptoEngine.createBlockHasher({ algorithm, salt: config.salt, saltPlacement });
    const size = digestSize(algorithm);
    return {
      digestSize: size,
      hashBlocks: async (src, blockSize, count, dst, dstOffset, dstStride) => {
        if (this.failure) throw this.failure;
        if (count <= 0) return;
        this.arenas.checkLease(src);
        if (count < MIN_DISPATCH_BLOCKS || !this.arenas.locate(src, blockSize * count)) {
          return local.hashBlocks(src, blockSize, count, dst, dstOffset, dstStride);
        }
        if (
          !Number.isSafeInteger(count) ||
          !Number.isSafeInteger(blockSize) ||
          blockSize < 1 ||
          src.length < count * blockSize ||
          !Number.isSafeInteger(dstOffset) ||
          dstOffset < 0 ||
          dstStride < size ||
          dstOffset + (count - 1) * dstStride + size > dst.length
        ) {
          throw internal(`hashBlocks: ${count} blocks of ${blockSize} bytes do not fit the source or destination.`);
        }
        return this.enqueue(config, local, src, blockSize, count, dst, dstOffset, dstStride);
      },
      fromFiles: {
        batchBytes: FILE_BATCH_BYTES,
        hashSpans: async (spans, blockSize, count, dst, dstOffset, dstStride) => {
          if (this.failure) throw this.failure;
          if (count <= 0) return;
          if (spans.reduce((n, span) => n + span.length, 0) !== count * blockSize) {
            throw internal(`hashSpans: file spans do not hold ${count} blocks of ${blockSize} bytes.`);
          }
          if (count < MIN_DISPATCH_BLOCKS) {
            const bytes = new Uint8Array(count * blockSize);
            readSpans(spans, bytes);
            return local.hashBlocks(bytes, blockSize, count, dst, dstOffset, dstStride);
          }
          return this.enqueue(config, local, spans, blockSize, count, dst, dstOffset, dstStride);
        },
      },
    };
  }

  /** Queues a batch for the threads: batches run one at a time, as they share the arena's digest area. */
  private enqueue(...args: Parameters<HashPool['dispatch']>): Promise<void> {
    const run = this.queue.then(() => this.dispatch(...args));
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    await this.workers.close(internal(`The hash pool ${this.name} is closed.`));
  }

  get [POOL_TESTING](): PoolTesting {
    const pool = this;
    return {
      fault: (index, mode, error) =>
        this.workers.post(index, { t: 'fault', mode, ...(error === undefined ? {} : { error }) } satisfies ToWorker),
      threads: this.workers.threads,
      get dispatched() {
        return pool.dispatched;
      },
    };
  }

  /**
   * Hashes one queued batch on the threads, in rounds that fit the digest area, and copies the digests out. The
   * batch is in the arena (`src`), or lies in files (`spans`): then each thread reads the pieces it claims.
   */
  private async dispatch(
    config: HasherConfig,
    local: BlockHasher,
    src: Uint8Array | readonly FileSpan[],
    blockSize: number,
    count: number,
    dst: Uint8Array,
    dstOffset: number,
    dstStride: number,
  ): Promise<void> {
    if (this.failure) throw this.failure;
    const inArena = src instanceof Uint8Array ? src : undefined;
    let arena: Arena | undefined;
    if (inArena) {
      this.arenas.checkLease(inArena);
      // A larger allocation may have replaced the arena while this batch waited; the threads no longer hold it.
      arena = this.arenas.locate(inArena, blockSize * count);
      if (!arena) return local.hashBlocks(inArena, blockSize, count, dst, dstOffset, dstStride);
    } else {
      arena = this.arenas.ensure();
    }
    this.dispatched++;
    const size = digestSize(config.algorithm);
    const perRound = Math.floor(arena.digestBytes / size);
    const threads = this.workers.count;
    const pieceBytes = inArena ? MAX_PIECE_BYTES : READ_BYTES;
    const maxPiece = Math.max(1, Math.floor(pieceBytes / blockSize / LANES) * LANES);
    for (let done = 0; done < count; ) {
      const n = Math.min(perRound, count - done);
      const piece = Math.min(maxPiece, Math.ceil(n / (threads * PIECES_PER_THREAD) / LANES) * LANES);
      Atomics.store(arena.counter, 0, 0);
      const job: HashMessage = {
        t: 'hash',
        req: 0,
        arena: arena.id,
        config,
        blockSize,
        src: inArena ? inArena.byteOffset + done * blockSize : 0,
        count: n,
        dst: arena.digest,
        piece,
        ...(!inArena && { spans: spansWithin(src as readonly FileSpan[], done * blockSize, n * blockSize) }),
      };
      // Waits for every thread, even after a failure, so none still writes digests when the next batch starts.
      await this.workers.requestAll(job);
      // Leased again while the threads hashed it: the bytes may have changed under them.
      if (inArena) this.arenas.checkLease(inArena);
      const digests = arena.bytes;
      if (dstStride === size) {
        dst.set(digests.subarray(arena.digest, arena.digest + n * size), dstOffset + done * size);
      } else {
        for (let i = 0; i < n; i++) {
          const at = arena.digest + i * size;
          dst.set(digests.subarray(at, at + size), dstOffset + (done + i) * dstStride);
        }
      }
      done += n;
    }
  }
}

/**
 * A hash engine that spreads level-0 data blocks over `threads` worker threads, named e.g. `pool(node-crypto×2)`.
 * Close it when done: pending and later calls reject, and the threads end. A pool left open does not keep the
 * process alive while idle.
 */
export function createHashPool(options: HashPoolOptions): HashEngine {
  return new HashPool(options);
}
