/**
 * Boot Loader Specification entries: type #1 (`/loader/entries/*.conf` on the ESP or XBOOTLDR partition) and the
 * ordering systemd-boot gives its menu, which also orders type #2 entries (UKIs, uki.ts).
 *
 * A type #1 file is lines of `key value` (the key, white space, the rest of the line); `#` starts a comment line.
 * `initrd` may repeat (each one loaded in order) and so may `options` (joined with a space). Paths are absolute
 * within the partition holding the entry. The file name without `.conf` is the entry's id; a boot-counting suffix
 * `+LEFT[-DONE]` is not part of it (the Boot Loader Specification, "Boot counting").
 */
import type { DirEntry, Volume } from '../fs/volume.js';
import { VerityError } from '../errors.js';

export interface BlsEntry {
  /** The file name without `.conf` and without its boot-counting suffix. */
  id: string;
  fileName: string;
  title?: string;
  version?: string;
  machineId?: string;
  sortKey?: string;
  linux?: string;
  initrds: string[];
  /** A UKI or other EFI program to run instead of `linux` (type #1 entries may name one). */
  efi?: string;
  /** Every `options` line, joined with a space. */
  options: string;
  devicetree?: string;
  architecture?: string;
  /** Boot counting from the file name: tries left, and tries done (0 when the name gives none). */
  triesLeft?: number;
  triesDone?: number;
}

/** Largest entry file read, and most entries listed from one directory. */
export const MAX_BLS_ENTRY_BYTES = 64 * 1024;
export const MAX_BLS_ENTRIES = 1024;

const utf8 = new TextDecoder('utf-8');

/** Splits `name+LEFT[-DONE]` (the counter systemd-boot renames entries with) off an id. */
export function bootCounter(id: string): { id: string; triesLeft?: number; triesDone?: number } {
  const m = /^(.*)\+(\d+)(?:-(\d+))?$/.exec(id);
  if (!m) return { id };
  const left = Number(m[2]);
  const done = m[3] === undefined ? 0 : Number(m[3]);
  if (!Number.isSafeInteger(left) || !Number.isSafeInteger(done)) return { id };
  return { id: m[1]!, triesLeft: left, triesDone: done };
}

/**
 * Parses one entry. `fileName` is the name in the entries directory (`foo.conf`). Unknown keys are ignored, as
 * systemd-boot ignores them; a value wrapped in double quotes loses them, as systemd-boot's line parser does.
 */
export function parseBlsEntry(text: string | Uint8Array, fileName: string): BlsEntry {
  const source = typeof text === 'string' ? text : utf8.decode(text);
  const base = fileName.replace(/\.conf$/i, '');
  const counted = bootCounter(base);
  const entry: BlsEntry = { id: counted.id, fileName, initrds: [], options: '' };
  if (counted.triesLeft !== undefined) {
    entry.triesLeft = counted.triesLeft;
    entry.triesDone = counted.triesDone ?? 0;
  }
  const options: string[] = [];
  for (const rawLine of source.split('\n')) {
    const line = rawLine.replace(/^[ \t]+/, '').replace(/[ \t\r]+$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)[ \t]*(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!;
    let value = m[2]!;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    switch (key) {
      case 'title':
        entry.title = value;
        break;
      case 'version':
        entry.version = value;
        break;
      case 'machine-id':
        entry.machineId = value;
        break;
      case 'sort-key':
        entry.sortKey = value;
        break;
      case 'linux':
        entry.linux = value;
        break;
      case 'initrd':
        // An initrd line may name several files, separated by white space, in systemd-boot and GRUB's blscfg.
        entry.initrds.push(...value.split(/[ \t]+/).filter((v) => v !== ''));
        break;
      case 'efi':
        entry.efi = value;
        break;
      case 'options':
        if (value !== '') options.push(value);
        break;
      case 'devicetree':
        entry.devicetree = value;
        break;
      case 'architecture':
        entry.architecture = value;
        break;
      default:
        break;
    }
  }
  entry.options = options.join(' ');
  return entry;
}

const byteCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isAlpha = (c: string | undefined) => c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
const isKept = (c: string) => isDigit(c) || isAlpha(c) || c === '~' || c === '-' || c === '^' || c === '.';

/**
 * Compares two versions as the UAPI Version Format Specification says, in the order systemd's strverscmp_improved
 * applies the rules: characters other than letters, digits and `~-^.` are skipped; `~` sorts before everything; when either version has ended, the plain comparison of what is left
 * decides; then `-`, `^` and `.` in turn (each tested on the characters the previous one left, without skipping
 * again) sort before anything else; a digit run is newer than none, and digit runs compare as numbers; letter runs
 * compare letter by letter, capitals first, a longer run being newer. Returns <0, 0 or >0.
 */
export function compareVersions(a: string, b: string): number {
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && !isKept(a[i]!)) i++;
    while (j < b.length && !isKept(b[j]!)) j++;
    if (a[i] === '~' || b[j] === '~') {
      if (a[i] !== '~') return 1;
      if (b[j] !== '~') return -1;
      i++;
      j++;
    }
    if (i >= a.length || j >= b.length) return byteCompare(a.slice(i), b.slice(j));
    for (const sep of ['-', '^', '.']) {
      if (a[i] === sep || b[j] === sep) {
        if (a[i] !== sep) return 1;
        if (b[j] !== sep) return -1;
        i++;
        j++;
      }
    }
    if (isDigit(a[i]) || isDigit(b[j])) {
      const si = i;
      const sj = j;
      while (isDigit(a[i])) i++;
      while (isDigit(b[j])) j++;
      // A digit run, even "0", is newer than none; then leading zeros do not count.
      if ((i === si) !== (j === sj)) return i === si ? -1 : 1;
      const da = a.slice(si, i).replace(/^0+/, '');
      const db = b.slice(sj, j).replace(/^0+/, '');
      // Without leading zeros a longer run is a larger number, so no run need be converted.
      if (da.length !== db.length) return da.length - db.length;
      if (da !== db) return da < db ? -1 : 1;
      continue;
    }
    while (isAlpha(a[i]) && isAlpha(b[j])) {
      if (a[i] !== b[j]) return a[i]! < b[j]! ? -1 : 1;
      i++;
      j++;
    }
    if (isAlpha(a[i])) return 1;
    if (isAlpha(b[j])) return -1;
  }
}

/** What systemd-boot sorts its menu by, for type #1 and type #2 entries alike. */
export interface SortableEntry {
  id: string;
  sortKey?: string;
  machineId?: string;
  version?: string;
  triesLeft?: number;
}

/**
 * systemd-boot's menu order (boot.c, boot_entry_compare): entries with no tries left last; entries with a sort key
 * before those without; among those with one, by sort key, then machine id, then version newest first; then by id,
 * highest version-like id first; then more tries left first. Use with `Array.prototype.sort`.
 */
export function compareBootEntries(a: SortableEntry, b: SortableEntry): number {
  const exhausted = (e: SortableEntry) => (e.triesLeft === 0 ? 1 : 0);
  let r = exhausted(a) - exhausted(b);
  if (r !== 0) return r;
  r = (a.sortKey === undefined ? 1 : 0) - (b.sortKey === undefined ? 1 : 0);
  if (r !== 0) return r;
  if (a.sortKey !== undefined && b.sortKey !== undefined) {
    r = byteCompare(a.sortKey, b.sortKey);
    if (r !== 0) return r;
    r = byteCompare(a.machineId ?? '', b.machineId ?? '');
    if (r !== 0) return r;
    r = -compareVersions(a.version ?? '', b.version ?? '');
    if (r !== 0) return r;
  }
  r = -compareVersions(a.id, b.id);
  if (r !== 0) return r;
  if (a.triesLeft === undefined || b.triesLeft === undefined) return 0;
  return b.triesLeft - a.triesLeft;
}

/**
 * The type #1 entries in `dir` of `volume` (default `/loader/entries`), in systemd-boot's order. Files not ending in
 * `.conf` are skipped; a file over MAX_BLS_ENTRY_BYTES, or a volume error on the directory or one file, becomes a
 * problem rather than failing the rest. An absent directory gives no entries.
 */
export async function readBlsEntries(volume: Volume, dir = '/loader/entries'): Promise<{ entries: BlsEntry[]; problems: string[] }> {
  const problems: string[] = [];
  let listing: DirEntry[] | null;
  try {
    listing = await volume.list(dir);
  } catch (e) {
    if (!(e instanceof VerityError)) throw e;
    return { entries: [], problems: [`${dir}: ${e.message}`] };
  }
  if (listing === null) return { entries: [], problems };
  const names = listing
    .filter((e) => e.kind !== 'directory' && /\.conf$/i.test(e.name))
    .map((e) => e.name)
    .sort(byteCompare);
  if (names.length > MAX_BLS_ENTRIES) {
    problems.push(`${dir} holds ${names.length} entries; only the first ${MAX_BLS_ENTRIES} were read.`);
    names.length = MAX_BLS_ENTRIES;
  }
  const entries: BlsEntry[] = [];
  for (const name of names) {
    const path = `${dir.replace(/\/+$/, '')}/${name}`;
    try {
      const bytes = await volume.readFile(path, MAX_BLS_ENTRY_BYTES);
      if (bytes === null) continue;
      entries.push(parseBlsEntry(bytes, name));
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      problems.push(`${path}: ${e.message}`);
    }
  }
  entries.sort(compareBootEntries);
  return { entries, problems };
}
