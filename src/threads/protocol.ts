/**
 * The messages between the hash pool (hash-pool.ts) and its threads (hash-worker.ts). Only small messages cross the
 * thread boundary; the blocks and digests stay in the shared arena both sides address by offset.
 */
import type { VerityErrorJson } from '../errors.js';
import type { HashAlgorithm } from '../format/algorithms.js';
import type { SaltPlacement } from '../hash/engine.js';
import type { WasmMemory } from '../hash/wasm-kernel.js';

export type PoolInner = 'node-crypto' | 'wasm-simd';

export const WORKER_KIND = 'dm-verity hash pool';

/** `workerData` of every pool thread. */
export interface WorkerInit {
  kind: typeof WORKER_KIND;
  inner: PoolInner;
  index: number;
}

/** What a block hasher was created with; travels with every job, so a thread never depends on earlier state. */
export interface HasherConfig {
  id: number;
  algorithm: HashAlgorithm;
  salt: Uint8Array;
  placement: SaltPlacement;
}

/** The arena of one generation, with this thread's own regions in it. */
export interface ArenaMessage {
  t: 'arena';
  id: number;
  /** The arena of a node-crypto pool. */
  buffer?: SharedArrayBuffer;
  /** The arena of a wasm-simd pool; the kernel is instantiated over it. */
  memory?: WasmMemory;
  /** This thread's kernel scratch: offset and reserved bytes (16-aligned). */
  scratch: number;
  scratchBytes: number;
  /** Where this thread copies the salt for the kernel's setup (MAX_SALT_SIZE bytes). */
  salt: number;
  /** The Int32 through which the threads claim the pieces of a batch. */
  counter: number;
}

export interface ConfigMessage {
  t: 'config';
  req: number;
  config: HasherConfig;
}

/**
 * A batch: `count` blocks of `blockSize` bytes at arena offset `src`, digest `i` to `dst + i * digestSize`. Every
 * thread gets the same message; piece `k` is blocks [k * piece, (k + 1) * piece), claimed by incrementing the counter
 * (which the pool zeroes before sending).
 */
export interface HashMessage {
  t: 'hash';
  req: number;
  arena: number;
  config: HasherConfig;
  blockSize: number;
  src: number;
  count: number;
  dst: number;
  piece: number;
}

/** Test hook: die the way a crashing thread would. */
export interface FaultMessage {
  t: 'fault';
  /** `throw`/`exit`: crash; `reject`: fail the next hash job with a VerityError (its code must reach the caller). */
  mode: 'throw' | 'exit' | 'reject';
}

export type ToWorker = ArenaMessage | ConfigMessage | HashMessage | FaultMessage;

export type FromWorker =
  | { t: 'ready'; scratchBytes: number }
  | { t: 'done'; req: number }
  /** A failed request: a VerityError's JSON, or E_INTERNAL with the message of anything else thrown. */
  | { t: 'error'; req: number; error: VerityErrorJson };
