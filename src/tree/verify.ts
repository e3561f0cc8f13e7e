/**
 * One-pass verification that names every damaged block and never blames data for damage in the tree.
 *
 * The pass recomputes every digest bottom-up and records each mismatch between a computed child digest and the
 * entry stored for it. Trust then flows top-down from the root: a block is *corrupt* when its digest differs from a
 * trusted parent entry, and every block below a corrupt one is *unverified* (nothing trustworthy vouches for it).
 * veritysetup instead stops at the first mismatch and reports one byte offset (cryptsetup lib/verity/verity_verify.c: verify_hash_block; docs/format.md).
 */
import { bytesEqual, isAllZero } from '../binary/bytes.js';
import type { TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import type { HashEngine } from '../hash/engine.js';
import { sameBytes } from '../hash/zero-blocks.js';
import { type ByteSource, MemorySink, readExactly, type ReadWriteSink } from '../io/source.js';
import { copyInOriginOrder, type Capture } from './origin-order.js';
import { type BlockRange, RangeSet } from './ranges.js';
import { VerityError } from '../errors.js';
import { checkDataSize, runChain } from './build.js';
import { levelCapacity, type LevelSink } from './level-chain.js';
import { asTreePlan, type TreePlan } from './plan.js';
import type { PassOptions } from './progress.js';

/**
 * - `ok`: every block matches and the root hash is the expected one.
 * - `corrupt`: the root hash vouches for the top of the tree, and some blocks below do not match.
 * - `root-mismatch`: the tree is self-consistent at the top but does not hash to the expected root: a wrong root
 *   hash, or an image other than the one expected. Blocks below are still checked against the stored tree.
 */
export type VerifyStatus = 'ok' | 'corrupt' | 'root-mismatch';

export interface LevelReport {
  level: number;
  blocks: number;
  /** Absolute hash-device block of this level's first block. */
  startBlock: number;
  /** Blocks whose digest differs from a trusted entry in the level above (or from the root, for the top). */
  corrupt: BlockRange[];
  /** Blocks under a corrupt block: they cannot be checked. */
  unverified: BlockRange[];
  /** Trusted blocks whose unused bytes (digest padding or block tail) are not zero. */
  spare: BlockRange[];
}

/**
 * The failure veritysetup would report, since it stops at the first: levels bottom-up, within a level blocks in
 * order, within a block each child's digest then its slot padding, then the block tail (verity_hash.c:
 * create_or_verify). `position` is a byte offset on the data device for data blocks, on the hash device otherwise.
 */
export interface FirstFailure {
  kind: 'digest' | 'spare';
  position: number;
}

export interface VerifyResult {
  status: VerifyStatus;
  expectedRoot: Uint8Array;
  /** Digest of the stored top block (or of data block 0 when the tree has no levels). */
  actualRoot: Uint8Array;
  geometry: TreeGeometry;
  data: { blocks: number; corrupt: BlockRange[]; unverified: BlockRange[] };
  levels: LevelReport[];
  /** What veritysetup would print before stopping; null when every block matched. */
  firstFailure: FirstFailure | null;
}

/** Temporary storage a verify of streamed input needs (its level 0, a copy of a streamed hash area). */
export type Scratch = ReadWriteSink & { close?(): Promise<void> };

export interface VerifyTreeOptions extends PassOptions {
  /** Where to keep `bytes` of temporary data (default: memory). A Node caller passes temporary files for large ones. */
  scratch?: (bytes: number) => Promise<Scratch>;
  /** Names of the two inputs, for the `path` of the errors about them (a caller that opened them by name knows it). */
  paths?: { data?: string; hash?: string };
}

/** Checks that `hash` holds the whole tree (E_TRUNCATED with the sizes); `path` names it in the error. */
function checkHashSize(plan: TreePlan, hash: ByteSource, path?: string): void {
  const { geometry } = plan;
  // With one data block there is no tree (the root is that block's digest), so nothing is read from the hash device.
  if (geometry.hashBlocks > 0 && hash.size < geometry.hashDeviceSize) {
    throw new VerityError(
      'E_TRUNCATED',
      `Hash device is too small: ${hash.size} bytes, but the tree needs ${geometry.hashDeviceSize}.`,
      { data: { ...(path !== undefined && { path }), expected: geometry.hashDeviceSize, actual: hash.size } },
    );
  }
}

/**
 * Checks `data` against the tree in `hash`. Either may come from a front-to-back stream (`ByteSource.sequential`):
 * streamed data is hashed in stream order into a scratch level 0, and a streamed hash area is copied to scratch
 * first (in the same pass when it is on the same stream), so the tree can be read in any order. `tree` is the
 * parameters or their plan (plan.ts).
 *
 * `expectedRoot` null checks the tree against itself: the stored top block is trusted, its digest is the root (the
 * result's `expectedRoot` and `actualRoot`), and every block below is checked against it. That is all an image
 * without a trusted root hash allows: damage is found, but not a tree rebuilt over other data.
 */
export async function verifyTree(
  tree: VerityParams | TreePlan,
  data: ByteSource,
  hash: ByteSource,
  expectedRoot: Uint8Array | null,
  engine: HashEngine,
  options: VerifyTreeOptions = {},
): Promise<VerifyResult> {
  const scratches: Scratch[] = [];
  const scratch = async (bytes: number) => {
    const s = (await options.scratch?.(bytes)) ?? new MemorySink();
    scratches.push(s);
    return s;
  };
  try {
    return await verifyWith(asTreePlan(tree), data, hash, expectedRoot, engine, options, scratch);
  } finally {
    for (const s of scratches) await s.close?.();
  }
}

async function verifyWith(
  plan: TreePlan,
  data: ByteSource,
  hashDevice: ByteSource,
  expectedRoot: Uint8Array | null,
  engine: HashEngine,
  options: VerifyTreeOptions,
  scratch: (bytes: number) => Promise<Scratch>,
): Promise<VerifyResult> {
  const { params, geometry } = plan;
  let hash = hashDevice;
  if (expectedRoot !== null && expectedRoot.length !== geometry.digestSize) {
    throw new VerityError(
      'E_PARAM',
      `Invalid root hash: ${expectedRoot.length} bytes, but ${params.algorithm} digests are ${geometry.digestSize} bytes.`,
      { data: { expected: geometry.digestSize, actual: expectedRoot.length } },
    );
  }
  checkDataSize(params, data, options.paths?.data);
  checkHashSize(plan, hash, options.paths?.hash);

  const { levels, hashesPerBlock: hpb, slotSize, digestSize: D } = geometry;
  const hbs = params.hashBlockSize;
  const captures: Capture[] = [];
  if (hashDevice.sequential && geometry.hashBlocks > 0) {
    const length = geometry.hashDeviceSize;
    const copy = await scratch(length);
    const capture = { source: hashDevice, length, sink: copy };
    if (data.sequential?.origin === hashDevice.sequential.origin && levels.length > 0) captures.push(capture);
    else await copyInOriginOrder(capture);
    hash = { size: length, read: (d, p) => copy.read(d, p) };
  }
  const level0 = async () => ({ store: await scratch(levels[0]!.blocks * hbs), offset: 0, captures });
  const dataMismatch = new RangeSet();
  // hashMismatch[i]: level-i blocks whose digest differs from their entry in level i + 1.
  const hashMismatch = levels.map(() => new RangeSet());
  const spare = levels.map(() => new RangeSet());
  // The sink receives at most a level's buffer of blocks at a time (level-chain.ts).
  const stored = levels.map((l) => new Uint8Array(levelCapacity(l.blocks, hbs) * hbs));
  const firstFailure: (FirstFailure | undefined)[] = levels.map(() => undefined);

  const sink: LevelSink = {
    async onBlocks(level, first, count, built) {
      const mine = stored[level]!.subarray(0, count * hbs);
      await readExactly(hash, mine, (levels[level]!.startBlock + first) * hbs, 'Hash device');
      // The usual answer, decided a word at a time; the block-by-block walk below runs only where something differs.
      if (sameBytes(built, mine)) return mine;
      const childCount = level === 0 ? params.dataBlocks : levels[level - 1]!.blocks;
      const childMismatch = level === 0 ? dataMismatch : hashMismatch[level - 1]!;
      for (let b = 0; b < count; b++) {
        const at = b * hbs;
        const want = built.subarray(at, at + hbs);
        const have = mine.subarray(at, at + hbs);
        if (bytesEqual(want, have)) continue;
        const index = first + b;
        const blockPosition = (levels[level]!.startBlock + index) * hbs;
        const childSize = level === 0 ? params.dataBlockSize : hbs;
        const childBase = level === 0 ? 0 : levels[level - 1]!.startBlock * hbs;
        const note = (kind: FirstFailure['kind'], position: number) => {
          firstFailure[level] ??= { kind, position };
        };
        const children = Math.min(hpb, childCount - index * hpb);
        let dirtySpare = false;
        for (let j = 0; j < children; j++) {
          const s = j * slotSize;
          const child = index * hpb + j;
          if (!bytesEqual(want.subarray(s, s + D), have.subarray(s, s + D))) {
            childMismatch.add(child);
            note('digest', childBase + child * childSize);
          }
          if (slotSize > D && !isAllZero(have.subarray(s + D, s + slotSize))) {
            dirtySpare = true;
            note('spare', blockPosition + s + D);
          }
        }
        if (!isAllZero(have.subarray(children * slotSize))) {
          dirtySpare = true;
          note('spare', blockPosition + children * slotSize);
        }
        if (dirtySpare) spare[level]!.add(index);
      }
      return mine;
    },
  };
  const actualRoot = await runChain(plan, data, engine, sink, options, level0);
  return {
    ...attribute(params, geometry, expectedRoot ?? actualRoot, actualRoot, dataMismatch, hashMismatch, spare),
    firstFailure: firstFailure.find((f) => f !== undefined) ?? null,
  };
}

function attribute(
  params: VerityParams,
  geometry: TreeGeometry,
  expectedRoot: Uint8Array,
  actualRoot: Uint8Array,
  dataMismatch: RangeSet,
  hashMismatch: RangeSet[],
  spare: RangeSet[],
): Omit<VerifyResult, 'firstFailure'> {
  const { levels, hashesPerBlock: hpb } = geometry;
  const top = levels.length - 1;
  const corrupt = levels.map(() => new RangeSet());
  const unverified = levels.map(() => new RangeSet());
  let rootMismatch = false;

  if (!bytesEqual(expectedRoot, actualRoot)) {
    // Either the root hash is not this image's, or the top block is damaged. A top block whose every entry matches
    // its children and whose spare bytes are zero is intact (one fault explains the evidence): the root is wrong.
    const topConsistent = top < 0 || ((top === 0 ? dataMismatch : hashMismatch[top - 1]!).isEmpty && spare[top]!.isEmpty);
    if (topConsistent) rootMismatch = true;
    else corrupt[top]!.add(0);
  }
  let untrustedAbove = top >= 0 ? corrupt[top]! : new RangeSet();
  for (let i = top - 1; i >= 0; i--) {
    const inherited = untrustedAbove.children(hpb, levels[i]!.blocks);
    const own = hashMismatch[i]!.subtract(inherited);
    corrupt[i] = own;
    unverified[i] = inherited;
    untrustedAbove = own.union(inherited);
  }
  const dataInherited = top >= 0 ? untrustedAbove.children(hpb, params.dataBlocks) : new RangeSet();
  const dataCorrupt = dataMismatch.subtract(dataInherited);

  const levelReports: LevelReport[] = levels.map((l, i) => ({
    level: i,
    blocks: l.blocks,
    startBlock: l.startBlock,
    corrupt: corrupt[i]!.ranges(),
    unverified: unverified[i]!.ranges(),
    spare: spare[i]!.subtract(corrupt[i]!.union(unverified[i]!)).ranges(),
  }));
  const damaged =
    !dataCorrupt.isEmpty || levelReports.some((l) => l.corrupt.length > 0 || l.spare.length > 0);
  return {
    status: rootMismatch ? 'root-mismatch' : damaged ? 'corrupt' : 'ok',
    expectedRoot,
    actualRoot,
    geometry,
    data: { blocks: params.dataBlocks, corrupt: dataCorrupt.ranges(), unverified: dataInherited.ranges() },
    levels: levelReports,
  };
}

/**
 * The root hash a stored tree stands for: the digest of its top block, read and hashed alone. Null for a tree without
 * levels (one data block, whose own digest is the root). Discovery uses it to pair partitions whose UUIDs are derived
 * from the root hash before anything is verified.
 */
export async function storedRoot(tree: TreePlan, hash: ByteSource, engine: HashEngine): Promise<Uint8Array | null> {
  const { geometry, params } = tree;
  const top = geometry.levels.at(-1);
  if (!top) return null;
  const hbs = params.hashBlockSize;
  const block = new Uint8Array(hbs);
  await readExactly(hash, block, top.startBlock * hbs, 'Hash device');
  const root = new Uint8Array(geometry.digestSize);
  await (await engine.createBlockHasher(tree.hashing)).hashBlocks(block, hbs, 1, root, 0, root.length);
  return root;
}
