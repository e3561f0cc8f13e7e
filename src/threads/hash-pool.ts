/**
 * A worker_threads pool that hashes level-0 data blocks across cores without copying them.
 *
 * The block reader reads data chunks into buffers from `allocate`: views of one shared arena (a SharedArrayBuffer, or
 * for the wasm-simd inner the buffer of a shared `WebAssembly.Memory`, so the kernel hashes the reader's buffers in
 * place). A large batch in the arena is cut into contiguous pieces (about 8 per thread, whole groups of 4 blocks);
 * one message sends the whole batch to every thread, and the threads claim the pieces in order through a shared
 * counter (Atomics.add), so a thread that wakes late or runs on a busy core simply takes fewer. Each thread hashes its
 * pieces where they lie and writes the digests packed into the arena's digest area, at the blocks' positions, so
 * they are in order whichever thread finishes first; once every thread has answered, they are copied (32–64 bytes
 * per block) to the caller's destination at its stride. Small batches and batches outside the arena (the upper tree
 * levels) are hashed on the calling thread with node:crypto, which costs less than a round trip.
 *
 * Arena layout (offsets 64-aligned, the slots 4096-aligned):
 *
 *   [control: claim counter] [thread 0: scratch, salt] … [thread N-1: scratch, salt] [digest area] [slot 0] [slot 1]
 *
 * (scratch and salt only for the wasm-simd inner: the kernel's per-thread state and the salt its setup reads; the
 * kernel module has no data segments, so nothing else of its memory is taken). Each slot holds one batch; the
 * digest area one batch's digests at 64 bytes per 512-byte block.
 *
 * One arena serves every pass, so memory stays fixed (2 × batchBytes and ~1/8 of that): the reader allocates two
 * chunk buffers per pass, which get slots 0 and 1, and the next pass gets them again. (A fresh arena per pass would
 * rely on the garbage collector to free the old ones, and worker threads that allocate almost nothing hardly ever
 * collect.) A pool therefore runs ONE PASS AT A TIME. Every allocation is a lease on a distinct SharedArrayBuffer
 * object aliasing the arena (structuredClone of a SharedArrayBuffer shares its memory), so a buffer whose slot has
 * since been leased again is recognised: using it rejects with E_INTERNAL and fails the pool, instead of hashing
 * another pass's data. Only a larger request than a slot re-creates the arena (the threads switch to the new one;
 * views of the old one are then hashed on the calling thread).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { digestSize, type HashAlgorithm } from '../format/algorithms.js';
import { MAX_SALT_SIZE } from '../format/params.js';
import type { BlockHasher, BlockHasherOptions, HashEngine } from '../hash/engine.js';
import { nodeCryptoEngine } from './node-crypto-engine.js';
import { VerityError } from '../errors.js';
import { wasmApi, type WasmMemory } from '../hash/wasm-kernel.js';
import type { FromWorker, HasherConfig, HashMessage, PoolInner, ToWorker, WorkerInit } from './hash-worker.js';

export type { PoolInner } from './hash-worker.js';

export interface HashPoolOptions {
  /** Hashing threads (1–64). */
  threads: number;
  /** What each thread hashes with: node:crypto (every algorithm) or the WASM SIMD kernel (sha256 only). */
  inner: PoolInner;
}

/** Batches of fewer blocks are hashed on the calling thread: a round trip to the threads would cost more. */
export const MIN_DISPATCH_BLOCKS = 64;
/** Data per thread and batch: two kernel calls of ≤ 1 MiB (V8 tiers wasm up only between calls). */
const BYTES_PER_THREAD = 2 << 20;
/** The largest batch, whatever the thread count: the arena holds two, so it stays under ~40 MiB. */
const MAX_BATCH_BYTES = 16 << 20;
/** Pieces per thread and batch: small enough that the threads finish together, large enough to amortise a claim. */
const PIECES_PER_THREAD = 8;
/** The most bytes in a piece (a kernel call; V8 tiers wasm up only between calls). */
const MAX_PIECE_BYTES = 1 << 20;
/** The SIMD kernel hashes 4 blocks at once; pieces are whole groups so only a batch's last call pads lanes. */
const LANES = 4;
const CONTROL_BYTES = 64;
export const MAX_THREADS = 64;
/** Scratch reserved per thread if the arena is laid out before the threads have reported the kernel's need. */
const DEFAULT_SCRATCH = 64 << 10;
const WASM_PAGE = 64 << 10;
const SLOT_ALIGN = 4096;
/** The largest digest (sha512); sizes the digest area. */
const MAX_DIGEST = 64;
/** The smallest data block (dm-verity: 512); with it a slot holds the most blocks. */
const MIN_BLOCK = 512;

/** @internal Test hooks, reached through this symbol so they stay out of the engine's public shape. */
export const POOL_TESTING = Symbol('hash-pool testing');

export interface PoolTesting {
  /** Makes thread `index` crash (an uncaught exception) or exit, as a bug or an OOM kill would. */
  fault(index: number, mode: 'throw' | 'exit' | 'reject'): void;
  readonly threads: readonly Worker[];
  /** Batches the threads have hashed (the rest went to the calling thread). */
  readonly dispatched: number;
}

interface Arena {
  id: number;
  buffer: SharedArrayBuffer;
  bytes: Uint8Array;
  counter: Int32Array;
  memory?: WasmMemory;
  slotBytes: number;
  slots: number[];
  /** Leases handed out per slot; a lease of an older generation is stale. */
  generations: number[];
  /** The slot the next allocation gets. */
  next: number;
  digest: number;
  digestBytes: number;
}

/** One `allocate` result: slot `slot` of `arena`, the `generation`-th time it was handed out. */
interface Lease {
  arena: Arena;
  slot: number;
  generation: number;
}

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

function internal(message: string, cause?: unknown): VerityError {
  return new VerityError('E_INTERNAL', message, cause === undefined ? undefined : { cause });
}

/** A worker running hash-worker: the compiled .js beside this file, or under vitest/tsx the .ts through tsx. */
function spawn(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./hash-worker.js', here), { workerData: init });
  // `--import tsx` in a worker's execArgv is not honoured reliably on Node 20, so register tsx's loader first.
  // The ESM build of tsx's API (its CommonJS build cannot register the ESM loader in a worker).
  const tsx =
    typeof import.meta.resolve === 'function'
      ? import.meta.resolve('tsx/esm/api')
      : pathToFileURL(createRequire(here).resolve('tsx/esm/api')).href.replace(/\.cjs$/, '.mjs');
  const entry = new URL('./hash-worker.ts', here).href;
  const code =
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); ` +
    `return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { eval: true, workerData: init });
}

class HashPool implements HashEngine {
  readonly name: string;
  readonly batchBytes: number;
  private readonly inner: PoolInner;
  private readonly threads: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextRequest = 1;
  private nextConfig = 1;
  private nextArena = 1;
  private arena: Arena | undefined;
  /** Keyed by the SharedArrayBuffer object each lease's views are views of. */
  private readonly leases = new WeakMap<ArrayBufferLike, Lease>();
  /** Dispatched batches run one at a time: they share the arena's digest area. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Set once closed or broken; every later call rejects with it. */
  private failure: VerityError | undefined;
  private readonly ready: Promise<void>;
  private settleReady!: { resolve(): void; reject(e: Error): void };
  private scratchBytes: number | undefined;
  /** Outstanding requests; the threads keep the process alive only while there are some. */
  private busy = 0;
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
    this.ready = new Promise<void>((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.ready.catch(() => {});
    let waiting = threads;
    this.enter();
    for (let index = 0; index < threads; index++) {
      const worker = spawn({ kind: 'dm-verity hash pool', inner, index });
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          this.scratchBytes = Math.max(this.scratchBytes ?? 0, m.scratchBytes);
          if (--waiting === 0) {
            this.leave();
            this.settleReady.resolve();
          }
          return;
        }
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        if (m.t === 'done') p.resolve();
        else {
          const cause = VerityError.fromJSON(m.error);
          p.reject(new VerityError(cause.code, `Hash worker ${index} (${inner}) failed: ${cause.message}`, { data: cause.data }));
        }
      });
      worker.on('error', (e) => this.fail(internal(`Hash worker ${index} (${inner}) crashed: ${e.message}`, e)));
      worker.on('messageerror', (e) => this.fail(internal(`Hash worker ${index} sent an unreadable message.`, e)));
      worker.on('exit', (code) => this.fail(internal(`Hash worker ${index} (${inner}) exited with code ${code}.`)));
      this.threads.push(worker);
    }
  }

  supports(algorithm: HashAlgorithm): boolean {
    return this.inner === 'node-crypto' ? true : algorithm === 'sha256';
  }

  allocate(bytes: number): Uint8Array {
    if (this.failure) throw this.failure;
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw internal(`Cannot allocate ${bytes} bytes.`);
    let arena = this.arena;
    if (!arena || bytes > arena.slotBytes) arena = this.newArena(Math.max(bytes, this.batchBytes));
    const slot = arena.next;
    arena.next = (slot + 1) % arena.slots.length;
    const lease: Lease = { arena, slot, generation: ++arena.generations[slot]! };
    // A distinct SharedArrayBuffer object over the same memory identifies this lease in every view derived from it.
    const alias = structuredClone(arena.buffer);
    this.leases.set(alias, lease);
    return new Uint8Array(alias, arena.slots[slot]!, bytes);
  }

  async createBlockHasher(options: BlockHasherOptions): Promise<BlockHasher> {
    const { algorithm, salt, saltPlacement } = options;
    if (!this.supports(algorithm)) {
      throw new VerityError('E_PARAM', `Hash engine ${this.name} does not support ${algorithm}.`);
    }
    if (salt.length > MAX_SALT_SIZE) {
      throw new VerityError('E_PARAM', `Salt is ${salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`);
    }
    await this.whenReady();
    const config: HasherConfig = { id: this.nextConfig++, algorithm, salt: salt.slice(), placement: saltPlacement };
    await Promise.all(this.threads.map((_, i) => this.request(i, { t: 'config', req: 0, config })));
    const local = await nodeCryptoEngine.createBlockHasher({ algorithm, salt: config.salt, saltPlacement });
    const size = digestSize(algorithm);
    return {
      digestSize: size,
      hashBlocks: async (src, blockSize, count, dst, dstOffset, dstStride) => {
        if (this.failure) throw this.failure;
        if (count <= 0) return;
        this.checkLease(src);
        if (count < MIN_DISPATCH_BLOCKS || !this.locate(src, blockSize * count)) {
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
        const run = this.queue.then(() =>
          this.dispatch(config, local, src, blockSize, count, dst, dstOffset, dstStride),
        );
        this.queue = run.catch(() => {});
        return run;
      },
    };
  }

  async close(): Promise<void> {
    this.fail(internal(`The hash pool ${this.name} is closed.`));
    await Promise.all(this.threads.map((w) => w.terminate()));
  }

  get [POOL_TESTING](): PoolTesting {
    const pool = this;
    return {
      fault: (index, mode) => this.threads[index]!.postMessage({ t: 'fault', mode } satisfies ToWorker),
      threads: this.threads,
      get dispatched() {
        return pool.dispatched;
      },
    };
  }

  // ---------------------------------------------------------------------------------------------------------------

  private async whenReady(): Promise<void> {
    if (this.failure) throw this.failure;
    await this.ready;
  }

  /** A new arena with two slots of at least `bytes`, sent to every thread (which drop the previous one). */
  private newArena(bytes: number): Arena {
    const threads = this.threads.length;
    const wasm = this.inner === 'wasm-simd';
    const slotBytes = roundUp(Math.max(bytes, 1), SLOT_ALIGN);
    const scratchBytes = wasm ? roundUp(this.scratchBytes ?? DEFAULT_SCRATCH, 64) : 0;
    const saltBytes = wasm ? roundUp(MAX_SALT_SIZE, 64) : 0;
    const perThread = scratchBytes + saltBytes;
    const digest = CONTROL_BYTES + threads * perThread;
    const digestBytes = roundUp(Math.max(MIN_DISPATCH_BLOCKS, Math.floor(slotBytes / MIN_BLOCK)) * MAX_DIGEST, 64);
    const slot0 = roundUp(digest + digestBytes, SLOT_ALIGN);
    const total = slot0 + 2 * slotBytes;
    let buffer: SharedArrayBuffer;
    let memory: WasmMemory | undefined;
    if (wasm) {
      const pages = Math.ceil(total / WASM_PAGE);
      const api = wasmApi();
      if (!api) throw new VerityError('E_PARAM', 'This runtime has no WebAssembly; the wasm-simd pool cannot run.');
      memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
      buffer = memory.buffer as SharedArrayBuffer;
    } else {
      buffer = new SharedArrayBuffer(total);
    }
    const arena: Arena = {
      id: this.nextArena++,
      buffer,
      bytes: new Uint8Array(buffer),
      counter: new Int32Array(buffer, 0, 1),
      slotBytes,
      slots: [slot0, slot0 + slotBytes],
      generations: [0, 0],
      next: 0,
      digest,
      digestBytes,
      ...(memory ? { memory } : {}),
    };
    this.threads.forEach((worker, i) => {
      const scratch = CONTROL_BYTES + i * perThread;
      const message: ToWorker = {
        t: 'arena',
        id: arena.id,
        scratch,
        scratchBytes,
        salt: scratch + scratchBytes,
        counter: 0,
        ...(memory ? { memory } : { buffer }),
      };
      worker.postMessage(message);
    });
    this.arena = arena;
    return arena;
  }

  /**
   * Refuses a view whose slot has been leased again since (two passes at once on this pool, or a buffer kept past
   * its pass): its bytes may be another pass's. Fails the pool, so the other pass cannot complete either.
   */
  private checkLease(src: Uint8Array): void {
    const lease = this.leases.get(src.buffer);
    if (!lease || lease.generation === lease.arena.generations[lease.slot]) return;
    this.fail(
      internal(
        `Hash pool ${this.name}: a buffer from allocate() was used after its memory was handed out again. ` +
          'A pool runs one pass at a time; use one pool per concurrent pass.',
      ),
    );
    throw this.failure!;
  }

  /** The current arena if `src` (its first `length` bytes) lies within the slot of a current lease. */
  private locate(src: Uint8Array, length: number): Arena | undefined {
    const lease = this.leases.get(src.buffer);
    const arena = this.arena;
    if (!lease || lease.arena !== arena || lease.generation !== arena.generations[lease.slot]) return undefined;
    const start = src.byteOffset;
    const slot = arena.slots[lease.slot]!;
    return start >= slot && start + length <= slot + arena.slotBytes ? arena : undefined;
  }

  private async dispatch(
    config: HasherConfig,
    local: BlockHasher,
    src: Uint8Array,
    blockSize: number,
    count: number,
    dst: Uint8Array,
    dstOffset: number,
    dstStride: number,
  ): Promise<void> {
    if (this.failure) throw this.failure;
    this.checkLease(src);
    // A larger allocation may have replaced the arena while this batch waited; the threads no longer hold it.
    const arena = this.locate(src, blockSize * count);
    if (!arena) return local.hashBlocks(src, blockSize, count, dst, dstOffset, dstStride);
    this.dispatched++;
    const size = digestSize(config.algorithm);
    const perRound = Math.floor(arena.digestBytes / size);
    const threads = this.threads.length;
    const maxPiece = Math.max(1, Math.floor(MAX_PIECE_BYTES / blockSize / LANES) * LANES);
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
        src: src.byteOffset + done * blockSize,
        count: n,
        dst: arena.digest,
        piece,
      };
      // Wait for every thread, even after a failure, so none still writes digests when the next batch starts.
      const results = await Promise.allSettled(this.threads.map((_, i) => this.request(i, job)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      // Leased again while the threads hashed it: the bytes may have changed under them.
      this.checkLease(src);
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

  /** Sends `message` (with a fresh request id) to thread `index`; settles with its reply. */
  private request(index: number, message: Extract<ToWorker, { req: number }>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const req = this.nextRequest++;
    return new Promise<void>((resolve, reject) => {
      this.enter();
      this.pending.set(req, {
        resolve: () => {
          this.leave();
          resolve();
        },
        reject: (e) => {
          this.leave();
          reject(e);
        },
      });
      this.threads[index]!.postMessage({ ...message, req });
    });
  }

  /** Closes or breaks the pool: rejects everything pending and later, and ends the threads. */
  private fail(error: VerityError): void {
    if (this.failure) return;
    this.failure = error;
    this.arena = undefined;
    this.settleReady.reject(error);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(error);
    for (const worker of this.threads) {
      worker.unref();
      void worker.terminate();
    }
  }

  private enter(): void {
    if (this.busy++ === 0) for (const w of this.threads) w.ref();
  }

  private leave(): void {
    if (--this.busy === 0) for (const w of this.threads) w.unref();
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
