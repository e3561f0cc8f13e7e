/**
 * wasm-simd engine: the 4-lane WebAssembly SIMD SHA-256 kernel (wasm-kernel.ts) on the calling thread, sha256 only.
 * On CPUs without SHA extensions it is faster than node:crypto (docs/performance.md: ~1.8×); with them OpenSSL wins, so
 * callers choose at run time. Each hasher owns a non-shared memory: blocks are copied in a kernel call's worth at a
 * time, hashed by the kernel's block loop (kernelBlockLoop, which the hash pool's threads run over their shared arena),
 * and the digests copied out.
 */
import { VerityError } from '../errors.js';
import { digestSize } from '../format/algorithms.js';
import { MAX_SALT_SIZE } from '../format/params.js';
import type { BlockHasher, BlockHasherOptions, BlockLoop, HashEngine } from './engine.js';
import { KERNEL_CALL_BYTES, kernelBlockLoop, kernelBlocksPerCall, loadKernel, simdSupported, wasmApi } from './wasm-kernel.js';
import { skipZeroBlocks } from './zero-blocks.js';

/** Most blocks per kernel call (bounds the digest area for tiny blocks; 1 MiB of 512-byte blocks is 2048). */
const PIECE_BLOCKS = 2048;
const DIGEST = 32;
const PAGE = 65536;

// Memory layout of a hasher: kernel scratch, salt, digests, then the block data (grown on demand).
const SCRATCH_AT = 0;
const SALT_AT = 8192;
const DIGESTS_AT = 16384;
const DATA_AT = DIGESTS_AT + PIECE_BLOCKS * DIGEST;

/** The SIMD kernel on the calling thread; sha256 only. */
export const wasmSimdEngine: HashEngine = {
  name: 'wasm-simd',
  supports: (algorithm) => algorithm === 'sha256',
  batchBytes: KERNEL_CALL_BYTES,
  async createBlockHasher({ algorithm, salt, saltPlacement }: BlockHasherOptions): Promise<BlockHasher> {
    if (algorithm !== 'sha256') {
      throw new VerityError('E_PARAM', `Hash engine wasm-simd supports sha256 only, not ${algorithm}.`);
    }
    if (salt.length > MAX_SALT_SIZE) {
      throw new VerityError('E_PARAM', `Salt is ${salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`);
    }
    const api = wasmApi();
    if (!api || !simdSupported()) {
      throw new VerityError('E_PARAM', 'This runtime has no WebAssembly SIMD; the wasm-simd engine cannot run.');
    }
    const memory = new api.Memory({ initial: Math.ceil(DATA_AT / PAGE) });
    const kernel = await loadKernel(memory);
    if (kernel.scratchBytes > SALT_AT - SCRATCH_AT) {
      throw new VerityError('E_INTERNAL', `The wasm-simd kernel needs ${kernel.scratchBytes} bytes of scratch; ${SALT_AT} are reserved.`);
    }
    const hashInMemory = kernelBlockLoop(kernel, SCRATCH_AT, SALT_AT, salt, saltPlacement === 'prefix');
    let bytes = new Uint8Array(memory.buffer);

    /** Copies the blocks into the kernel's memory a call's worth at a time, and the digests out. */
    const staged: BlockLoop = (src, blockSize, count, dst, dstOffset, dstStride) => {
      const perCall = Math.min(PIECE_BLOCKS, kernelBlocksPerCall(blockSize));
      const needed = DATA_AT + Math.min(perCall, count) * blockSize;
      if (needed > memory.buffer.byteLength) {
        memory.grow(Math.ceil((needed - memory.buffer.byteLength) / PAGE));
        bytes = new Uint8Array(memory.buffer); // growing detached the old buffer
      }
      for (let first = 0; first < count; first += perCall) {
        const n = Math.min(perCall, count - first);
        bytes.set(src.subarray(first * blockSize, (first + n) * blockSize), DATA_AT);
        hashInMemory(bytes.subarray(DATA_AT, DATA_AT + n * blockSize), blockSize, n, bytes, DIGESTS_AT, DIGEST);
        if (dstStride === DIGEST) {
          dst.set(bytes.subarray(DIGESTS_AT, DIGESTS_AT + n * DIGEST), dstOffset + first * DIGEST);
        } else {
          for (let i = 0; i < n; i++) {
            const at = DIGESTS_AT + i * DIGEST;
            dst.set(bytes.subarray(at, at + DIGEST), dstOffset + (first + i) * dstStride);
          }
        }
      }
    };
    const hash = skipZeroBlocks(staged, DIGEST);

    return {
      digestSize: digestSize(algorithm),
      async hashBlocks(src, blockSize, count, dst, dstOffset, dstStride) {
        if (count <= 0) return;
        if (!Number.isSafeInteger(blockSize) || blockSize < 1 || src.length < count * blockSize) {
          throw new VerityError('E_INTERNAL', `wasm-simd: ${count} blocks of ${blockSize} bytes do not fit in ${src.length} bytes.`);
        }
        hash(src, blockSize, count, dst, dstOffset, dstStride);
      },
    };
  },
};
