/**
 * The WebAssembly SIMD Reed–Solomon encoder (src/fec/rs-simd.ts, wasm/src/gen-rs.mjs) against the scalar encoder of
 * rs.ts, which the golden and differential tests tie to veritysetup: the same parity for random roots 2..24, block
 * sizes 512..65536 and layouts, whether the round lies in the encoder's own memory (no copy) or elsewhere (staged).
 */
import { describe, expect, it } from 'vitest';
import { encodeFec } from '../../src/fec/encode.js';
import { computeFecGeometry } from '../../src/fec/geometry.js';
import { createRsEncoder, MAX_ROOTS, MIN_ROOTS } from '../../src/fec/rs.js';
import { createFastRsEncoder, createRsSimdEncoder, rsLanes, rsSimdSupported, rsTables } from '../../src/fec/rs-simd.js';
import { generatorPolynomial, gfMul } from '../../src/fec/gf256.js';
import { bytesSource, MemorySink } from '../../src/io/source.js';
import { Rng } from '../support/rng.js';

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = rng.int(0, 0xffffffff);
    out[i] = v;
    out[i + 1] = v >>> 8;
    out[i + 2] = v >>> 16;
    out[i + 3] = v >>> 24;
  }
  return out;
}

describe('the SIMD Reed–Solomon encoder', () => {
  it('runs here (Node has WebAssembly SIMD), and createFastRsEncoder picks it', () => {
    expect(rsSimdSupported()).toBe(true);
    expect((createFastRsEncoder(2, 4096) as { kind?: string }).kind).toBe('wasm-simd');
    // A block size the kernel's steps do not divide gets the scalar encoder.
    expect((createFastRsEncoder(2, 96) as { kind?: string }).kind).toBeUndefined();
  });

  it('has nibble tables whose two halves give every product by each coefficient of g(x), in the registers\' order', () => {
    for (const roots of [2, 13, 24]) {
      const tables = rsTables(roots);
      const g = generatorPolynomial(roots);
      for (let k = 0; k < roots; k++) {
        for (let fb = 0; fb < 256; fb++) {
          expect(tables[32 * k + (fb & 15)]! ^ tables[32 * k + 16 + (fb >> 4)]!).toBe(gfMul(g[roots - 1 - k]!, fb));
        }
      }
    }
  });

  it('gives the scalar parity for random roots 2..24, block sizes 512..65536 and layouts, in its memory or not', () => {
    const rng = new Rng(0x5eed);
    for (let trial = 0; trial < 40; trial++) {
      const roots = trial < MAX_ROOTS - MIN_ROOTS + 1 ? MIN_ROOTS + trial : rng.int(MIN_ROOTS, MAX_ROOTS);
      const B = 512 << rng.int(0, trial % 5 === 4 ? 7 : 3);
      const simd = createRsSimdEncoder(roots, B);
      const scalar = createRsEncoder(roots, B);
      const offset = rng.int(0, 3) * 64 + (rng.int(0, 1) ? 0 : rng.int(0, 63));
      const stride = B + (rng.int(0, 1) ? 0 : rng.int(0, 300));
      const bytes = offset + (simd.rsn - 1) * stride + B + rng.int(0, 5);
      const layout = { offset, stride };
      const what = `roots ${roots}, B ${B}, offset ${offset}, stride ${stride}`;
      const messages = randomBytes(rng, bytes);
      const expected = new Uint8Array(B * roots);
      scalar.encodeRound(messages, expected, layout);
      // Outside the encoder's memory: staged through it.
      const parity = new Uint8Array(B * roots).fill(0xee);
      simd.encodeRound(messages, parity, layout);
      expect(Buffer.compare(parity, expected), what).toBe(0);
      // In its memory: encoded in place, writing nothing but the parity.
      const [inMessages, inParity] = simd.buffers([bytes, B * roots + 64]);
      inMessages!.set(messages);
      inParity!.fill(0xa5);
      simd.encodeRound(inMessages!, inParity!.subarray(0, B * roots), layout);
      expect(Buffer.compare(inParity!.subarray(0, B * roots), expected), `${what} (in place)`).toBe(0);
      expect(inParity!.subarray(B * roots).every((b) => b === 0xa5), what).toBe(true);
      expect(Buffer.compare(inMessages!, messages), `${what}: messages untouched`).toBe(0);
    }
  });

  it('refuses what it cannot encode: a block size its steps do not divide, a layout past the buffer', () => {
    expect(() => createRsSimdEncoder(2, 512 + rsLanes(2) / 2)).toThrow(/multiple of 128/);
    expect(() => createRsSimdEncoder(25, 4096)).toThrow(/FEC roots 25/);
    const simd = createRsSimdEncoder(4, 512);
    expect(() => simd.encodeRound(new Uint8Array(251 * 512 - 1), new Uint8Array(4 * 512))).toThrow(/too small/);
  });

  it('is what encodeFec uses by default, with the same parity as the scalar encoder', async () => {
    const rng = new Rng(7);
    for (const roots of [2, 5, 24]) {
      const g = computeFecGeometry({
        roots,
        dataBlockSize: 1024,
        hashBlockSize: 1024,
        dataBlocks: 900,
        hashStartBlock: 1,
        fecOffset: 0,
        onHashDevice: false,
        hashDeviceSize: 30 * 1024,
      });
      const inputs = { data: bytesSource(randomBytes(rng, 900 * 1024)), hash: bytesSource(randomBytes(rng, 30 * 1024)) };
      const fast = new MemorySink();
      const scalar = new MemorySink();
      await encodeFec(g, inputs, fast, { groupBytes: 3 * g.rsn * 1024 });
      await encodeFec(g, inputs, scalar, { groupBytes: 3 * g.rsn * 1024, encoder: createRsEncoder(roots, 1024) });
      expect(Buffer.compare(fast.bytes, scalar.bytes), `roots ${roots}`).toBe(0);
    }
  });
});
