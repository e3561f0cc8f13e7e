/** `verity verify`: checks a data operand against its hash tree and reports every damaged block. */
import { describeLayer, detectContent, openOperand, type Operand } from '../containers/operand.js';
import { choosePair } from '../discovery/survey.js';
import { VerityError } from '../errors.js';
import { createScratch } from '../files/files.js';
import { computeGeometry } from '../format/geometry.js';
import { ignoredOptions, paramsFromSuperblock, paramsWithoutSuperblock } from '../format/options.js';
import type { VerityParams } from '../format/params.js';
import type { ByteSource } from '../io/source.js';
import { verifyTree, type VerifyResult } from '../tree/verify.js';
import { engineOptions, openOptions, passOptions, type Sources, type VerifyOptions } from './options.js';
import { checkOverlap, placement, type Placement } from './overlap.js';
import { readSuperblockAt, withEngine } from './plan.js';
import { expectedRootHash } from './root-hash.js';

export interface VerifyOutcome extends VerifyResult {
  params: VerityParams;
  sources: Sources;
  /** The hash engine and threads used. */
  engine: string;
  /** Options that a superblock overrode. */
  warnings: string[];
}

/**
 * Verifies the data at `dataAddress` against the tree at `hashAddress` (containers/operand.ts explains addresses). Without
 * `hashAddress`, the data operand is a whole image and the pair is found in it (discovery/survey.ts: choosePair).
 */
export async function verifyFiles(
  dataAddress: string,
  hashAddress: string | undefined,
  options: VerifyOptions,
): Promise<VerifyOutcome> {
  const opened: Operand[] = [];
  const open = openOptions(options);
  try {
    const dataOperand = await openOperand(dataAddress, open);
    opened.push(dataOperand);
    let data = dataOperand.source;
    let hash: ByteSource;
    let hashOffset = options.hashOffset ?? 0;
    let hashLayers: string[];
    let discovered: string | null = null;
    let placements: [Placement, Placement] | null = null;
    const rootHash = await expectedRootHash(options);
    if (hashAddress === undefined) {
      if (options.superblock === false) throw new VerityError('E_PARAM', 'Finding the hash tree in an image needs its superblock.');
      const pair = await choosePair(data, (await detectContent(data)) === 'gpt', rootHash.guess());
      ({ data, hash, hashOffset } = pair);
      discovered = pair.description;
      hashLayers = dataOperand.layers.map(describeLayer);
    } else {
      const hashOperand = await openOperand(hashAddress, open);
      opened.push(hashOperand);
      hash = hashOperand.source;
      hashLayers = hashOperand.layers.map(describeLayer);
      const [d, h] = [placement(dataAddress, dataOperand), placement(hashAddress, hashOperand)];
      if (d && h) placements = [d, h];
    }
    const hashName = hashAddress ?? dataAddress;
    const superblock = options.superblock ?? true;
    const params = superblock
      ? paramsFromSuperblock(await readSuperblockAt(hash, hashOffset, hashName), hashOffset)
      : paramsWithoutSuperblock(options, data.size);
    const geometry = computeGeometry(params);
    if (placements) checkOverlap(params, ...placements, false);
    const expected = rootHash.bytes(geometry.digestSize, params.algorithm);
    const dataBytes = params.dataBlocks * params.dataBlockSize;
    const result = await withEngine(geometry, dataBytes, engineOptions(options), (engine) =>
      verifyTree(params, data, hash, expected, engine, { ...passOptions(options), scratch: createScratch }),
    );
    return {
      ...result,
      params,
      warnings: superblock ? ignoredOptions(options, params) : [],
      sources: { data: dataOperand.layers.map(describeLayer), hash: hashLayers, discovered },
    };
  } finally {
    for (const o of opened) await o.close();
  }
}
