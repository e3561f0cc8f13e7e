/**
 * Building a hash tree: the pass over the data shared with verify (`runChain`), the tree written to a hash device
 * (`buildTree`), and what `veritysetup format` writes (`formatImage`: the tree, then the superblock).
 */
import type { TreeGeometry } from '../format/geometry.js';
import { DEFAULT_DEVICE_BLOCK_SIZE, type VerityParams } from '../format/params.js';
import type { HashEngine } from '../hash/engine.js';
import { readBlocks } from '../io/block-reader.js';
import type { ByteSource, ReadWriteSink } from '../io/source.js';
import { chainFromLevel0, level0InOriginOrder, type Capture } from './origin-order.js';
import { superblockFromParams } from '../format/options.js';
import { serializeSuperblock } from '../format/superblock.js';
import { VerityError } from '../errors.js';
import { LevelChain, type LevelSink } from './level-chain.js';
import { asTreePlan, type TreePlan } from './plan.js';
import type { PassOptions } from './progress.js';

export interface BuildResult {
  rootHash: Uint8Array;
  geometry: TreeGeometry;
}

/**
 * Checks that `data` holds every block the parameters cover (E_TRUNCATED with the sizes). `path` names the data in
 * the error when the caller knows it.
 */
export function checkDataSize(params: VerityParams, data: ByteSource, path?: string): void {
  const needed = params.dataBlocks * params.dataBlockSize;
  if (data.size < needed) {
    throw new VerityError(
      'E_TRUNCATED',
      `Data device is too small: ${data.size} bytes, but ${params.dataBlocks} blocks of ${params.dataBlockSize} bytes need ${needed}.`,
      { data: { ...(path !== undefined && { path }), expected: needed, actual: data.size } },
    );
  }
}

/** Where level 0 goes when the data must be read in stream order (origin-order.ts), and what to copy on the way. */
export interface Level0Store {
  store: ReadWriteSink;
  offset: number;
  captures?: Capture[];
}

/**
 * Hashes the data blocks and a pass over the chain of levels; shared by build and verify. `sink` decides what
 * happens to each finished hash block. Data the source knows is zero (ByteSource.knownZero) is not read. Data from a
 * front-to-back stream is hashed in stream order into the level-0 store `level0` gives, and the levels above are
 * built from there.
 */
export async function runChain(
  plan: TreePlan,
  data: ByteSource,
  engine: HashEngine,
  sink: LevelSink,
  options: PassOptions,
  level0?: () => Promise<Level0Store>,
): Promise<Uint8Array> {
  const { params, geometry } = plan;
  const hasher = await engine.createBlockHasher(plan.hashing);
  if (data.sequential && level0 && geometry.levels.length > 0) {
    const { store, offset, captures = [] } = await level0();
    const sequentialData = { ...data, sequential: data.sequential };
    await level0InOriginOrder(plan, sequentialData, hasher, store, offset, captures, {
      ...options,
      chunkBytes: engine.batchBytes,
      allocate: engine.allocate?.bind(engine),
    });
    const end = offset + geometry.levels[0]!.blocks * params.hashBlockSize;
    return chainFromLevel0(plan, { size: end, read: (d, p) => store.read(d, p) }, offset, hasher, sink);
  }
  const chain = new LevelChain(plan, hasher, sink);
  const bytesTotal = params.dataBlocks * params.dataBlockSize;
  // Blocks the source knows are zero (unallocated in a disk image) are neither read nor hashed (level-chain.ts).
  // Blocks that lie in files are read by the engine's own threads when it has them (BlockHasher.fromFiles).
  const reads = readBlocks(data, params.dataBlockSize, params.dataBlocks, 'Data device', {
    chunkBytes: engine.batchBytes,
    allocate: engine.allocate?.bind(engine),
    skipKnownZero: true,
    ...(hasher.fromFiles && { files: { chunkBytes: hasher.fromFiles.batchBytes } }),
  });
  for await (const chunk of reads) {
    options.signal?.throwIfAborted();
    if (chunk.zero) await chain.addZeroData(chunk.count);
    else await chain.addData(chunk.spans ?? chunk.bytes, chunk.count);
    options.onProgress?.({ bytesDone: (chunk.first + chunk.count) * params.dataBlockSize, bytesTotal });
  }
  return chain.finish();
}

/**
 * Builds the hash tree of `data` and writes every hash block to `hash` at its place (top level first, from the hash
 * start block). Writes no superblock: see `serializeSuperblock`. `tree` is the parameters or their plan (plan.ts).
 */
export async function buildTree(
  tree: VerityParams | TreePlan,
  data: ByteSource,
  hash: ReadWriteSink,
  engine: HashEngine,
  options: PassOptions = {},
): Promise<BuildResult> {
  const plan = asTreePlan(tree);
  const { params, geometry } = plan;
  checkDataSize(params, data);
  const sink: LevelSink = {
    async onBlocks(level, first, _count, built) {
      await hash.write(built, (geometry.levels[level]!.startBlock + first) * params.hashBlockSize);
      return built;
    },
  };
  const level0 = async () => ({ store: hash, offset: (geometry.levels[0]?.startBlock ?? 0) * params.hashBlockSize });
  const rootHash = await runChain(plan, data, engine, sink, options, level0);
  return { rootHash, geometry };
}

/**
 * Writes the superblock as veritysetup does (lib/verity/verity.c: VERITY_write_sb → write_lseek_blockwise): a
 * read-modify-write of the surrounding block of min(device block, hash block) bytes. In a short or new file the rest
 * of that block becomes zeros, so the file grows to the block's end; existing bytes around it are kept.
 */
export async function writeSuperblock(
  sink: ReadWriteSink,
  params: VerityParams,
  deviceBlockSize = DEFAULT_DEVICE_BLOCK_SIZE,
): Promise<void> {
  const bs = Math.min(params.hashBlockSize, deviceBlockSize);
  const blockStart = Math.floor(params.hashOffset / bs) * bs;
  const block = new Uint8Array(bs);
  await sink.read(block, blockStart);
  block.set(serializeSuperblock(superblockFromParams(params)), params.hashOffset - blockStart);
  await sink.write(block, blockStart);
}

/**
 * What `veritysetup format` writes to the hash device: the tree, then (with a superblock) the superblock, in that
 * order (lib/setup.c: _crypt_format_verity).
 */
export async function formatImage(
  tree: VerityParams | TreePlan,
  data: ByteSource,
  hash: ReadWriteSink,
  engine: HashEngine,
  options: PassOptions & { deviceBlockSize?: number } = {},
): Promise<BuildResult> {
  const plan = asTreePlan(tree);
  const result = await buildTree(plan, data, hash, engine, options);
  if (plan.params.superblock) await writeSuperblock(hash, plan.params, options.deviceBlockSize);
  return result;
}
