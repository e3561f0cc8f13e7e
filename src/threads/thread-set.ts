/**
 * The threads of a hash pool: starting them (also from TypeScript sources under vitest/tsx), requests and their
 * replies, keeping the process alive only while requests are outstanding, and failing everything at once when a
 * thread dies or the pool closes.
 */
import { Worker } from 'node:worker_threads';
import { VerityError } from '../errors.js';
import { HASH_WORKER_SOURCE } from './hash-worker-source.js';
import { decodeError, describe, type FromWorker, internal, type PoolInner, type ToWorker, WORKER_KIND, type WorkerInit } from './protocol.js';

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

/**
 * A worker running hash-worker: in the build, the bundled script (hash-worker-source.ts), which needs no file and so
 * survives application bundlers; else the compiled .js beside this file, or under vitest/tsx the .ts through tsx.
 */
function spawn(init: WorkerInit): Worker {
  if (HASH_WORKER_SOURCE !== undefined) return new Worker(HASH_WORKER_SOURCE, { eval: true, workerData: init });
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./hash-worker.js', here), { workerData: init });
  // `--import tsx` in a worker's execArgv is not honoured reliably on Node 20, so register tsx's loader first.
  // The ESM build of tsx's API (its CommonJS build cannot register the ESM loader in a worker).
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./hash-worker.ts', here).href;
  const code =
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); ` +
    `return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { eval: true, workerData: init });
}

/** The threads of one pool and their outstanding requests; fails as a whole. */
export class ThreadSet {
  readonly threads: Worker[] = [];
  /** The largest kernel scratch a thread reported (wasm-simd), once every thread is ready. */
  scratchBytes: number | undefined;
  /** Set once closed or broken; every later request rejects with it. */
  failure: VerityError | undefined;
  /** What the threads hash with, once started; names them in errors. */
  private inner: PoolInner | undefined;
  /** Runs once when the set fails (a thread died, or close); set by the pool that starts the set. */
  private onFail: () => void = () => {};
  private readonly pending = new Map<number, Pending>();
  private nextRequest = 1;
  private readonly ready: Promise<void>;
  /** Every thread reported ready. */
  private started = false;
  private settleReady!: { resolve(): void; reject(e: Error): void };
  /** Outstanding requests; the threads keep the process alive only while there are some. */
  private busy = 0;
  private waiting: number;

  /**
   * Spawns `count` threads, which load while the caller goes on (they keep no process alive); `start` says what they
   * hash with.
   */
  constructor(count: number) {
    this.ready = new Promise<void>((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.ready.catch(() => {});
    this.waiting = count;
    for (let index = 0; index < count; index++) {
      let worker: Worker;
      try {
        worker = spawn({ kind: WORKER_KIND, index });
      } catch (e) {
        // No worker_threads here (a sandbox, a runtime without them): the same as a thread dying at start. Failed
        // after the constructor returns, as a thread's 'error' event would be, once the owner has set itself up.
        const error = this.threadError(`Hash worker ${index} cannot be created: ${describe(e)}`, e);
        queueMicrotask(() => this.fail(error));
        return;
      }
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          this.scratchBytes = Math.max(this.scratchBytes ?? 0, m.scratchBytes);
          if (--this.waiting === 0) {
            this.started = true;
            this.leave();
            this.settleReady.resolve();
          }
          return;
        }
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        if (m.t === 'done') p.resolve();
        // The code and data of a VerityError thrown in the thread reach the caller.
        else p.reject(decodeError(m.error, this.name(index)));
      });
      worker.on('error', (e) => this.fail(this.threadError(`${this.name(index)} crashed: ${e.message}`, e)));
      worker.on('messageerror', (e) => this.fail(this.threadError(`Hash worker ${index} sent an unreadable message.`, e)));
      worker.on('exit', (code) => this.fail(this.threadError(`${this.name(index)} exited with code ${code}.`)));
      // After the listeners: adding a 'message' listener refs the worker again.
      worker.unref();
      this.threads.push(worker);
    }
  }

  /** Tells every thread what to hash with; `whenReady` settles once all have answered. `onFail` as for the pool. */
  start(inner: PoolInner, onFail: () => void): void {
    if (this.inner !== undefined) throw internal('The threads of a hash pool were started twice.');
    this.inner = inner;
    this.onFail = onFail;
    if (this.failure) {
      onFail();
      return;
    }
    // Until every thread is ready, the process waits for them.
    this.enter();
    for (const worker of this.threads) worker.postMessage({ t: 'start', inner } satisfies ToWorker);
  }

  private name(index: number): string {
    return `Hash worker ${index}${this.inner ? ` (${this.inner})` : ''}`;
  }

  /**
   * A thread's failure: before every thread was ready, E_UNSUPPORTED (threads cannot run here, and the caller may hash
   * on its own thread instead: engines.ts); after, E_INTERNAL (a thread died mid-pass).
   */
  private threadError(message: string, cause?: unknown): VerityError {
    if (this.started) return internal(message, cause);
    return new VerityError('E_UNSUPPORTED', `Hash threads cannot start: ${message}`, { cause });
  }

  get count(): number {
    return this.threads.length;
  }

  async whenReady(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.inner === undefined) throw internal('The threads of a hash pool were not started.');
    await this.ready;
  }

  /** Posts a message that needs no reply (an arena, a test fault). */
  post(index: number, message: ToWorker): void {
    this.threads[index]!.postMessage(message);
  }

  /** Sends `message` (with a fresh request id) to thread `index`; settles with its reply. */
  request(index: number, message: Extract<ToWorker, { req: number }>): Promise<void> {
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

  /** Sends `message` to every thread and waits for all of them, even after a failure; rejects with the first. */
  async requestAll(message: Extract<ToWorker, { req: number }>): Promise<void> {
    const results = await Promise.allSettled(this.threads.map((_, i) => this.request(i, message)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Rejects everything pending and later with `error`, and ends the threads. */
  fail(error: VerityError): void {
    if (this.failure) return;
    this.failure = error;
    this.onFail();
    this.settleReady.reject(error);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(error);
    for (const worker of this.threads) {
      worker.unref();
      void worker.terminate();
    }
  }

  async close(error: VerityError): Promise<void> {
    this.fail(error);
    await Promise.all(this.threads.map((w) => w.terminate()));
  }

  private enter(): void {
    if (this.busy++ === 0) for (const w of this.threads) w.ref();
  }

  private leave(): void {
    if (--this.busy === 0) for (const w of this.threads) w.unref();
  }
}

/** Threads spawned ahead of a pool (prestartThreads), for the next pool of that many threads. */
let spare: ThreadSet | undefined;

/**
 * Spawns `count` hash threads now, so that they load while the caller does other work (a command parsing its
 * options and opening its files); the next pool of `count` threads takes them. They keep no process alive, and
 * nothing is lost if no pool takes them. Does nothing if threads are already waiting.
 */
export function prestartThreads(count: number): void {
  if (spare || !Number.isSafeInteger(count) || count < 2) return;
  spare = new ThreadSet(count);
}

/** `count` threads for a new pool: the spare ones if they are that many, else new ones. */
export function takeThreads(count: number): ThreadSet {
  const taken = spare;
  if (taken && taken.count === count && !taken.failure) {
    spare = undefined;
    return taken;
  }
  return new ThreadSet(count);
}
