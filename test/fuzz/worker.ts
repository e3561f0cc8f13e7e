/**
 * A fuzz worker thread (scripts/fuzz.ts starts them): runs the cases it is given and reports each start and end, so
 * that the main thread can tell a case that never returns, even one that blocks this thread, and restart the worker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Fuzzer, type Bounds } from './harness.js';
import { targetForCase } from './targets.js';

export interface WorkerTask {
  seed: number;
  targets: string[];
  /** Case indexes first, first + step, … below end. */
  first: number;
  step: number;
  end: number;
  bounds: Bounds;
}

export type WorkerMessage =
  | { type: 'start'; index: number }
  | { type: 'done'; index: number; target: string; outcomes: Record<string, string>; slowestMs: number; findings: import('./harness.js').Finding[]; tainted: boolean };

const task = workerData as WorkerTask;
const fuzzer = new Fuzzer(task.seed, task.bounds);
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
try {
  for (let index = task.first; index < task.end; index += task.step) {
    const target = targetForCase(task.targets, index);
    post({ type: 'start', index });
    const r = await fuzzer.run(target, index);
    post({ type: 'done', index, target: target.name, outcomes: r.outcomes, slowestMs: r.slowestMs, findings: r.findings, tainted: r.tainted });
    // An abandoned call may still be running and would slow or disturb the next cases: let the main thread restart us.
    if (r.tainted) break;
  }
} finally {
  fuzzer.close();
}
