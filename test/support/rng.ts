/**
 * Deterministic PRNG (mulberry32) and helpers, shared by scripts/gen-golden.ts and test/campaigns/differential.test.ts.
 *
 * Both derive their test cases from it, so the algorithm and the number of draws each method makes must not change:
 * test/golden/vectors.json would no longer regenerate byte for byte, and a differential seed would pick other cases.
 */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
  weighted<T>(xs: readonly T[], weights: readonly number[]): T {
    const total = weights.reduce((a, b) => a + b, 0);
    let r = this.next() * total;
    for (let i = 0; i < xs.length; i++) {
      r -= weights[i] ?? 0;
      if (r < 0) return xs[i] as T;
    }
    return xs[xs.length - 1] as T;
  }
  /** Shuffles xs in place (Fisher–Yates) and returns it. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
    }
    return xs;
  }
  /** Integer in [lo, hi], roughly uniform in log scale (favours small values). */
  logInt(lo: number, hi: number): number {
    const v = Math.floor(Math.exp(Math.log(lo) + this.next() * (Math.log(hi + 1) - Math.log(lo))));
    return Math.min(hi, Math.max(lo, v));
  }
  /** `bytes` random bytes as lower-case hex. */
  hex(bytes: number): string {
    let s = '';
    for (let i = 0; i < bytes; i++) s += this.int(0, 255).toString(16).padStart(2, '0');
    return s;
  }
  /** A random RFC 4122 version-4 UUID, lower case. */
  uuid(): string {
    const h = this.hex(16).split('');
    h[12] = '4'; // version 4
    h[16] = '89ab'[this.int(0, 3)] as string; // RFC 4122 variant
    const s = h.join('');
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
  }
  /** Non-zero seed for makeData. */
  seed(): number {
    return (this.u32() % 0x7fffffff) + 1;
  }
}
