/**
 * The JSON documents `--json` prints: one per command, versioned by `schemaVersion`. Fields are only ever added
 * within a version; a rename or removal bumps it. README.md documents every field.
 */
import { toHex } from '../binary/bytes.js';
import type { VerityErrorJson } from '../errors.js';
import type { TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import type { VerifyResult } from '../tree/verify.js';
import type { BlockRange } from '../tree/ranges.js';
import type { DamagedFiles } from './owners.js';
import type { FecAssessment } from '../tree/repairable.js';
import type { FecReport, RepairReport } from './text.js';

export const SCHEMA_VERSION = 1;

export interface JsonRange {
  first: number;
  last: number;
  count: number;
  /** Byte offset of the first block on its device. */
  offset: number;
  /** Bytes covered. */
  length: number;
}

function jsonRanges(ranges: BlockRange[], blockSize: number, base = 0): JsonRange[] {
  return ranges.map((r) => ({
    first: r.first,
    last: r.first + r.count - 1,
    count: r.count,
    offset: base + r.first * blockSize,
    length: r.count * blockSize,
  }));
}

function count(ranges: BlockRange[]): number {
  return ranges.reduce((sum, r) => sum + r.count, 0);
}

/**
 * What the damaged data blocks hold in the ext4 filesystem on the data device (report/owners.ts): `filesystem` its
 * block size, the counts and the non-file kinds, `files` every damaged file with its byte ranges. Both null when the
 * data is not ext4 or nothing is damaged.
 */
function filesJson(files: DamagedFiles | null | undefined) {
  if (!files) return { filesystem: null, files: null };
  return {
    filesystem: {
      type: files.filesystem,
      blockSize: files.blockSize,
      damagedBlocks: files.damagedBlocks,
      lookedUpBlocks: files.lookedUpBlocks,
      truncated: files.truncated,
      other: files.other.map((o) => ({ kind: o.kind, blocks: o.corruptBlocks + o.unverifiedBlocks, corruptBlocks: o.corruptBlocks, unverifiedBlocks: o.unverifiedBlocks })),
      error: files.error,
    },
    files: files.files.map((f) => ({
      path: f.path,
      inode: f.inode,
      kind: f.kind,
      size: f.size,
      corrupt: f.corrupt.map((r) => ({ offset: r.offset, length: r.length })),
      unverified: f.unverified.map((r) => ({ offset: r.offset, length: r.length })),
      mappingBlocks: f.mappingBlocks,
    })),
  };
}

function paramsJson(p: VerityParams) {
  return {
    hashType: p.hashType,
    algorithm: p.algorithm,
    dataBlockSize: p.dataBlockSize,
    hashBlockSize: p.hashBlockSize,
    dataBlocks: p.dataBlocks,
    salt: p.salt.length > 0 ? toHex(p.salt) : '-',
    uuid: p.uuid === null ? null : p.uuid.toLowerCase(),
    superblock: p.superblock,
    hashOffset: p.hashOffset,
  };
}

function treeJson(p: VerityParams, g: TreeGeometry) {
  return {
    digestSize: g.digestSize,
    hashesPerBlock: g.hashesPerBlock,
    hashStartBlock: g.hashStartBlock,
    hashBlocks: g.hashBlocks,
    hashDeviceSize: g.hashDeviceSize,
    levels: g.levels.map((l) => ({
      level: l.level,
      blocks: l.blocks,
      startBlock: l.startBlock,
      offset: l.startBlock * p.hashBlockSize,
    })),
  };
}

/** Where an operand was read, outermost first ("file x.zip (…)", "zip entry …", "GPT partition #3 …"). */
export interface SourceLayers {
  data?: string[];
  hash?: string[];
}

export function formatJson(
  dataPath: string,
  hashPath: string,
  r: { params: VerityParams; geometry: TreeGeometry; rootHash: Uint8Array; engine: string; fec?: FecReport | undefined },
  sources: SourceLayers = {},
) {
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'format',
    status: 'ok',
    exitCode: 0,
    data: { path: dataPath, layers: sources.data ?? [] },
    hash: { path: hashPath },
    params: paramsJson(r.params),
    tree: treeJson(r.params, r.geometry),
    rootHash: toHex(r.rootHash),
    engine: r.engine,
    ...(r.fec && { fec: fecJson(r.fec) }),
  };
}

export function dumpJson(hashPath: string, p: VerityParams, g: TreeGeometry, sources: SourceLayers = {}, fec?: FecReport) {
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'dump',
    status: 'ok',
    exitCode: 0,
    hash: { path: hashPath, layers: sources.hash ?? [] },
    params: paramsJson(p),
    tree: treeJson(p, g),
    ...(fec && { fec: fecJson(fec) }),
  };
}

/** The `fec` member of format's and dump's JSON: where the parity is and what the kernel table needs to use it. */
function fecJson(fec: FecReport) {
  const g = fec.geometry;
  return {
    path: fec.path,
    placement: fec.placement,
    roots: g.roots,
    offset: g.fecOffset,
    /** The kernel's fec_start. */
    startBlock: g.fecStartBlock,
    blockSize: g.blockSize,
    /** The kernel's fec_blocks: data blocks, then hash-device blocks from the hash start block. */
    coveredBlocks: g.coveredBlocks,
    dataBlocks: g.dataBlocks,
    hashBlocks: { first: g.hashStartBlock, count: g.hashBlocks },
    rounds: g.rounds,
    parityBlocks: g.parityBlocks,
    parityBytes: g.parityBytes,
  };
}

export function verifyJson(
  dataPath: string,
  hashPath: string,
  r: VerifyResult & { params: VerityParams; engine: string; warnings: string[]; files?: DamagedFiles | null; fec?: (FecReport & { assessment: FecAssessment | null }) | null },
  exitCode: number,
  sources: SourceLayers = {},
) {
  const p = r.params;
  const hbs = p.hashBlockSize;
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'verify',
    status: r.status,
    exitCode,
    data: {
      path: dataPath,
      layers: sources.data ?? [],
      blocks: p.dataBlocks,
      blockSize: p.dataBlockSize,
      corruptBlocks: count(r.data.corrupt),
      corrupt: jsonRanges(r.data.corrupt, p.dataBlockSize),
      unverifiedBlocks: count(r.data.unverified),
      unverified: jsonRanges(r.data.unverified, p.dataBlockSize),
      ...filesJson(r.files),
    },
    hash: { path: hashPath, layers: sources.hash ?? [] },
    params: paramsJson(p),
    rootHash: { expected: toHex(r.expectedRoot), actual: toHex(r.actualRoot), matches: r.status !== 'root-mismatch' && toHex(r.expectedRoot) === toHex(r.actualRoot) },
    tree: {
      ...treeJson(p, r.geometry),
      corruptBlocks: r.levels.reduce((sum, l) => sum + count(l.corrupt), 0),
      levels: r.levels.map((l) => ({
        level: l.level,
        blocks: l.blocks,
        startBlock: l.startBlock,
        offset: l.startBlock * hbs,
        corrupt: jsonRanges(l.corrupt, hbs, l.startBlock * hbs),
        unverified: jsonRanges(l.unverified, hbs, l.startBlock * hbs),
        spare: jsonRanges(l.spare, hbs, l.startBlock * hbs),
      })),
    },
    ...(r.fec && { fec: { ...fecJson(r.fec), ...assessmentJson(r.fec.assessment, p) } }),
    engine: r.engine,
    warnings: r.warnings,
  };
}

/**
 * What the parity can do (tree/repairable.ts): `repairable` true when every damaged block is restored and the result
 * verifies, false when not, null when not assessed (the tree does not match the root hash) or too large to re-check.
 */
function assessmentJson(a: FecAssessment | null, p: VerityParams) {
  return {
    assessed: a !== null,
    repairable: a?.repairable ?? null,
    damagedBlocks: a ? { data: a.damaged.data, hash: a.damaged.hash } : null,
    restorableBlocks: a?.restored ?? null,
    unrestorable: a ? { data: jsonRanges(a.unrestorable.data, p.dataBlockSize), hash: jsonRanges(a.unrestorable.hash, p.hashBlockSize) } : null,
    recheckStatus: a?.recheck ?? null,
  };
}

/**
 * The document of a failed command: the error's code and message, and its `data` (path, offset, expected, actual,
 * field) when it has any. The message was written from the same data, so the two never disagree.
 */
export function errorJson(command: string, error: VerityErrorJson, exitCode: number) {
  const { code, message, data } = error;
  const withData = data !== undefined && Object.keys(data).length > 0;
  return { schemaVersion: SCHEMA_VERSION, command, status: 'error', exitCode, error: withData ? { code, message, data } : { code, message } };
}

/** `verity repair --json`. */
export function repairJson(
  dataPath: string,
  hashPath: string,
  r: RepairReport & { engine: string },
  p: VerityParams,
  fec: FecReport,
  exitCode: number,
) {
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'repair',
    status: r.status,
    exitCode,
    data: { path: dataPath },
    hash: { path: hashPath },
    rootHash: toHex(r.rootHash),
    fec: { ...fecJson(fec), ...assessmentJson(r.status === 'clean' || r.status === 'root-mismatch' ? null : r.assessment, p) },
    repaired: { data: jsonRanges(r.repaired.data, p.dataBlockSize), hash: jsonRanges(r.repaired.hash, p.hashBlockSize) },
    written: r.written,
    inPlace: r.inPlace,
    engine: r.engine,
  };
}
