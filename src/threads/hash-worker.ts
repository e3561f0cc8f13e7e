/**
 * One thread of the hash pool (hash-pool.ts): the entry of the worker, which runs the messages of protocol.ts in
 * arrival order (an arena switch that must load a kernel finishes before the next job starts) and answers each
 * request. The hashing itself is worker-hashing.ts; nothing but small messages crosses the thread boundary.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { VerityError } from '../errors.js';
import {
  describe,
  encodeError,
  type FaultMessage,
  type FromWorker,
  type HashMessage,
  type PoolInner,
  type ToWorker,
  WORKER_KIND,
  type WorkerInit,
} from './protocol.js';
import { READ_BYTES } from './arena.js';
import { checkConfig, hashBatch, openArena, probeKernel, type ThreadArena } from './worker-hashing.js';

/** The error a `reject` fault makes job `m` fail with (FaultMessage). */
function simulated(fault: FaultMessage, m: HashMessage): Error {
  const { error } = fault;
  if (error === undefined) return new VerityError('E_IO', 'Simulated failure in a hash worker.', { data: { offset: m.src } });
  return typeof error === 'string' ? new Error(error) : VerityError.fromJSON(error);
}

function main(): void {
  const port = parentPort!;
  /** What this thread hashes with, from the start message (the pool sends it before anything else). */
  let inner: PoolInner = 'node-crypto';
  let arena: ThreadArena | undefined;
  let queue: Promise<void> = Promise.resolve();
  /** A `reject` fault (test hook): the next hash job fails with its error. */
  let rejectNext: FaultMessage | undefined;

  const reply = (message: FromWorker): void => port.postMessage(message);

  const handle = async (m: ToWorker): Promise<void> => {
    switch (m.t) {
      case 'start':
        inner = m.inner;
        try {
          reply({ t: 'ready', scratchBytes: inner === 'wasm-simd' ? await probeKernel() : 0 });
        } catch (e) {
          // Start-up failures end the thread; the pool reports them from the 'error' event.
          setImmediate(() => {
            throw new Error(`Hash worker cannot start: ${describe(e)}`);
          });
        }
        return;
      case 'arena':
        arena = await openArena(inner, m);
        return;
      case 'config':
        try {
          checkConfig(inner, m.config);
          reply({ t: 'done', req: m.req });
        } catch (e) {
          reply({ t: 'error', req: m.req, error: encodeError(e) });
        }
        return;
      case 'hash':
        try {
          if (!arena || arena.id !== m.arena) {
            throw new Error(`Job for arena ${m.arena}, but this thread holds arena ${arena?.id}.`);
          }
          if (arena.error) throw new Error(arena.error);
          if (rejectNext) {
            const fault = rejectNext;
            rejectNext = undefined;
            throw simulated(fault, m);
          }
          checkConfig(inner, m.config);
          const outside = m.spans
            ? m.piece * m.blockSize > READ_BYTES
            : m.src < 0 || m.src + m.count * m.blockSize > arena.bytes.length;
          if (outside || !(m.piece >= 1)) throw new Error('Blocks outside the arena.');
          hashBatch(arena, m);
          reply({ t: 'done', req: m.req });
        } catch (e) {
          reply({ t: 'error', req: m.req, error: encodeError(e) });
        }
        return;
      case 'fault':
        return;
    }
  };

  port.on('message', (m: ToWorker) => {
    if (m.t === 'fault' && m.mode === 'reject') {
      rejectNext = m;
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

}

if (!isMainThread && (workerData as WorkerInit | undefined)?.kind === WORKER_KIND) main();
