/**
 * Throughput of the kernel's `hash` export against node:crypto, as docs/performance.md reports them: 4 KiB blocks, a
 * 32-byte salt in front (format 1), calls of 256 blocks (1 MiB) walking through DATA_MIB of random data in wasm memory,
 * one warm-up pass, then the median of RUNS timed passes. Before each timed pass it waits (up to 10 s) for the other
 * cores to be idle. MB/s = 10^6 bytes of block data per second of wall time; CPU time (user + sys) alongside.
 *
 *   node wasm/bench.mjs                    # kernel, node:crypto, and node:crypto with SHA-NI masked from OpenSSL
 *   node wasm/bench.mjs --runs 9 --data 128
 *
 * "node:crypto, no SHA-NI" runs in a child with OPENSSL_ia32cap=":~0x20000000" (clears the SHA extension bit of
 * CPUID leaf 7 for OpenSSL; see OpenSSL's OPENSSL_ia32cap(3)), which emulates a CPU without the SHA extensions.
 *
 * The kernel measured is the committed one: the plain-memory binary decoded from src/hash/wasm-sha256-binary.ts
 * (readModule() checks it against its recorded sha256), so plain node runs this without a build or wabt.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { readModule } from './build.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const RUNS = Number(arg('--runs', 7));
const DATA_MIB = Number(arg('--data', 64));
const ONLY = arg('--only', 'all'); // 'kernel', 'crypto' or 'all'
const BLOCK = 4096;
const PER_CALL = 256;
const SALT_LEN = 32;

function cpuTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) };
}

/** Waits until the machine, apart from this (spinning) thread, is under ~8% busy over 300 ms; gives up after 10 s. */
function waitIdle() {
  let t0;
  try {
    t0 = cpuTicks();
  } catch {
    return; // no /proc/stat
  }
  const ownShare = 1 / cpus().length;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const start = Date.now();
    while (Date.now() - start < 300);
    const t1 = cpuTicks();
    const busy = 1 - (t1.idle - t0.idle) / (t1.total - t0.total);
    if (busy < ownShare + 0.08) return;
    t0 = t1;
  }
}

function timed(label, pass, bytes) {
  pass(); // warm-up: V8 tiers the kernel up between calls
  const wall = [];
  const cpu = [];
  for (let r = 0; r < RUNS; r++) {
    waitIdle();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    pass();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    wall.push(bytes / 1e3 / ms);
    cpu.push(bytes / (c.user + c.system));
  }
  const sorted = [...wall].sort((a, b) => a - b);
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  return {
    label,
    median: median(wall),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    cpu: median(cpu),
  };
}

const blocks = (DATA_MIB << 20) / BLOCK;
const salt = randomFillSync(new Uint8Array(SALT_LEN));

/** The committed plain-memory kernel, as the core loads it for a non-shared memory. */
const KERNEL = readModule().find((a) => !a.shared).wasm;

function kernelRow() {
  const wasm = KERNEL;
  const SCRATCH = 0;
  const SALT = 8192;
  const DST = 16384;
  const SRC = 1 << 20;
  const memory = new WebAssembly.Memory({ initial: (SRC + blocks * BLOCK) / 65536 });
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(wasm), { env: { memory } });
  const bytes = new Uint8Array(memory.buffer);
  for (let at = SRC; at < bytes.length; at += 65536) randomFillSync(bytes, at, 65536);
  bytes.set(salt, SALT);
  exports.setup(SCRATCH, SALT, SALT_LEN, BLOCK, 1);
  const pass = () => {
    for (let first = 0; first < blocks; first += PER_CALL) exports.hash(SCRATCH, SRC + first * BLOCK, PER_CALL, DST, 32);
  };
  pass();
  // Correctness of the last call's digests before timing anything.
  const last = blocks - PER_CALL;
  for (const i of [0, 1, 2, 3, 100, 255]) {
    const block = bytes.subarray(SRC + (last + i) * BLOCK, SRC + (last + i + 1) * BLOCK);
    const want = createHash('sha256').update(salt).update(block).digest();
    if (!want.equals(bytes.subarray(DST + 32 * i, DST + 32 * i + 32))) throw new Error(`kernel digest ${i} is wrong`);
  }
  return timed('wasm SIMD kernel, hash() in 1 MiB calls', pass, blocks * BLOCK);
}

function cryptoRow(label) {
  const data = new Uint8Array(blocks * BLOCK);
  for (let at = 0; at < data.length; at += 65536) randomFillSync(data, at, 65536);
  const out = new Uint8Array(PER_CALL * 32);
  const pass = () => {
    for (let first = 0; first < blocks; first += PER_CALL) {
      for (let i = 0; i < PER_CALL; i++) {
        const h = createHash('sha256');
        h.update(salt);
        h.update(data.subarray((first + i) * BLOCK, (first + i + 1) * BLOCK));
        out.set(h.digest(), i * 32);
      }
    }
  };
  return timed(label, pass, blocks * BLOCK);
}

const rows = [];
if (ONLY === 'all' || ONLY === 'kernel') rows.push(kernelRow());
if (ONLY === 'all' || ONLY === 'crypto') {
  rows.push(cryptoRow(`node:crypto per block${process.env.OPENSSL_ia32cap ? `, OPENSSL_ia32cap=${process.env.OPENSSL_ia32cap}` : ''}`));
}
if (ONLY === 'all') {
  const child = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--only', 'crypto', '--json', '--runs', String(RUNS), '--data', String(DATA_MIB)], {
    env: { ...process.env, OPENSSL_ia32cap: ':~0x20000000' },
  });
  rows.push(...JSON.parse(child.toString()));
}

if (process.argv.includes('--json')) {
  console.log(JSON.stringify(rows));
} else {
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`);
  console.log(`${DATA_MIB} MiB of ${BLOCK}-byte blocks, ${SALT_LEN}-byte salt first, calls of ${PER_CALL} blocks; median of ${RUNS} runs`);
  console.log('| method | wall MB/s median (min–max) | CPU-time MB/s |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.label} | ${r.median.toFixed(0)} (${r.min.toFixed(0)}–${r.max.toFixed(0)}) | ${r.cpu.toFixed(0)} |`);
}
