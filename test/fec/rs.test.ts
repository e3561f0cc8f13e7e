/**
 * GF(2^8) and the Reed–Solomon encoder against known values and an independent encoder: polynomial long division
 * written out here, codeword by codeword, which every batch encoding must match; and the defining property of the
 * code, that every codeword is a multiple of g(x), so it vanishes at α^0 … α^(roots−1).
 */
import { describe, expect, it } from 'vitest';
import { EXP, evaluate, generatorPolynomial, gfMul, gfPow, LOG, mulTable } from '../../src/fec/gf256.js';
import { createRsEncoder, MAX_ROOTS, MIN_ROOTS } from '../../src/fec/rs.js';
import { Rng } from '../support/rng.js';

/** m(x) · x^roots mod g(x) by long division, highest-degree coefficient first: the parity of one codeword. */
function parityByDivision(message: Uint8Array, roots: number): Uint8Array {
  const g = generatorPolynomial(roots); // g[k] = coefficient of x^k, monic
  const work = new Uint8Array(message.length + roots);
  work.set(message);
  for (let i = 0; i < message.length; i++) {
    const c = work[i]!;
    if (c === 0) continue;
    // Subtract c · x^(…) · g(x); the leading term cancels work[i].
    for (let j = 0; j <= roots; j++) work[i + j]! ^= gfMul(c, g[roots - j]!);
  }
  return work.subarray(message.length);
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

describe('GF(2^8) with polynomial 0x11d', () => {
  it('has α = 2 of order 255, and the table values everyone quotes', () => {
    expect(gfPow(0)).toBe(1);
    expect(gfPow(1)).toBe(2);
    expect(gfPow(8)).toBe(0x1d); // x^8 = x^4 + x^3 + x^2 + 1
    expect(gfPow(255)).toBe(1);
    expect(new Set(Array.from({ length: 255 }, (_, i) => EXP[i])).size).toBe(255);
    expect(LOG[2]).toBe(1);
    expect(LOG[0x1d]).toBe(8);
    expect(gfMul(0x80, 2)).toBe(0x1d);
  });

  it('multiplies as carry-less multiplication reduced by 0x11d, for every pair', () => {
    const slow = (a: number, b: number) => {
      let p = 0;
      for (let i = 0; i < 8; i++) if (b & (1 << i)) p ^= a << i;
      for (let bit = 14; bit >= 8; bit--) if (p & (1 << bit)) p ^= 0x11d << (bit - 8);
      return p;
    };
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (gfMul(a, b) !== slow(a, b)) expect(gfMul(a, b)).toBe(slow(a, b));
  });

  it('multiplies commutatively and associatively, with inverses, as the tables say', () => {
    for (let a = 0; a < 256; a += 7) {
      const t = mulTable(a);
      for (let b = 0; b < 256; b++) {
        expect(t[b]).toBe(gfMul(a, b));
        expect(gfMul(a, b)).toBe(gfMul(b, a));
      }
      if (a !== 0) expect(gfMul(a, gfPow(255 - LOG[a]!))).toBe(1);
    }
    expect(gfMul(gfMul(3, 7), 11)).toBe(gfMul(3, gfMul(7, 11)));
  });
});

describe('the generator polynomial', () => {
  it('is x^2 + 3x + 2 for 2 roots and x^3 + 7x^2 + 14x + 8 for 3 roots (cryptsetup lib/verity/rs_encode_char.c; docs/fec.md, "The code")', () => {
    expect([...generatorPolynomial(2)]).toEqual([2, 3, 1]);
    expect([...generatorPolynomial(3)]).toEqual([8, 14, 7, 1]);
  });

  it('vanishes at α^0 … α^(roots−1) and nowhere else among the powers of α, for every roots 2..24', () => {
    for (let roots = MIN_ROOTS; roots <= MAX_ROOTS; roots++) {
      const highestFirst = generatorPolynomial(roots).slice().reverse();
      for (let e = 0; e < 255; e++) expect(evaluate(highestFirst, gfPow(e)) === 0, `roots ${roots}, α^${e}`).toBe(e < roots);
    }
  });
});

describe('the Reed–Solomon encoder', () => {
  it('rejects roots outside 2..24', () => {
    for (const roots of [0, 1, 25, 255, 2.5]) expect(() => createRsEncoder(roots, 512)).toThrow(/Invalid number of parity bytes/);
  });

  it('gives all-zero parity for an all-zero message, and for one symbol the generator polynomial times a power of x', () => {
    const enc = createRsEncoder(2, 1);
    const parity = new Uint8Array(2);
    enc.encodeRound(new Uint8Array(enc.rsn), parity);
    expect([...parity]).toEqual([0, 0]);
    // m(x) = 1 (the last message symbol): parity = x^2 mod g(x) = 3x + 2.
    const message = new Uint8Array(enc.rsn);
    message[enc.rsn - 1] = 1;
    enc.encodeRound(message, parity);
    expect([...parity]).toEqual([3, 2]);
  });

  for (const roots of [2, 3, 4, 8, 16, 23, 24]) {
    it(`with ${roots} roots: every codeword of a round matches long division and vanishes at α^0 … α^${roots - 1}`, () => {
      const rng = new Rng(0xfec0 + roots);
      const B = 67;
      const enc = createRsEncoder(roots, B);
      expect(enc.rsn).toBe(255 - roots);
      const messages = randomBytes(rng, enc.rsn * B);
      // Some codewords with structure: all zero, all 0xff, a single non-zero symbol.
      for (let i = 0; i < enc.rsn; i++) {
        messages[i * B] = 0;
        messages[i * B + 1] = 0xff;
        messages[i * B + 2] = i === 17 ? 0x42 : 0;
      }
      const parity = new Uint8Array(B * roots);
      enc.encodeRound(messages, parity);
      for (let b = 0; b < B; b++) {
        const message = Uint8Array.from({ length: enc.rsn }, (_, i) => messages[i * B + b]!);
        const p = parity.subarray(b * roots, (b + 1) * roots);
        expect([...p], `codeword ${b}`).toEqual([...parityByDivision(message, roots)]);
        const codeword = new Uint8Array(255);
        codeword.set(message);
        codeword.set(p, enc.rsn);
        for (let j = 0; j < roots; j++) expect(evaluate(codeword, gfPow(j)), `codeword ${b} at α^${j}`).toBe(0);
      }
    });
  }

  it('reads a round from any offset and stride, and can be reused round after round', () => {
    const rng = new Rng(7);
    const roots = 6;
    const B = 32;
    const stride = 3 * B + 5;
    const enc = createRsEncoder(roots, B);
    const buf = randomBytes(rng, 11 + enc.rsn * stride);
    const packed = new Uint8Array(enc.rsn * B);
    for (let i = 0; i < enc.rsn; i++) packed.set(buf.subarray(11 + i * stride, 11 + i * stride + B), i * B);
    const a = new Uint8Array(B * roots);
    const b = new Uint8Array(B * roots);
    enc.encodeRound(buf, a, { offset: 11, stride });
    enc.encodeRound(randomBytes(rng, enc.rsn * B), b); // a different round in between
    enc.encodeRound(packed, b);
    expect(b).toEqual(a);
    expect(() => enc.encodeRound(buf.subarray(0, 11 + (enc.rsn - 1) * stride + B - 1), a, { offset: 11, stride })).toThrow(/too small/);
    expect(() => enc.encodeRound(packed, a.subarray(1))).toThrow(/too small/);
  });
});
