/**
 * Arithmetic in GF(2^8) with the field polynomial dm-verity's FEC uses: 0x11d = x^8 + x^4 + x^3 + x^2 + 1, primitive
 * element α = x = 2 (cryptsetup lib/verity/verity_fec.c: FEC_PARAMS; the kernel's init_rs_gfp(8, 0x11d, 0, 1, …)).
 * A byte is a field element bit by bit (bit k is the coefficient of x^k). Addition is XOR.
 */

/** The field polynomial x^8 + x^4 + x^3 + x^2 + 1. */
export const GF_POLY = 0x11d;

/** EXP[i] = α^i for 0 ≤ i < 510: twice the period, so EXP[LOG[a] + LOG[b]] needs no reduction. */
export const EXP: Uint8Array = new Uint8Array(510);
/** LOG[a] = i with α^i = a, for a ≠ 0; LOG[0] is unused (0 has no logarithm). */
export const LOG: Uint8Array = new Uint8Array(256);

{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= GF_POLY;
  }
}

/** a · b in GF(2^8). */
export function gfMul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a]! + LOG[b]!]!;
}

/** α^e for any integer e (α has order 255). */
export function gfPow(e: number): number {
  return EXP[((e % 255) + 255) % 255]!;
}

/** The 256 products c · x, x = 0…255: multiplying by a constant becomes a table lookup. */
export function mulTable(c: number): Uint8Array {
  const t = new Uint8Array(256);
  for (let x = 1; x < 256; x++) t[x] = gfMul(c, x);
  return t;
}

/**
 * The Reed–Solomon generator polynomial g(x) = (x − α^0)(x − α^1)…(x − α^(roots−1)) (first consecutive root α^0,
 * step α^1), as coefficients `g[k]` of x^k: `g[roots]` is 1. For 2 roots: x^2 + 3x + 2, so [2, 3, 1].
 */
export function generatorPolynomial(roots: number): Uint8Array {
  const g = new Uint8Array(roots + 1);
  g[0] = 1;
  for (let i = 0; i < roots; i++) {
    const root = gfPow(i);
    // g ← g · (x + α^i): in characteristic 2, subtraction is addition.
    for (let k = i + 1; k > 0; k--) g[k] = g[k - 1]! ^ gfMul(g[k]!, root);
    g[0] = gfMul(g[0]!, root);
  }
  return g;
}

/** p(x) for a polynomial given highest-degree coefficient first (a codeword as stored: message, then parity). */
export function evaluate(highestFirst: Uint8Array, x: number): number {
  let acc = 0;
  for (const c of highestFirst) acc = gfMul(acc, x) ^ c;
  return acc;
}
