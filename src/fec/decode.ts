/**
 * Restoring damaged blocks from dm-verity FEC parity by **erasure** decoding.
 *
 * veritysetup's verify (lib/verity/verity_fec.c) corrects *errors*: symbols whose positions it does not know, at most
 * roots / 2 per codeword. The hash tree says which blocks are damaged, so their symbols are *erasures*: known
 * positions with unknown values, and a codeword with `roots` parity symbols restores up to `roots` of them. The
 * kernel does the same when it reads (drivers/md/dm-verity-fec.c: fec_is_erasure marks a block whose digest does not
 * match the tree); test/kernel/kernel.test.ts checks both against our parity.
 *
 * A damaged covered block is one symbol in each of the B codewords of its round (geometry.ts), at the same position in
 * every one; so all codewords of a round share their erasure positions. With f erasures at stored positions j_k
 * (locators X_k = α^(254 − j_k), the stored order being highest degree first) and the erased symbols read as zero,
 * the syndromes S_i = c(α^i), i = 0 … roots − 1, of the received word equal Σ_k e_k · X_k^i, where e_k are the
 * missing values (a valid codeword has every S_i = 0: g(x) has the roots α^0 … α^(roots−1)). The first f equations
 * are a Vandermonde system in the e_k, inverted once per round; the other roots − f syndromes must then agree, which
 * catches a damaged symbol the tree could not point at (the parity itself). When f = roots nothing is left to check
 * with, so a caller compares restored blocks with the tree (api/verify.ts does).
 */
import { VerityError } from '../errors.js';
import type { ByteSource } from '../io/source.js';
import { readExactly, readOrZeros } from '../io/source.js';
import { EXP, gfMul, gfPow, LOG, mulTable } from './gf256.js';
import { coveredBlockAt, type FecGeometry } from './geometry.js';
import { RS_CODEWORD } from './rs.js';

/** a / b in GF(2^8), b ≠ 0. */
function gfDiv(a: number, b: number): number {
  return a === 0 ? 0 : EXP[LOG[a]! + 255 - LOG[b]!]!;
}

/**
 * The inverse of the f × f matrix V[i][k] = X_k^i (distinct non-zero X_k), by Gauss–Jordan elimination; row-major.
 */
export function invertVandermonde(locators: readonly number[]): Uint8Array {
  const f = locators.length;
  const a = new Uint8Array(f * 2 * f);
  const w = 2 * f;
  for (let i = 0; i < f; i++) {
    for (let k = 0; k < f; k++) a[i * w + k] = i === 0 ? 1 : gfMul(a[(i - 1) * w + k]!, locators[k]!);
    a[i * w + f + i] = 1;
  }
  for (let col = 0; col < f; col++) {
    let pivot = col;
    while (pivot < f && a[pivot * w + col] === 0) pivot++;
    if (pivot === f) throw new VerityError('E_INTERNAL', 'FEC: the erasure locators are not distinct.');
    if (pivot !== col) {
      for (let c = 0; c < w; c++) {
        const t = a[col * w + c]!;
        a[col * w + c] = a[pivot * w + c]!;
        a[pivot * w + c] = t;
      }
    }
    const inv = gfDiv(1, a[col * w + col]!);
    for (let c = 0; c < w; c++) a[col * w + c] = gfMul(a[col * w + c]!, inv);
    for (let r = 0; r < f; r++) {
      const factor = a[r * w + col]!;
      if (r === col || factor === 0) continue;
      for (let c = 0; c < w; c++) a[r * w + c]! ^= gfMul(factor, a[col * w + c]!);
    }
  }
  const out = new Uint8Array(f * f);
  for (let r = 0; r < f; r++) out.set(a.subarray(r * w + f, r * w + w), r * f);
  return out;
}

/**
 * Fills in the erased symbols of B codewords that share their erasure positions. `symbol(j)` is the B bytes of
 * stored position j (0 … 254: message symbols, then parity), byte b belonging to codeword b; the erased positions'
 * bytes are overwritten with the restored values. Returns false, leaving them zero, when a codeword's spare
 * syndromes disagree (a symbol outside `erased` is wrong too) or there are more erasures than `roots`.
 */
export function decodeErasures(roots: number, B: number, erased: readonly number[], symbol: (j: number) => Uint8Array): boolean {
  const f = erased.length;
  if (f > roots) return false;
  for (const j of erased) symbol(j).fill(0);
  if (f === 0) return syndromesZero(roots, B, symbol);
  const locators = erased.map((j) => gfPow(RS_CODEWORD - 1 - j));
  const inverse = invertVandermonde(locators);
  // S_i of every codeword, by Horner's rule over the stored positions (highest degree first).
  const syndromes = Array.from({ length: roots }, () => new Uint8Array(B));
  for (let i = 0; i < roots; i++) {
    const times = mulTable(gfPow(i));
    const s = syndromes[i]!;
    for (let j = 0; j < RS_CODEWORD; j++) {
      const c = symbol(j);
      for (let b = 0; b < B; b++) s[b] = times[s[b]!]! ^ c[b]!;
    }
  }
  // e = V⁻¹ · (S_0 … S_(f−1)), with a product table per entry of V⁻¹.
  const tables = Array.from(inverse, (v) => mulTable(v));
  const values = erased.map((j) => symbol(j));
  for (let k = 0; k < f; k++) {
    const e = values[k]!;
    for (let i = 0; i < f; i++) {
      const t = tables[k * f + i]!;
      const s = syndromes[i]!;
      for (let b = 0; b < B; b++) e[b]! ^= t[s[b]!]!;
    }
  }
  // The spare syndromes: Σ_k e_k · X_k^i must equal S_i for i = f … roots − 1.
  for (let i = f; i < roots; i++) {
    const powers = locators.map((x) => mulTable(EXP[(LOG[x]! * i) % 255]!));
    const s = syndromes[i]!;
    for (let b = 0; b < B; b++) {
      let sum = 0;
      for (let k = 0; k < f; k++) sum ^= powers[k]![values[k]![b]!]!;
      if (sum !== s[b]) {
        for (const v of values) v.fill(0);
        return false;
      }
    }
  }
  return true;
}

/** Whether every codeword is valid as received (no erasures: all syndromes zero). */
function syndromesZero(roots: number, B: number, symbol: (j: number) => Uint8Array): boolean {
  for (let i = 0; i < roots; i++) {
    const times = mulTable(gfPow(i));
    const s = new Uint8Array(B);
    for (let j = 0; j < RS_CODEWORD; j++) {
      const c = symbol(j);
      for (let b = 0; b < B; b++) s[b] = times[s[b]!]! ^ c[b]!;
    }
    if (s.some((v) => v !== 0)) return false;
  }
  return true;
}

/** The three devices FEC reads: the covered area's two, and the parity. */
export interface FecSources {
  data: ByteSource;
  /** The hash device; bytes past its end read as zeros (as when the parity was made). */
  hash: Pick<ByteSource, 'read'>;
  fec: ByteSource;
}

/** A run of covered blocks: data blocks first, then the hash device's from its hash start block (geometry.ts). */
export interface CoveredRange {
  first: number;
  count: number;
}

/** Options of `restoreBlocks`. */
export interface RestoreOptions {
  /** Called with each restored covered block (B bytes, valid during the call only), rounds in ascending order. */
  onBlock?: (coveredBlock: number, bytes: Uint8Array) => void | Promise<void>;
  /**
   * Called for the damaged blocks that cannot be restored, the `too-many` ones first, then the `inconsistent` ones
   * (each kind in ascending order): `too-many` when their round has more
   * damaged blocks than roots; `inconsistent` when the round's spare syndromes disagree, so some symbol the tree could
   * not point at (another block, or the parity) is damaged too.
   */
  onUnrestorable?: (coveredBlock: number, why: 'too-many' | 'inconsistent') => void;
  signal?: AbortSignal;
}

export interface RestoreSummary {
  restored: number;
  unrestorable: number;
  /** Rounds holding damaged blocks, and those of them restored. */
  rounds: number;
  roundsRestored: number;
}

/** Throws E_TRUNCATED unless the FEC device holds the whole parity area. */
export function checkFecSize(g: FecGeometry, fec: Pick<ByteSource, 'size'>, path?: string): void {
  const end = g.fecOffset + g.parityBytes;
  if (fec.size < end) {
    throw new VerityError(
      'E_TRUNCATED',
      `FEC device is too small: ${fec.size} bytes, but ${g.rounds} rounds of ${g.roots}-root parity from offset ${g.fecOffset} end at byte ${end}.`,
      { data: { ...(path !== undefined && { path }), expected: end, actual: fec.size } },
    );
  }
}

/** Most rounds counted in a flat array (1 byte each); more go into a map, so memory follows the damage, not the size. */
const FLAT_ROUNDS = 1 << 24;

/**
 * Restores the damaged covered blocks `damaged` (ascending, non-overlapping ranges) round by round: a round with at
 * most `roots` of them is read (its rsn blocks and its parity) and decoded. Memory: one round (rsn + roots blocks),
 * a damage count per round, and the numbers of the damaged blocks in restorable rounds (at most roots per round).
 */
export async function restoreBlocks(
  g: FecGeometry,
  sources: FecSources,
  damaged: readonly CoveredRange[],
  options: RestoreOptions = {},
): Promise<RestoreSummary> {
  checkFecSize(g, sources.fec);
  let previousEnd = 0;
  for (const r of damaged) {
    if (!Number.isSafeInteger(r.first) || !Number.isSafeInteger(r.count) || r.first < previousEnd || r.count < 1 || r.first + r.count > g.coveredBlocks) {
      throw new VerityError('E_INTERNAL', `FEC: damaged blocks ${r.first}+${r.count} are out of order or outside the ${g.coveredBlocks} covered blocks.`);
    }
    previousEnd = r.first + r.count;
  }
  const blocksOf = function* () {
    for (const r of damaged) for (let k = r.first; k < r.first + r.count; k++) yield k;
  };
  // Damaged blocks per round, saturating past roots (the round is lost then anyway).
  const flat = g.rounds <= FLAT_ROUNDS ? new Uint8Array(g.rounds) : null;
  const sparse = new Map<number, number>();
  const count = (n: number) => (flat ? flat[n]! : (sparse.get(n) ?? 0));
  for (const k of blocksOf()) {
    const n = k % g.rounds;
    const c = Math.min(count(n) + 1, g.roots + 1);
    if (flat) flat[n] = c;
    else sparse.set(n, c);
  }
  const byRound = new Map<number, number[]>();
  let unrestorable = 0;
  for (const k of blocksOf()) {
    const n = k % g.rounds;
    if (count(n) > g.roots) {
      unrestorable++;
      options.onUnrestorable?.(k, 'too-many');
    } else {
      const list = byRound.get(n);
      if (list) list.push(k);
      else byRound.set(n, [k]);
    }
  }
  let lostRounds = 0;
  if (flat) for (const c of flat) lostRounds += c > g.roots ? 1 : 0;
  else for (const c of sparse.values()) lostRounds += c > g.roots ? 1 : 0;

  const B = g.blockSize;
  const round = new Uint8Array((g.rsn + g.roots) * B);
  const parity = new Uint8Array(g.roots * B);
  let restored = 0;
  let roundsRestored = 0;
  const inconsistent: number[] = [];
  for (const n of [...byRound.keys()].sort((a, b) => a - b)) {
    options.signal?.throwIfAborted();
    const blocks = byRound.get(n)!;
    await readRound(g, sources, n, round, parity);
    const erased = blocks.map((k) => (k - n) / g.rounds);
    if (decodeErasures(g.roots, B, erased, (j) => round.subarray(j * B, (j + 1) * B))) {
      restored += blocks.length;
      roundsRestored++;
      for (const [x, k] of blocks.entries()) await options.onBlock?.(k, round.subarray(erased[x]! * B, (erased[x]! + 1) * B));
    } else {
      unrestorable += blocks.length;
      inconsistent.push(...blocks);
    }
  }
  for (const k of inconsistent.sort((a, b) => a - b)) options.onUnrestorable?.(k, 'inconsistent');
  return { restored, unrestorable, rounds: byRound.size + lostRounds, roundsRestored };
}

/**
 * Reads round `n` into `round` as codeword symbols: message symbol i (covered block i · rounds + n, zeros past the
 * covered area) at i · B, then the parity transposed from its stored order (codeword b's `roots` bytes together) so
 * that parity symbol k of every codeword is the B bytes at (rsn + k) · B.
 */
async function readRound(g: FecGeometry, s: FecSources, n: number, round: Uint8Array, parity: Uint8Array): Promise<void> {
  const B = g.blockSize;
  for (let i = 0; i < g.rsn; i++) {
    const dst = round.subarray(i * B, (i + 1) * B);
    const at = coveredBlockAt(g, i * g.rounds + n);
    if (!at) dst.fill(0);
    else if (at.device === 'data') await readExactly(s.data, dst, at.block * B, 'Data device');
    else await readOrZeros(s.hash, dst, at.block * B);
  }
  await readExactly(s.fec, parity, g.fecOffset + n * B * g.roots, 'FEC device');
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < g.roots; k++) round[(g.rsn + k) * B + b] = parity[b * g.roots + k]!;
  }
}
