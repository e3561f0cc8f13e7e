/**
 * Seeded fuzzing of every image reader through the library API (test/fuzz/README.md).
 *
 *     npm run fuzz -- [--cases 100000] [--seed 1] [--target vhdx[,zip…]] [--jobs 1] [--out fuzz-findings]
 *     npm run fuzz -- --seed 1 --target vhdx --case 1234      one case again, its input written to --out
 *
 * Cases are spread over the targets by weight (test/fuzz/targets.ts: targetForCase). Cases run in worker threads; the main thread restarts a worker whose
 * case has not ended well past its time limit (a loop that never yields cannot be timed out from inside). Prints
 * progress, every finding with the command that reproduces it, and a summary; exits 1 when anything was found.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { DEFAULT_BOUNDS, FUZZ_TMP, Fuzzer, caseInput, reproCommand, type Finding } from '../test/fuzz/harness.js';
import { targetForCase, targetNamed, targets } from '../test/fuzz/targets.js';
import type { WorkerMessage, WorkerTask } from '../test/fuzz/worker.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    target: { type: 'string' },
    case: { type: 'string' },
    jobs: { type: 'string', default: '1' },
    out: { type: 'string', default: 'fuzz-findings' },
    'time-limit': { type: 'string', default: String(DEFAULT_BOUNDS.timeLimitMs) },
  },
});

function integer(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, not "${text}".`);
  return n;
}

const seed = integer('seed', values.seed, 0);
const cases = integer('cases', values.cases, 1);
const jobs = integer('jobs', values.jobs, 1);
const bounds = { ...DEFAULT_BOUNDS, timeLimitMs: integer('time-limit', values['time-limit'], 1) };
const names = values.target ? values.target.split(',') : targets().map((t) => t.name);
for (const n of names) targetNamed(n);
const out = values.out;

function save(f: Finding): string {
  mkdirSync(out, { recursive: true });
  const base = join(out, `${f.target}-seed${f.seed}-case${f.index}`);
  writeFileSync(`${base}.bin`, f.input);
  writeFileSync(
    `${base}.txt`,
    `${f.kind} in ${f.entry}: ${f.message}\nreproduce: ${reproCommand(f)}\nmutations:\n  ${f.log.join('\n  ')}\n\n${f.stack}\n`,
  );
  return `${base}.bin`;
}

function describe(f: Finding): string {
  const at = /\n\s+at .*?\(?([^()\s]*src\/[^()\s]*)\)?/.exec(f.stack)?.[1] ?? '';
  return `[${f.target}] ${f.kind} in ${f.entry}: ${f.message}${at ? ` (at ${at})` : ''}\n    ${reproCommand(f)}\n    mutations: ${f.log.join('; ')}`;
}

if (values.case !== undefined) {
  // One case, in this thread, for triage under a debugger.
  const index = integer('case', values.case, 0);
  const target = targetForCase(names, index);
  const fuzzer = new Fuzzer(seed, bounds);
  const input = caseInput(seed, target, index);
  const r = await fuzzer.run(target, index, input);
  fuzzer.close();
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `${target.name}-seed${seed}-case${index}.bin`), target.wrap ? target.wrap(input.bytes) : input.bytes);
  console.log(`case ${index} of ${target.name}, seed ${seed}: ${input.bytes.length} bytes, written to ${out}/`);
  console.log(`mutations:\n  ${input.log.join('\n  ')}`);
  for (const [entry, outcome] of Object.entries(r.outcomes)) console.log(`${entry}: ${outcome}${r.messages[entry] ? ` ${r.messages[entry]}` : ''}`);
  for (const f of r.findings) console.log(`${describe(f)}\n${f.stack}`);
  process.exit(r.findings.length > 0 ? 1 : 0);
}

const started = performance.now();
let done = 0;
const findings: Finding[] = [];
const signatures = new Map<string, number>();
const outcomes = new Map<string, Map<string, number>>();
/** The slowest case so far, and how many took over a quarter of the time limit (near-hangs worth a look). */
let slowest = { ms: 0, target: '', index: -1 };
let slow = 0;

function record(target: string, entryOutcomes: Record<string, string>): void {
  const perTarget = outcomes.get(target) ?? new Map<string, number>();
  outcomes.set(target, perTarget);
  for (const [entry, outcome] of Object.entries(entryOutcomes)) {
    perTarget.set(`${entry}: ${outcome}`, (perTarget.get(`${entry}: ${outcome}`) ?? 0) + 1);
  }
}

function report(f: Finding): void {
  findings.push(f);
  const sig = `${f.target}|${f.entry}|${f.kind}|${f.message.replace(/\d+/g, 'N')}`;
  const seen = signatures.get(sig) ?? 0;
  signatures.set(sig, seen + 1);
  // Every input is kept; the first few of each kind are printed.
  const file = save(f);
  if (seen < 3) console.log(`FINDING ${describe(f)}\n    input: ${file}`);
}

/** Runs cases first, first + jobs, … below `cases` in a worker, restarting it after a hang. */
function lane(first: number): Promise<void> {
  return new Promise((resolve) => {
    let current = -1;
    let since = 0;
    const task: WorkerTask = { seed, targets: names, first, step: jobs, end: cases, bounds };
    const worker = new Worker(new URL('../test/fuzz/worker-boot.mjs', import.meta.url), { workerData: task });
    // Every entry point has its own limit inside the worker; this catches a thread that cannot even report it.
    const patience = bounds.timeLimitMs * 8 + 10_000;
    let restartAt: number | null = null;
    const watchdog = setInterval(() => {
      if (current < 0 || performance.now() - since < patience) return;
      const target = targetForCase(names, current);
      const { bytes, log } = caseInput(seed, target, current);
      report({ seed, target: target.name, index: current, entry: '(worker)', kind: 'hang', message: `the worker thread was blocked for ${Math.round(patience)} ms`, stack: '', log, input: bytes });
      done++;
      restartAt = current + jobs;
      void worker.terminate();
    }, 1000);
    let last = first - jobs;
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'start') {
        current = m.index;
        since = performance.now();
        return;
      }
      current = -1;
      last = m.index;
      done++;
      record(m.target, m.outcomes);
      if (m.slowestMs > slowest.ms) slowest = { ms: m.slowestMs, target: m.target, index: m.index };
      if (m.slowestMs > bounds.timeLimitMs / 4) slow++;
      for (const f of m.findings) report(f);
    });
    worker.on('error', (e) => {
      // An uncaught exception or unhandled rejection ends the worker: the case that was running caused it.
      if (current < 0) return console.log(`worker error between cases: ${e.stack ?? String(e)}`);
      const target = targetForCase(names, current);
      const { bytes, log } = caseInput(seed, target, current);
      report({ seed, target: target.name, index: current, entry: '(worker)', kind: 'exception', message: `uncaught: ${e.message}`, stack: e.stack ?? '', log, input: bytes });
      done++;
      restartAt = current + jobs;
    });
    worker.on('exit', () => {
      clearInterval(watchdog);
      const next = restartAt ?? last + jobs;
      if (next < cases) void lane(next).then(resolve);
      else resolve();
    });
  });
}

const progress = setInterval(() => {
  const s = (performance.now() - started) / 1000;
  console.log(`${done}/${cases} cases, ${(done / s).toFixed(0)}/s, ${findings.length} findings (${signatures.size} distinct)`);
}, 10_000);
console.log(`Fuzzing ${names.join(', ')}: ${cases} cases, seed ${seed}, ${jobs} worker(s); bounds: ${bounds.timeLimitMs} ms per entry point, ` +
  `${bounds.maxAllocation >> 20} MiB per allocation, ${bounds.maxGrowth >> 20} MiB live arrayBuffers growth.`);
await Promise.all(Array.from({ length: Math.min(jobs, cases) }, (_, j) => lane(j)));
clearInterval(progress);
// A worker terminated after a hang could not remove its directory.
for (const name of readdirSync(FUZZ_TMP)) {
  if (name.startsWith(`verity-fuzz-${process.pid}-`)) rmSync(join(FUZZ_TMP, name), { recursive: true, force: true });
}

const seconds = (performance.now() - started) / 1000;
console.log(`\nSummary: ${done} cases in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(1)} cases/s), seed ${seed}.`);
console.log(`Slowest entry point: ${slowest.ms.toFixed(0)} ms (${slowest.target} case ${slowest.index}); ${slow} cases had one over ${bounds.timeLimitMs / 4} ms.`);
for (const [target, counts] of [...outcomes].sort()) {
  console.log(`  ${target}:`);
  for (const [key, n] of [...counts].sort()) console.log(`    ${key} ×${n}`);
}
if (findings.length === 0) {
  console.log('No findings.');
} else {
  console.log(`${findings.length} findings, ${signatures.size} distinct; inputs and details in ${out}/:`);
  for (const [sig, n] of signatures) console.log(`  ×${n} ${sig}`);
}
process.exit(findings.length > 0 ? 1 : 0);
