/**
 * The messages between the hash pool (hash-pool.ts) and its threads (hash-worker.ts), and how an error crosses between
 * them. Only small messages cross the thread boundary; the blocks and digests stay in the shared arena both sides
 * address by offset.
 */
import { VerityError, type VerityErrorJson } from '../errors.js';
import type { HashAlgorithm } from '../format/algorithms.js';
import type { FileSpan } from '../io/source.js';
import type { SaltPlacement } from '../hash/engine.js';
import type { WasmMemory } from '../hash/wasm-kernel.js';

/** What a pool's threads hash with: node:crypto (every algorithm) or the WASM SIMD kernel (sha256 only). */
export type PoolInner = 'node-crypto' | 'wasm-simd';

/** Marks a worker as a pool thread, so importing hash-worker anywhere else does nothing. */
export const WORKER_KIND = 'dm-verity hash pool';

/** `workerData` of every pool thread. What it hashes with comes later (StartMessage): threads start before that is known. */
export interface WorkerInit {
  kind: typeof WORKER_KIND;
  index: number;
}

/** The first message a thread gets: what it hashes with. It answers `ready` once it can (the kernel loaded and checked). */
export interface StartMessage {
  t: 'start';
  inner: PoolInner;
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
  /** Where this thread reads the pieces of a batch that lies in files (arena.ts: READ_BYTES). */
  read: number;
  /** The Int32 through which the threads claim the pieces of a batch. */
  counter: number;
}

/** A new block hasher: the thread checks it can hash the config and replies. */
export interface ConfigMessage {
  t: 'config';
  req: number;
  config: HasherConfig;
}

/**
 * A batch: `count` blocks of `blockSize` bytes at arena offset `src`, or with `spans` lying in files (each thread
 * reads the pieces it claims), digest `i` to `dst + i * digestSize`. Every thread gets the same message; piece `k` is
 * blocks [k * piece, (k + 1) * piece), claimed by incrementing the counter (which the pool zeroes before sending).
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
  spans?: FileSpan[];
}

/** Test hook: die the way a crashing thread would, or fail the next job the way a failing one would. */
export interface FaultMessage {
  t: 'fault';
  /** `throw`/`exit`: crash; `reject`: fail the next hash job (the error must reach the caller). */
  mode: 'throw' | 'exit' | 'reject';
  /**
   * For `reject`: the VerityError to throw (as its JSON), or the message of a plain Error. Without it, an E_IO
   * VerityError whose data holds the batch's arena offset.
   */
  error?: VerityErrorJson | string;
}

/** Every message the pool sends a thread. */
export type ToWorker = StartMessage | ArenaMessage | ConfigMessage | HashMessage | FaultMessage;

/** Every message a thread sends the pool: ready once started, then one reply per request. */
export type FromWorker =
  | { t: 'ready'; scratchBytes: number }
  | { t: 'done'; req: number }
  /** A failed request: a VerityError's JSON, or E_INTERNAL with the message of anything else thrown. */
  | { t: 'error'; req: number; error: VerityErrorJson };

/** The message of anything thrown. */
export function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An E_INTERNAL VerityError: what every failure of the pool's own machinery is. */
export function internal(message: string, cause?: unknown): VerityError {
  return new VerityError('E_INTERNAL', message, cause === undefined ? undefined : { cause });
}

/**
 * What a thread posts for an error: a VerityError's JSON, so its code and data survive the boundary (structured clone
 * keeps an Error's message but neither its class nor its own properties); anything else thrown is a bug, E_INTERNAL with its message.
 */
export function encodeError(e: unknown): VerityErrorJson {
  if (e instanceof VerityError) return e.toJSON();
  return { code: 'E_INTERNAL', message: describe(e) };
}

/** The error a thread posted, rebuilt with its code and data; `from` (e.g. "Hash worker 0 (node-crypto)") leads the message. */
export function decodeError(json: VerityErrorJson, from: string): VerityError {
  const error = VerityError.fromJSON(json);
  return new VerityError(error.code, `${from} failed: ${error.message}`, { data: error.data });
}
