/** `verity dump`: the superblock of a hash operand and the tree it describes. */
import { describeLayer, openOperand } from '../containers/operand.js';
import { computeGeometry, type TreeGeometry } from '../format/geometry.js';
import { paramsFromSuperblock } from '../format/options.js';
import type { VerityParams } from '../format/params.js';
import type { Superblock } from '../format/superblock.js';
import type { Sources } from './options.js';
import { readSuperblockAt } from './plan.js';

export interface DumpResult {
  superblock: Superblock;
  params: VerityParams;
  geometry: TreeGeometry;
  sources: Pick<Sources, 'hash'>;
}

/** Reads and validates the superblock at `hashOffset` (default 0) of the operand `hashAddress`. */
export async function dumpFile(hashAddress: string, options: { hashOffset?: number } = {}): Promise<DumpResult> {
  const hash = await openOperand(hashAddress);
  try {
    const hashOffset = options.hashOffset ?? 0;
    const superblock = await readSuperblockAt(hash.source, hashOffset, hashAddress);
    const params = paramsFromSuperblock(superblock, hashOffset);
    return { superblock, params, geometry: computeGeometry(params), sources: { hash: hash.layers.map(describeLayer) } };
  } finally {
    await hash.close();
  }
}
