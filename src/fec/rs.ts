/**
 * The systematic Reed–Solomon encoder of dm-verity's FEC: RS(255, 255 − roots) over GF(2^8) (gf256.ts), first
 * consecutive root α^0, full length (no shortening), as cryptsetup lib/verity/rs_encode_char.c (encode_rs_char) and
 * the kernel (lib/reed_solomon) define it. A codeword is the `rsn = 255 − roots` message bytes m_0 … m_(rsn−1),
 * m_0 the highest-degree coefficient, then the parity p_0 … p_(roots−1) = m(x) · x^roots mod g(x), p_0 highest.
 *
 * The encoder works on a whole round at once: the B codewords whose messages are byte b of the same rsn blocks. It
 * is behind a small interface so that faster kernels can replace this scalar one: the WebAssembly SIMD encoder of
 * rs-simd.ts (the default wherever SIMD runs), spread over worker threads on Node (threads/fec-pool.ts). This one
 * stays the path of runtimes without WebAssembly SIMD, and the reference the SIMD encoder is tested against.
 */
import { VerityError } from '../errors.js';
import { generatorPolynomial, mulTable } from './gf256.js';

/** Symbols per codeword (2^8 − 1). */
export const RS_CODEWORD = 255;
/** veritysetup's and the kernel's bounds on the parity bytes per codeword (FEC_MIN_RSN 231, FEC_MAX_RSN 253). */
export const MIN_ROOTS = 2;
export const MAX_ROOTS = 24;
export const DEFAULT_ROOTS = 2;

/** Throws E_PARAM unless `roots` is an integer from 2 to 24. */
export function checkRoots(roots: number): void {
  if (!Number.isInteger(roots) || roots < MIN_ROOTS || roots > MAX_ROOTS) {
    throw new VerityError(
      'E_PARAM',
      `Invalid number of parity bytes: FEC roots ${roots} is not an integer from ${MIN_ROOTS} to ${MAX_ROOTS}.`,
      { data: { field: 'fecRoots', actual: Number.isFinite(roots) ? roots : String(roots) } },
    );
  }
}

/** Where a round's messages lie in a buffer: message symbol i of codeword b is at `offset + i * stride + b`. */
export interface RoundLayout {
  offset: number;
  stride: number;
}

export interface RsEncoder {
  readonly roots: number;
  /** Message symbols per codeword: 255 − roots. */
  readonly rsn: number;
  /** Codewords per round: the block size B. */
  readonly blockSize: number;
  /**
   * Encodes the `blockSize` codewords of one round: symbol i of codeword b is byte b of message block i, found at
   * `messages[offset + i * stride + b]` (by default offset 0 and stride `blockSize`: the rsn blocks one after another).
   * Parity byte k of codeword b goes to `parity[b * roots + k]`, the order of the FEC area; `parity` holds
   * `blockSize * roots` bytes.
   */
  encodeRound(messages: Uint8Array, parity: Uint8Array, layout?: RoundLayout): void;
  /**
   * Buffers of `sizes` bytes that this encoder reads and writes without a copy (the SIMD encoder's own WebAssembly
   * memory, rs-simd.ts), 64-byte aligned. Each call replaces, and may detach, what an earlier one returned. Absent:
   * any Uint8Array will do.
   */
  buffers?(sizes: readonly number[]): Uint8Array[];
}

/**
 * The scalar encoder: the LFSR of a systematic encoder (divide m(x) · x^roots by g(x)), run for all B codewords of a
 * round side by side, with each multiplication by a coefficient of g(x) a table lookup.
 *
 * Register p_k (p_0 highest) becomes p_(k+1) + fb · g_(roots−1−k) after each message symbol, where fb = m_i + p_0 and
 * p_roots = 0. The registers are used as a ring, so that shift moves no bytes: after i symbols, p_k is at position
 * (i + k) mod roots. For 2 roots they are two rows of B bytes (row-wise loops, the fastest here). For more, each
 * codeword's register is a few 32-bit words, and one lookup in a table of the ring's current rotation gives every
 * fb · g_j already in place, added a word at a time.
 */
export function createRsEncoder(roots: number, blockSize: number): RsEncoder {
  checkRoots(roots);
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new VerityError('E_PARAM', `Invalid FEC block size ${blockSize}.`, { data: { field: 'blockSize', actual: blockSize } });
  }
  const rsn = RS_CODEWORD - roots;
  const g = generatorPolynomial(roots);
  // products[k][fb] = fb · g_(roots−1−k): what p_k receives (p_(roots−1) only this, the others on top of p_(k+1)).
  const products = Array.from({ length: roots }, (_, k) => mulTable(g[roots - 1 - k]!));
  const round = roots === 2 ? twoRowRound(products, blockSize) : wordRound(products, blockSize);
  return {
    roots,
    rsn,
    blockSize,
    encodeRound(messages, parity, layout = { offset: 0, stride: blockSize }) {
      const { offset, stride } = layout;
      if (parity.length < blockSize * roots || offset < 0 || stride < blockSize || offset + (rsn - 1) * stride + blockSize > messages.length) {
        throw new VerityError('E_INTERNAL', 'RS encoder: a round buffer is too small for its layout.');
      }
      round(messages, offset, stride, rsn, parity);
    },
  };
}

type Round = (messages: Uint8Array, offset: number, stride: number, rsn: number, parity: Uint8Array) => void;

/** 2 roots (the default, and CBL-Mariner's): two rows of B register bytes, p_0 in row `head`. */
function twoRowRound(products: Uint8Array[], B: number): Round {
  const [toP0, toP1] = products as [Uint8Array, Uint8Array];
  const reg = new Uint8Array(2 * B);
  return (messages, offset, stride, rsn, parity) => {
    reg.fill(0);
    let head = 0;
    for (let i = 0; i < rsn; i++) {
      const m = offset + i * stride;
      const h = head * B;
      const other = (head ^ 1) * B;
      for (let b = 0; b < B; b++) {
        const fb = reg[h + b]! ^ messages[m + b]!;
        reg[other + b]! ^= toP0[fb]!; // p_1 + fb · g_1 becomes p_0
        reg[h + b] = toP1[fb]!; // fb · g_0 becomes p_1
      }
      head ^= 1;
    }
    for (let b = 0; b < B; b++) {
      parity[2 * b] = reg[head * B + b]!;
      parity[2 * b + 1] = reg[(head ^ 1) * B + b]!;
    }
  };
}

/**
 * 3 to 24 roots: codeword b's register is W words (1, 2, 3 or 6: roots rounded up to 4, 8, 12 or 24 bytes) at
 * `b · W`, p_k at byte (head + k) mod roots. `rotated[(head · 256 + fb) · W …]` holds every fb · g_j at the byte of
 * the register it goes to for that head, fb · g_0 at `head` itself, whose old byte (the p_0 just consumed) is zeroed.
 */
function wordRound(products: Uint8Array[], B: number): Round {
  const roots = products.length;
  const W = roots <= 4 ? 1 : roots <= 8 ? 2 : roots <= 12 ? 3 : 6;
  const bytes = 4 * W;
  const table = new Uint32Array(roots * 256 * W);
  const table8 = new Uint8Array(table.buffer);
  for (let head = 0; head < roots; head++) {
    for (let k = 0; k < roots; k++) {
      // p_k after this symbol sits where p_(k+1) sat: (head + k + 1) mod roots; for k = roots − 1 that is `head`.
      const at = (head + k + 1) % roots;
      for (let fb = 0; fb < 256; fb++) table8[(head * 256 + fb) * bytes + at] = products[k]![fb]!;
    }
  }
  const reg = new Uint32Array(B * W);
  const reg8 = new Uint8Array(reg.buffer);
  return (messages, offset, stride, rsn, parity) => {
    reg.fill(0);
    let head = 0;
    for (let i = 0; i < rsn; i++) {
      const m = offset + i * stride;
      const base = head * 256;
      // One loop per register width: the JIT keeps the word updates unrolled.
      if (W === 1) {
        for (let b = 0, p = head; b < B; b++, p += 4) {
          const fb = reg8[p]! ^ messages[m + b]!;
          reg8[p] = 0;
          reg[b]! ^= table[base + fb]!;
        }
      } else if (W === 2) {
        for (let b = 0, p = head, w = 0; b < B; b++, p += 8, w += 2) {
          const fb = reg8[p]! ^ messages[m + b]!;
          reg8[p] = 0;
          const t = (base + fb) * 2;
          reg[w]! ^= table[t]!;
          reg[w + 1]! ^= table[t + 1]!;
        }
      } else if (W === 3) {
        for (let b = 0, p = head, w = 0; b < B; b++, p += 12, w += 3) {
          const fb = reg8[p]! ^ messages[m + b]!;
          reg8[p] = 0;
          const t = (base + fb) * 3;
          reg[w]! ^= table[t]!;
          reg[w + 1]! ^= table[t + 1]!;
          reg[w + 2]! ^= table[t + 2]!;
        }
      } else {
        for (let b = 0, p = head, w = 0; b < B; b++, p += 24, w += 6) {
          const fb = reg8[p]! ^ messages[m + b]!;
          reg8[p] = 0;
          const t = (base + fb) * 6;
          reg[w]! ^= table[t]!;
          reg[w + 1]! ^= table[t + 1]!;
          reg[w + 2]! ^= table[t + 2]!;
          reg[w + 3]! ^= table[t + 3]!;
          reg[w + 4]! ^= table[t + 4]!;
          reg[w + 5]! ^= table[t + 5]!;
        }
      }
      head = head + 1 === roots ? 0 : head + 1;
    }
    for (let b = 0; b < B; b++) {
      for (let k = 0, at = head; k < roots; k++, at = at + 1 === roots ? 0 : at + 1) parity[b * roots + k] = reg8[b * bytes + at]!;
    }
  };
}
