/** `verity dump`: the superblock of a hash operand and the tree it describes. */
import { describeLayer, openOperand } from '../containers/operand.js';
import type { TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import type { Superblock } from '../format/superblock.js';
import type { Sources } from './options.js';
import { readTreeAt } from './plan.js';

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
    const { superblock, tree } = await readTreeAt(hash.source, options.hashOffset ?? 0, hashAddress);
    return { superblock, params: tree.params, geometry: tree.geometry, sources: { hash: hash.layers.map(describeLayer) } };
  } finally {
    await hash.close();
  }
}
