/**
 * Text output. The header block is byte-for-byte what veritysetup 2.6.1 prints for `format` and `dump`
 * (lib/verity/verity.c: VERITY_dump), so scripts that grep it keep working.
 */
import { bytesEqual, toHex } from '../binary/bytes.js';
import type { FecGeometry, FecPlacement } from '../fec/geometry.js';
import type { TreeGeometry } from '../format/geometry.js';
import { MAX_RESTORED_BYTES, type FecAssessment } from '../tree/repairable.js';
import type { VerityParams } from '../format/params.js';
import type { VerifyResult } from '../tree/verify.js';
import type { BlockRange } from '../tree/ranges.js';
import type { DamagedFile, DamagedFiles, FileByteRange, OtherDamageKind } from './owners.js';

/** The FEC parity a format wrote or a dump was told of (api/format.ts: FecResult). */
export interface FecReport {
  path: string;
  placement: FecPlacement;
  geometry: FecGeometry;
}

/**
 * `rootHash` only for format (dump never knows it). With `fec`, veritysetup's FEC lines: `FEC RS roots` and
 * `FEC blocks` (the parity size in blocks) after `Hash algorithm`; with the parity on the hash device, `Hash device
 * size` counts it too (veritysetup assumes it follows the tree directly); with the parity at offset 0 of a device of
 * its own, a last line `FEC device size`.
 */
export function renderHeader(hashPath: string, params: VerityParams, geometry: TreeGeometry, rootHash?: Uint8Array, fec?: FecReport): string {
  const g = fec?.geometry;
  const onHash = fec?.placement === 'hash-device';
  const lines = [
    `VERITY header information for ${hashPath}`,
    `UUID:            \t${params.superblock ? (params.uuid ?? '') : ''}`,
    `Hash type:       \t${params.hashType}`,
    `Data blocks:     \t${params.dataBlocks}`,
    `Data block size: \t${params.dataBlockSize}`,
    `Hash blocks:     \t${geometry.hashBlocks}`,
    `Hash block size: \t${params.hashBlockSize}`,
    `Hash algorithm:  \t${params.algorithm}`,
    ...(g ? [`FEC RS roots:   \t${g.roots}`, `FEC blocks:     \t${g.parityBlocks}`] : []),
    `Salt:            \t${params.salt.length > 0 ? toHex(params.salt) : '-'}`,
  ];
  if (rootHash) lines.push(`Root hash:      \t${toHex(rootHash)}`);
  if (params.hashOffset === 0) {
    const size = g && onHash ? (geometry.hashStartBlock + geometry.hashBlocks + g.parityBlocks) * params.hashBlockSize : geometry.hashDeviceSize;
    lines.push(`Hash device size: \t${size} [bytes]`);
  }
  if (g && !onHash && g.fecOffset === 0) lines.push(`FEC device size: \t${g.parityBlocks * g.blockSize} [bytes]`);
  return lines.join('\n') + '\n';
}

/** How many ranges of each kind the text report lists before pointing to --json. */
const TEXT_RANGE_LIMIT = 10;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function total(ranges: BlockRange[]): number {
  return ranges.reduce((sum, r) => sum + r.count, 0);
}

function listRanges(ranges: BlockRange[], blockSize: number, base: number, where: string, indent: string): string[] {
  const out = ranges.slice(0, TEXT_RANGE_LIMIT).map((r) => {
    const start = base + r.first * blockSize;
    const end = start + r.count * blockSize - 1;
    const which = r.count === 1 ? `block ${r.first}` : `blocks ${r.first}-${r.first + r.count - 1} (${r.count})`;
    return `${indent}${which} at ${where} bytes ${start}-${end}`;
  });
  if (ranges.length > TEXT_RANGE_LIMIT) out.push(`${indent}… and ${ranges.length - TEXT_RANGE_LIMIT} more ranges (--json lists all)`);
  return out;
}

/** How many damaged files the text report names, and how many byte ranges of each, before pointing to --json. */
const TEXT_FILE_LIMIT = 10;
const TEXT_FILE_RANGE_LIMIT = 4;

const OTHER_LABELS: Record<OtherDamageKind, string> = {
  free: 'free space',
  superblock: 'superblock',
  'group-descriptors': 'group descriptors',
  bitmap: 'block or inode bitmap',
  'inode-table': 'inode table',
  journal: 'journal',
  metadata: 'other filesystem metadata',
  'beyond-filesystem': 'past the end of the filesystem',
};

function byteRanges(ranges: FileByteRange[]): string {
  const shown = ranges.slice(0, TEXT_FILE_RANGE_LIMIT).map((r) => `${r.offset}-${r.offset + r.length - 1}`);
  if (ranges.length > TEXT_FILE_RANGE_LIMIT) shown.push(`… (${ranges.length - TEXT_FILE_RANGE_LIMIT} more)`);
  return shown.join(', ');
}

function fileLine(f: DamagedFile): string {
  const parts: string[] = [];
  const size = f.size === null ? '' : ` of ${f.size}`;
  if (f.corrupt.length > 0) parts.push(`bytes ${byteRanges(f.corrupt)}${size}`);
  if (f.unverified.length > 0) parts.push(`unverified bytes ${byteRanges(f.unverified)}${f.corrupt.length > 0 ? '' : size}`);
  if (f.mappingBlocks > 0) parts.push(`${plural(f.mappingBlocks, 'block')} of its extent tree, block map or attributes`);
  return `${f.path}${f.kind === 'file' ? '' : ` (${f.kind})`}: ${parts.join('; ')}`;
}

/** What the damaged data blocks hold in the ext4 filesystem on the data device (report/owners.ts). */
function filesLines(files: DamagedFiles): string[] {
  if (files.filesystem === null) return [`The files holding the damaged blocks are not named: ${files.error}.`];
  const lines = [`The damaged blocks in the ext4 filesystem${files.blockSize > 0 ? ` (${files.blockSize}-byte blocks)` : ''} hold:`];
  for (const f of files.files.slice(0, TEXT_FILE_LIMIT)) lines.push(`  ${fileLine(f)}`);
  if (files.files.length > TEXT_FILE_LIMIT) lines.push(`  … and ${plural(files.files.length - TEXT_FILE_LIMIT, 'more file')} (--json lists all)`);
  for (const o of files.other) {
    const n = o.corruptBlocks + o.unverifiedBlocks;
    lines.push(`  ${OTHER_LABELS[o.kind]}: ${plural(n, 'block')}${o.unverifiedBlocks > 0 ? ` (${o.unverifiedBlocks} unverified)` : ''}`);
  }
  if (files.truncated) lines.push(`  (only the first ${files.lookedUpBlocks} of ${files.damagedBlocks} damaged filesystem blocks were looked up)`);
  if (files.error !== null) lines.push(`  ${files.files.length + files.other.length > 0 ? 'not all named: ' : ''}${files.error}`);
  return lines;
}

/**
 * Human report of a verification: a summary line, then every kind of damage found (the first ranges of each), then
 * what the damaged data blocks hold when the data is an ext4 filesystem (`files`, from report/owners.ts).
 */
/** The FEC part of a verify outcome (api/verify.ts). */
export interface VerifyFecReport {
  path: string;
  geometry: FecGeometry;
  assessment: FecAssessment | null;
}

/** What the parity can do for the damage found: a line, and the blocks it cannot restore. */
function fecLines(fec: VerifyFecReport, params: VerityParams): string[] {
  const a = fec.assessment;
  const head = `FEC (${fec.path}, ${plural(fec.geometry.roots, 'root')}):`;
  if (!a) return [`${head} not assessed: the tree does not match the root hash, so nothing says which blocks are damaged.`];
  const damaged = a.damaged.data + a.damaged.hash;
  if (damaged === 0) return [`${head} nothing to restore.`];
  const what = plural(damaged, 'damaged block');
  if (a.repairable === true) {
    return [`${head} all ${what} can be restored by erasure decoding; the data and tree with them restored verify against the root hash.`];
  }
  if (a.repairable === null) {
    return [`${head} all ${what} were rebuilt by erasure decoding, but more than ${MAX_RESTORED_BYTES >> 20} MiB of them: not checked again.`];
  }
  const lost = total(a.unrestorable.data) + total(a.unrestorable.hash);
  if (lost === 0) {
    return [
      `${head} every one of the ${what} was rebuilt, but the result still does not verify (${a.recheck}): other blocks ` +
        '(below a damaged hash block) or the parity itself are damaged too. Not repairable.',
    ];
  }
  const lines = [`${head} ${a.restored} of the ${what} can be restored; ${lost} cannot (more damaged blocks in their round than roots, or damaged parity). Not repairable.`];
  if (a.unrestorable.data.length > 0) lines.push('  Data blocks that cannot be restored:', ...listRanges(a.unrestorable.data, params.dataBlockSize, 0, 'data', '    '));
  if (a.unrestorable.hash.length > 0) {
    lines.push('  Hash blocks that cannot be restored:', ...listRanges(a.unrestorable.hash, params.hashBlockSize, 0, 'hash', '    '));
  }
  return lines;
}

export function renderVerify(result: VerifyResult & { files?: DamagedFiles | null; fec?: VerifyFecReport | null }, params: VerityParams): string {
  const hbs = params.hashBlockSize;
  const dataBad = total(result.data.corrupt);
  const treeBad = result.levels.reduce((sum, l) => sum + total(l.corrupt), 0);
  const spareBad = result.levels.reduce((sum, l) => sum + total(l.spare), 0);
  const lines: string[] = [];
  if (result.status === 'ok') {
    lines.push(
      `Verification succeeded: ${plural(params.dataBlocks, 'data block')} and ${plural(result.geometry.hashBlocks, 'hash block')} match root hash ${toHex(result.expectedRoot)}.`,
    );
    if (result.fec) lines.push(...fecLines(result.fec, params));
    return lines.join('\n') + '\n';
  }
  if (result.status === 'root-mismatch') {
    lines.push(`Root hash mismatch: the hash tree's root is ${toHex(result.actualRoot)}, expected ${toHex(result.expectedRoot)}.`);
  } else if (!bytesEqual(result.actualRoot, result.expectedRoot)) {
    // The top block itself does not match: blamed as corrupted (nothing above vouches for it), which hides everything
    // below it. Say so, since the likelier cause may be a root hash that is not this image's.
    lines.push(
      `Root hash mismatch: the top hash block hashes to ${toHex(result.actualRoot)}, expected ${toHex(result.expectedRoot)}. ` +
        'Either the top block is damaged or the root hash given is not this image\'s; nothing below it can be checked.',
    );
  }
  const parts = [];
  if (dataBad > 0) parts.push(plural(dataBad, 'corrupted data block'));
  if (treeBad > 0) parts.push(plural(treeBad, 'corrupted hash block'));
  if (spareBad > 0) parts.push(plural(spareBad, 'hash block') + ' with non-zero spare bytes');
  if (parts.length > 0) lines.push(`Verification failed: ${parts.join(', ')}.`);
  else if (result.status === 'root-mismatch') lines.push('The hash tree is consistent with the data: the root hash given does not belong to this image.');

  if (dataBad > 0) {
    lines.push(`Corrupted data blocks (${dataBad} in ${plural(result.data.corrupt.length, 'range')}):`);
    lines.push(...listRanges(result.data.corrupt, params.dataBlockSize, 0, 'data', '  '));
  }
  for (const level of [...result.levels].reverse()) {
    const base = level.startBlock * hbs;
    if (level.corrupt.length > 0) {
      lines.push(`Corrupted hash blocks, level ${level.level} (${total(level.corrupt)} of ${level.blocks}):`);
      lines.push(...listRanges(level.corrupt, hbs, base, 'hash', '  '));
    }
    if (level.spare.length > 0) {
      lines.push(`Hash blocks with non-zero spare bytes, level ${level.level}:`);
      lines.push(...listRanges(level.spare, hbs, base, 'hash', '  '));
    }
  }
  const unverified = total(result.data.unverified);
  if (unverified > 0) {
    lines.push(`Unverified data blocks (below a corrupted hash block, cannot be checked): ${unverified}`);
    lines.push(...listRanges(result.data.unverified, params.dataBlockSize, 0, 'data', '  '));
  }
  if (result.files) lines.push(...filesLines(result.files));
  if (result.fec) lines.push(...fecLines(result.fec, params));
  return lines.join('\n') + '\n';
}

/**
 * veritysetup's stderr lines for the same outcome (cryptsetup lib/verity/verity_verify.c and src/veritysetup.c), for scripts that match them:
 * the first failure in its scan order, or the root hash when every block matched.
 */
export function veritysetupLines(result: VerifyResult): string {
  const f = result.firstFailure;
  if (f === null) return result.status === 'root-mismatch' ? 'Verification of root hash failed.\n' : '';
  const head =
    f.kind === 'digest' ? `Verification failed at position ${f.position}.` : `Spare area is not zeroed at position ${f.position}.`;
  return `${head}\nVerification of data area failed.\n`;
}

/** What `verity repair` did (api/repair.ts: RepairOutcome). */
export interface RepairReport {
  status: 'clean' | 'repaired' | 'unrepairable' | 'root-mismatch';
  assessment: FecAssessment | null;
  repaired: { data: BlockRange[]; hash: BlockRange[] };
  written: { data: string | null; hash: string | null };
  inPlace: boolean;
  rootHash: Uint8Array;
}

export function renderRepair(r: RepairReport, params: VerityParams, fec: { path: string; geometry: FecGeometry }): string {
  switch (r.status) {
    case 'clean':
      return `Nothing to repair: every block matches root hash ${toHex(r.rootHash)}. Nothing was written.\n`;
    case 'root-mismatch':
      return 'The hash tree does not match the root hash: nothing says which blocks are damaged, so nothing was repaired or written.\n';
    case 'unrepairable':
      return [...fecLines({ ...fec, assessment: r.assessment }, params), 'Nothing was written.'].join('\n') + '\n';
    case 'repaired': {
      const lines = [`Repaired ${plural(total(r.repaired.data), 'data block')} and ${plural(total(r.repaired.hash), 'hash block')} from ${fec.path}.`];
      if (r.repaired.data.length > 0) lines.push(...listRanges(r.repaired.data, params.dataBlockSize, 0, 'data', '  '));
      if (r.repaired.hash.length > 0) lines.push(...listRanges(r.repaired.hash, params.hashBlockSize, 0, 'hash', '  '));
      const where = [r.written.data, r.written.hash].filter((p): p is string => p !== null);
      lines.push(
        `${r.inPlace ? 'Rewritten in place and synced' : 'Written'}: ${where.join(' and ')}; read back, the data and tree verify against root hash ${toHex(r.rootHash)}.`,
      );
      return lines.join('\n') + '\n';
    }
  }
}
