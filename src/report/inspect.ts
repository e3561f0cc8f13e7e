/**
 * `verity inspect`: what an image holds, as one plain document (printed as JSON, or as text by `renderInspect`).
 * On a GPT disk it also shows the boot entries found, their command lines with the verity keys marked, and the
 * targets `verity verify IMAGE` would check (discovery/targets.ts), so a user sees why those were chosen.
 */
import { toHex } from '../binary/bytes.js';
import { tokenizeCmdline, verityTargetsFromCmdline } from '../boot/cmdline.js';
import { placeOf, type BootEntry } from '../discovery/boot.js';
import type { GptTable } from '../image/gpt.js';
import { findVerityPairs } from '../discovery/dps-pairs.js';
import type { Survey } from '../discovery/survey.js';
import type { TargetSearch, UnresolvedTarget, VerityTarget } from '../discovery/targets.js';
import { SCHEMA_VERSION } from './json.js';
import { printable } from '../binary/printable.js';

/** One boot entry as inspect shows it. */
export interface InspectBootEntry {
  loader: BootEntry['loader'];
  /** Where it is defined: `#2 "BootA":/grub2/grub.cfg, menu entry "CBL-Mariner"`, a BLS file, a UKI and its add-ons. */
  where: string;
  title: string;
  cmdline: string;
  /** A GRUB recovery or rescue entry: listed, but not a source of targets. */
  recovery: boolean;
  /** The initramfs files it loads, in order: `#2 "BootA":/initrd.img-…`. */
  initrds: string[];
  /**
   * The words of `cmdline` that set up verity, as written: the keys of the targets it declares (boot/cmdline.ts
   * `keys`), and any `systemd.verity=` / `rd.systemd.verity=` (which can turn systemd's targets off).
   */
  verityKeys: string[];
}

/** A target `verity verify IMAGE` would check, without checking it. */
export interface InspectTarget {
  name: string;
  via: VerityTarget['via'];
  description: string;
  /** The partition holding the data (null: the whole image), and its address as `verify IMAGE` names it. */
  data: { partition: number | null; path: string };
  /** The partition holding the tree, or the file of the image (an initramfs member) it is read from. */
  hash: { partition: number | null; file: string | null; path: string };
  /** Where the superblock is in the hash device or file. */
  hashOffset: number;
  /** The root hash the image declares (a claim, not checked here), or null when it declares none. */
  rootHash: { hex: string; from: string; signature: string | null } | null;
}

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
  /** The boot entries of a GPT disk (null: not looked for, the image is no GPT disk). */
  bootEntries: InspectBootEntry[] | null;
  /** What `verity verify IMAGE` would check on a GPT disk (null: not looked for). */
  targets: InspectTarget[] | null;
  /** Targets the boot configuration declares that cannot be checked. */
  unresolved: UnresolvedTarget[];
  /** What the target search looked at. */
  searched: string[];
  /** What it left out, with why: boot entries and files that could not be read, pairs that could not be settled. */
  skipped: string[];
}

/**
 * The document. `search` is the target search of a GPT disk (discovery/targets.ts findTargets, with the boot entries
 * it read), or null when none was made.
 */
export function inspectReport(
  address: string,
  layers: InspectReport['layers'],
  zipEntries: InspectReport['zipEntries'],
  survey: Survey | null,
  search: TargetSearch | null = null,
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
    bootEntries: search ? search.bootEntries.map(bootEntryOf) : null,
    targets: search ? search.targets.map((t) => targetOf(address, t)) : null,
    unresolved: search?.unresolved ?? [],
    searched: search?.searched ?? [],
    skipped: search?.skipped ?? [],
  };
}

const VERITY_SWITCHES = new Set(['systemd.verity', 'rd.systemd.verity']);

function bootEntryOf(e: BootEntry): InspectBootEntry {
  const args = tokenizeCmdline(e.cmdline);
  const keys = new Set([...VERITY_SWITCHES, ...verityTargetsFromCmdline(args).targets.flatMap((t) => t.keys)]);
  return {
    loader: e.loader,
    where: e.where,
    title: e.title,
    cmdline: e.cmdline,
    recovery: e.recovery,
    initrds: e.initrds.map(placeOf),
    verityKeys: args.filter((a) => keys.has(a.key)).map((a) => a.raw),
  };
}

/** The target as `verify IMAGE` would name its devices (api/verify-image.ts: `IMAGE::N`, or the file's description). */
function targetOf(address: string, t: VerityTarget): InspectTarget {
  return {
    name: t.name,
    via: t.via,
    description: t.description,
    data: { partition: t.dataPartition?.index ?? null, path: t.dataPartition ? `${address}::${t.dataPartition.index}` : address },
    hash: {
      partition: t.hashPartition?.index ?? null,
      file: t.hashFile,
      path: t.hashFile ?? (t.hashPartition ? `${address}::${t.hashPartition.index}` : address),
    },
    hashOffset: t.hashOffset,
    rootHash: t.claim ? { hex: toHex(t.claim.bytes), from: t.claim.from, signature: t.claim.signature ?? null } : null,
  };
}

export interface RenderInspectOptions {
  /** Mark the verity keys with ANSI bold and colour (a terminal that shows colour); otherwise with `^` under them. */
  colour?: boolean;
}

export function renderInspect(r: InspectReport, options: RenderInspectOptions = {}): string {
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
  // The sections below make their lines printable themselves (the colour codes must survive).
  const safe = lines.map(printable);
  if (r.bootEntries) safe.push(...bootLines(r.bootEntries, options.colour === true));
  if (r.targets) safe.push(...targetLines(r));
  return safe.join('\n') + '\n';
}

/** Command lines are wrapped to this many columns (a word longer than a line gets a line of its own). */
const WIDTH = 100;
const BOLD_YELLOW = '\x1b[1;33m';
const RESET = '\x1b[0m';

/** `#2 "BootA":/grub2/grub.cfg` and `"CBL-Mariner"` out of a GRUB entry's `where`; other loaders' `where` as it is. */
function placeAndTitle(e: InspectBootEntry): { place: string; title: string } {
  const m = e.loader === 'grub' ? /^(.*?), menu entry "(.*)"$/s.exec(e.where) : null;
  return m ? { place: m[1]!, title: m[2]! } : { place: e.where, title: e.title };
}

function bootLines(entries: readonly InspectBootEntry[], colour: boolean): string[] {
  if (entries.length === 0) return ['', 'Boot entries: none found.'];
  const lines = ['', `Boot entries (${entries.length}; verity keys ${colour ? 'highlighted' : 'marked ^^^'}):`];
  for (const e of entries) {
    const { place, title } = placeAndTitle(e);
    lines.push(
      printable(`  [${e.loader}] "${title}" in ${place}${e.recovery ? ' (a recovery entry: not a source of targets)' : ''}`),
    );
    for (const initrd of e.initrds) lines.push(printable(`    initrd ${initrd}`));
    lines.push(...cmdlineLines(e, colour, '    '));
  }
  return lines;
}

/**
 * The command line, wrapped at word boundaries, its verity keys marked. On a terminal with colour they are bold and
 * yellow. Otherwise (a pipe, a file, NO_COLOR) a line of `^` under each key: the command line itself stays exactly
 * the words the loader passes, so it can be copied or searched, and the marks survive a pager, a log or an e-mail
 * where escape codes would be noise and inline brackets would read as part of the words.
 */
function cmdlineLines(e: InspectBootEntry, colour: boolean, indent: string): string[] {
  const keys = new Set(e.verityKeys);
  // Control characters shown escaped first, so widths are the printed widths.
  const words = tokenizeCmdline(e.cmdline).map((a) => ({ text: printable(a.raw), marked: keys.has(a.raw) }));
  if (words.length === 0) return [`${indent}(empty command line)`];
  const rows: Array<typeof words> = [];
  let row: typeof words = [];
  let width = indent.length;
  for (const w of words) {
    if (row.length > 0 && width + 1 + w.text.length > WIDTH) {
      rows.push(row);
      row = [];
      width = indent.length;
    }
    width += (row.length > 0 ? 1 : 0) + w.text.length;
    row.push(w);
  }
  rows.push(row);
  const lines: string[] = [];
  for (const r of rows) {
    if (colour) {
      lines.push(indent + r.map((w) => (w.marked ? `${BOLD_YELLOW}${w.text}${RESET}` : w.text)).join(' '));
      continue;
    }
    lines.push(indent + r.map((w) => w.text).join(' '));
    if (r.some((w) => w.marked)) lines.push((indent + r.map((w) => (w.marked ? '^' : ' ').repeat(w.text.length)).join(' ')).trimEnd());
  }
  return lines;
}

function targetLines(r: InspectReport): string[] {
  const targets = r.targets ?? [];
  const lines = ['', `Targets (what \`verity verify IMAGE\` checks):${targets.length === 0 ? ' none.' : ''}`];
  for (const t of targets) {
    lines.push(`  ${t.name} (${t.via}): data ${t.data.path}, hash ${t.hash.path}${t.hashOffset > 0 ? ` at byte ${t.hashOffset}` : ''}`);
    lines.push(`    ${t.description}`);
    lines.push(
      t.rootHash
        ? `    root hash ${t.rootHash.hex} (claimed, not checked) from ${t.rootHash.from}${t.rootHash.signature ? `; signature: ${t.rootHash.signature}` : ''}`
        : '    no root hash declared: verify checks the tree against its own top block',
    );
  }
  for (const u of r.unresolved) lines.push(`  ${u.name} CANNOT BE CHECKED: ${u.reason} (declared by ${u.from}).`);
  if (r.searched.length + r.skipped.length > 0) lines.push('', 'Searched:');
  for (const s of r.searched) lines.push(`  ${s}`);
  for (const s of r.skipped) lines.push(`  left out: ${s}`);
  return lines.map(printable);
}
