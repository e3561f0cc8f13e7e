/** `verity dump`: the superblock of a hash operand and the tree it describes. */
import { resolve } from 'node:path';
import { describeLayer, openOperand, type Operand } from '../containers/operand.js';
import { computeFecGeometry, type FecGeometry, type FecPlacement } from '../fec/geometry.js';
import { DEFAULT_ROOTS } from '../fec/rs.js';
import { openFileSource, sameFile } from '../files/files.js';
import type { TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import type { Superblock } from '../format/superblock.js';
import type { FecOptions, Sources } from './options.js';
import { readTreeAt } from './plan.js';

export interface DumpResult {
  superblock: Superblock;
  params: VerityParams;
  geometry: TreeGeometry;
  sources: Pick<Sources, 'hash'>;
  /** With `fecDevice`: the FEC parameters the superblock and the options describe (the superblock holds none). */
  fec?: { path: string; placement: FecPlacement; geometry: FecGeometry };
}

/**
 * Reads and validates the superblock at `hashOffset` (default 0) of the operand `hashAddress`. With `fecDevice`, also
 * works out the FEC geometry as veritysetup's dump does (lib/verity/verity.c: VERITY_dump): the roots and offset come
 * from the options, the covered area from the hash device's size, or from the FEC offset when the FEC device is the
 * hash device.
 */
export async function dumpFile(hashAddress: string, options: { hashOffset?: number } & FecOptions = {}): Promise<DumpResult> {
  const hash = await openOperand(hashAddress);
  try {
    const { superblock, tree } = await readTreeAt(hash.source, options.hashOffset ?? 0, hashAddress);
    const result: DumpResult = { superblock, params: tree.params, geometry: tree.geometry, sources: { hash: hash.layers.map(describeLayer) } };
    if (options.fecDevice === undefined) return result;
    const onHash = await isHashDevice(options.fecDevice, hashAddress, hash);
    const geometry = computeFecGeometry({
      roots: options.fecRoots ?? DEFAULT_ROOTS,
      dataBlockSize: tree.params.dataBlockSize,
      hashBlockSize: tree.params.hashBlockSize,
      dataBlocks: tree.params.dataBlocks,
      hashStartBlock: tree.geometry.hashStartBlock,
      fecOffset: options.fecOffset ?? 0,
      onHashDevice: onHash,
      hashDeviceSize: hash.source.size,
    });
    // Without the data operand, a FEC device that is not the hash device is reported as a device of its own.
    return { ...result, fec: { path: options.fecDevice, placement: onHash ? 'hash-device' : 'separate', geometry } };
  } finally {
    await hash.close();
  }
}

/** Whether the FEC device (which must exist) is the hash device itself: the same file, and not a part of it. */
async function isHashDevice(fecPath: string, hashAddress: string, hash: Operand): Promise<boolean> {
  const fec = await openFileSource(fecPath);
  await fec.close();
  if (resolve(fecPath) === resolve(hashAddress)) return true;
  return hash.file !== null && hash.extent === 0 && sameFile(fec.stats, hash.file);
}
