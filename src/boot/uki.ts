/**
 * Unified kernel images (Boot Loader Specification type #2 entries, the UAPI UKI specification): `/EFI/Linux/*.efi`
 * on the ESP, each a PE image carrying the kernel (`.linux`), initrd (`.initrd`), command line (`.cmdline`),
 * os-release (`.osrel`) and kernel release (`.uname`), and the add-ons systemd-stub appends to the command line.
 *
 * The command line the kernel gets, as systemd-stub builds it: the UKI's `.cmdline` (the profile's own when a
 * multi-profile UKI's profile has one), then the `.cmdline` of each global add-on (`/loader/addons/*.addon.efi`), then
 * of each of the UKI's add-ons (`<uki>.extra.d/*.addon.efi`), each set in file-name order, joined with spaces. Each
 * part is read up to its first NUL, control characters become spaces, and leading and trailing spaces go.
 */
import type { DirEntry, Volume } from '../fs/volume.js';
import { VerityError } from '../errors.js';
import type { ByteSource } from '../io/source.js';
import { bootCounter, compareBootEntries } from './bls.js';
import { readPeSection, readPeSections, type PeImage, type PeSection } from './pe.js';

/** Most UKIs and add-ons read from one directory, and the largest text section read. */
export const MAX_UKIS = 256;
export const MAX_ADDONS = 128;
export const MAX_UKI_TEXT_BYTES = 64 * 1024;

export interface UkiAddon {
  path: string;
  /** Its `.cmdline`, mangled as systemd-stub mangles it; null when it has none. */
  cmdline: string | null;
}

export interface UkiEntry {
  /** Path of the UKI on the ESP. */
  path: string;
  /** systemd-boot's id: the file name without a boot-counting suffix. */
  id: string;
  /** PRETTY_NAME, NAME or ID of `.osrel` (with the profile's TITLE), else `.uname`, else the file name. */
  title: string;
  /** What systemd-boot sorts by: IMAGE_ID or ID, and IMAGE_VERSION, VERSION, VERSION_ID or BUILD_ID of `.osrel`. */
  sortKey?: string;
  version?: string;
  triesLeft?: number;
  osRelease: Record<string, string> | null;
  uname: string | null;
  /** For a multi-profile UKI, the profile this entry is (0-based) with its `.profile` ID and TITLE. */
  profile: { index: number; id?: string; title?: string } | null;
  /** The UKI's own command line, or null when it has no `.cmdline` (the kernel then gets the boot loader's). */
  ukiCmdline: string | null;
  addons: UkiAddon[];
  /** The whole command line the kernel gets. */
  cmdline: string;
  /** Names of the sections the image has, in table order. */
  sections: string[];
}

const utf8 = new TextDecoder('utf-8');

/**
 * Text of a `.cmdline` as systemd-stub uses it: up to the first NUL, control characters turned into spaces, leading
 * and trailing spaces dropped.
 */
export function mangleCmdline(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const text = utf8.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
  return text.replace(/[\u0000-\u001f\u007f]/g, ' ').replace(/^ +/, '').replace(/ +$/, '');
}

/** Text of `.osrel`, `.uname` or `.profile`: up to the first NUL. */
function sectionText(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return utf8.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/**
 * An os-release file (os-release(5)): `KEY=value` lines, values optionally in single or double quotes, with
 * backslash escapes inside double quotes; comments and malformed lines skipped.
 */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$/.exec(line);
    if (!m) continue;
    let v = m[2]!;
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    else if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) v = v.slice(1, -1);
    out[m[1]!] = v;
  }
  return out;
}

/** The entries of `dir`, or null when it is absent or cannot be read (then with a problem). */
async function listOrProblem(esp: Volume, dir: string, problems: string[]): Promise<DirEntry[] | null> {
  try {
    return await esp.list(dir);
  } catch (e) {
    if (!(e instanceof VerityError)) throw e;
    problems.push(`${dir}: ${e.message}`);
    return null;
  }
}

const isAddon = (name: string) => /\.addon\.efi$/i.test(name) && !name.startsWith('.');
const byteCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The `.cmdline` of the given sections (the last one wins, so a profile's own overrides the base one). */
async function cmdlineOf(src: ByteSource, sections: PeSection[]): Promise<string | null> {
  const s = sections.filter((x) => x.name === '.cmdline').at(-1);
  return s ? mangleCmdline(await readPeSection(src, s, MAX_UKI_TEXT_BYTES)) : null;
}

async function textOf(src: ByteSource, sections: PeSection[], name: string): Promise<string | null> {
  const s = sections.filter((x) => x.name === name).at(-1);
  return s ? sectionText(await readPeSection(src, s, MAX_UKI_TEXT_BYTES)) : null;
}

/** Add-ons in `dir`, in name order, with their command lines; problems for the ones that cannot be read. */
async function readAddons(esp: Volume, dir: string, problems: string[]): Promise<UkiAddon[]> {
  const listing = await listOrProblem(esp, dir, problems);
  if (listing === null) return [];
  const names = listing.filter((e) => e.kind !== 'directory' && isAddon(e.name)).map((e) => e.name).sort(byteCompare);
  if (names.length > MAX_ADDONS) {
    problems.push(`${dir} holds ${names.length} add-ons; only the first ${MAX_ADDONS} were read.`);
    names.length = MAX_ADDONS;
  }
  const out: UkiAddon[] = [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      const src = await esp.open(path);
      if (src === null) continue;
      const image = await readPeSections(src);
      out.push({ path, cmdline: await cmdlineOf(src, image.sections) });
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      problems.push(`${path}: ${e.message} The add-on is left out.`);
    }
  }
  return out;
}

/** Splits a section table at its `.profile` sections: the base, then one list per profile (UKI specification). */
function profilesOf(image: PeImage): { base: PeSection[]; profiles: PeSection[][] } {
  const base: PeSection[] = [];
  const profiles: PeSection[][] = [];
  for (const s of image.sections) {
    if (s.name === '.profile') profiles.push([s]);
    else (profiles.at(-1) ?? base).push(s);
  }
  return { base, profiles };
}

/**
 * The entries of one UKI (one per profile of a multi-profile UKI). `globalAddons` are those of /loader/addons, read
 * once by the caller. Throws E_BAD_IMAGE when the file is not a readable PE image.
 */
export async function readUki(esp: Volume, path: string, globalAddons: UkiAddon[], problems: string[]): Promise<UkiEntry[]> {
  const src = await esp.open(path);
  if (src === null) return [];
  const image = await readPeSections(src);
  const own = await readAddons(esp, `${path}.extra.d`, problems);
  const fileName = path.slice(path.lastIndexOf('/') + 1);
  const counted = bootCounter(fileName.replace(/\.efi$/i, ''));
  const { base, profiles } = profilesOf(image);
  const osrelText = await textOf(src, base, '.osrel');
  const osRelease = osrelText === null ? null : parseOsRelease(osrelText);
  const uname = (await textOf(src, base, '.uname'))?.trim() ?? null;
  const baseTitle = osRelease?.PRETTY_NAME ?? osRelease?.NAME ?? osRelease?.ID ?? uname ?? fileName;
  const sortKey = osRelease?.IMAGE_ID ?? osRelease?.ID;
  const version = osRelease?.IMAGE_VERSION ?? osRelease?.VERSION ?? osRelease?.VERSION_ID ?? osRelease?.BUILD_ID;
  const addons = [...globalAddons, ...own];
  const variants: Array<{ sections: PeSection[]; profile: UkiEntry['profile'] }> =
    profiles.length === 0
      ? [{ sections: base, profile: null }]
      : await Promise.all(
          profiles.map(async (p, index) => {
            const meta = parseOsRelease((await textOf(src, p, '.profile')) ?? '');
            const profile: NonNullable<UkiEntry['profile']> = { index };
            if (meta.ID !== undefined) profile.id = meta.ID;
            if (meta.TITLE !== undefined) profile.title = meta.TITLE;
            return { sections: [...base, ...p], profile };
          }),
        );
  const entries: UkiEntry[] = [];
  for (const { sections, profile } of variants) {
    const ukiCmdline = await cmdlineOf(src, sections);
    const parts = [ukiCmdline, ...addons.map((a) => a.cmdline)].filter((x): x is string => x !== null && x !== '');
    if (ukiCmdline === null) {
      problems.push(`${path}${profile ? ` (profile ${profile.index})` : ''} has no .cmdline: the kernel gets the boot loader's options, which are not known here.`);
    }
    const entry: UkiEntry = {
      path,
      id: counted.id,
      title: profile?.title ? `${baseTitle} (${profile.title})` : baseTitle,
      osRelease,
      uname,
      profile,
      ukiCmdline,
      addons,
      cmdline: parts.join(' '),
      sections: image.sections.map((s) => s.name),
    };
    if (sortKey !== undefined) entry.sortKey = sortKey;
    if (version !== undefined) entry.version = version;
    if (counted.triesLeft !== undefined) entry.triesLeft = counted.triesLeft;
    entries.push(entry);
  }
  return entries;
}

/**
 * Every UKI in `/EFI/Linux` of the ESP (`esp`), in systemd-boot's order, with the command line each boots with.
 * Hidden files (starting with `.`) are skipped as systemd-boot skips them. A UKI or add-on that cannot be read is
 * reported in `problems` and left out; the others are still listed.
 */
export async function readUkis(esp: Volume, dir = '/EFI/Linux'): Promise<{ entries: UkiEntry[]; problems: string[] }> {
  const problems: string[] = [];
  const listing = await listOrProblem(esp, dir, problems);
  if (listing === null) return { entries: [], problems };
  const names = listing
    .filter((e) => e.kind !== 'directory' && /\.efi$/i.test(e.name) && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(byteCompare);
  if (names.length > MAX_UKIS) {
    problems.push(`${dir} holds ${names.length} EFI programs; only the first ${MAX_UKIS} were read.`);
    names.length = MAX_UKIS;
  }
  const globalAddons = await readAddons(esp, '/loader/addons', problems);
  const entries: UkiEntry[] = [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      entries.push(...(await readUki(esp, path, globalAddons, problems)));
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      problems.push(`${path}: ${e.message}`);
    }
  }
  // Profiles of one UKI keep their order: the sort is stable and they compare equal.
  entries.sort(compareBootEntries);
  return { entries, problems };
}
