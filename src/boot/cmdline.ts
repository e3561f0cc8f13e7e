/**
 * The kernel command line: its words, and the dm-verity targets its keys describe.
 *
 * Words are split as the kernel's `next_arg` (lib/cmdline.c, used by parse_args) splits them: runs of white space
 * separate words, double quotes protect white space and are dropped only where the kernel drops them (a quote
 * opening the word or its value, and the word's closing quote), and a word is `key=value` at its first `=`. No
 * backslash escapes. Two readers consume the same line and see the same words for every line real boot loaders write:
 * systemd (proc_cmdline) and dracut (getarg); where they split differently (quotes in mid-word) the kernel's rule is
 * used.
 *
 * Verity keys of two styles become `VerityTargetSpec`s:
 *
 * - systemd, as systemd-veritysetup-generator(8) reads them: `roothash=` / `usrhash=` with
 *   `systemd.verity_{root,usr}_{data,hash,options}=`; without a data or hash key, that device is the partition whose
 *   PARTUUID is the first (data) or last (hash) 128 bits of the root hash, written as a UUID in byte order (UAPI
 *   Discoverable Partitions Specification). `systemd.verity=0` or `rd.systemd.verity=0` disables the generator.
 * - CBL-Mariner / Azure Linux 2.0 dracut module 20verity-mount (verity-parse.sh): `root=verityroot:SPEC` with
 *   `rd.verityroot.*`. A hash tree, root hash file, FEC file or signature given as an absolute path outside /dev is a
 *   file inside the entry's initramfs (that is how the image tools write them); a /dev path or a `KEY=` spec is a device.
 *
 * When a key is given more than once, the last one counts, as both readers do. Everything odd is reported in
 * `problems` rather than thrown: a command line is data from an image, and one bad key should not hide the others.
 */
import { formatUuid, fromHex } from '../binary/bytes.js';

/** One word of the command line. */
export interface CmdlineArg {
  /** The word as it appears (quotes included). */
  raw: string;
  /** The part before the first `=`, or the whole word, quotes removed as the kernel removes them. */
  key: string;
  /** The part after the first `=` (quotes removed), or null when the word has no `=`. */
  value: string | null;
}

/** Longest command line read: the kernel's own limit is 2-4 KiB on most architectures, UKIs allow more. */
export const MAX_CMDLINE_CHARS = 1 << 20;

/** The white space of the kernel's isspace() for ASCII: space, \t, \n, \v, \f, \r. */
const isSpace = (c: string): boolean => c === ' ' || (c >= '\t' && c <= '\r');

/**
 * Splits `text` into words as the kernel's next_arg does. Throws nothing; `text` longer than MAX_CMDLINE_CHARS is cut
 * there (a kernel would refuse far earlier).
 */
export function tokenizeCmdline(text: string): CmdlineArg[] {
  const s = text.length > MAX_CMDLINE_CHARS ? text.slice(0, MAX_CMDLINE_CHARS) : text;
  const out: CmdlineArg[] = [];
  let i = 0;
  while (i < s.length && isSpace(s[i]!)) i++;
  while (i < s.length) {
    const start = i;
    let inQuote = false;
    let quoted = false;
    if (s[i] === '"') {
      i++;
      inQuote = true;
      quoted = true;
    }
    const bodyStart = i;
    let equals = -1;
    for (; i < s.length; i++) {
      const c = s[i]!;
      if (isSpace(c) && !inQuote) break;
      // The kernel records the first '=' at a position > 0 of the body; one at position 0 counts as none.
      if (equals < 0 && c === '=' && i > bodyStart) equals = i;
      if (c === '"') inQuote = !inQuote;
    }
    const end = i;
    const raw = s.slice(start, end);
    let key: string;
    let value: string | null;
    // The word's closing quote is dropped when the word or its value opened with one.
    const closing = end > bodyStart && s[end - 1] === '"';
    if (equals < 0) {
      key = s.slice(bodyStart, quoted && closing ? end - 1 : end);
      value = null;
    } else {
      key = s.slice(bodyStart, equals);
      let vStart = equals + 1;
      let vEnd = end;
      const valueQuoted = s[vStart] === '"';
      if (valueQuoted) vStart++;
      if ((valueQuoted || quoted) && closing && vEnd - 1 >= vStart) vEnd--;
      value = s.slice(vStart, Math.max(vStart, vEnd));
    }
    out.push({ raw, key, value });
    while (i < s.length && isSpace(s[i]!)) i++;
  }
  return out;
}

/** The values of `key` in order (a word without `=` gives ''), so callers can take the last as the kernel does. */
export function cmdlineValues(args: readonly CmdlineArg[], key: string): string[] {
  return args.filter((a) => a.key === key).map((a) => a.value ?? '');
}

/** A block device as the command line names it. */
export type DeviceSpec =
  | { kind: 'partuuid'; value: string; raw: string; derivedFromRootHash?: 'first-128-bits' | 'last-128-bits' }
  | { kind: 'partlabel'; value: string; raw: string }
  | { kind: 'uuid'; value: string; raw: string }
  | { kind: 'label'; value: string; raw: string }
  /** Any other device path (/dev/sda2, /dev/mapper/x, /dev/disk/by-path/…), kept as written. */
  | { kind: 'path'; value: string; raw: string };

/** A file inside the initramfs of the boot entry. */
export interface InitramfsFile {
  initramfsPath: string;
}

/** udev's escaping of /dev/disk/by-* link names: \xHH for bytes outside its safe set (udev_util_encode_string). */
function udevUnescape(name: string): string {
  return name.replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

const BY_LINKS: ReadonlyArray<[prefix: string, kind: 'partuuid' | 'partlabel' | 'uuid' | 'label']> = [
  ['/dev/disk/by-partuuid/', 'partuuid'],
  ['/dev/disk/by-partlabel/', 'partlabel'],
  ['/dev/disk/by-uuid/', 'uuid'],
  ['/dev/disk/by-label/', 'label'],
];

const TAGS: ReadonlyArray<[tag: string, kind: 'partuuid' | 'partlabel' | 'uuid' | 'label']> = [
  ['PARTUUID=', 'partuuid'],
  ['PARTLABEL=', 'partlabel'],
  ['UUID=', 'uuid'],
  ['LABEL=', 'label'],
];

/**
 * A device spec as systemd's fstab_node_to_udev_node and dracut's expand_persistent_dev read it: `PARTUUID=`,
 * `PARTLABEL=`, `UUID=`, `LABEL=` (tags are upper case) or their /dev/disk/by-* links. UUIDs keep the case they were
 * written in: GPT partition UUIDs compare case-insensitively, FAT volume ids are upper case in their links.
 */
export function parseDeviceSpec(text: string): DeviceSpec {
  for (const [tag, kind] of TAGS) {
    if (text.startsWith(tag)) return { kind, value: text.slice(tag.length), raw: text };
  }
  for (const [prefix, kind] of BY_LINKS) {
    if (text.startsWith(prefix)) return { kind, value: udevUnescape(text.slice(prefix.length)), raw: text };
  }
  return { kind: 'path', value: text, raw: text };
}

/** How dm-verity reacts to a corrupted block, from the options. */
export type ErrorBehaviour = 'ignore' | 'restart' | 'panic';

/** One dm-verity device the command line sets up. */
export interface VerityTargetSpec {
  style: 'systemd' | 'mariner';
  /** systemd: `root` or `usr` (its device is /dev/mapper/root or /dev/mapper/usr); mariner: the device-mapper name. */
  name: string;
  data: DeviceSpec;
  /** A device, or (mariner) a hash tree file in the initramfs. */
  hash: DeviceSpec | InitramfsFile;
  /** The expected root hash: on the command line (lower-case hex), or (mariner) in a file of the initramfs. */
  rootHash: { hex: string } | InitramfsFile;
  /** Byte offset of the hash tree's superblock in the hash device (veritysetup --hash-offset). */
  hashOffset?: number;
  /** The root hash's PKCS#7 signature: a file (on the booted system or in the initramfs) or inline base64. */
  signature?: { path: string } | { base64: string } | InitramfsFile;
  /** Forward error correction: the device (or initramfs file) and its parameters, as far as given. */
  fec?: { device: DeviceSpec | InitramfsFile | null; roots?: number; offset?: number };
  errorBehaviour?: ErrorBehaviour;
  /** Other veritysetup options, as given (systemd: the options list; mariner: the veritysetup flags it implies). */
  options: string[];
  /** The command-line words this target was read from, in the order read. */
  keys: string[];
}

export interface CmdlineVerity {
  targets: VerityTargetSpec[];
  /** What is wrong or ambiguous, one sentence each, to report beside the targets. */
  problems: string[];
  /** Set when `systemd.verity=` / `rd.systemd.verity=` turns the systemd generator off (its targets are then not listed). */
  systemdDisabledBy?: string;
}

/** systemd's parse_boolean. */
function parseBoolean(v: string): boolean | null {
  const t = v.toLowerCase();
  if (['1', 'yes', 'y', 'true', 't', 'on'].includes(t)) return true;
  if (['0', 'no', 'n', 'false', 'f', 'off'].includes(t)) return false;
  return null;
}

const HEX = /^[0-9a-fA-F]+$/;

/** The last value of `key`, with a problem noted when it was given several times with different values. */
function last(args: readonly CmdlineArg[], key: string, problems: string[]): string | undefined {
  const values = cmdlineValues(args, key);
  if (values.length > 1 && new Set(values).size > 1) {
    problems.push(`${key} is given ${values.length} times with different values; the last one ("${values.at(-1)}") counts.`);
  }
  return values.at(-1);
}

/** Decimal digits only, as safe_atou64 and dracut's numeric checks accept them; null otherwise. */
function parseCount(v: string): number | null {
  if (!/^[0-9]+$/.test(v)) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

interface SystemdOptions {
  hashOffset?: number;
  signature?: { path: string } | { base64: string };
  fec?: { device: DeviceSpec | null; roots?: number; offset?: number };
  errorBehaviour?: ErrorBehaviour;
}

/**
 * The options systemd-veritysetup@.service passes to veritysetup (veritytab(5) lists them): a comma-separated list;
 * the ones that change where data, hash tree or root hash are read are picked out, the rest kept as words.
 */
function parseSystemdOptions(text: string, key: string, problems: string[]): SystemdOptions {
  const out: SystemdOptions = {};
  const fec: { device: DeviceSpec | null; roots?: number; offset?: number } = { device: null };
  let hasFec = false;
  for (const word of text.split(',')) {
    if (word === '') continue;
    const eq = word.indexOf('=');
    const name = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? '' : word.slice(eq + 1);
    const number = (what: string): number | undefined => {
      const n = parseCount(value);
      if (n === null) problems.push(`${key}: ${what}="${value}" is not a decimal number; ignored.`);
      return n ?? undefined;
    };
    switch (name) {
      case 'hash-offset': {
        const n = number('hash-offset');
        // veritysetup refuses offsets that are not whole 512-byte sectors.
        if (n !== undefined && n % 512 !== 0) problems.push(`${key}: hash-offset=${n} is not a multiple of 512.`);
        if (n !== undefined) out.hashOffset = n;
        break;
      }
      case 'root-hash-signature':
        if (value.startsWith('base64:')) out.signature = { base64: value.slice('base64:'.length) };
        else if (value.startsWith('/')) out.signature = { path: value };
        else problems.push(`${key}: root-hash-signature="${value}" is neither "base64:…" nor an absolute path.`);
        break;
      case 'fec-device':
        fec.device = parseDeviceSpec(value);
        hasFec = true;
        break;
      case 'fec-roots': {
        const n = number('fec-roots');
        if (n !== undefined) fec.roots = n;
        hasFec = true;
        break;
      }
      case 'fec-offset': {
        const n = number('fec-offset');
        if (n !== undefined) fec.offset = n;
        hasFec = true;
        break;
      }
      case 'ignore-corruption':
        out.errorBehaviour = 'ignore';
        break;
      case 'restart-on-corruption':
        out.errorBehaviour = 'restart';
        break;
      case 'panic-on-corruption':
        out.errorBehaviour = 'panic';
        break;
      default:
        break;
    }
  }
  if (hasFec) out.fec = fec;
  return out;
}

/** The PARTUUID systemd derives from 16 bytes of the root hash: the bytes in order, as a UUID string. */
function derivedPartUuid(hash: Uint8Array, which: 'first-128-bits' | 'last-128-bits'): DeviceSpec {
  const bytes = which === 'first-128-bits' ? hash.subarray(0, 16) : hash.subarray(hash.length - 16);
  const value = formatUuid(bytes);
  return { kind: 'partuuid', value, raw: `/dev/disk/by-partuuid/${value}`, derivedFromRootHash: which };
}

function systemdTargets(args: readonly CmdlineArg[], problems: string[]): VerityTargetSpec[] {
  const targets: VerityTargetSpec[] = [];
  for (const [name, hashKey] of [['root', 'roothash'], ['usr', 'usrhash']] as const) {
    const dataKey = `systemd.verity_${name}_data`;
    const hashDevKey = `systemd.verity_${name}_hash`;
    const optionsKey = `systemd.verity_${name}_options`;
    const hex = last(args, hashKey, problems);
    const dataText = last(args, dataKey, problems);
    const hashText = last(args, hashDevKey, problems);
    const optionsText = last(args, optionsKey, problems);
    const keys = [hashKey, dataKey, hashDevKey, optionsKey].filter((k) => args.some((a) => a.key === k));
    if (hex === undefined) {
      if (keys.length > 0) {
        problems.push(`${keys.join(', ')} ${keys.length > 1 ? 'are' : 'is'} given without ${hashKey}=: systemd sets up no ${name} verity device.`);
      }
      continue;
    }
    if (hex === '' || !HEX.test(hex) || hex.length % 2 !== 0) {
      problems.push(`${hashKey}="${hex}" is not an even number of hex digits: no ${name} verity device.`);
      continue;
    }
    const hash = fromHex(hex, hashKey);
    let data: DeviceSpec | null = dataText !== undefined && dataText !== '' ? parseDeviceSpec(dataText) : null;
    let hashDev: DeviceSpec | null = hashText !== undefined && hashText !== '' ? parseDeviceSpec(hashText) : null;
    if (data === null || hashDev === null) {
      if (hash.length < 16) {
        problems.push(`${hashKey}= is shorter than 128 bits, too short to name the ${name} partitions, and ${data === null ? dataKey : hashDevKey}= is not given.`);
        continue;
      }
      data ??= derivedPartUuid(hash, 'first-128-bits');
      hashDev ??= derivedPartUuid(hash, 'last-128-bits');
    }
    const options = optionsText === undefined ? [] : optionsText.split(',').filter((o) => o !== '');
    const parsed = optionsText === undefined ? {} : parseSystemdOptions(optionsText, optionsKey, problems);
    targets.push({
      style: 'systemd',
      name,
      data,
      hash: hashDev,
      rootHash: { hex: hex.toLowerCase() },
      ...parsed,
      options,
      keys,
    });
  }
  return targets;
}

/** A mariner file-or-device value: a /dev path or KEY= spec is a device, another absolute path a file of the initramfs. */
function marinerLocation(value: string, key: string, problems: string[]): DeviceSpec | InitramfsFile {
  if (value.startsWith('/') && !value.startsWith('/dev/')) return { initramfsPath: value };
  const spec = parseDeviceSpec(value);
  if (spec.kind === 'path' && !value.startsWith('/dev/')) {
    problems.push(`${key}="${value}" is neither an absolute path nor a device spec (PARTUUID=, UUID=, …).`);
  }
  return spec;
}

const MARINER_ERROR_FLAGS: Record<ErrorBehaviour, string> = {
  ignore: '--ignore-corruption',
  restart: '--restart-on-corruption',
  panic: '--panic-on-corruption',
};

function marinerTargets(args: readonly CmdlineArg[], problems: string[]): VerityTargetSpec[] {
  const root = last(args, 'root', []);
  if (root === undefined || !root.startsWith('verityroot:')) return [];
  const p = 'rd.verityroot.';
  const get = (k: string) => {
    const v = last(args, p + k, problems);
    // dracut's getarg treats an empty value as absent ([ -n "$x" ] checks).
    return v === '' ? undefined : v;
  };
  const keys = ['root', ...['devicename', 'hashtree', 'roothash', 'roothashfile', 'roothashsig', 'fecdata', 'fecroots',
    'verityerrorhandling', 'validateonboot'].map((k) => p + k).filter((k) => args.some((a) => a.key === k))];
  const spec = root.slice('verityroot:'.length);
  const name = get('devicename') ?? 'verity_root';
  const hashtree = get('hashtree');
  const roothash = get('roothash');
  const roothashfile = get('roothashfile');
  const fail = (why: string) => {
    problems.push(`root=${root}: ${why}; the dracut module would stop the boot.`);
    return [];
  };
  if (spec === '') return fail('no device after "verityroot:"');
  if (hashtree === undefined) return fail(`${p}hashtree= is missing`);
  if (roothash === undefined && roothashfile === undefined) return fail(`neither ${p}roothash= nor ${p}roothashfile= is given`);
  if (roothash !== undefined && roothashfile !== undefined) return fail(`both ${p}roothash= and ${p}roothashfile= are given`);
  let rootHash: { hex: string } | InitramfsFile;
  if (roothash !== undefined) {
    if (!HEX.test(roothash) || roothash.length % 2 !== 0) return fail(`${p}roothash="${roothash}" is not an even number of hex digits`);
    rootHash = { hex: roothash.toLowerCase() };
  } else {
    const where = marinerLocation(roothashfile!, `${p}roothashfile`, problems);
    if (!('initramfsPath' in where)) return fail(`${p}roothashfile="${roothashfile}" names a device, not a file`);
    rootHash = where;
  }
  const target: VerityTargetSpec = {
    style: 'mariner',
    name,
    data: parseDeviceSpec(spec),
    hash: marinerLocation(hashtree, `${p}hashtree`, problems),
    rootHash,
    options: [],
    keys,
  };
  const fecdata = get('fecdata');
  const fecroots = get('fecroots');
  if ((fecdata === undefined) !== (fecroots === undefined)) {
    return fail(`${p}fecdata= and ${p}fecroots= must be given together`);
  }
  if (fecdata !== undefined && fecroots !== undefined) {
    const roots = parseCount(fecroots);
    if (roots === null) problems.push(`${p}fecroots="${fecroots}" is not a decimal number.`);
    target.fec = { device: marinerLocation(fecdata, `${p}fecdata`, problems), ...(roots !== null ? { roots } : {}) };
    target.options.push(`--fec-device=${fecdata}`, `--fec-roots=${fecroots}`);
  }
  const sig = get('roothashsig');
  if (sig !== undefined) {
    target.signature = sig.startsWith('/') && !sig.startsWith('/dev/') ? { initramfsPath: sig } : { path: sig };
    target.options.push(`--root-hash-signature=${sig}`);
  }
  const handling = get('verityerrorhandling');
  if (handling !== undefined) {
    if (handling === 'ignore' || handling === 'restart' || handling === 'panic') {
      target.errorBehaviour = handling;
      target.options.push(MARINER_ERROR_FLAGS[handling]);
    } else {
      return fail(`${p}verityerrorhandling="${handling}" is not ignore, restart or panic`);
    }
  }
  const validate = get('validateonboot');
  if (validate !== undefined && validate !== 'true' && validate !== 'false') {
    return fail(`${p}validateonboot="${validate}" is not true or false`);
  }
  return [target];
}

/**
 * The dm-verity targets `cmdline` describes, in both styles, with the problems found. A line with verity keys of
 * both styles yields targets of both (the initramfs decides which module acts; the caller reports it).
 */
export function verityTargetsFromCmdline(cmdline: string | readonly CmdlineArg[]): CmdlineVerity {
  const args = typeof cmdline === 'string' ? tokenizeCmdline(cmdline) : cmdline;
  const problems: string[] = [];
  const result: CmdlineVerity = { targets: [], problems };
  // In the initrd, systemd reads rd.systemd.verity= and systemd.verity= as one key (the rd. prefix stripped), so the
  // last word of either decides.
  let disabledBy: string | undefined;
  for (const a of args) {
    if (a.key !== 'systemd.verity' && a.key !== 'rd.systemd.verity') continue;
    // A boolean key without a value means "yes" to systemd.
    const on = a.value === null ? true : parseBoolean(a.value);
    if (on === null) problems.push(`${a.raw}: not a boolean; ignored.`);
    else disabledBy = on ? undefined : a.raw;
  }
  const systemd = systemdTargets(args, problems);
  if (disabledBy !== undefined) {
    result.systemdDisabledBy = disabledBy;
    if (systemd.length > 0) problems.push(`${disabledBy} turns systemd's verity generator off: ${systemd.map((t) => t.name).join(' and ')} verity not set up.`);
  } else {
    result.targets.push(...systemd);
  }
  result.targets.push(...marinerTargets(args, problems));
  return result;
}
