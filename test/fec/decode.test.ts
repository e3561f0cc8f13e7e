/**
 * Erasure decoding: codewords from the encoder that matches veritysetup byte for byte (rs.ts, test/fec/golden.test.ts),
 * damaged at known positions, must come back exactly when there are at most `roots` erasures, and be refused when
 * the spare syndromes show damage outside the erased positions. Then the block level: a covered area with parity,
 * damaged blocks restored round by round.
 */
import { describe, expect, it } from 'vitest';
import { decodeErasures, invertVandermonde, restoreBlocks, type CoveredRange } from '../../src/fec/decode.js';
import { encodeFec } from '../../src/fec/encode.js';
import { computeFecGeometry } from '../../src/fec/geometry.js';
import { gfMul, gfPow } from '../../src/fec/gf256.js';
import { createRsEncoder } from '../../src/fec/rs.js';
import { bytesSource, MemorySink } from '../../src/io/source.js';
import { Rng } from '../support/rng.js';

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

/** B codewords of RS(255, 255 − roots) as 255 symbol rows of B bytes (row j = stored position j of every codeword). */
function codewords(rng: Rng, roots: number, B: number): Uint8Array {
  const rsn = 255 - roots;
  const rows = new Uint8Array(255 * B);
  rows.set(randomBytes(rng, rsn * B));
  const parity = new Uint8Array(B * roots);
  createRsEncoder(roots, B).encodeRound(rows, parity);
  for (let b = 0; b < B; b++) for (let k = 0; k < roots; k++) rows[(rsn + k) * B + b] = parity[b * roots + k]!;
  return rows;
}

function distinct(rng: Rng, n: number, below: number): number[] {
  const out = new Set<number>();
  while (out.size < n) out.add(rng.int(0, below - 1));
  return [...out];
}

describe('invertVandermonde', () => {
  it('gives V⁻¹ with V · V⁻¹ = I for random distinct locators, 1 to 24 of them', () => {
    const rng = new Rng(7);
    for (let f = 1; f <= 24; f++) {
      const x = distinct(rng, f, 255).map((e) => gfPow(e));
      const inv = invertVandermonde(x);
      for (let i = 0; i < f; i++) {
        for (let c = 0; c < f; c++) {
          let sum = 0;
          for (let k = 0; k < f; k++) sum ^= gfMul(powOf(x[k]!, i), inv[k * f + c]!);
          expect(sum, `f=${f} (${i},${c})`).toBe(i === c ? 1 : 0);
        }
      }
    }
  });
});

function powOf(x: number, i: number): number {
  let p = 1;
  for (let n = 0; n < i; n++) p = gfMul(p, x);
  return p;
}

describe('decodeErasures', () => {
  it('restores up to roots erased symbols at any positions (message or parity), for roots 2 to 24', () => {
    const rng = new Rng(11);
    const B = 64;
    for (let roots = 2; roots <= 24; roots += rng.int(1, 3)) {
      for (let trial = 0; trial < 4; trial++) {
        const good = codewords(rng, roots, B);
        const f = rng.int(1, roots);
        const erased = distinct(rng, f, 255);
        const got = good.slice();
        for (const j of erased) got.set(randomBytes(rng, B), j * B);
        expect(decodeErasures(roots, B, erased, (j) => got.subarray(j * B, (j + 1) * B)), `roots ${roots}, ${f} erasures`).toBe(true);
        expect(Buffer.from(got).equals(Buffer.from(good)), `roots ${roots}, erasures ${erased}`).toBe(true);
      }
    }
  });

  it('refuses more erasures than roots', () => {
    const rng = new Rng(12);
    const good = codewords(rng, 4, 16);
    expect(decodeErasures(4, 16, [0, 1, 2, 3, 4], (j) => good.subarray(j * 16, (j + 1) * 16))).toBe(false);
  });

  it('refuses when a symbol outside the erased ones is also wrong and spare syndromes remain to show it', () => {
    const rng = new Rng(13);
    for (const roots of [2, 3, 8, 24]) {
      const B = 32;
      const good = codewords(rng, roots, B);
      const erased = distinct(rng, roots - 1, 255);
      const hidden = distinct(rng, roots + 2, 255).find((j) => !erased.includes(j))!;
      const got = good.slice();
      for (const j of erased) got.fill(0x5a, j * B, (j + 1) * B);
      got[hidden * B + rng.int(0, B - 1)]! ^= 1 + rng.int(0, 254);
      expect(decodeErasures(roots, B, erased, (j) => got.subarray(j * B, (j + 1) * B)), `roots ${roots}`).toBe(false);
    }
  });

  it('with no erasures, accepts valid codewords and refuses a damaged one', () => {
    const rng = new Rng(14);
    const good = codewords(rng, 2, 8);
    expect(decodeErasures(2, 8, [], (j) => good.subarray(j * 8, (j + 1) * 8))).toBe(true);
    good[100 * 8 + 3]! ^= 0x40;
    expect(decodeErasures(2, 8, [], (j) => good.subarray(j * 8, (j + 1) * 8))).toBe(false);
  });
});

describe('restoreBlocks', () => {
  const B = 512;
  /** A covered area of data and "hash" blocks with its parity in a separate FEC device. */
  async function area(rng: Rng, roots: number, dataBlocks: number, hashBlocks: number) {
    const g = computeFecGeometry({
      roots,
      dataBlockSize: B,
      hashBlockSize: B,
      dataBlocks,
      hashStartBlock: 1,
      fecOffset: 0,
      onHashDevice: false,
      hashDeviceSize: (1 + hashBlocks) * B,
    });
    const data = randomBytes(rng, dataBlocks * B);
    const hash = randomBytes(rng, (1 + hashBlocks) * B);
    const fec = new MemorySink();
    await encodeFec(g, { data: bytesSource(data), hash: bytesSource(hash) }, fec);
    const fecBytes = new Uint8Array(g.parityBytes);
    await fec.read(fecBytes, 0);
    /** Covered block k's bytes. */
    const block = (d: Uint8Array, h: Uint8Array, k: number) =>
      k < dataBlocks ? d.subarray(k * B, (k + 1) * B) : h.subarray((k - dataBlocks + 1) * B, (k - dataBlocks + 2) * B);
    return { g, data, hash, fecBytes, block };
  }

  it('restores every damaged block, data and hash, when no round holds more than roots of them; refuses the rest', async () => {
    const rng = new Rng(21);
    for (const roots of [2, 5, 24]) {
      const { g, data, hash, fecBytes, block } = await area(rng, roots, 700, 30);
      const damagedData = data.slice();
      const damagedHash = hash.slice();
      const chosen = distinct(rng, rng.int(1, 3 * roots), g.coveredBlocks).sort((a, b) => a - b);
      for (const k of chosen) block(damagedData, damagedHash, k).fill(0xee);
      const perRound = new Map<number, number>();
      for (const k of chosen) perRound.set(k % g.rounds, (perRound.get(k % g.rounds) ?? 0) + 1);
      const restored = new Map<number, Uint8Array>();
      const lost: number[] = [];
      const ranges: CoveredRange[] = chosen.map((k) => ({ first: k, count: 1 }));
      const summary = await restoreBlocks(
        g,
        { data: bytesSource(damagedData), hash: bytesSource(damagedHash), fec: bytesSource(fecBytes) },
        ranges,
        { onBlock: (k, bytes) => void restored.set(k, bytes.slice()), onUnrestorable: (k) => void lost.push(k) },
      );
      for (const k of chosen) {
        const within = perRound.get(k % g.rounds)! <= roots;
        if (within) expect(Buffer.from(restored.get(k)!).equals(Buffer.from(block(data, hash, k))), `roots ${roots} block ${k}`).toBe(true);
        else expect(lost, `roots ${roots} block ${k}`).toContain(k);
      }
      expect(summary.restored + summary.unrestorable).toBe(chosen.length);
      expect(summary.restored).toBe(restored.size);
    }
  });

  it('calls a round inconsistent when its parity is damaged too and spare syndromes remain', async () => {
    const rng = new Rng(22);
    const { g, data, hash, fecBytes } = await area(rng, 4, 400, 8);
    const damaged = data.slice();
    damaged.fill(0, 3 * B, 4 * B); // covered block 3, in round 3 mod rounds
    const n = 3 % g.rounds;
    const parity = fecBytes.slice();
    parity[(n * B + 17) * 4 + 1]! ^= 0xff; // that round, codeword 17, parity byte 1
    const why: string[] = [];
    const summary = await restoreBlocks(g, { data: bytesSource(damaged), hash: bytesSource(hash), fec: bytesSource(parity) }, [{ first: 3, count: 1 }], {
      onUnrestorable: (_k, w) => void why.push(w),
    });
    expect(summary).toMatchObject({ restored: 0, unrestorable: 1 });
    expect(why).toEqual(['inconsistent']);
  });

  it('refuses a FEC device shorter than the parity area', async () => {
    const rng = new Rng(23);
    const { g, data, hash, fecBytes } = await area(rng, 2, 300, 4);
    await expect(
      restoreBlocks(g, { data: bytesSource(data), hash: bytesSource(hash), fec: bytesSource(fecBytes.subarray(0, fecBytes.length - 1)) }, []),
    ).rejects.toMatchObject({ code: 'E_TRUNCATED' });
  });
});
