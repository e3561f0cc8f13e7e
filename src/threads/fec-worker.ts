/**
 * One thread of the FEC pool (fec-pool.ts), as the source text of a CommonJS script started with
 * `new Worker(source, { eval: true })`. It needs no file on disk, no TypeScript loader and no bundling step: the same
 * text runs from the sources under vitest/tsx, from dist/, and inside an application bundle. That is possible because
 * the thread's work is small: it compiles the Reed–Solomon module from the bytes it is given (rs-simd.ts:
 * rsWasmBinary(true), the shared-memory build), instantiates it over each shared memory the pool sends, and runs the
 * kernel over column ranges of a group the main thread has read into that memory.
 *
 * Messages (FecToWorker / FecFromWorker): `memory` (a new shared memory, this thread's scratch in it and the tables'
 * offset; no reply), `encode` (answered `done` or `error`, in arrival order).
 */

/** What a thread is started with. */
export interface FecWorkerInit {
  /** The shared-memory build of the Reed–Solomon module. */
  bytes: Uint8Array;
  /** Columns per kernel call (RS_CALL_COLUMNS). */
  callColumns: number;
}

/** A shared `WebAssembly.Memory` (tsconfig's lib has no WebAssembly types). */
export interface SharedWasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

export type FecToWorker =
  | { t: 'memory'; id: number; memory: SharedWasmMemory; roots: number; tab: number; scr: number }
  /** Codewords msg + b for b < width (a multiple of rsLanes), rows `stride` apart; parity to par + b · roots. */
  | { t: 'encode'; req: number; id: number; msg: number; stride: number; width: number; par: number };

export type FecFromWorker = { t: 'ready' } | { t: 'done'; req: number } | { t: 'error'; req: number; message: string };

/** The thread's script (plain JavaScript: it is evaluated as is). */
export const FEC_WORKER_SOURCE = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { bytes, callColumns } = workerData;
const module = new WebAssembly.Module(bytes);
let current;
parentPort.on('message', (m) => {
  if (m.t === 'memory') {
    try {
      const { exports } = new WebAssembly.Instance(module, { env: { memory: m.memory } });
      current = { id: m.id, encode: exports['encode_' + m.roots], roots: m.roots, rsn: 255 - m.roots, tab: m.tab, scr: m.scr };
    } catch (e) {
      current = { id: m.id, error: String((e && e.message) || e) };
    }
    return;
  }
  if (m.t !== 'encode') return;
  try {
    if (!current || current.id !== m.id) throw new Error('a job for memory ' + m.id + ', but this thread holds ' + (current && current.id));
    if (current.error) throw new Error(current.error);
    const { encode, roots, rsn, tab, scr } = current;
    for (let c = 0; c < m.width; c += callColumns) {
      encode(tab, m.msg + c, m.stride, rsn, Math.min(callColumns, m.width - c), m.par + c * roots, scr);
    }
    parentPort.postMessage({ t: 'done', req: m.req });
  } catch (e) {
    parentPort.postMessage({ t: 'error', req: m.req, message: String((e && e.message) || e) });
  }
});
parentPort.postMessage({ t: 'ready' });
`;
