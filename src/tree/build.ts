import { resolveAlgorithm } from '../format/algorithms.js';
import { computeGeometry, type TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import { saltPlacementFor, type HashEngine } from '../hash/engine.js';
import { readBlocks } from '../io/block-reader.js';
import { type ByteSink, type ByteSource } from '../io/source.js';
import { VerityError } from '../errors.js';
import { LevelChain, type LevelSink } from './level-chain.js';
import type { PassOptions } from './progress.js';

export interface BuildResult {
  rootHash: Uint8Array;
  geometry: TreeGeometry;
}

/** Checks that `data` holds every block the parameters cover. */
export function checkDataSize(params: VerityParams, data: ByteSource): void {
  const needed = params.dataBlocks * params.dataBlockSize;
  if (data.size < needed) {
    throw new VerityError(
      'E_TRUNCATED',
      `Data device is too small: ${data.size} bytes, but ${params.dataBlocks} blocks of ${params.dataBlockSize} bytes need ${needed}.`,
    );
  }
}

/**
 * Hashes the data blocks and a pass over the chain of levels; shared by build and verify. `sink` decides what
 * happens to each finished hash block.
 */
export async function runChain(
  params: VerityParams,
  geometry: TreeGeometry,
  data: ByteSource,
  engine: HashEngine,
  sink: LevelSink,
  options: PassOptions,
): Promise<Uint8Array> {
  const hasher = await engine.createBlockHasher({
    algorithm: resolveAlgorithm(params.algorithm),
    salt: params.salt,
    saltPlacement: saltPlacementFor(params.hashType),
  });
  const chain = new LevelChain(geometry, params.dataBlocks, params.dataBlockSize, params.hashBlockSize, hasher, sink);
  const bytesTotal = params.dataBlocks * params.dataBlockSize;
  for await (const chunk of readBlocks(data, params.dataBlockSize, params.dataBlocks, 'Data device')) {
    options.signal?.throwIfAborted();
    await chain.addData(chunk.bytes, chunk.count);
    options.onProgress?.({ bytesDone: (chunk.first + chunk.count) * params.dataBlockSize, bytesTotal });
  }
  return chain.finish();
}

/**
 * Builds the hash tree of `data` and writes every hash block to `hash` at its place (top level first, from the hash
 * start block). Writes no superblock: see `serializeSuperblock`.
 */
export async function buildTree(
  params: VerityParams,
  data: ByteSource,
  hash: ByteSink,
  engine: HashEngine,
  options: PassOptions = {},
): Promise<BuildResult> {
  const geometry = computeGeometry(params);
  checkDataSize(params, data);
  const sink: LevelSink = {
    async onBlocks(level, first, _count, built) {
      await hash.write(built, (geometry.levels[level]!.startBlock + first) * params.hashBlockSize);
      return built;
    },
  };
  const rootHash = await runChain(params, geometry, data, engine, sink, options);
  return { rootHash, geometry };
}
