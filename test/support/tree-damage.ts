/**
 * Damaging images on purpose and predicting what verify must say about it: byte flips at exact data or hash-block
 * offsets, "resealing" a damaged hash block (recomputing the parent entries up to a new root, so the block is trusted
 * again), and an independent oracle that derives the expected report from the set of blocks that were modified.
 */
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { TreeGeometry } from '../../src/format/geometry.js';
import type { VerityParams } from '../../src/format/params.js';
import type { BlockRange } from '../../src/tree/ranges.js';

/** A fresh directory under os.tmpdir() for every test of the enclosing suite, removed after it. */
export function tempDirPerTest(prefix: string): () => string {
  let dir: string | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (!dir) throw new Error('tempDirPerTest: no test is running');
    return dir;
  };
}

export function readAt(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const out = new Uint8Array(length);
    const n = readSync(fd, out, 0, length, offset);
    if (n !== length) throw new Error(`short read of ${path} at ${offset}: ${n} of ${length}`);
    return out;
  } finally {
    closeSync(fd);
  }
}

export function writeAt(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** XORs the byte at `offset` with `mask` (never 0), in place, without reading the whole file. */
export function flipByte(path: string, offset: number, mask = 0x5a): void {
  const [b] = readAt(path, offset, 1);
  writeAt(path, offset, new Uint8Array([b! ^ mask]));
}

/** Byte offset of block `index` of tree level `level` on the hash device. */
export function hashBlockOffset(params: VerityParams, geometry: TreeGeometry, level: number, index: number): number {
  const l = geometry.levels[level];
  if (!l || index < 0 || index >= l.blocks) throw new Error(`no block ${index} in level ${level}`);
  return (l.startBlock + index) * params.hashBlockSize;
}

/** How many digests block `index` of `level` holds (the last block of a level may be partly filled). */
export function entriesIn(params: VerityParams, geometry: TreeGeometry, level: number, index: number): number {
  const children = level === 0 ? params.dataBlocks : geometry.levels[level - 1]!.blocks;
  return Math.min(geometry.hashesPerBlock, children - index * geometry.hashesPerBlock);
}

/** The salted digest dm-verity stores for `block`: H(salt ‖ block) in format 1, H(block ‖ salt) in format 0. */
export function saltedDigest(params: VerityParams, block: Uint8Array): Uint8Array {
  const h = createHash(params.algorithm.toLowerCase());
  if (params.hashType === 1) h.update(params.salt);
  h.update(block);
  if (params.hashType === 0) h.update(params.salt);
  return new Uint8Array(h.digest());
}

/**
 * After block `index` of `level` was modified on purpose, rewrites its entry in the parent block, that block's
 * entry in its parent, and so on to the top; returns the new root hash (hex). The modified block is then vouched for
 * by a valid chain from the returned root: the construction of a *trusted* block with unusual content.
 */
export function resealFrom(hashPath: string, params: VerityParams, geometry: TreeGeometry, level: number, index: number): string {
  const hbs = params.hashBlockSize;
  const { hashesPerBlock: hpb, slotSize } = geometry;
  let idx = index;
  for (let l = level; l < geometry.levels.length - 1; l++) {
    const digest = saltedDigest(params, readAt(hashPath, hashBlockOffset(params, geometry, l, idx), hbs));
    const parent = Math.floor(idx / hpb);
    writeAt(hashPath, hashBlockOffset(params, geometry, l + 1, parent) + (idx % hpb) * slotSize, digest);
    idx = parent;
  }
  const top = geometry.levels.length - 1;
  return Buffer.from(saltedDigest(params, readAt(hashPath, hashBlockOffset(params, geometry, top, 0), hbs))).toString('hex');
}

/** Sorted, merged ranges of a set of block indices. */
export function rangesOf(indices: Iterable<number>): BlockRange[] {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const out: BlockRange[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && last.first + last.count === i) last.count++;
    else out.push({ first: i, count: 1 });
  }
  return out;
}

export interface ExpectedReport {
  status: 'ok' | 'corrupt' | 'root-mismatch';
  data: { corrupt: BlockRange[]; unverified: BlockRange[] };
  levels: { corrupt: BlockRange[]; unverified: BlockRange[]; spare: BlockRange[] }[];
}

/**
 * The report a verify against the *correct* root must give, derived from what was modified rather than from what
 * the verifier computed: a modified block is corrupt unless one of its ancestors was modified too, in which case it
 * (like every block below a modified block) is unverified. Every modified block must be detectable: any byte of a
 * data block or of a hash block changes its digest.
 */
export function expectedFromDamage(
  params: VerityParams,
  geometry: TreeGeometry,
  damagedData: Iterable<number>,
  damagedHash: ReadonlyMap<number, Iterable<number>>,
): ExpectedReport {
  const hpb = geometry.hashesPerBlock;
  const top = geometry.levels.length - 1;
  const damaged = geometry.levels.map((_, i) => new Set(damagedHash.get(i) ?? []));
  const corrupt = geometry.levels.map(() => new Set<number>());
  const unverified = geometry.levels.map(() => new Set<number>());
  // Blocks of the level just above whose children cannot be trusted (corrupt or unverified themselves).
  let untrustedAbove = new Set<number>();
  for (let i = top; i >= 0; i--) {
    const count = geometry.levels[i]!.blocks;
    for (const p of untrustedAbove) for (let c = p * hpb; c < Math.min((p + 1) * hpb, count); c++) unverified[i]!.add(c);
    for (const b of damaged[i]!) if (!unverified[i]!.has(b)) corrupt[i]!.add(b);
    untrustedAbove = new Set([...corrupt[i]!, ...unverified[i]!]);
  }
  const dataUnverified = new Set<number>();
  if (top >= 0) {
    for (const p of untrustedAbove) {
      for (let c = p * hpb; c < Math.min((p + 1) * hpb, params.dataBlocks); c++) dataUnverified.add(c);
    }
  }
  const dataCorrupt = [...damagedData].filter((b) => !dataUnverified.has(b));
  const anything = dataCorrupt.length > 0 || corrupt.some((s) => s.size > 0);
  return {
    status: anything ? 'corrupt' : 'ok',
    data: { corrupt: rangesOf(dataCorrupt), unverified: rangesOf(dataUnverified) },
    levels: geometry.levels.map((_, i) => ({ corrupt: rangesOf(corrupt[i]!), unverified: rangesOf(unverified[i]!), spare: [] })),
  };
}

/** The parts of a verify result that `ExpectedReport` describes, for a whole-structure `toEqual`. */
export function reportOf(result: {
  status: string;
  data: { corrupt: BlockRange[]; unverified: BlockRange[] };
  levels: { corrupt: BlockRange[]; unverified: BlockRange[]; spare: BlockRange[] }[];
}): ExpectedReport {
  return {
    status: result.status as ExpectedReport['status'],
    data: { corrupt: result.data.corrupt, unverified: result.data.unverified },
    levels: result.levels.map((l) => ({ corrupt: l.corrupt, unverified: l.unverified, spare: l.spare })),
  };
}

/** A report with nothing in it, for `levels` tree levels. */
export function cleanReport(levels: number, status: ExpectedReport['status'] = 'ok'): ExpectedReport {
  return {
    status,
    data: { corrupt: [], unverified: [] },
    levels: Array.from({ length: levels }, () => ({ corrupt: [], unverified: [], spare: [] })),
  };
}
