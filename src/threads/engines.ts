/**
 * Choosing the hash engine and thread count for a pass. `auto` measures, once per process, the WASM SIMD kernel against
 * node:crypto for sha256 and keeps the faster: the kernel wins on CPUs without SHA extensions, OpenSSL on CPUs with them
 * (docs/performance.md). Every engine passes its known-answer test before it is used.
 */
import { availableParallelism } from 'node:os';
import type { HashAlgorithm } from '../format/algorithms.js';
import type { HashEngine } from '../hash/engine.js';
import { hashWasmEngine } from '../hash/hash-wasm-engine.js';
import { nodeCryptoEngine } from './node-crypto-engine.js';
import { checkedEngine } from '../hash/select.js';
import { simdSupported } from '../hash/wasm-kernel.js';
import { wasmSimdEngine } from '../hash/wasm-simd-engine.js';
import { VerityError } from '../errors.js';
import { createHashPool } from './hash-pool.js';
import { ENGINE_NAMES, type EngineName, MIN_BYTES_FOR_THREADS } from './limits.js';

/** What `--engine` and EngineOptions.engine accept. */
export { ENGINE_NAMES, type EngineName } from './limits.js';

/** Single-threaded engines by name. */
export const ENGINES: readonly HashEngine[] = [nodeCryptoEngine, wasmSimdEngine, hashWasmEngine];

/** Below this much data, the engine choice (40–120 ms) costs more than the faster engine could save. */
const MIN_BYTES_FOR_RACE = 64 << 20;

/** How a pass asks for its engine. */
export interface EngineOptions {
  /** An engine, or a name from ENGINE_NAMES (default `auto`). */
  engine?: HashEngine | EngineName | string;
  /** Hashing threads (default: the available cores; 1 for small inputs). */
  threads?: number;
}

/** The engine of one pass, with what was chosen and a close() the pass must call when done. */
export interface OpenedEngine {
  engine: HashEngine;
  /** What was chosen and why, e.g. "wasm-simd ×2 (auto: 612 vs 480 MB/s)". */
  description: string;
  threads: number;
  close(): Promise<void>;
}

const measured = new Map<HashAlgorithm, { engine: HashEngine; note: string }>();

/** Hashes 1 MiB batches of 4 KiB blocks with a 32-byte salt; returns a function timing `n` batches in MB/s. */
async function bench(engine: HashEngine, algorithm: HashAlgorithm): Promise<(n: number) => Promise<number>> {
  const hasher = await engine.createBlockHasher({ algorithm, salt: new Uint8Array(32).fill(0x5a), saltPlacement: 'prefix' });
  const blocks = 256;
  const data = new Uint8Array(blocks * 4096);
  // SHA-256's cost does not depend on the bytes; one non-zero byte a block keeps the zero-block shortcut out of it.
  for (let b = 0; b < blocks; b++) data[b * 4096] = b + 1;
  const size = hasher.digestSize;
  const out = new Uint8Array(blocks * size);
  return async (n) => {
    const start = performance.now();
    for (let i = 0; i < n; i++) await hasher.hashBlocks(data, 4096, blocks, out, 0, size);
    return (n * data.length) / 1e3 / (performance.now() - start);
  };
}

/**
 * Each timer's best MB/s over `rounds` alternating rounds of one batch, after `warm` batches each. Alternating, and
 * taking each one's best round, makes the comparison robust to a busy second core; the warm-up lets V8 tier the
 * wasm kernel up (docs/performance.md).
 */
async function bestOf(timers: Array<(n: number) => Promise<number>>, warm: number[], rounds: number): Promise<number[]> {
  for (const [i, timer] of timers.entries()) if (warm[i]! > 0) await timer(warm[i]!);
  const best = timers.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    for (const [i, timer] of timers.entries()) best[i] = Math.max(best[i]!, await timer(1));
  }
  return best;
}

/**
 * SHA-256 at this many times SHA-512's speed means SHA extensions: measured here, 1.4× to 2.5× with them and 0.6×
 * to 0.7× without (docs/performance.md, "Choosing the engine"). In software, SHA-512 is the faster of the two per
 * byte on 64-bit CPUs (80 rounds over 128-byte blocks against 64 over 64-byte ones), so only instructions made for
 * SHA-256 put it well ahead. With them OpenSSL beats the WASM kernel, so the kernel is not even compiled.
 */
const SHA_EXTENSIONS_RATIO = 1.2;

async function autoEngine(algorithm: HashAlgorithm, dataBytes: number): Promise<{ engine: HashEngine; note: string }> {
  if (dataBytes < MIN_BYTES_FOR_RACE) return { engine: nodeCryptoEngine, note: 'auto: small input' };
  const cached = measured.get(algorithm);
  if (cached) return cached;
  let choice = { engine: nodeCryptoEngine as HashEngine, note: 'auto' };
  if (wasmSimdEngine.supports(algorithm) && simdSupported()) {
    // sha256 only (what the kernel hashes): OpenSSL's SHA-256 against its SHA-512 first, 40–60 ms cold.
    const openssl = await bench(nodeCryptoEngine, 'sha256');
    const [sha256, sha512] = await bestOf([openssl, await bench(nodeCryptoEngine, 'sha512')], [1, 1], 8);
    const ratio = sha256! / sha512!;
    if (ratio > SHA_EXTENSIONS_RATIO) {
      choice.note = `auto: SHA extensions (OpenSSL's SHA-256 at ${ratio.toFixed(1)}× its SHA-512)`;
    } else {
      // Then the kernel against OpenSSL: about 50 ms more with the kernel's compilation.
      await checkedEngine(wasmSimdEngine, algorithm);
      const [simd, again] = await bestOf([await bench(wasmSimdEngine, algorithm), openssl], [2, 0], 4);
      const best = Math.max(sha256!, again!);
      choice = {
        engine: simd! > best ? wasmSimdEngine : nodeCryptoEngine,
        note: `auto: wasm-simd ${simd!.toFixed(0)} MB/s, node-crypto ${best.toFixed(0)} MB/s`,
      };
    }
  }
  measured.set(algorithm, choice);
  return choice;
}

function byName(name: string): HashEngine {
  const found = ENGINES.find((e) => e.name === name);
  if (!found) throw new VerityError('E_PARAM', `Unknown hash engine "${name}". Available: ${ENGINE_NAMES.join(', ')}.`);
  return found;
}

/**
 * The engine for a pass over `dataBytes` bytes hashed with `algorithm`, wrapped in a worker pool when more than one
 * thread is used. Close it when the pass is done.
 */
export async function openEngine(algorithm: HashAlgorithm, dataBytes: number, options: EngineOptions = {}): Promise<OpenedEngine> {
  const requested = options.engine ?? 'auto';
  let single: HashEngine;
  let note = '';
  if (typeof requested !== 'string') single = requested;
  else if (requested === 'auto') ({ engine: single, note } = await autoEngine(algorithm, dataBytes));
  else single = byName(requested);
  if (!single.supports(algorithm)) {
    throw new VerityError('E_PARAM', `Hash engine ${single.name} does not support ${algorithm}.`);
  }
  await checkedEngine(single, algorithm);

  const poolable = single === nodeCryptoEngine || single === wasmSimdEngine;
  const threads =
    options.threads ?? (dataBytes >= MIN_BYTES_FOR_THREADS ? availableParallelism() : 1);
  if (!Number.isSafeInteger(threads) || threads < 1) {
    throw new VerityError('E_PARAM', `Threads must be a positive integer; got ${threads}.`);
  }
  const describe = (name: string, notes: string[]) => (notes.length > 0 ? `${name} (${notes.join('; ')})` : name);
  if (threads === 1 || !poolable) {
    const notes = [note, threads > 1 ? `${single.name} runs on one thread` : ''].filter(Boolean);
    return { engine: single, threads: 1, description: describe(single.name, notes), close: async () => {} };
  }
  const pool = createHashPool({ threads, inner: single === wasmSimdEngine ? 'wasm-simd' : 'node-crypto' });
  try {
    await checkedEngine(pool, algorithm);
  } catch (e) {
    await pool.close?.();
    if (!(e instanceof VerityError && e.code === 'E_UNSUPPORTED')) throw e;
    // Threads cannot start here (no worker_threads, a worker that cannot load): slower, but the result is the same.
    warnNoThreads(e);
    const notes = [note, 'threads cannot start; hashed on the calling thread'].filter(Boolean);
    return { engine: single, threads: 1, description: describe(single.name, notes), close: async () => {} };
  }
  return {
    engine: pool,
    threads,
    description: describe(`${single.name} ×${threads}`, note ? [note] : []),
    close: async () => pool.close?.(),
  };
}

let warnedNoThreads = false;

/** One process warning (the first time only: a long-running app would otherwise repeat it every pass). */
function warnNoThreads(e: VerityError): void {
  if (warnedNoThreads) return;
  warnedNoThreads = true;
  process.emitWarning(`${e.message.replace(/\.?$/, ".")} Hashing on the calling thread instead.`, { code: 'VERITY_NO_THREADS' });
}
