/**
 * What FEC parity can do for a damaged image: the blocks the tree found damaged become erasures (fec/decode.ts), each
 * round is decoded, and the data and hash device with the restored blocks in place are verified again against the
 * root hash. Only that second verification says "repairable": the parity cannot vouch for itself, and with as many
 * damaged blocks as roots in a round no spare syndrome is left to notice damaged parity.
 */
import { restoreBlocks, type CoveredRange, type FecSources } from '../fec/decode.js';
import type { FecGeometry } from '../fec/geometry.js';
import type { HashEngine } from '../hash/engine.js';
import type { ByteSource } from '../io/source.js';
import type { PassOptions } from './progress.js';
import { type BlockRange, RangeSet } from './ranges.js';
import type { TreePlan } from './plan.js';
import { verifyTree, type VerifyResult, type VerifyTreeOptions } from './verify.js';

/** The most restored bytes held in memory for the second verification (beyond it, repair writes them out). */
export const MAX_RESTORED_BYTES = 64 << 20;

export interface FecAssessment {
  roots: number;
  /** Damaged blocks the tree pointed at, as covered by the parity: data blocks, and hash-device blocks from the tree start. */
  damaged: { data: number; hash: number };
  /** Of those, how many erasure decoding rebuilt. */
  restored: number;
  /** Data blocks and hash-device blocks (absolute) erasure decoding could not rebuild. */
  unrestorable: { data: BlockRange[]; hash: BlockRange[] };
  /**
   * `true`: every damaged block was rebuilt and the data and tree with them in place verify against the root hash.
   * `false`: some block cannot be rebuilt, or the rebuilt image still does not verify. `null`: every block was
   * rebuilt, but more than MAX_RESTORED_BYTES of them, too many to check again in memory.
   */
  repairable: boolean | null;
  /** The second verification's status, when it ran. */
  recheck: VerifyResult['status'] | null;
}

/** The assessment of an image the tree found intact: nothing to restore. */
export function nothingToRepair(roots: number): FecAssessment {
  return { roots, damaged: { data: 0, hash: 0 }, restored: 0, unrestorable: { data: [], hash: [] }, repairable: true, recheck: null };
}

/** The restored blocks themselves, for repair: data blocks and hash-device blocks (absolute), number → bytes. */
export interface RestoredBlocks {
  data: Map<number, Uint8Array>;
  hash: Map<number, Uint8Array>;
}

/**
 * The blocks of `result` that the parity covers and nothing vouches for, in covered-block numbers, ascending: corrupt
 * data blocks, corrupt or padding-damaged hash blocks from the tree's start (the superblock and anything before it is
 * not covered); with `unverified`, also the blocks below a corrupt hash block: those of the tree, or all.
 */
export function damagedCovered(result: VerifyResult, g: FecGeometry, unverified: 'none' | 'tree' | 'all' = 'none'): CoveredRange[] {
  const data = [...result.data.corrupt, ...(unverified === 'all' ? result.data.unverified : [])];
  const hash: BlockRange[] = [];
  for (const level of result.levels) {
    for (const r of [...level.corrupt, ...level.spare, ...(unverified !== 'none' ? level.unverified : [])]) hash.push({ first: level.startBlock + r.first, count: r.count });
  }
  const covered: BlockRange[] = [...data];
  for (const r of RangeSet.of(...hash).ranges()) {
    const first = Math.max(r.first, g.hashStartBlock);
    const end = Math.min(r.first + r.count, g.hashStartBlock + g.hashBlocks);
    if (end > first) covered.push({ first: g.dataBlocks + first - g.hashStartBlock, count: end - first });
  }
  return RangeSet.of(...covered).ranges();
}

/**
 * Decodes the damaged blocks of a verify `result` as erasures and checks the outcome with a second verification over
 * the inputs with the restored blocks in place. `sources.data`/`sources.hash` are the same sources the tree was
 * verified from.
 */
export async function assessRepair(
  plan: TreePlan,
  result: VerifyResult,
  g: FecGeometry,
  sources: FecSources & { data: ByteSource; hash: ByteSource },
  expectedRoot: Uint8Array,
  engine: HashEngine,
  options: PassOptions & Pick<VerifyTreeOptions, 'scratch' | 'paths'> = {},
): Promise<FecAssessment & { blocks: RestoredBlocks }> {
  // Blocks below a damaged hash block are unverified: some may be damaged too. Erasing a good symbol costs nothing but
  // room in its round, so first every block nothing vouches for is an erasure; if that is more than some round can
  // take, the known damaged blocks and the unverified tree blocks (few: the tree is small); then only the known
  // damaged blocks, each verification of the result showing the next tree level's.
  const known = damagedCovered(result, g);
  const candidates = [damagedCovered(result, g, 'all'), damagedCovered(result, g, 'tree'), known];
  const distinct = candidates.filter((c, i) => candidates.findIndex((d) => JSON.stringify(d) === JSON.stringify(c)) === i);
  let outcome: FecAssessment & { blocks: RestoredBlocks } = await decodeAndCheck(plan, g, sources, distinct[0]!, expectedRoot, engine, options);
  for (const erasures of distinct.slice(1)) {
    if (outcome.repairable !== false) break;
    outcome = await decodeAndCheck(plan, g, sources, erasures, expectedRoot, engine, options);
  }
  return { ...outcome, damaged: countDamaged(known, g) };
}

function countDamaged(damaged: CoveredRange[], g: FecGeometry): { data: number; hash: number } {
  let data = 0;
  let hash = 0;
  for (const r of damaged) {
    const inData = Math.max(0, Math.min(r.first + r.count, g.dataBlocks) - r.first);
    data += inData;
    hash += r.count - inData;
  }
  return { data, hash };
}

async function decodeAndCheck(
  plan: TreePlan,
  g: FecGeometry,
  sources: FecSources & { data: ByteSource; hash: ByteSource },
  start: CoveredRange[],
  expectedRoot: Uint8Array,
  engine: HashEngine,
  options: PassOptions & Pick<VerifyTreeOptions, 'scratch' | 'paths'>,
): Promise<FecAssessment & { blocks: RestoredBlocks }> {
  let damaged = start;
  for (let attempt = 0; ; attempt++) {
    const decoded = await decodeAll(g, sources, damaged, options.signal);
    if (decoded.repairable === null) return decoded;
    // Verified again even when some round failed: what was restored (a hash block) may show blocks below it to be
    // damaged, and with them counted that round may decode after all.
    const again = await verifyTree(
      plan,
      withBlocks(sources.data, g.blockSize, decoded.blocks.data),
      withBlocks(sources.hash, plan.params.hashBlockSize, decoded.blocks.hash),
      expectedRoot,
      engine,
      options,
    );
    const more = again.status === 'corrupt' ? RangeSet.of(...damaged, ...damagedCovered(again, g)).ranges() : damaged;
    const size = (rs: CoveredRange[]) => rs.reduce((n, r) => n + r.count, 0);
    if (size(more) === size(damaged) || attempt > plan.geometry.levels.length) {
      return { ...decoded, repairable: decoded.repairable && again.status === 'ok', recheck: again.status };
    }
    damaged = more;
  }
}

/** Decodes every damaged covered block; `repairable` is true here when all were rebuilt (not yet re-verified). */
async function decodeAll(
  g: FecGeometry,
  sources: FecSources,
  damaged: CoveredRange[],
  signal: AbortSignal | undefined,
): Promise<FecAssessment & { blocks: RestoredBlocks }> {
  const B = g.blockSize;
  const restoredData = new Map<number, Uint8Array>();
  const restoredHash = new Map<number, Uint8Array>();
  let held = 0;
  const lostData = new RangeSet();
  const lostHash = new RangeSet();
  const lost: { tooMany: number[]; inconsistent: number[] } = { tooMany: [], inconsistent: [] };
  const summary = await restoreBlocks(g, sources, damaged, {
    ...(signal && { signal }),
    onBlock(k, bytes) {
      held += B;
      if (held > MAX_RESTORED_BYTES) return;
      if (k < g.dataBlocks) restoredData.set(k, bytes.slice());
      else restoredHash.set(k - g.dataBlocks + g.hashStartBlock, bytes.slice());
    },
    onUnrestorable(k, why) {
      (why === 'too-many' ? lost.tooMany : lost.inconsistent).push(k);
    },
  });
  for (const k of [...lost.tooMany, ...lost.inconsistent].sort((a, b) => a - b)) {
    if (k < g.dataBlocks) lostData.add(k);
    else lostHash.add(k - g.dataBlocks + g.hashStartBlock);
  }
  const base = {
    roots: g.roots,
    damaged: countDamaged(damaged, g),
    restored: summary.restored,
    unrestorable: { data: lostData.ranges(), hash: lostHash.ranges() },
    blocks: { data: restoredData, hash: restoredHash },
    recheck: null,
  };
  if (summary.unrestorable > 0) return { ...base, repairable: false };
  if (held > MAX_RESTORED_BYTES) return { ...base, blocks: { data: new Map(), hash: new Map() }, repairable: null };
  return { ...base, repairable: true };
}

/** `source` with whole blocks replaced by `blocks` (block number → bytes). */
export function withBlocks(source: ByteSource, blockSize: number, blocks: ReadonlyMap<number, Uint8Array>): ByteSource {
  if (blocks.size === 0) return source;
  return {
    size: source.size,
    async read(dst, position) {
      const n = await source.read(dst, position);
      if (n <= 0) return n;
      const last = Math.floor((position + n - 1) / blockSize);
      for (let b = Math.floor(position / blockSize); b <= last; b++) {
        const bytes = blocks.get(b);
        if (!bytes) continue;
        const start = b * blockSize;
        const from = Math.max(position, start);
        const to = Math.min(position + n, start + blockSize);
        dst.set(bytes.subarray(from - start, to - start), from - position);
      }
      return n;
    },
  };
}
