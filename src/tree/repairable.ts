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

/**
 * The damaged blocks of `result` that the parity covers, in covered-block numbers, ascending: corrupt data blocks,
 * then corrupt or padding-damaged hash blocks from the tree's start (the superblock and anything before it is not
 * covered). Blocks under a corrupt hash block are not counted: nothing says they are damaged.
 */
export function damagedCovered(result: VerifyResult, g: FecGeometry): CoveredRange[] {
  const set = new RangeSet();
  for (const r of result.data.corrupt) set.add(r.first, r.count);
  const hash: BlockRange[] = [];
  for (const level of result.levels) {
    for (const r of [...level.corrupt, ...level.spare]) hash.push({ first: level.startBlock + r.first, count: r.count });
  }
  for (const r of RangeSet.of(...hash).ranges()) {
    const first = Math.max(r.first, g.hashStartBlock);
    const end = Math.min(r.first + r.count, g.hashStartBlock + g.hashBlocks);
    if (end > first) set.add(g.dataBlocks + first - g.hashStartBlock, end - first);
  }
  return set.ranges();
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
): Promise<FecAssessment> {
  const damaged = damagedCovered(result, g);
  let dataDamaged = 0;
  let hashDamaged = 0;
  for (const r of damaged) {
    const inData = Math.max(0, Math.min(r.first + r.count, g.dataBlocks) - r.first);
    dataDamaged += inData;
    hashDamaged += r.count - inData;
  }
  const B = g.blockSize;
  const restoredData = new Map<number, Uint8Array>();
  const restoredHash = new Map<number, Uint8Array>();
  let held = 0;
  const lostData = new RangeSet();
  const lostHash = new RangeSet();
  const lost: { tooMany: number[]; inconsistent: number[] } = { tooMany: [], inconsistent: [] };
  const summary = await restoreBlocks(g, sources, damaged, {
    ...(options.signal && { signal: options.signal }),
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
    damaged: { data: dataDamaged, hash: hashDamaged },
    restored: summary.restored,
    unrestorable: { data: lostData.ranges(), hash: lostHash.ranges() },
  };
  if (summary.unrestorable > 0) return { ...base, repairable: false, recheck: null };
  if (held > MAX_RESTORED_BYTES) return { ...base, repairable: null, recheck: null };
  const again = await verifyTree(
    plan,
    withBlocks(sources.data, B, restoredData),
    withBlocks(sources.hash, plan.params.hashBlockSize, restoredHash),
    expectedRoot,
    engine,
    options,
  );
  return { ...base, repairable: again.status === 'ok', recheck: again.status };
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
