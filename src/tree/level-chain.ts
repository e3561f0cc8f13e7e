/**
 * The streaming hash tree. Data digests fill level-0 hash blocks; each level keeps a buffer of at most ~1 MiB of
 * blocks, and when it fills (or at the end) hands the finished blocks to a sink and hashes them into its parent.
 * Memory is bounded by the number of levels, never by the image size.
 *
 * Formatting and verifying run the same chain: the sink writes the built blocks (format) or compares them with
 * the stored ones and passes the *stored* blocks up (verify), so each stored block is checked against its parent.
 *
 * Zero subtrees. Data blocks a source knows are zero (`addZeroData`) get the digest of a zero block without being
 * read or hashed, whole level-0 blocks of them at a time. Above the data, a hash block whose bytes equal the block of
 * an all-zero subtree of its level has that subtree's digest, worked out once per level (`ZeroSubtrees`): it is
 * copied, not hashed. That test is on the bytes passed up, the stored ones when verifying, so a damaged block never
 * takes the shortcut and is reported exactly as before; the digests, and so the output, are the same either way.
 */
import type { BlockHasher } from '../hash/engine.js';
import { spansWithin, type FileSpan } from '../io/source.js';
import { knownBlockRuns } from '../hash/zero-blocks.js';
import type { TreeGeometry } from '../format/geometry.js';
import { VerityError } from '../errors.js';
import type { TreePlan } from './plan.js';

export interface LevelSink {
  /**
   * Receives `count` consecutive blocks of `level`, from level-relative index `first`, as built from the computed
   * child digests (zero-padded). Returns the bytes whose digests go to the parent level (or the root).
   */
  onBlocks(level: number, first: number, count: number, built: Uint8Array): Promise<Uint8Array>;
}

const LEVEL_BUFFER_BYTES = 1 << 20;

/** Hash blocks a level buffers before handing them to the sink: ~1 MiB, at least one, at most the whole level. */
export function levelCapacity(levelBlocks: number, hashBlockSize: number): number {
  return Math.min(levelBlocks, Math.max(1, Math.floor(LEVEL_BUFFER_BYTES / hashBlockSize)));
}

/** Blocks to hash: bytes in memory, or data blocks that lie in files (ByteSource.fileSpans) for the hasher to read. */
type Children = Uint8Array | readonly FileSpan[];

/** Blocks [first, first + count) of `children`. */
function part(children: Children, childSize: number, first: number, count: number): Children {
  return children instanceof Uint8Array
    ? children.subarray(first * childSize, (first + count) * childSize)
    : spansWithin(children, first * childSize, count * childSize);
}

interface Parent {
  append(children: Children, childSize: number, count: number): Promise<void>;
  /** Takes `count` data blocks known to be zero (only the entry of the chain, which data blocks reach). */
  appendZero(count: number): Promise<void>;
}

/** A block of a level whose whole subtree is zero data, and its digest. */
interface ZeroBlock {
  block: Uint8Array;
  digest: Uint8Array;
}

/**
 * The digest of a zero data block, and for each level the hash block over a full set of zero children with its
 * digest: `levels` hashes for the whole pass, computed on first use.
 */
class ZeroSubtrees {
  data: Uint8Array = new Uint8Array(0);
  /** levels[i]: the level-i hash block over `hashesPerBlock` zero subtrees of the level below. */
  readonly levels: ZeroBlock[] = [];
  private ready: Promise<void> | undefined;

  constructor(
    private readonly plan: TreePlan,
    private readonly hasher: BlockHasher,
  ) {}

  init(): Promise<void> {
    this.ready ??= this.compute();
    return this.ready;
  }

  private async compute(): Promise<void> {
    const { params, geometry } = this.plan;
    const { hashesPerBlock: hpb, slotSize, digestSize } = geometry;
    const hbs = params.hashBlockSize;
    this.data = new Uint8Array(digestSize);
    await this.hasher.hashBlocks(new Uint8Array(params.dataBlockSize), params.dataBlockSize, 1, this.data, 0, digestSize);
    let child = this.data;
    for (let i = 0; i < geometry.levels.length; i++) {
      const block = new Uint8Array(hbs);
      for (let j = 0; j < hpb; j++) block.set(child, j * slotSize);
      const digest = new Uint8Array(digestSize);
      await this.hasher.hashBlocks(block, hbs, 1, digest, 0, digestSize);
      this.levels.push({ block, digest });
      child = digest;
    }
  }
}

/**
 * Hashes `count` blocks of `childSize` bytes into `dst` at `stride`, copying the digest of those equal to `known`
 * (hash blocks of a zero subtree) instead of hashing them.
 */
async function hashChildren(
  hasher: BlockHasher,
  known: ZeroBlock | undefined,
  children: Children,
  childSize: number,
  count: number,
  dst: Uint8Array,
  dstOffset: number,
  stride: number,
): Promise<void> {
  if (!(children instanceof Uint8Array)) {
    if (!hasher.fromFiles) throw new VerityError('E_INTERNAL', 'Blocks in files given to a hasher that cannot read files.');
    await hasher.fromFiles.hashSpans(children, childSize, count, dst, dstOffset, stride);
    return;
  }
  if (!known || known.block.length !== childSize) {
    await hasher.hashBlocks(children, childSize, count, dst, dstOffset, stride);
    return;
  }
  for (const run of knownBlockRuns(children, childSize, count, known.block)) {
    if (run.zero) {
      for (let i = run.first; i < run.first + run.count; i++) dst.set(known.digest, dstOffset + i * stride);
    } else {
      const bytes = children.subarray(run.first * childSize, (run.first + run.count) * childSize);
      await hasher.hashBlocks(bytes, childSize, run.count, dst, dstOffset + run.first * stride, stride);
    }
  }
}

class Root implements Parent {
  readonly digest: Uint8Array;
  received = 0;

  constructor(
    private readonly hasher: BlockHasher,
    private readonly zeros: ZeroSubtrees,
    /** The level whose single block reaches the root; -1 when the data is one block and the tree has no levels. */
    private readonly top: number,
  ) {
    this.digest = new Uint8Array(hasher.digestSize);
  }

  async append(children: Children, childSize: number, count: number): Promise<void> {
    this.received += count;
    if (this.received > 1) throw new VerityError('E_INTERNAL', 'More than one block reached the root.');
    const known = this.top >= 0 ? this.zeros.levels[this.top] : undefined;
    await hashChildren(this.hasher, known, children, childSize, 1, this.digest, 0, this.digest.length);
  }

  async appendZero(count: number): Promise<void> {
    this.received += count;
    if (this.received > 1) throw new VerityError('E_INTERNAL', 'More than one block reached the root.');
    this.digest.set(this.zeros.data);
  }
}

class Level implements Parent {
  private readonly buffer: Uint8Array;
  private readonly capacity: number;
  /** Digests placed in the buffer since the last flush. */
  private fill = 0;
  /** Level-relative index of the buffer's first block. */
  private first = 0;
  /** In format 1 the slots tile the block exactly, so one hash call can span block boundaries. */
  private readonly uniform: boolean;

  constructor(
    private readonly level: number,
    private readonly blocks: number,
    private readonly hashBlockSize: number,
    private readonly geometry: TreeGeometry,
    private readonly hasher: BlockHasher,
    private readonly sink: LevelSink,
    private readonly parent: Parent,
    private readonly zeros: ZeroSubtrees,
  ) {
    this.capacity = levelCapacity(blocks, hashBlockSize);
    this.buffer = new Uint8Array(this.capacity * hashBlockSize);
    this.uniform = geometry.slotSize * geometry.hashesPerBlock === hashBlockSize;
  }

  async append(children: Children, childSize: number, count: number): Promise<void> {
    const { hashesPerBlock: hpb, slotSize } = this.geometry;
    const room = this.capacity * hpb;
    let done = 0;
    while (done < count) {
      const slot = this.fill % hpb;
      const limit = this.uniform ? room - this.fill : hpb - slot;
      const run = Math.min(count - done, limit);
      const offset = Math.floor(this.fill / hpb) * this.hashBlockSize + slot * slotSize;
      // Level 0's children are data blocks, which the engines already test for zeros (hash/zero-blocks.ts).
      const known = this.level > 0 ? this.zeros.levels[this.level - 1] : undefined;
      const bytes = part(children, childSize, done, run);
      await hashChildren(this.hasher, known, bytes, childSize, run, this.buffer, offset, slotSize);
      this.fill += run;
      done += run;
      if (this.fill === room) await this.flush();
    }
  }

  /** Takes `count` zero data blocks: their digest goes into the slots, a whole zero level-0 block at a time. */
  async appendZero(count: number): Promise<void> {
    if (this.level !== 0) throw new VerityError('E_INTERNAL', `Zero data blocks given to level ${this.level}.`);
    const { hashesPerBlock: hpb, slotSize } = this.geometry;
    const hbs = this.hashBlockSize;
    const room = this.capacity * hpb;
    const whole = this.zeros.levels[0]!.block;
    const digest = this.zeros.data;
    let done = 0;
    while (done < count) {
      const slot = this.fill % hpb;
      const at = Math.floor(this.fill / hpb) * hbs;
      if (slot === 0 && count - done >= hpb) {
        // The buffer is zero past `fill` (flush clears it), so copying whole blocks leaves the same padding.
        const blocks = Math.min(Math.floor((count - done) / hpb), (room - this.fill) / hpb);
        for (let b = 0; b < blocks; b++) this.buffer.set(whole, at + b * hbs);
        this.fill += blocks * hpb;
        done += blocks * hpb;
      } else {
        const run = Math.min(count - done, hpb - slot);
        for (let j = 0; j < run; j++) this.buffer.set(digest, at + (slot + j) * slotSize);
        this.fill += run;
        done += run;
      }
      if (this.fill === room) await this.flush();
    }
  }

  /** Hands finished blocks of this level, built elsewhere, to the sink and their digests to the parent. */
  async pass(built: Uint8Array, count: number): Promise<void> {
    if (this.fill !== 0 || this.first + count > this.blocks) {
      throw new VerityError('E_INTERNAL', `Level ${this.level} cannot take ${count} built blocks at ${this.first}.`);
    }
    const up = await this.sink.onBlocks(this.level, this.first, count, built);
    await this.parent.append(up, this.hashBlockSize, count);
    this.first += count;
  }

  async flush(): Promise<void> {
    const count = Math.ceil(this.fill / this.geometry.hashesPerBlock);
    if (count === 0) return;
    if (this.first + count > this.blocks) {
      throw new VerityError('E_INTERNAL', `Level ${this.level} overflowed: ${this.first + count} > ${this.blocks} blocks.`);
    }
    const built = this.buffer.subarray(0, count * this.hashBlockSize);
    const up = await this.sink.onBlocks(this.level, this.first, count, built);
    await this.parent.append(up, this.hashBlockSize, count);
    built.fill(0);
    this.first += count;
    this.fill = 0;
  }
}

/** Feed data blocks in order with `addData`, then `finish` for the root digest. */
export class LevelChain {
  private readonly root: Root;
  private readonly levels: Level[] = [];
  private readonly entry: Parent;
  private dataBlocksSeen = 0;

  private readonly dataBlocks: number;
  private readonly dataBlockSize: number;

  private readonly zeros: ZeroSubtrees;

  constructor(plan: TreePlan, hasher: BlockHasher, sink: LevelSink) {
    const { geometry, params } = plan;
    const hashBlockSize = params.hashBlockSize;
    this.dataBlocks = params.dataBlocks;
    this.dataBlockSize = params.dataBlockSize;
    this.zeros = new ZeroSubtrees(plan, hasher);
    this.root = new Root(hasher, this.zeros, geometry.levels.length - 1);
    let parent: Parent = this.root;
    for (let i = geometry.levels.length - 1; i >= 0; i--) {
      const level = new Level(i, geometry.levels[i]!.blocks, hashBlockSize, geometry, hasher, sink, parent, this.zeros);
      this.levels[i] = level;
      parent = level;
    }
    this.entry = parent;
  }

  /**
   * Hashes the next `count` data blocks, in data order: held in `bytes` (count * dataBlockSize bytes), or lying in
   * files for a hasher that reads them itself (BlockHasher.fromFiles).
   */
  async addData(bytes: Children, count: number): Promise<void> {
    await this.zeros.init();
    this.dataBlocksSeen += count;
    if (this.dataBlocksSeen > this.dataBlocks) throw new VerityError('E_INTERNAL', 'More data blocks than the tree covers.');
    await this.entry.append(bytes, this.dataBlockSize, count);
  }

  /**
   * Takes the next `count` data blocks as zeros, without their bytes: the source knows they are zero
   * (ByteSource.knownZero), so they are neither read nor hashed.
   */
  async addZeroData(count: number): Promise<void> {
    await this.zeros.init();
    this.dataBlocksSeen += count;
    if (this.dataBlocksSeen > this.dataBlocks) throw new VerityError('E_INTERNAL', 'More data blocks than the tree covers.');
    await this.entry.appendZero(count);
  }

  /**
   * Takes the next `count` level-0 blocks ready-made (`count * hashBlockSize` bytes) instead of data blocks: their
   * digests were computed out of data order (sequential.ts). Level 0 then covers `hashesPerBlock` data blocks a block.
   */
  async addLevel0(built: Uint8Array, count: number, dataBlocksCovered: number): Promise<void> {
    await this.zeros.init();
    this.dataBlocksSeen += dataBlocksCovered;
    const level0 = this.levels[0];
    if (!level0 || this.dataBlocksSeen > this.dataBlocks) {
      throw new VerityError('E_INTERNAL', 'Level-0 blocks given to a tree without level 0, or past its end.');
    }
    await level0.pass(built, count);
  }

  async finish(): Promise<Uint8Array> {
    if (this.dataBlocksSeen !== this.dataBlocks) {
      throw new VerityError('E_INTERNAL', `Tree finished after ${this.dataBlocksSeen} of ${this.dataBlocks} data blocks.`);
    }
    await this.zeros.init();
    for (const level of this.levels) await level.flush();
    if (this.root.received !== 1) throw new VerityError('E_INTERNAL', 'The root was not computed.');
    return this.root.digest;
  }
}
