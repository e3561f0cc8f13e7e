/**
 * Throughput of the BlockHasher engines (src/hash/) on the tree's hot path: 4 KiB blocks, hashed in batches of 256
 * (1 MiB per call) with a 32-byte salt in front (format 1), digests packed into one output array.
 *
 *   npx tsx bench/hash.bench.ts                    # sha256
 *   npx tsx bench/hash.bench.ts --hash all         # sha1, sha224, sha256, sha384, sha512
 *   npx tsx bench/hash.bench.ts --hash sha1,sha512 --time 2000
 *
 * Before timing, every contender's output is compared with node:crypto's on the same input (both salt placements,
 * every algorithm benchmarked); any difference aborts the run with exit code 1.
 *
 * MB/s are decimal (10^6 bytes per second). "p75"/"p99" are the throughputs at the 75th/99th percentile *latency*,
 * i.e. the slower batches. "mean" is what a long run gets: it counts the slow batches (garbage collection of the
 * per-block Hash objects shows there, not in the median). The machine is noisy: compare medians of several runs, not single figures.
 */
import { createHash, hash as oneShot } from 'node:crypto';
import { cpus } from 'node:os';
import { Bench } from 'tinybench';
import { DIGEST_SIZES, HASH_ALGORITHMS, type HashAlgorithm } from '../src/format/algorithms.js';
import type { BlockHasher, HashEngine, SaltPlacement } from '../src/hash/engine.js';
import { hashWasmEngine } from '../src/hash/hash-wasm-engine.js';
import { nodeCryptoEngine } from '../src/threads/node-crypto-engine.js';
import { wasmSimdEngine } from '../src/hash/wasm-simd-engine.js';

const BLOCK_SIZE = 4096;
const BATCH = 256;
const SALT_SIZE = 32;
const BATCH_BYTES = BLOCK_SIZE * BATCH;

// ---------------------------------------------------------------------------------------------------------------------
// Arguments

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function algorithmsFromArgs(): HashAlgorithm[] {
  const raw = argValue('--hash') ?? process.env.BENCH_HASHES ?? 'sha256';
  if (raw === 'all') return [...HASH_ALGORITHMS];
  return raw.split(',').map((name) => {
    const a = name.trim().toLowerCase();
    if (!(HASH_ALGORITHMS as string[]).includes(a)) throw new Error(`unknown hash "${name}" (have: ${HASH_ALGORITHMS.join(', ')}, all)`);
    return a as HashAlgorithm;
  });
}

const ALGORITHMS = algorithmsFromArgs();
const TIME_MS = Number(argValue('--time') ?? 1000);

// ---------------------------------------------------------------------------------------------------------------------
// Inputs: deterministic pseudo-random bytes (xorshift32), so runs are comparable

function pseudoRandom(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const data = pseudoRandom(BATCH_BYTES, 0x5eed);
const salt = pseudoRandom(SALT_SIZE, 0xa11ce);

/** The reference: one node:crypto hash object per block, salt before (prefix) or after (suffix) the block. */
function referenceDigests(algorithm: HashAlgorithm, placement: SaltPlacement): Uint8Array {
  const D = DIGEST_SIZES[algorithm];
  const out = new Uint8Array(BATCH * D);
  for (let i = 0; i < BATCH; i++) {
    const h = createHash(algorithm);
    if (placement === 'prefix') h.update(salt);
    h.update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
    if (placement === 'suffix') h.update(salt);
    out.set(h.digest(), i * D);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Correctness first

const ENGINES: HashEngine[] = [nodeCryptoEngine, hashWasmEngine, wasmSimdEngine];

async function checkEngine(engine: HashEngine, algorithm: HashAlgorithm): Promise<void> {
  const D = DIGEST_SIZES[algorithm];
  for (const placement of ['prefix', 'suffix'] as const) {
    const want = referenceDigests(algorithm, placement);
    const hasher = await engine.createBlockHasher({ algorithm, salt, saltPlacement: placement });
    // Packed, and at a padded stride with guard bytes in between (the tree writes into digest slots).
    const packed = new Uint8Array(BATCH * D);
    await hasher.hashBlocks(data, BLOCK_SIZE, BATCH, packed, 0, D);
    const stride = D + 7;
    const strided = new Uint8Array(3 + BATCH * stride).fill(0xa5);
    await hasher.hashBlocks(data, BLOCK_SIZE, BATCH, strided, 3, stride);
    for (let i = 0; i < BATCH; i++) {
      const ref = want.subarray(i * D, (i + 1) * D);
      const got = packed.subarray(i * D, (i + 1) * D);
      const gotStrided = strided.subarray(3 + i * stride, 3 + i * stride + D);
      const guard = strided.subarray(3 + i * stride + D, 3 + (i + 1) * stride);
      if (!Buffer.from(got).equals(ref) || !Buffer.from(gotStrided).equals(ref) || guard.some((b) => b !== 0xa5)) {
        throw new Error(
          `${engine.name} ${algorithm} (${placement} salt): block ${i} differs from node:crypto: ` +
            `got ${Buffer.from(got).toString('hex')}, want ${Buffer.from(ref).toString('hex')}`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Timing

interface Row {
  contender: string;
  algorithm: HashAlgorithm;
  median: number;
  mean: number;
  p75: number;
  p99: number;
  samples: number;
  rme: number;
}

const mbps = (latencyMs: number) => BATCH_BYTES / 1e6 / (latencyMs / 1000);

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`node ${process.version}, ${cpus().length} × ${cpu}`);
  console.log(
    `blocks ${BLOCK_SIZE} B, batches of ${BATCH} (${BATCH_BYTES / 1024} KiB per call), ${SALT_SIZE}-byte salt (prefix), ` +
      `${TIME_MS} ms per task`,
  );

  for (const algorithm of ALGORITHMS) {
    for (const engine of ENGINES) if (engine.supports(algorithm)) await checkEngine(engine, algorithm);
  }
  console.log(`correctness: ${ENGINES.map((e) => e.name).join(', ')} match node:crypto on ${ALGORITHMS.join(', ')} where supported (prefix and suffix salt)\n`);

  const rows: Row[] = [];
  for (const algorithm of ALGORITHMS) {
    const D = DIGEST_SIZES[algorithm];
    const out = new Uint8Array(BATCH * D);
    const hashers = new Map<string, BlockHasher>();
    for (const engine of ENGINES.filter((e) => e.supports(algorithm))) {
      hashers.set(engine.name, await engine.createBlockHasher({ algorithm, salt, saltPlacement: 'prefix' }));
    }
    const bench = new Bench({ time: TIME_MS, warmupTime: 200, throws: true });
    for (const [name, hasher] of hashers) {
      bench.add(`${name}`, async () => {
        await hasher.hashBlocks(data, BLOCK_SIZE, BATCH, out, 0, D);
      });
    }
    // Baseline: the same work as a plain synchronous node:crypto loop (what an engine costs on top of OpenSSL).
    bench.add('node:crypto loop (baseline)', () => {
      for (let i = 0; i < BATCH; i++) {
        const h = createHash(algorithm);
        h.update(salt);
        h.update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
        out.set(h.digest(), i * D);
      }
    });
    // The per-block variants node-crypto chose between (#14 item 1): a salted state copied per block, against the
    // one-shot crypto.hash over `salt ‖ block` staged in a reused buffer (what the engine runs where Node has it).
    const salted = createHash(algorithm).update(salt);
    bench.add('node:crypto copy() per block', () => {
      for (let i = 0; i < BATCH; i++) {
        const h = salted.copy();
        h.update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
        out.set(h.digest(), i * D);
      }
    });
    if (typeof oneShot === 'function') {
      const stage = new Uint8Array(SALT_SIZE + BLOCK_SIZE);
      stage.set(salt);
      bench.add('node:crypto one-shot, staged salt ‖ block', () => {
        for (let i = 0; i < BATCH; i++) {
          stage.set(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE), SALT_SIZE);
          out.set(oneShot(algorithm, stage, 'buffer'), i * D);
        }
      });
    }
    await bench.run();
    for (const task of bench.tasks) {
      const r = task.result;
      if (r.state !== 'completed') throw new Error(`${task.name} ${algorithm}: ${r.state}${'error' in r ? `: ${String(r.error)}` : ''}`);
      rows.push({
        contender: task.name,
        algorithm,
        median: mbps(r.latency.p50),
        mean: mbps(r.latency.mean),
        p75: mbps(r.latency.p75),
        p99: mbps(r.latency.p99),
        samples: r.latency.samplesCount,
        rme: r.latency.rme,
      });
    }
  }

  const header = ['contender', 'hash', 'median MB/s', 'mean MB/s', 'p75 MB/s', 'p99 MB/s', 'batches', '± rme'];
  const body = rows.map((r) => [
    r.contender,
    r.algorithm,
    r.median.toFixed(0),
    r.mean.toFixed(0),
    r.p75.toFixed(0),
    r.p99.toFixed(0),
    String(r.samples),
    `${r.rme.toFixed(1)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const row of body) console.log(line(row));
}

main().catch((e: unknown) => {
  console.error(`bench/hash.bench.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
