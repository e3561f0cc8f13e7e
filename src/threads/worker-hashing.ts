/**
 * The hashing one pool thread does: its view of an arena (and the kernel over it), the block loop of the current
 * hasher, and claiming the pieces of a batch. The block loops are the engines' own: node-crypto-engine.ts's
 * (nodeCryptoBlocks) and the kernel's (wasm-kernel.ts: kernelBlockLoop), both with all-zero blocks skipped through
 * zero-blocks.ts, here in each thread, so zero-heavy images keep their parallelism.
 */
import { createHash } from 'node:crypto';
import { digestSize } from '../format/algorithms.js';
import type { BlockLoop } from '../hash/engine.js';
import { kernelBlockLoop, loadKernel, type Sha256Kernel, simdSupported, wasmApi } from '../hash/wasm-kernel.js';
import { skipZeroBlocks } from '../hash/zero-blocks.js';
import { spansWithin } from '../io/source.js';
import { readSpans } from './file-reads.js';
import { nodeCryptoBlocks } from './node-crypto-engine.js';
import { type ArenaMessage, describe, type HasherConfig, type HashMessage, type PoolInner } from './protocol.js';

/** This thread's view of one arena generation. */
export interface ThreadArena {
  id: number;
  bytes: Uint8Array;
  counter: Int32Array;
  /** The kernel instantiated over the arena (wasm-simd inner). */
  kernel?: Sha256Kernel;
  /** Why this thread cannot hash in this arena (reported by every job on it). */
  error?: string;
  /** This thread's kernel scratch and salt regions, and where it reads pieces that lie in files. */
  scratch: number;
  salt: number;
  read: number;
}

/** Opens the arena of an `arena` message; a failure is kept in `error` and reported by the jobs on it. */
export async function openArena(inner: PoolInner, m: ArenaMessage): Promise<ThreadArena> {
  const shared = m.buffer ?? (m.memory?.buffer as SharedArrayBuffer | undefined);
  const base = {
    id: m.id,
    scratch: m.scratch,
    salt: m.salt,
    read: m.read,
    counter: new Int32Array(shared ?? new SharedArrayBuffer(4), shared ? m.counter : 0, 1),
  };
  if (inner === 'node-crypto') {
    if (!m.buffer) return { ...base, bytes: new Uint8Array(0), error: 'The arena has no buffer.' };
    return { ...base, bytes: Buffer.from(m.buffer) };
  }
  if (!m.memory) return { ...base, bytes: new Uint8Array(0), error: 'The arena has no wasm memory.' };
  try {
    const kernel = await loadKernel(m.memory);
    if (kernel.scratchBytes > m.scratchBytes) {
      throw new Error(`The kernel needs ${kernel.scratchBytes} bytes of scratch; the arena has ${m.scratchBytes}.`);
    }
    return { ...base, bytes: new Uint8Array(m.memory.buffer), kernel };
  } catch (e) {
    return { ...base, bytes: new Uint8Array(0), error: `Cannot load the wasm-simd kernel: ${describe(e)}` };
  }
}

/** Throws for a config this thread's inner cannot hash. */
export function checkConfig(inner: PoolInner, config: HasherConfig): void {
  if (inner === 'wasm-simd' && config.algorithm !== 'sha256') {
    throw new Error(`The wasm-simd kernel hashes sha256 only, not ${config.algorithm}.`);
  }
  // Throws for an algorithm OpenSSL does not know.
  if (inner === 'node-crypto') createHash(config.algorithm);
}

/**
 * The block loop of the last arena and config, rebuilt when either changes. One at a time: the kernel loop sets this
 * thread's scratch up for its own salt, so a loop kept for another config would find the scratch set up for a
 * different salt.
 */
let current: { arena: number; config: number; hash: BlockLoop } | undefined;

function loopFor(arena: ThreadArena, config: HasherConfig): BlockLoop {
  if (current?.arena !== arena.id || current.config !== config.id) {
    const { algorithm, salt, placement } = config;
    const hash = arena.kernel
      ? skipZeroBlocks(kernelBlockLoop(arena.kernel, arena.scratch, arena.salt, salt, placement === 'prefix'), 32)
      : nodeCryptoBlocks({ algorithm, salt, saltPlacement: placement });
    current = { arena: arena.id, config: config.id, hash };
  }
  return current.hash;
}

/**
 * Claims and hashes pieces of batch `m` until every piece is taken, each digest at its block's place. A batch that
 * lies in files is read piece by piece into this thread's read region, and hashed there.
 */
export function hashBatch(arena: ThreadArena, m: HashMessage): void {
  const hash = loopFor(arena, m.config);
  const size = digestSize(m.config.algorithm);
  for (;;) {
    const first = Atomics.add(arena.counter, 0, 1) * m.piece;
    if (first >= m.count) return;
    const count = Math.min(m.piece, m.count - first);
    let src: Uint8Array;
    if (m.spans) {
      src = arena.bytes.subarray(arena.read, arena.read + count * m.blockSize);
      readSpans(spansWithin(m.spans, first * m.blockSize, count * m.blockSize), src);
    } else {
      src = arena.bytes.subarray(m.src + first * m.blockSize, m.src + (first + count) * m.blockSize);
    }
    hash(src, m.blockSize, count, arena.bytes, m.dst + first * size, size);
  }
}

/**
 * Loads the kernel over a throwaway memory, checks it against node:crypto in both salt placements (this is the
 * shared-memory build, which no other self-test reaches), and returns its scratch size.
 */
export async function probeKernel(): Promise<number> {
  if (!simdSupported()) throw new Error('WebAssembly SIMD is not supported by this runtime.');
  const { Memory } = wasmApi()!;
  const kernel = await loadKernel(new Memory({ initial: 1, maximum: 1, shared: true }));
  const bytes = new Uint8Array(kernel.memory.buffer);
  const [scratch, saltAt, src, dst] = [0, 8192, 16384, 32768];
  const blocks = 5;
  const blockSize = 512;
  const salt = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
  for (let i = 0; i < blocks * blockSize; i++) bytes[src + i] = (i * 131 + (i >>> 9)) & 0xff;
  for (const prefix of [true, false]) {
    // Through the loop the jobs use, so the probe covers its setup and addressing too.
    const hash = kernelBlockLoop(kernel, scratch, saltAt, salt, prefix);
    hash(bytes.subarray(src, src + blocks * blockSize), blockSize, blocks, bytes, dst, 32);
    for (let i = 0; i < blocks; i++) {
      const block = bytes.subarray(src + i * blockSize, src + (i + 1) * blockSize);
      const h = createHash('sha256');
      const expected = (prefix ? h.update(salt).update(block) : h.update(block).update(salt)).digest();
      if (!expected.equals(bytes.subarray(dst + i * 32, dst + (i + 1) * 32))) {
        const where = `block ${i}, salt ${prefix ? 'first' : 'last'}`;
        throw new Error(`The wasm-simd kernel over shared memory gives a wrong digest (${where}).`);
      }
    }
  }
  return kernel.scratchBytes;
}
