/**
 * FEC parity on worker threads: the rounds of a group (fec/encode.ts) are independent, so each thread runs the
 * WebAssembly SIMD Reed–Solomon kernel (fec/rs-simd.ts) over its own contiguous range of a group's columns, in place
 * in one shared `WebAssembly.Memory` that the main thread reads the groups into. Nothing but small messages crosses the
 * thread boundary.
 *
 * The reads stay on the main thread, through the operands' ByteSources: every kind of operand (a file, a partition of
 * a disk image, an entry of a container) and the hash device as the tree left it (read back through its sink) work
 * unchanged, and each covered block is still read once. encodeFec keeps `slots` (3) groups in flight, so the next
 * groups are read while the threads encode one. Memory: the slots' buffers (3 × ~16 MiB of blocks with their parity by
 * default), whatever the image size or thread count.
 *
 * The threads are started by createFecPool and ended by close(); the thread script is fec-worker.ts.
 */
import { Worker } from 'node:worker_threads';
import { VerityError } from '../errors.js';
import type { FecGroupEncoder } from '../fec/encode.js';
import { checkRoots } from '../fec/rs.js';
import { RS_CALL_COLUMNS, RS_SCRATCH_BYTES, RS_TABLE_BYTES, rsLanes, rsSimdSupported, rsTables, rsWasmBinary } from '../fec/rs-simd.js';
import { FEC_WORKER_SOURCE, type FecFromWorker, type FecToWorker, type FecWorkerInit, type SharedWasmMemory } from './fec-worker.js';
import { MAX_THREADS } from './limits.js';

/** Groups in flight: one encoded while the next two are read (reads and encoding compete for the same cores). */
const SLOTS = 3;
const PAGE = 65536;

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

export interface FecPool {
  readonly threads: number;
  /**
   * Encodes groups of `roots`/`blockSize` rounds on the threads; resolves once every thread has started (rejects with
   * E_UNSUPPORTED when threads or WebAssembly SIMD cannot run here: encode on the calling thread instead).
   */
  groupEncoder(roots: number, blockSize: number): Promise<FecGroupEncoder>;
  /** Ends the threads; pending and later jobs reject. */
  close(): Promise<void>;
}

/** Starts `threads` (1 to MAX_THREADS) FEC threads. */
export function createFecPool(options: { threads: number }): FecPool {
  const { threads } = options;
  if (!Number.isSafeInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new VerityError('E_PARAM', `FEC threads must be an integer from 1 to ${MAX_THREADS}; got ${threads}.`);
  }
  return new Pool(threads);
}

class Pool implements FecPool {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly ready: Promise<void>;
  private started = false;
  private failure: VerityError | undefined;
  private nextRequest = 1;
  private nextMemory = 1;

  constructor(threads: number) {
    this.threads = threads;
    let settle!: { resolve(): void; reject(e: Error): void };
    this.ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    this.ready.catch(() => {});
    if (!rsSimdSupported()) {
      this.fail(new VerityError('E_UNSUPPORTED', 'FEC threads need WebAssembly SIMD, which this runtime lacks.'));
      settle.reject(this.failure!);
      return;
    }
    const init: FecWorkerInit = { bytes: rsWasmBinary(true), callColumns: RS_CALL_COLUMNS };
    let waiting = threads;
    for (let index = 0; index < threads; index++) {
      let worker: Worker;
      try {
        worker = new Worker(FEC_WORKER_SOURCE, { eval: true, workerData: init });
      } catch (e) {
        this.fail(this.threadError(`FEC worker ${index} cannot be created: ${e instanceof Error ? e.message : String(e)}`, e));
        settle.reject(this.failure!);
        return;
      }
      worker.on('message', (m: FecFromWorker) => {
        if (m.t === 'ready') {
          if (--waiting === 0) {
            this.started = true;
            settle.resolve();
          }
          return;
        }
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        if (m.t === 'done') p.resolve();
        else p.reject(new VerityError('E_INTERNAL', `FEC worker ${index}: ${m.message}`));
      });
      const die = (message: string, cause?: unknown): void => {
        this.fail(this.threadError(message, cause));
        settle.reject(this.failure!);
      };
      worker.on('error', (e) => die(`FEC worker ${index} crashed: ${e.message}`, e));
      worker.on('messageerror', (e) => die(`FEC worker ${index} sent an unreadable message.`, e));
      worker.on('exit', (code) => die(`FEC worker ${index} exited with code ${code}.`));
      this.workers.push(worker);
    }
  }

  /** Before every thread was ready: E_UNSUPPORTED (threads cannot run here); after: E_INTERNAL (one died mid-pass). */
  private threadError(message: string, cause?: unknown): VerityError {
    if (this.started) return new VerityError('E_INTERNAL', message, { cause });
    return new VerityError('E_UNSUPPORTED', `FEC threads cannot start: ${message}`, { cause });
  }

  private fail(error: VerityError): void {
    if (this.failure) return;
    this.failure = error;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(error);
    for (const w of this.workers) void w.terminate();
  }

  private request(index: number, message: Extract<FecToWorker, { t: 'encode' }>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(message.req, { resolve, reject });
      this.workers[index]!.postMessage(message);
    });
  }

  async groupEncoder(roots: number, blockSize: number): Promise<FecGroupEncoder> {
    checkRoots(roots);
    const lanes = rsLanes(roots);
    if (!Number.isSafeInteger(blockSize) || blockSize < 1 || blockSize % lanes !== 0) {
      throw new VerityError('E_PARAM', `FEC threads need a block size that is a multiple of ${lanes}; got ${blockSize}.`);
    }
    await this.ready;
    if (this.failure) throw this.failure;
    const tables = rsTables(roots);
    const heapAt = RS_TABLE_BYTES + this.threads * RS_SCRATCH_BYTES;
    let memory: { id: number; buffer: SharedArrayBuffer } | undefined;
    return {
      slots: SLOTS,
      buffers: (sizes) => {
        let end = heapAt;
        const spans = sizes.map((n) => {
          const start = end;
          end += Math.ceil(n / 64) * 64;
          return [start, n] as const;
        });
        if (end > 2 ** 31) throw new VerityError('E_INTERNAL', `FEC threads: ${end} bytes of buffers exceed a 32-bit memory.`);
        const api = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => SharedWasmMemory } }).WebAssembly;
        const pages = Math.ceil(end / PAGE);
        const wasmMemory = new api.Memory({ initial: pages, maximum: pages, shared: true });
        const buffer = wasmMemory.buffer as SharedArrayBuffer;
        new Uint8Array(buffer).set(tables, 0);
        const id = this.nextMemory++;
        this.workers.forEach((w, index) =>
          w.postMessage({ t: 'memory', id, memory: wasmMemory, roots, tab: 0, scr: RS_TABLE_BYTES + index * RS_SCRATCH_BYTES } satisfies FecToWorker),
        );
        memory = { id, buffer };
        return spans.map(([start, n]) => new Uint8Array(buffer, start, n));
      },
      encodeGroup: async (messages, parity, count, stride) => {
        if (!memory || messages.buffer !== memory.buffer || parity.buffer !== memory.buffer) {
          throw new VerityError('E_INTERNAL', 'FEC threads encode only buffers from their latest buffers() call.');
        }
        // Round g's codeword b is column g·B + b of the group (encode.ts), so a group is one run of count·B columns,
        // cut into one contiguous range per thread, whole steps of the kernel.
        const width = count * blockSize;
        const steps = width / lanes;
        const jobs: Promise<void>[] = [];
        for (let t = 0, from = 0; t < this.threads && from < width; t++) {
          const to = Math.round((steps * (t + 1)) / this.threads) * lanes;
          if (to <= from) continue;
          const req = this.nextRequest++;
          const msg = messages.byteOffset + from;
          const par = parity.byteOffset + from * roots;
          jobs.push(this.request(t, { t: 'encode', req, id: memory.id, msg, stride, width: to - from, par }));
          from = to;
        }
        // Every job settles before a failure is reported, so no thread still writes the parity buffer afterwards.
        const results = await Promise.allSettled(jobs);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      },
    };
  }

  async close(): Promise<void> {
    this.fail(new VerityError('E_INTERNAL', 'The FEC pool is closed.'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
