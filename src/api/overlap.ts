/**
 * Where the data and hash areas lie in the files their addresses name, and the check that they do not overlap.
 */
import type { Stats } from 'node:fs';
import type { Operand } from '../containers/operand.js';
import { VerityError } from '../errors.js';
import { sameFile } from '../files/files.js';
import { SUPERBLOCK_SIZE } from '../format/params.js';
import type { TreePlan } from '../tree/plan.js';

/** Where an operand's bytes lie in the file its address names; `at` null when a container is in between. */
export interface Placement {
  name: string;
  file: Stats;
  at: number | null;
  /** Placed by a partition table, not by the user's offsets: an overlap is then the image's fault. */
  partition: boolean;
}

/** Where `operand`'s bytes lie in its file, or null when it is not a file (stdin). */
export function placement(name: string, operand: Operand): Placement | null {
  if (!operand.file) return null;
  return { name, file: operand.file, at: operand.extent, partition: operand.layers.some((l) => l.kind === 'partition') };
}

/**
 * Refuses data and hash areas that overlap in one file, comparing absolute file offsets (a partition operand starts
 * at its partition). The hash area starts at the superblock, or without one at the tree, which veritysetup places at
 * the offset rounded *down* to a hash block (geometry.ts: hashStartBlock). veritysetup compares against the unrounded
 * offset and so lets the tree overwrite the last data blocks; we do not. Data inside a container (VHDX, VHD, zip) is
 * not at a fixed place in its file, so format refuses to write a hash area into that same file. Two partitions that
 * overlap are a damaged image (E_BAD_IMAGE), not a usage error.
 */
export function checkOverlap(tree: TreePlan, data: Placement, hash: Placement, writing: boolean): void {
  const { params, geometry } = tree;
  if (!sameFile(data.file, hash.file)) return;
  if (data.at === null || hash.at === null) {
    // Reading two parts of one container is fine; where they lie in the file is the container's business.
    if (!writing) return;
    const inside = data.at === null ? data : hash;
    throw new VerityError(
      'E_OVERLAP',
      `Data area overlaps with hash area: ${data.name} and ${hash.name} are in the same file, and ${inside.name} is ` +
        'inside a container in it, so the hash area cannot be placed beside the data; use another file.',
      { data: { path: inside.name } },
    );
  }
  const hbs = params.hashBlockSize;
  const dataStart = data.at;
  const dataEnd = dataStart + params.dataBlocks * params.dataBlockSize;
  const hashStart = hash.at + (params.superblock ? params.hashOffset : geometry.hashStartBlock * hbs);
  const hashEnd = Math.max(hash.at + geometry.hashDeviceSize, hashStart + (params.superblock ? SUPERBLOCK_SIZE : 1));
  if (dataStart < hashEnd && hashStart < dataEnd) {
    throw new VerityError(
      data.partition && hash.partition ? 'E_BAD_IMAGE' : 'E_OVERLAP',
      `Data area overlaps with hash area: ${data.name} and ${hash.name} are in the same file, the data covers its ` +
        `bytes ${dataStart}..${dataEnd} and the hash area starts at ${hashStart}.`,
      // The hash area is what the offsets placed wrongly (or, between partitions, what the image placed).
      { data: { path: hash.name } },
    );
  }
}

