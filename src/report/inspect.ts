/**
 * `verity inspect`: what an image holds, as one plain document (printed as JSON, or as text by `renderInspect`).
 */
import { toHex } from '../binary/bytes.js';
import type { GptTable } from '../image/gpt.js';
import { findVerityPairs } from '../discovery/dps-pairs.js';
import type { Survey } from '../discovery/survey.js';
import { SCHEMA_VERSION } from './json.js';
import { printable } from '../binary/printable.js';

export interface InspectReport {
  schemaVersion: number;
  command: 'inspect';
  status: 'ok';
  exitCode: 0;
  address: string;
  /** The file and each container in it, outermost first. */
  layers: Array<{ kind: string; description: string }>;
  /** Entries, when the address ends at a zip archive. */
  zipEntries: Array<{ name: string; method: string; size: number; compressedSize: number }> | null;
  partitionTable: { type: 'gpt'; sectorSize: number; diskGuid: string; header: string; warnings: string[] } | null;
  partitions: Array<{
    index: number;
    name: string;
    type: string | null;
    typeGuid: string;
    guid: string;
    offset: number;
    size: number;
  }>;
  filesystems: Array<{ partition: number | null; type: string; size: number }>;
  superblocks: Array<{
    partition: number | null;
    /** The zip entry it starts, when the address ends at an archive; null otherwise. */
    entry: string | null;
    offset: number;
    where: string;
    hashType: number;
    algorithm: string;
    dataBlockSize: number;
    hashBlockSize: number;
    dataBlocks: number;
    dataBytes: number;
    salt: string;
    uuid: string;
  }>;
  verityPairs: Array<{ role: string; architecture: string; data: number; hash: number; signature: number | null }>;
}

export function inspectReport(
  address: string,
  layers: InspectReport['layers'],
  zipEntries: InspectReport['zipEntries'],
  survey: Survey | null,
): InspectReport {
  const gpt: GptTable | null = survey?.gpt ?? null;
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'inspect',
    status: 'ok',
    exitCode: 0,
    address,
    layers,
    zipEntries,
    partitionTable: gpt && {
      type: 'gpt',
      sectorSize: gpt.sectorSize,
      diskGuid: gpt.diskGuid,
      header: gpt.header,
      warnings: gpt.warnings,
    },
    partitions: (gpt?.partitions ?? []).map((p) => ({
      index: p.index,
      name: p.name,
      type: p.dpsType,
      typeGuid: p.typeGuid,
      guid: p.partitionGuid,
      offset: p.offset,
      size: p.size,
    })),
    filesystems: survey?.filesystems ?? [],
    superblocks: (survey?.superblocks ?? []).map((s) => ({
      partition: s.partition,
      entry: s.entry ?? null,
      offset: s.offset,
      where: s.where,
      hashType: s.superblock.hashType,
      algorithm: s.superblock.algorithm,
      dataBlockSize: s.superblock.dataBlockSize,
      hashBlockSize: s.superblock.hashBlockSize,
      dataBlocks: s.superblock.dataBlocks,
      dataBytes: s.superblock.dataBlocks * s.superblock.dataBlockSize,
      salt: s.superblock.salt.length > 0 ? toHex(s.superblock.salt) : '-',
      uuid: s.superblock.uuid,
    })),
    verityPairs: gpt
      ? findVerityPairs(gpt).map((p) => ({
          role: p.role,
          architecture: p.architecture,
          data: p.data.index,
          hash: p.hash.index,
          signature: p.signature?.index ?? null,
        }))
      : [],
  };
}

export function renderInspect(r: InspectReport): string {
  const lines: string[] = [];
  const where = (partition: number | null) => (partition === null ? 'image' : `#${partition}`);
  const holder = (s: InspectReport['superblocks'][number]) => (s.entry !== null ? `entry ${s.entry}` : where(s.partition));
  r.layers.forEach((l, i) => lines.push(`${'  '.repeat(i)}${l.description}`));
  if (r.zipEntries) {
    lines.push('', `Zip entries (${r.zipEntries.length}):`);
    for (const e of r.zipEntries) lines.push(`  ${e.name}  ${e.method}, ${e.size} bytes`);
  }
  if (r.partitionTable) {
    const t = r.partitionTable;
    lines.push('', `GPT: ${t.sectorSize}-byte sectors, disk GUID ${t.diskGuid}, ${t.header} header`);
    for (const w of t.warnings) lines.push(`  warning: ${w}`);
    lines.push('  #  offset          size            type                      GUID                                  name');
    for (const p of r.partitions) {
      lines.push(
        `  ${String(p.index).padEnd(2)} ${String(p.offset).padEnd(15)} ${String(p.size).padEnd(15)} ` +
          `${(p.type ?? p.typeGuid).padEnd(25)} ${p.guid}  ${p.name}`,
      );
    }
  }
  if (r.filesystems.length > 0) {
    lines.push('', 'Filesystems:');
    for (const f of r.filesystems) lines.push(`  ${where(f.partition)}: ${f.type}, ${f.size} bytes`);
  }
  const none = r.zipEntries
    ? 'No zip entry starts with a verity superblock (`verity inspect ARCHIVE::ENTRY` looks inside one).'
    : 'No verity superblock found.';
  lines.push('', r.superblocks.length > 0 ? 'Verity superblocks:' : none);
  for (const s of r.superblocks) {
    lines.push(
      `  ${holder(s)} at byte ${s.offset} (${s.where}): ${s.algorithm}, format ${s.hashType}, ` +
        `${s.dataBlocks} data blocks of ${s.dataBlockSize} (${s.dataBytes} bytes), hash blocks ${s.hashBlockSize}, ` +
        `UUID ${s.uuid}, salt ${s.salt}`,
    );
  }
  if (r.verityPairs.length > 0) {
    lines.push('', 'DPS verity pairs:');
    for (const p of r.verityPairs) {
      lines.push(`  ${p.role} ${p.architecture}: data #${p.data}, hash #${p.hash}${p.signature ? `, signature #${p.signature}` : ''}`);
    }
  }
  return lines.map(printable).join('\n') + '\n';
}
