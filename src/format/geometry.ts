/**
 * Hash-tree geometry, as cryptsetup lib/verity/verity_hash.c (hash_levels, create_or_verify) and the kernel's
 * dm-verity-target.c (verity_ctr, verity_hash_at_level) lay it out. docs/format.md explains the layout.
 *
 * All byte offsets are plain numbers checked to stay below 2^53, so offsets beyond 4 GiB are exact.
 */
import { VerityError } from '../errors.js';
import { digestSize, type HashAlgorithm } from './algorithms.js';
import { checkParams, SUPERBLOCK_SIZE, type VerityParams } from './params.js';

export interface TreeLevel {
  /** 0 holds the digests of the data blocks; the last level is the single top block. */
  level: number;
  /** Number of hash blocks in this level. */
  blocks: number;
  /** Absolute hash-device block (in hash-block units) of this level's first block. */
  startBlock: number;
}

export interface TreeGeometry {
  /** The hash algorithm, resolved once from the parameters' name: everything below uses this. */
  algorithm: HashAlgorithm;
  digestSize: number;
  /** Bytes one stored digest occupies: padded to a power of two in format 1, packed in format 0. */
  slotSize: number;
  /** Digests per hash block: always a power of two, in both formats. */
  hashesPerBlock: number;
  /** Levels from 0 (leaves) up; empty when there is a single data block (the root is then its digest). */
  levels: TreeLevel[];
  /** First block of the hash area, in hash-block units (the kernel's <hash_start_block>). */
  hashStartBlock: number;
  /** Sum of all level sizes ("Hash blocks" in veritysetup dump). */
  hashBlocks: number;
  /** Bytes the hash device must hold: (hashStartBlock + hashBlocks) * hashBlockSize. */
  hashDeviceSize: number;
}

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/**
 * Where the hash area starts (lib/verity/verity.c: VERITY_hash_offset_block): after the superblock, rounded up to a
 * hash block; without a superblock the offset is rounded *down*, so a misaligned offset is silently ignored in part.
 * That floor is an upstream quirk (docs/format.md §2) we must reproduce to be byte-compatible.
 */
export function hashStartBlock(p: Pick<VerityParams, 'superblock' | 'hashOffset' | 'hashBlockSize'>): number {
  return p.superblock
    ? ceilDiv(p.hashOffset + SUPERBLOCK_SIZE, p.hashBlockSize)
    : Math.floor(p.hashOffset / p.hashBlockSize);
}

export function computeGeometry(params: VerityParams): TreeGeometry {
  const algorithm = checkParams(params);
  const D = digestSize(algorithm);
  const bits = Math.floor(Math.log2(params.hashBlockSize / D));
  const hashesPerBlock = 2 ** bits;
  const slotSize = params.hashType === 1 ? 2 ** Math.ceil(Math.log2(D)) : D;

  // levels = smallest L with (n - 1) >> (bits * L) == 0. Division by a power of two is exact for n < 2^53.
  let levelCount = 0;
  while (bits * levelCount < 64 && Math.floor((params.dataBlocks - 1) / 2 ** (bits * levelCount)) !== 0) levelCount++;

  const start = hashStartBlock(params);
  const sizes = Array.from({ length: levelCount }, (_, i) => ceilDiv(params.dataBlocks, 2 ** ((i + 1) * bits)));
  // The top level gets the lowest position (verity.rst: "stored a depth at a time (starting from the root)").
  const levels: TreeLevel[] = new Array(levelCount);
  let position = start;
  for (let i = levelCount - 1; i >= 0; i--) {
    levels[i] = { level: i, blocks: sizes[i]!, startBlock: position };
    position += sizes[i]!;
  }
  const hashBlocks = position - start;
  const hashDeviceSize = position * params.hashBlockSize;
  if (!Number.isSafeInteger(hashDeviceSize)) {
    throw new VerityError('E_PARAM', 'Device offset overflow: the hash area would end beyond 2^53 bytes.');
  }
  return { algorithm, digestSize: D, slotSize, hashesPerBlock, levels, hashStartBlock: start, hashBlocks, hashDeviceSize };
}
