/**
 * One thread of the hash pool (hash-pool.ts), speaking the messages of protocol.ts. It hashes pieces of a batch that lie in the pool's shared arena, in
 * place, and writes the digests packed into the arena's digest area; nothing but small messages crosses the thread
 * boundary. Every thread receives the whole batch and claims pieces of it through a shared counter until none are
 * left, so a thread that starts late or runs slow (a busy core) takes fewer. Messages are handled strictly in arrival
 * order (an arena switch that must load a kernel finishes before the next job starts).
 *
 * Inner hashers:
 * - `node-crypto`: node:crypto per block over a Buffer view of the shared arena, salt before or after the block (a
 *   copy of the hash state after the salt, or the one-shot `crypto.hash` without a salt).
 * - `wasm-simd`: the SIMD kernel of src/hash/wasm-kernel.ts instantiated over the arena (a shared
 *   `WebAssembly.Memory`), with this thread's own scratch region; called in pieces of at most 1 MiB because V8 only
 *   tiers wasm up between calls (docs/performance.md).
 */
import { createHash } from 'node:crypto';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { VerityError, type VerityErrorJson } from '../errors.js';
import type { ArenaMessage, FromWorker, HashMessage, HasherConfig, PoolInner, ToWorker, WorkerInit } from './protocol.js';
import { WORKER_KIND } from './protocol.js';
import { digestSize } from '../format/algorithms.js';
import { blockRuns } from '../hash/zero-blocks.js';
import { nodeCryptoLoop, type BlockLoop } from './node-crypto-engine.js';
import {
  KERNEL_LANES,
  loadKernel,
  simdSupported,
  wasmApi,
  type Sha256Kernel,
} from '../hash/wasm-kernel.js';

/** Bytes per kernel call: V8 has no on-stack replacement for wasm, so a long first call would stay in Liftoff. */
const PIECE_BYTES = 1 << 20;

interface Arena {
  id: number;
  bytes: Uint8Array;
  counter: Int32Array;
  kernel?: Sha256Kernel;
  /** Why this thread cannot hash in this arena (reported by every job on it). */
  error?: string;
  scratch: number;
  scratchBytes: number;
  salt: number;
  /** Config id and block size the kernel scratch was last set up for. */
  setupFor?: string;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** What crosses back to the pool: the code and data of a VerityError survive the thread boundary. */
function errorJson(e: unknown): VerityErrorJson {
  return e instanceof VerityError ? e.toJSON() : { code: 'E_INTERNAL', message: describe(e) };
}

function checkConfig(inner: PoolInner, config: HasherConfig): void {
  if (inner === 'wasm-simd' && config.algorithm !== 'sha256') {
    throw new Error(`The wasm-simd kernel hashes sha256 only, not ${config.algorithm}.`);
  }
  // Throws for an algorithm OpenSSL does not know.
  if (inner === 'node-crypto') createHash(config.algorithm);
}

/** The node:crypto block loop of the last config (node-crypto-engine.ts), kept while the config stays the same. */
let loop: { id: number; run: BlockLoop } | undefined;

function loopFor(config: HasherConfig): BlockLoop {
  if (loop?.id !== config.id) loop = { id: config.id, run: nodeCryptoLoop(config.algorithm, config.salt, config.placement) };
  return loop.run;
}

/** Hashes `count` blocks of the batch `m` from its block `first`. */
type PieceHasher = (arena: Arena, m: HashMessage, first: number, count: number) => void;

const hashWithNodeCrypto: PieceHasher = (arena, m, first, count) => {
  const size = digestSize(m.config.algorithm);
  const src = arena.bytes.subarray(m.src + first * m.blockSize, m.src + (first + count) * m.blockSize);
  loopFor(m.config)(src, m.blockSize, count, arena.bytes, m.dst + first * size, size);
};

const hashWithKernel: PieceHasher = (arena, m, first, count) => {
  const kernel = arena.kernel!;
  const { salt, placement, id } = m.config;
  const key = `${id}/${m.blockSize}`;
  if (arena.setupFor !== key) {
    arena.bytes.set(salt, arena.salt);
    kernel.setup(arena.scratch, arena.salt, salt.length, m.blockSize, placement === 'prefix' ? 1 : 0);
    arena.setupFor = key;
  }
  const fit = Math.max(1, Math.floor(PIECE_BYTES / m.blockSize));
  const perCall = fit >= KERNEL_LANES ? fit - (fit % KERNEL_LANES) : fit;
  const src = m.src + first * m.blockSize;
  const dst = m.dst + first * 32;
  for (let done = 0; done < count; ) {
    const n = Math.min(perCall, count - done);
    kernel.hash(arena.scratch, src + done * m.blockSize, n, dst + done * 32, 32);
    done += n;
  }
};

/** Digest of an all-zero block for a config and block size, computed once (zero-blocks.ts). */
const zeroDigests = new Map<string, Uint8Array>();

function zeroDigest(m: HashMessage): Uint8Array {
  const key = `${m.config.id}/${m.blockSize}`;
  let digest = zeroDigests.get(key);
  if (!digest) {
    // Through the same node:crypto loop: the kernel inner hashes sha256 only, which OpenSSL hashes identically.
    digest = new Uint8Array(digestSize(m.config.algorithm));
    loopFor(m.config)(new Uint8Array(m.blockSize), m.blockSize, 1, digest, 0, digest.length);
    zeroDigests.set(key, digest);
  }
  return digest;
}

/**
 * Claims and hashes pieces of batch `m` until every piece is taken. All-zero blocks get the cached zero digest
 * instead of being hashed, here in each thread, so zero-heavy images keep their parallelism.
 */
function hashBatch(arena: Arena, m: HashMessage, hashPiece: PieceHasher): void {
  const size = digestSize(m.config.algorithm);
  for (;;) {
    const first = Atomics.add(arena.counter, 0, 1) * m.piece;
    if (first >= m.count) return;
    const count = Math.min(m.piece, m.count - first);
    const piece = arena.bytes.subarray(m.src + first * m.blockSize, m.src + (first + count) * m.blockSize);
    for (const run of blockRuns(piece, m.blockSize, count)) {
      if (!run.zero) {
        hashPiece(arena, m, first + run.first, run.count);
        continue;
      }
      const digest = zeroDigest(m);
      for (let i = first + run.first; i < first + run.first + run.count; i++) arena.bytes.set(digest, m.dst + i * size);
    }
  }
}

async function setArena(inner: PoolInner, m: ArenaMessage): Promise<Arena> {
  const shared = m.buffer ?? (m.memory?.buffer as SharedArrayBuffer | undefined);
  const base = {
    id: m.id,
    scratch: m.scratch,
    scratchBytes: m.scratchBytes,
    salt: m.salt,
    counter: new Int32Array(shared ?? new SharedArrayBuffer(4), shared ? m.counter : 0, 1),
  };
  if (inner === 'node-crypto') {
    if (!m.buffer) return { ...base, bytes: new Uint8Array(0), error: 'The arena has no buffer.' };
    return { ...base, bytes: Buffer.from(m.buffer) };
  }
  if (!m.memory) return { ...base, bytes: new Uint8Array(0), error: 'The arena has no wasm memory.' };
  try {
    const kernel = await loadKernel(m.memory);
    if (kernel.scratchBytes > m.scratchBytes) {
      throw new Error(`The kernel needs ${kernel.scratchBytes} bytes of scratch; the arena has ${m.scratchBytes}.`);
    }
    return { ...base, bytes: new Uint8Array(m.memory.buffer), kernel };
  } catch (e) {
    return { ...base, bytes: new Uint8Array(0), error: `Cannot load the wasm-simd kernel: ${describe(e)}` };
  }
}

/**
 * Loads the kernel over a throwaway memory, checks it against node:crypto in both salt placements (this is the
 * shared-memory build, which no other self-test reaches), and returns its scratch size.
 */
async function probeKernel(): Promise<number> {
  if (!simdSupported()) throw new Error('WebAssembly SIMD is not supported by this runtime.');
  const { Memory } = wasmApi()!;
  const kernel = await loadKernel(new Memory({ initial: 1, maximum: 1, shared: true }));
  const bytes = new Uint8Array(kernel.memory.buffer);
  const [scratch, saltAt, src, dst] = [0, 8192, 16384, 32768];
  const blocks = 5;
  const blockSize = 512;
  const salt = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
  for (let i = 0; i < blocks * blockSize; i++) bytes[src + i] = (i * 131 + (i >>> 9)) & 0xff;
  bytes.set(salt, saltAt);
  for (const prefix of [true, false]) {
    kernel.setup(scratch, saltAt, salt.length, blockSize, prefix ? 1 : 0);
    kernel.hash(scratch, src, blocks, dst, 32);
    for (let i = 0; i < blocks; i++) {
      const block = bytes.subarray(src + i * blockSize, src + (i + 1) * blockSize);
      const h = createHash('sha256');
      const expected = (prefix ? h.update(salt).update(block) : h.update(block).update(salt)).digest();
      if (!expected.equals(bytes.subarray(dst + i * 32, dst + (i + 1) * 32))) {
        const where = `block ${i}, salt ${prefix ? 'first' : 'last'}`;
        throw new Error(`The wasm-simd kernel over shared memory gives a wrong digest (${where}).`);
      }
    }
  }
  return kernel.scratchBytes;
}

function main(): void {
  const port = parentPort!;
  const { inner } = workerData as WorkerInit;
  let arena: Arena | undefined;
  let queue: Promise<void> = Promise.resolve();

  const reply = (message: FromWorker): void => port.postMessage(message);

  let rejectNext = false;
  const handle = async (m: ToWorker): Promise<void> => {
    switch (m.t) {
      case 'arena':
        arena = await setArena(inner, m);
        return;
      case 'config':
        try {
          checkConfig(inner, m.config);
          reply({ t: 'done', req: m.req });
        } catch (e) {
          reply({ t: 'error', req: m.req, error: errorJson(e) });
        }
        return;
      case 'hash':
        try {
          if (!arena || arena.id !== m.arena) {
            throw new Error(`Job for arena ${m.arena}, but this thread holds arena ${arena?.id}.`);
          }
          if (arena.error) throw new Error(arena.error);
          if (rejectNext) {
            rejectNext = false;
            throw new VerityError('E_IO', 'Simulated failure in a hash worker.', { data: { offset: m.src } });
          }
          checkConfig(inner, m.config);
          if (m.src < 0 || m.src + m.count * m.blockSize > arena.bytes.length || !(m.piece >= 1)) {
            throw new Error('Blocks outside the arena.');
          }
          hashBatch(arena, m, inner === 'node-crypto' ? hashWithNodeCrypto : hashWithKernel);
          reply({ t: 'done', req: m.req });
        } catch (e) {
          reply({ t: 'error', req: m.req, error: errorJson(e) });
        }
        return;
      case 'fault':
        return;
    }
  };

  port.on('message', (m: ToWorker) => {
    if (m.t === 'fault' && m.mode === 'reject') {
      rejectNext = true;
      return;
    }
    if (m.t === 'fault') {
      // Dies at once, before any later message: an exit, or an uncaught exception as a real crash would be.
      if (m.mode === 'exit') process.exit(70);
      throw new Error('simulated hash worker crash');
    }
    queue = queue
      .then(() => handle(m))
      .catch((e: unknown) => {
        // A bug here must not leave the pool waiting: crash, and the pool rejects what is pending.
        setImmediate(() => {
          throw e;
        });
      });
  });

  const start = inner === 'wasm-simd' ? probeKernel() : Promise.resolve(0);
  start.then(
    (scratchBytes) => reply({ t: 'ready', scratchBytes }),
    (e: unknown) => {
      // Startup failures end the thread; the pool reports them from the 'error' event.
      throw new Error(`Hash worker cannot start: ${describe(e)}`);
    },
  );
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.kind === WORKER_KIND) main();
