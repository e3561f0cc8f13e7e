/**
 * The streaming hash tree. Data digests fill level-0 hash blocks; each level keeps a buffer of at most ~1 MiB of
 * blocks, and when it fills (or at the end) hands the finished blocks to a sink and hashes them into its parent.
 * Memory is bounded by the number of levels, never by the image size.
 *
 * Formatting and verifying run the same chain: the sink writes the built blocks (format) or compares them with
 * the stored ones and passes the *stored* blocks up (verify), so each stored block is checked against its parent.
 */
import type { BlockHasher } from '../hash/engine.js';
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

interface Parent {
  append(children: Uint8Array, childSize: number, count: number): Promise<void>;
}

class Root implements Parent {
  readonly digest: Uint8Array;
  received = 0;

  constructor(private readonly hasher: BlockHasher) {
    this.digest = new Uint8Array(hasher.digestSize);
  }

  async append(children: Uint8Array, childSize: number, count: number): Promise<void> {
    this.received += count;
    if (this.received > 1) throw new VerityError('E_INTERNAL', 'More than one block reached the root.');
    await this.hasher.hashBlocks(children, childSize, 1, this.digest, 0, this.digest.length);
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
  ) {
    this.capacity = levelCapacity(blocks, hashBlockSize);
    this.buffer = new Uint8Array(this.capacity * hashBlockSize);
    this.uniform = geometry.slotSize * geometry.hashesPerBlock === hashBlockSize;
  }

  async append(children: Uint8Array, childSize: number, count: number): Promise<void> {
    const { hashesPerBlock: hpb, slotSize } = this.geometry;
    const room = this.capacity * hpb;
    let done = 0;
    while (done < count) {
      const slot = this.fill % hpb;
      const limit = this.uniform ? room - this.fill : hpb - slot;
      const run = Math.min(count - done, limit);
      const offset = Math.floor(this.fill / hpb) * this.hashBlockSize + slot * slotSize;
      await this.hasher.hashBlocks(children.subarray(done * childSize), childSize, run, this.buffer, offset, slotSize);
      this.fill += run;
      done += run;
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

  constructor(plan: TreePlan, hasher: BlockHasher, sink: LevelSink) {
    const { geometry, params } = plan;
    const hashBlockSize = params.hashBlockSize;
    this.dataBlocks = params.dataBlocks;
    this.dataBlockSize = params.dataBlockSize;
    this.root = new Root(hasher);
    let parent: Parent = this.root;
    for (let i = geometry.levels.length - 1; i >= 0; i--) {
      const level = new Level(i, geometry.levels[i]!.blocks, hashBlockSize, geometry, hasher, sink, parent);
      this.levels[i] = level;
      parent = level;
    }
    this.entry = parent;
  }

  /** Hashes `count` data blocks held in `bytes` (count * dataBlockSize bytes), the next ones in data order. */
  async addData(bytes: Uint8Array, count: number): Promise<void> {
    this.dataBlocksSeen += count;
    if (this.dataBlocksSeen > this.dataBlocks) throw new VerityError('E_INTERNAL', 'More data blocks than the tree covers.');
    await this.entry.append(bytes, this.dataBlockSize, count);
  }

  /**
   * Takes the next `count` level-0 blocks ready-made (`count * hashBlockSize` bytes) instead of data blocks: their
   * digests were computed out of data order (sequential.ts). Level 0 then covers `hashesPerBlock` data blocks a block.
   */
  async addLevel0(built: Uint8Array, count: number, dataBlocksCovered: number): Promise<void> {
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
    for (const level of this.levels) await level.flush();
    if (this.root.received !== 1) throw new VerityError('E_INTERNAL', 'The root was not computed.');
    return this.root.digest;
  }
}
