/**
 * An interpreter of grub.cfg that finds the boot entries a GRUB configuration offers, without running anything: it
 * follows the configuration as GRUB would (variables, `load_env`, `search`, `if`, `configfile`, `source`, menu entries,
 * `blscfg`) against the volumes of a disk image, and records for each entry the kernel, initrds and command line.
 *
 * What GRUB does and this models (GRUB manual, "Shell-like scripting" and the command list):
 * - variables live in an environment context. `configfile` (and `normal FILE`, and entering a submenu) opens a new
 *   context that starts with the *exported* variables only, and has its own menu; `source` runs in the current one.
 *   `root` and `prefix` start exported, with the `grub_platform`, `grub_cpu` and `feature_*` variables GRUB sets.
 * - setting `root` drops surrounding parentheses, as GRUB's hook on that variable does. While a configuration file
 *   runs, `config_file` and `config_directory` name it (exported), as GRUB's read_config_file sets them.
 * - a menu entry's body runs when the entry is booted, i.e. after the whole file defining it has run; each entry is
 *   therefore evaluated at the end of its file, on a copy of that context, with `$1`… its title and arguments.
 * - file paths are `(device)/path` or `/path` on the device `$root` names. Devices are opaque ids: those `search`
 *   returns through the host's callback, or GRUB device names written in the file (`hd0,gpt2`), which the host maps
 *   in `openVolume` or not. Ids must not contain white space or parentheses.
 * - `linux` / `linuxefi` / `linux16` load a kernel with the rest of the line as its arguments; the command line GRUB
 *   builds from them (grub-core/lib/cmdline.c: an argument with a space is quoted, `\`, `'` and `"` are escaped) is
 *   prefixed with `BOOT_IMAGE=` and the kernel path, as GRUB's Linux loaders do. `initrd` replaces the initrds of the
 *   loaded kernel. A `linux` outside any menu entry (run as the file is read) is reported as an entry with an empty
 *   title.
 *
 * Conditions: `[ … ]` / `test` (strings, integers, `-f -e -d -s` on files through the Volume), `true`, `false`,
 * `search`, `load_env` and functions decide. A condition that cannot be decided (an unknown command such as
 * `loadfont` or `keystatus`, a file test on a device the host cannot open, `-nt`) is resolved this way: both
 * branches are run on copies of the state, and the one that yields more boot entries (menu entries defined, kernels
 * loaded, entries found) is kept, the `then` branch on a tie; the decision is recorded in `assumptions` (and in the
 * entry's own list when it happens while the entry is evaluated). This costs each branch once, never the rest of the
 * file twice, so the work stays linear in the size of the configuration.
 *
 * Everything is bounded: file size, tokens and nesting per file, `configfile`/`source` depth (8) with cycles
 * refused, function call depth, loop iterations, total commands run and entries listed. A bound reached is a problem
 * in the result, never a hang or an exception; only a host error that is not a VerityError propagates.
 */
import type { Volume } from '../fs/volume.js';
import { VerityError } from '../errors.js';
import { parseGrubEnv, MAX_GRUBENV_BYTES } from './grubenv.js';
import { readBlsEntries } from './bls.js';
import { parseGrubScript, type Node, type Word } from './grub-script.js';

export { parseGrubScript, tokenizeGrubScript, type Node, type ParsedScript, type Token, type Word, type WordPart } from './grub-script.js';

/** A file on a device. */
export interface BootFile {
  device: string;
  path: string;
}

export type SearchKind = 'fs-uuid' | 'label' | 'file';

/** What the interpreter needs from its caller: the volumes of the image and GRUB's `search`. */
export interface GrubHost {
  /** The filesystem of device `device`, or null when there is none (or it cannot be read). */
  openVolume(device: string): Volume | null | Promise<Volume | null>;
  /**
   * The device GRUB's `search` finds: by filesystem UUID (as GRUB prints it: lower case for ext4, `ABCD-EF01` for FAT;
   * compare case-insensitively), by label, or holding a file (an absolute path). Null when none does.
   */
  search(kind: SearchKind, value: string): string | null | Promise<string | null>;
}

export interface GrubLimits {
  /** Largest configuration file read. */
  maxFileBytes: number;
  /** Tokens read from one file. */
  maxTokens: number;
  /** Nesting of blocks in one file. */
  maxNesting: number;
  /** Nesting of `configfile` / `source` / `normal` / entry evaluation. */
  maxFileDepth: number;
  /** Nesting of function calls and `eval`. */
  maxCallDepth: number;
  /** Iterations of one loop. */
  maxLoopIterations: number;
  /** Commands run in all. */
  maxSteps: number;
  /** Boot entries listed. */
  maxEntries: number;
}

export const DEFAULT_GRUB_LIMITS: GrubLimits = {
  maxFileBytes: 1 << 20,
  maxTokens: 200_000,
  maxNesting: 128,
  maxFileDepth: 8,
  maxCallDepth: 16,
  maxLoopIterations: 1024,
  maxSteps: 200_000,
  maxEntries: 1024,
};

export interface GrubOptions {
  /** Variables set (and exported) before the first file runs; they override the defaults. */
  vars?: Record<string, string>;
  limits?: Partial<GrubLimits>;
}

export interface BootEntry {
  /** The entry's title ('' for a kernel loaded outside any menu entry). */
  title: string;
  /** Titles of the submenus (or entries running `configfile`) it is inside, outermost first. */
  menuPath: string[];
  /** Its `--id`, when given. */
  id?: string;
  /** The configuration file that defines it. */
  source: BootFile;
  kernel: BootFile;
  initrds: BootFile[];
  /** The arguments of the `linux` command after the kernel path, as GRUB passed them. */
  args: string[];
  /** The command line the kernel receives, `BOOT_IMAGE=…` first. */
  cmdline: string;
  /** A recovery or rescue entry: by its title, or by `single`, `emergency`, `rescue` or a rescue target. */
  recovery: boolean;
  /** Files the entry loads that do not exist on their (readable) volume. */
  missing: BootFile[];
  /** Undecidable conditions met while evaluating this entry, and the branch taken. */
  assumptions: string[];
}

export interface GrubProblem {
  /** The file and line it concerns, when there is one. */
  file: BootFile | null;
  line: number | null;
  message: string;
}

export interface GrubResult {
  entries: BootEntry[];
  problems: GrubProblem[];
  /** Undecidable conditions and the branch taken for each. */
  assumptions: GrubProblem[];
}

type Status = 'true' | 'false' | 'unknown';

interface Loader {
  kernel: BootFile;
  kernelText: string;
  args: string[];
  initrds: BootFile[];
  missing: BootFile[];
  /** The context it was loaded in (contexts are copied, so they are told apart by id). */
  ctxId: number;
}

/** A GRUB environment context: variables, which of them are exported, and the menu built in it. */
interface Ctx {
  id: number;
  vars: Map<string, string>;
  exported: Set<string>;
  menu: Pending[];
  file: BootFile;
}

/** A menu entry or submenu defined and not yet evaluated. */
interface Pending {
  title: string;
  id?: string;
  args: string[];
  body: Node[];
  submenu: boolean;
  source: BootFile;
  menuPath: string[];
}

type Flow = { kind: 'return' | 'break' | 'continue'; n: number } | null;

interface State {
  ctx: Ctx;
  positional: string[];
  loader: Loader | null;
  entries: BootEntry[];
  problems: GrubProblem[];
  assumptions: GrubProblem[];
  /** Assumptions made since the current entry's evaluation began. */
  entryAssumptions: string[];
  functions: Map<string, Node[]>;
  flow: Flow;
  status: Status;
  /** The file whose commands are running, and the submenu path of what is being evaluated. */
  file: BootFile;
  menuPath: string[];
}

function cloneCtx(c: Ctx): Ctx {
  return { id: c.id, vars: new Map(c.vars), exported: new Set(c.exported), menu: [...c.menu], file: c.file };
}

/** A copy of the state that can be changed without changing `s` (contexts further out are not in the state). */
function cloneState(s: State): State {
  return {
    ctx: cloneCtx(s.ctx),
    positional: [...s.positional],
    loader: s.loader ? { ...s.loader, initrds: [...s.loader.initrds], missing: [...s.loader.missing] } : null,
    entries: [...s.entries],
    problems: [...s.problems],
    assumptions: [...s.assumptions],
    entryAssumptions: [...s.entryAssumptions],
    functions: new Map(s.functions),
    flow: s.flow,
    status: s.status,
    file: s.file,
    menuPath: s.menuPath,
  };
}

/** How many boot entries a state has found or set up, to compare the two branches of an undecided condition. */
function yieldOf(s: State): number {
  return s.entries.length + s.ctx.menu.length + (s.loader ? 1 : 0);
}

/** Ends the interpretation: the work or the size of a value passed its bound. */
class Stop extends Error {}
/** Longest argument or variable value built by expansion. */
const MAX_VALUE_CHARS = 1 << 20;
/** Bytes read or parsed, map entries copied, characters expanded: this many count as one command of the budget. */
const UNITS_PER_STEP = 64;
/** Problems listed at most; past them, one more says so. */
const MAX_PROBLEMS = 256;
class TooDeep extends Error {}

/** grub_create_loader_cmdline: each argument with a space is quoted, `\`, `'` and `"` escaped (`\xHH` kept). */
export function grubLoaderCmdline(args: readonly string[]): string {
  return args
    .map((arg) => {
      let out = '';
      for (let i = 0; i < arg.length; i++) {
        const c = arg[i]!;
        if (c === '\\' && arg[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(arg.slice(i + 2, i + 4))) {
          out += arg.slice(i, i + 4);
          i += 3;
          continue;
        }
        if (c === '\\' || c === "'" || c === '"') out += '\\';
        out += c;
      }
      return arg.includes(' ') ? `"${out}"` : out;
    })
    .join(' ');
}

const RECOVERY_TITLE = /recovery|rescue/i;
const RECOVERY_ARGS = new Set(['single', 'emergency', 'rescue', 'systemd.unit=rescue.target', 'systemd.unit=emergency.target', '-s', 'S']);

type OptionSpec = Record<string, { short?: string; arg: 'none' | 'required' | 'optional' }>;

/**
 * GRUB's option parser (grub-core/lib/arg.c) for extended commands: `--long[=value]`, `--long value` (taken when the
 * next word does not start with `-`), clusters of short options, where the last may take the next word (an optional
 * value only when that word does not look like an option). With `acceptDash`, unknown long options are arguments.
 */
function parseOptions(argv: readonly string[], spec: OptionSpec, acceptDash = false): { opts: Map<string, string[]>; args: string[] } | { error: string } {
  const opts = new Map<string, string[]>();
  const args: string[] = [];
  const set = (name: string, value: string | null) => opts.set(name, [...(opts.get(name) ?? []), value ?? '']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      let value: string | null = eq < 0 ? null : a.slice(eq + 1);
      const opt = spec[name];
      if (!opt) {
        if (acceptDash) {
          args.push(a);
          continue;
        }
        return { error: `unknown argument "${a}"` };
      }
      if (value === null && opt.arg !== 'none' && i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) value = argv[++i]!;
      if (opt.arg === 'none' && value !== null) return { error: `"${a}" takes no value` };
      if (opt.arg === 'required' && value === null) return { error: `"${a}" needs a value` };
      set(name, value);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let k = 1; k < a.length; k++) {
        const entry = Object.entries(spec).find(([, o]) => o.short === a[k]);
        if (!entry) return { error: `unknown argument "-${a[k]}"` };
        const [name, opt] = entry;
        if (k < a.length - 1) {
          if (opt.arg === 'required') return { error: `"-${a[k]}" needs a value` };
          set(name, null);
          continue;
        }
        let value: string | null = null;
        if (opt.arg !== 'none' && i + 1 < argv.length) {
          const next = argv[i + 1]!;
          if (opt.arg === 'required' || next.length < 2 || !next.startsWith('-')) value = argv[++i]!;
        }
        if (opt.arg === 'required' && value === null) return { error: `"-${a[k]}" needs a value` };
        set(name, value);
      }
      continue;
    }
    args.push(a);
  }
  return { opts, args };
}

const SEARCH_OPTIONS: OptionSpec = {
  file: { short: 'f', arg: 'none' },
  label: { short: 'l', arg: 'none' },
  'fs-uuid': { short: 'u', arg: 'none' },
  set: { short: 's', arg: 'optional' },
  'no-floppy': { short: 'n', arg: 'none' },
  'efidisk-only': { arg: 'none' },
  hint: { short: 'h', arg: 'required' },
  'hint-ieee1275': { arg: 'required' },
  'hint-bios': { arg: 'required' },
  'hint-baremetal': { arg: 'required' },
  'hint-efi': { arg: 'required' },
  'hint-arc': { arg: 'required' },
};

const LOAD_ENV_OPTIONS: OptionSpec = { file: { short: 'f', arg: 'required' }, 'skip-sig': { short: 's', arg: 'none' } };

const MENUENTRY_OPTIONS: OptionSpec = {
  class: { arg: 'required' },
  users: { arg: 'required' },
  unrestricted: { arg: 'none' },
  hotkey: { arg: 'required' },
  source: { arg: 'required' },
  id: { arg: 'required' },
};

/** Commands that change nothing this interpreter tracks; they succeed. */
const HARMLESS = new Set([
  'echo', 'insmod', 'rmmod', 'set_gfxpayload', 'terminal_output', 'terminal_input', 'terminal', 'save_env', 'timeout',
  'default', 'clear', 'sleep', 'play', 'background_image', 'gfxmode', 'font', 'serial', 'savedefault', 'boot',
  'chainloader', 'fwsetup', 'reboot', 'halt', 'lsmod', 'set_background_color', 'devicetree', 'tpm2_key_protector_init',
  'shim_lock', 'verify_detached', 'trust', 'distrust',
]);
/** Commands whose success cannot be known here: as conditions they are undecidable (see the header). */
const UNDECIDABLE = new Set(['loadfont', 'probe', 'cryptomount', 'ls', 'cat', 'keystatus', 'cpuid', 'regexp', 'hwmatch', 'smbios']);

const utf8 = new TextDecoder('utf-8');

class Interpreter {
  s!: State;
  private steps = 0;
  private fileDepth = 0;
  private callDepth = 0;
  private readonly fileStack: string[] = [];
  private readonly volumes = new Map<string, Promise<Volume | null>>();
  private readonly searches = new Map<string, Promise<string | null>>();
  private readonly kinds = new Map<string, Promise<{ kind: 'file' | 'dir' | 'none' | 'unknown'; size: number }>>();
  private truncatedEntries = false;
  private nextCtxId = 1;

  constructor(
    private readonly host: GrubHost,
    private readonly limits: GrubLimits,
  ) {}

  // --- Results -------------------------------------------------------------------------------------------------

  /** Records a problem once (a loop or an entry may meet the same one many times), and at most MAX_PROBLEMS. */
  problem(message: string, line: number | null = null, file: BootFile | null = this.s.file): void {
    const list = this.s.problems;
    if (list.length >= MAX_PROBLEMS) return;
    if (list.some((p) => p.message === message && p.line === line && p.file?.device === file?.device && p.file?.path === file?.path)) return;
    list.push({ file, line, message });
    if (list.length === MAX_PROBLEMS) list.push({ file: null, line: null, message: `more than ${MAX_PROBLEMS} problems; the rest are not listed` });
  }

  /** Records an undecided condition, once per place and message, and at most MAX_PROBLEMS. */
  private assume(message: string, line: number): void {
    const file = this.s.file;
    const text = `${file.path}:${line}: ${message}`;
    if (this.s.entryAssumptions.length < MAX_PROBLEMS && !this.s.entryAssumptions.includes(text)) this.s.entryAssumptions.push(text);
    const list = this.s.assumptions;
    if (list.length >= MAX_PROBLEMS) return;
    if (list.some((a) => a.line === line && a.message === message && a.file?.device === file.device && a.file?.path === file.path)) return;
    list.push({ file, line, message });
  }

  // --- Host access, cached -------------------------------------------------------------------------------------

  volume(device: string): Promise<Volume | null> {
    let v = this.volumes.get(device);
    if (!v) {
      v = Promise.resolve()
        .then(() => this.host.openVolume(device))
        .catch((e: unknown) => {
          if (!(e instanceof VerityError)) throw e;
          this.problem(`device "${device}" cannot be read: ${e.message}`);
          return null;
        });
      this.volumes.set(device, v);
    }
    return v;
  }

  private search(kind: SearchKind, value: string): Promise<string | null> {
    const key = `${kind}\u0000${value}`;
    let r = this.searches.get(key);
    if (!r) {
      r = Promise.resolve()
        .then(() => this.host.search(kind, value))
        .catch((e: unknown) => {
          if (!(e instanceof VerityError)) throw e;
          this.problem(`search for ${kind} "${value}" failed: ${e.message}`);
          return null;
        });
      this.searches.set(key, r);
    }
    return r;
  }

  /** What is at `ref`: a file (with its size), a directory, nothing, or unknown (no volume, or it failed). */
  private fileKind(ref: BootFile): Promise<{ kind: 'file' | 'dir' | 'none' | 'unknown'; size: number }> {
    const key = `${ref.device}\u0000${ref.path}`;
    let r = this.kinds.get(key);
    if (!r) {
      r = (async () => {
        const vol = await this.volume(ref.device);
        if (!vol) return { kind: 'unknown' as const, size: 0 };
        try {
          if ((await vol.list(ref.path)) !== null) return { kind: 'dir' as const, size: 0 };
          const src = await vol.open(ref.path);
          return src === null ? { kind: 'none' as const, size: 0 } : { kind: 'file' as const, size: src.size };
        } catch (e) {
          if (!(e instanceof VerityError)) throw e;
          return { kind: 'unknown' as const, size: 0 };
        }
      })();
      this.kinds.set(key, r);
    }
    return r;
  }

  /** The bytes of `ref`, or null after recording why not. */
  async readFile(ref: BootFile, maxBytes: number, line: number | null, what: string): Promise<Uint8Array | null> {
    const vol = await this.volume(ref.device);
    if (!vol) {
      this.problem(`${what} ${show(ref)}: device "${ref.device}" is not available`, line);
      return null;
    }
    try {
      const bytes = await vol.readFile(ref.path, maxBytes);
      if (bytes === null) this.problem(`${what} ${show(ref)} does not exist`, line);
      else this.charge(bytes.length);
      return bytes;
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      this.problem(`${what} ${show(ref)} cannot be read: ${e.message}`, line);
      return null;
    }
  }

  // --- Variables and paths -------------------------------------------------------------------------------------

  getVar(name: string): string {
    if (name === '?') return this.s.status === 'false' ? '1' : '0';
    if (name === '#') return String(this.s.positional.length);
    if (name === '*' || name === '@') return this.s.positional.join(' ');
    if (/^[0-9]+$/.test(name)) {
      const n = Number(name);
      return n >= 1 ? (this.s.positional[n - 1] ?? '') : '';
    }
    return this.s.ctx.vars.get(name) ?? '';
  }

  setVar(name: string, value: string): void {
    // GRUB's write hook on "root" strips the parentheses of "(hd0,gpt2)".
    const v = name === 'root' && value.length >= 2 && value.startsWith('(') && value.endsWith(')') ? value.slice(1, -1) : value;
    this.s.ctx.vars.set(name, v);
  }

  /** Expands words into arguments as grub_script_arglist_to_argv does (unquoted variables split at white space). */
  expand(words: readonly Word[]): string[] {
    const out: Array<string | null> = [];
    // A new argument slot, unless the last one is still empty (GRUB's grub_script_argv_next).
    const next = () => {
      if (out.length === 0 || out[out.length - 1] !== null) out.push(null);
    };
    let total = 0;
    const append = (text: string) => {
      const value = (out[out.length - 1] ?? '') + text;
      if (value.length > MAX_VALUE_CHARS) throw new Stop(`an argument grows past ${MAX_VALUE_CHARS} characters; interpretation stopped there`);
      total += text.length;
      out[out.length - 1] = value;
    };
    for (const word of words) {
      next();
      for (const part of word.parts) {
        if (part.k === 'text') {
          if (part.quoted || part.v !== '') append(part.v);
          continue;
        }
        if (part.name === '@' && part.quoted) {
          this.s.positional.forEach((p, i) => {
            if (i > 0) next();
            append(p);
          });
          continue;
        }
        const value = this.getVar(part.name);
        if (part.quoted) {
          append(value);
          continue;
        }
        const pieces = value.split(/[ \t\n]+/).filter((p) => p !== '');
        pieces.forEach((p, i) => {
          if (i > 0) next();
          append(p);
        });
      }
    }
    if (out.length > 0 && out[out.length - 1] === null) out.pop();
    this.charge(total);
    return out.map((x) => x ?? '');
  }

  /** `(device)/path` or `/path` on `$root`, normalised; or why it is not a file name. */
  resolve(text: string): BootFile | string {
    let device: string;
    let rest: string;
    if (text.startsWith('(')) {
      const close = text.indexOf(')');
      if (close < 0) return `"${text}" has no closing parenthesis`;
      device = text.slice(1, close);
      rest = text.slice(close + 1);
      if (device === '') device = this.getVar('root');
    } else {
      device = this.getVar('root');
      rest = text;
    }
    if (device === '') return `"${text}" is on no device: $root is not set`;
    if (!rest.startsWith('/')) return `"${text}" is not an absolute file name`;
    const parts: string[] = [];
    for (const p of rest.split('/')) {
      if (p === '' || p === '.') continue;
      if (p === '..') parts.pop();
      else parts.push(p);
    }
    return { device, path: `/${parts.join('/')}` };
  }

  // --- Execution -----------------------------------------------------------------------------------------------

  private step(): void {
    if (++this.steps > this.limits.maxSteps) throw new Stop(`the configuration runs more than ${this.limits.maxSteps} commands; interpretation stopped there`);
  }

  /**
   * Charges work other than commands to the same budget: bytes read and parsed, state copied, text expanded. So a
   * loop re-reading a large file, or copying a state with many variables, ends as surely as one running commands.
   */
  charge(units: number): void {
    this.steps += Math.floor(units / UNITS_PER_STEP);
    this.step();
  }

  /** A copy of the state, charged to the budget by its size. */
  private copyState(s: State): State {
    this.charge(s.ctx.vars.size + s.ctx.menu.length + s.entries.length + s.problems.length + s.assumptions.length + s.functions.size);
    return cloneState(s);
  }

  async runList(nodes: readonly Node[]): Promise<Status> {
    let status: Status = 'true';
    for (const node of nodes) {
      if (this.s.flow) break;
      status = await this.runNode(node);
      this.s.status = status;
    }
    return status;
  }

  private async runNode(node: Node): Promise<Status> {
    this.step();
    switch (node.k) {
      case 'cmd':
        return this.runCommand(node.words, node.block, node.line);
      case 'if':
        return this.runIf(node);
      case 'for':
        return this.runFor(node);
      case 'while':
        return this.runWhile(node);
      case 'function':
        this.s.functions.set(node.name, node.body);
        return 'true';
    }
  }

  private async runIf(node: Extract<Node, { k: 'if' }>): Promise<Status> {
    const cond = await this.runList(node.cond);
    if (this.s.flow) return cond;
    if (cond === 'true') return this.runList(node.then);
    if (cond === 'false') return node.else ? this.runList(node.else) : 'true';
    // Undecidable: each branch on its own copy, the one yielding more entries kept (`then` on a tie).
    const before = this.s;
    this.s = this.copyState(before);
    const thenStatus = await this.runList(node.then);
    const thenState = this.s;
    this.s = this.copyState(before);
    const elseStatus = node.else ? await this.runList(node.else) : 'true';
    const elseState = this.s;
    const takeElse = yieldOf(elseState) > yieldOf(thenState);
    this.s = takeElse ? elseState : thenState;
    const what = node.cond.length === 1 && node.cond[0]!.k === 'cmd' ? `"${describeWords(node.cond[0]!.words)}"` : 'the condition';
    this.assume(
      `${what} cannot be decided here; took the ${takeElse ? (node.else ? 'else' : 'empty else') : 'then'} branch ` +
        `(${yieldOf(thenState) - yieldOf(before)} entries from "then", ${yieldOf(elseState) - yieldOf(before)} from the other)`,
      node.line,
    );
    return takeElse ? elseStatus : thenStatus;
  }

  private async runFor(node: Extract<Node, { k: 'for' }>): Promise<Status> {
    const values = this.expand(node.words);
    let status: Status = 'true';
    for (const [i, v] of values.entries()) {
      if (i >= this.limits.maxLoopIterations) {
        this.problem(`the loop over ${values.length} words stops after ${this.limits.maxLoopIterations}`, node.line);
        break;
      }
      this.setVar(node.name, v);
      status = await this.runList(node.body);
      if (this.loopFlow()) break;
    }
    return status;
  }

  /** After a loop body: true when the loop ends (break, return); consumes a continue or break meant for this loop. */
  private loopFlow(): boolean {
    const f = this.s.flow;
    if (!f) return false;
    if (f.kind === 'return') return true;
    if (f.n > 1) {
      this.s.flow = { kind: f.kind, n: f.n - 1 };
      return true;
    }
    this.s.flow = null;
    return f.kind === 'break';
  }

  private async runWhile(node: Extract<Node, { k: 'while' }>): Promise<Status> {
    let status: Status = 'true';
    for (let i = 0; ; i++) {
      if (i >= this.limits.maxLoopIterations) {
        this.problem(`the ${node.until ? 'until' : 'while'} loop stops after ${this.limits.maxLoopIterations} iterations`, node.line);
        break;
      }
      const cond = await this.runList(node.cond);
      if (this.s.flow) break;
      if (cond === 'unknown') {
        this.assume(`the ${node.until ? 'until' : 'while'} condition cannot be decided here; the loop body is not run`, node.line);
        break;
      }
      if ((cond === 'true') === node.until) break;
      status = await this.runList(node.body);
      if (this.loopFlow()) break;
    }
    return status;
  }

  private async runCommand(words: readonly Word[], block: Node[] | null, line: number): Promise<Status> {
    let argv = this.expand(words);
    if (argv.length === 0) return 'true';
    let invert = false;
    if (argv[0] === '!') {
      invert = true;
      argv = argv.slice(1);
      if (argv.length === 0) return 'false';
    }
    const status = await this.dispatch(argv, block, line);
    if (!invert || status === 'unknown') return status;
    return status === 'true' ? 'false' : 'true';
  }

  private async dispatch(argv: string[], block: Node[] | null, line: number): Promise<Status> {
    const [name, ...args] = argv as [string, ...string[]];
    switch (name) {
      case 'set': {
        if (args.length === 0) return 'true';
        const eq = args[0]!.indexOf('=');
        if (eq < 0) {
          this.problem(`"set ${args[0]}" is not an assignment`, line);
          return 'false';
        }
        this.setVar(args[0]!.slice(0, eq), args[0]!.slice(eq + 1));
        return 'true';
      }
      case 'unset':
        for (const a of args) {
          this.s.ctx.vars.delete(a);
          this.s.ctx.exported.delete(a);
        }
        return 'true';
      case 'export':
        for (const a of args) {
          if (!this.s.ctx.vars.has(a)) this.setVar(a, '');
          this.s.ctx.exported.add(a);
        }
        return 'true';
      case 'true':
        return 'true';
      case 'false':
        return 'false';
      case '[':
        if (args.at(-1) !== ']') {
          this.problem('"[" without a closing "]"', line);
          return 'false';
        }
        return this.test(args.slice(0, -1), line);
      case 'test':
        return this.test(args, line);
      case 'load_env':
        return this.loadEnv(args, line);
      case 'search':
        return this.searchCommand(args, line);
      case 'search.fs_uuid':
      case 'search_fs_uuid':
        return this.searchSimple('fs-uuid', args, line);
      case 'search.fs_label':
      case 'search_label':
        return this.searchSimple('label', args, line);
      case 'search.file':
      case 'search_fs_file':
        return this.searchSimple('file', args, line);
      case 'configfile':
      case 'normal':
        if (name === 'normal' && args.length === 0) return this.include(`${this.getVar('prefix')}/grub.cfg`, true, line);
        if (args.length === 0) {
          this.problem(`"${name}" without a file`, line);
          return 'false';
        }
        return this.include(args[0]!, true, line);
      case 'source':
      case '.':
        if (args.length === 0) {
          this.problem(`"${name}" without a file`, line);
          return 'false';
        }
        return this.include(args[0]!, false, line);
      case 'menuentry':
      case 'submenu':
        return this.defineEntry(name === 'submenu', args, block, line);
      case 'linux':
      case 'linuxefi':
      case 'linux16':
        return this.loadKernel(args, line);
      case 'initrd':
      case 'initrdefi':
      case 'initrd16':
        return this.loadInitrds(args, line);
      case 'blscfg':
        return this.blscfg(line);
      case 'return':
        this.s.flow = { kind: 'return', n: 1 };
        return args[0] !== undefined && args[0] !== '0' ? 'false' : 'true';
      case 'break':
      case 'continue': {
        const n = args[0] === undefined ? 1 : Number(args[0]);
        this.s.flow = { kind: name, n: Number.isSafeInteger(n) && n > 0 ? n : 1 };
        return 'true';
      }
      case 'shift': {
        const n = args[0] === undefined ? 1 : Number(args[0]);
        if (!Number.isSafeInteger(n) || n < 0 || n > this.s.positional.length) return 'false';
        this.s.positional = this.s.positional.slice(n);
        return 'true';
      }
      case 'setparams':
        this.s.positional = [...args];
        return 'true';
      case 'eval':
        return this.evalText(args.join(' '), line);
      default:
        break;
    }
    const fn = this.s.functions.get(name);
    if (fn) return this.callFunction(name, fn, args, line);
    if (UNDECIDABLE.has(name)) return 'unknown';
    if (HARMLESS.has(name)) return 'true';
    const eq = name.indexOf('=');
    if (eq > 0) {
      // GRUB's last resort for a word that is no command: an assignment `name=value`.
      const v = name.slice(0, eq);
      if (!/^[0-9]+$/.test(v) && !['#', '*', '@'].includes(v)) this.setVar(v, name.slice(eq + 1));
      return 'true';
    }
    return 'unknown';
  }

  private async callFunction(name: string, body: Node[], args: string[], line: number): Promise<Status> {
    if (this.callDepth >= this.limits.maxCallDepth) {
      this.problem(`function "${name}" is called more than ${this.limits.maxCallDepth} deep; not called`, line);
      return 'unknown';
    }
    const saved = this.s.positional;
    this.s.positional = args;
    this.callDepth++;
    try {
      const status = await this.runList(body);
      if (this.s.flow?.kind === 'return') this.s.flow = null;
      return status;
    } finally {
      this.callDepth--;
      this.s.positional = saved;
    }
  }

  private async evalText(text: string, line: number): Promise<Status> {
    if (this.callDepth >= this.limits.maxCallDepth) {
      this.problem(`eval nested more than ${this.limits.maxCallDepth} deep; not run`, line);
      return 'unknown';
    }
    this.charge(text.length);
    const parsed = parseGrubScript(text, { maxTokens: this.limits.maxTokens, maxNesting: this.limits.maxNesting });
    if (parsed.error) this.problem(`eval: syntax error: ${parsed.error.message}`, line);
    this.callDepth++;
    try {
      return await this.runList(parsed.nodes);
    } finally {
      this.callDepth--;
    }
  }

  // --- Conditions ----------------------------------------------------------------------------------------------

  /** GRUB's `test`: `!`, `-a`, `-o`, parentheses, string, integer and file tests, in three-valued logic. */
  private async test(args: string[], line: number): Promise<Status> {
    let i = 0;
    // `!` and `(` recurse; a hostile line of thousands of them must not exhaust the stack.
    let depth = 0;
    const MAX_TEST_DEPTH = 64;
    const and = (a: Status, b: Status): Status => (a === 'false' || b === 'false' ? 'false' : a === 'unknown' || b === 'unknown' ? 'unknown' : 'true');
    const or = (a: Status, b: Status): Status => (a === 'true' || b === 'true' ? 'true' : a === 'unknown' || b === 'unknown' ? 'unknown' : 'false');
    const not = (a: Status): Status => (a === 'unknown' ? a : a === 'true' ? 'false' : 'true');
    const bool = (b: boolean): Status => (b ? 'true' : 'false');
    const BINARY = new Set(['=', '==', '!=', '<', '<=', '>', '>=', '-eq', '-ne', '-lt', '-le', '-gt', '-ge', '-pgt', '-plt', '-nt', '-ot']);
    const UNARY = new Set(['-d', '-e', '-f', '-s', '-n', '-z']);
    const int = (s: string) => {
      const m = /^\s*([+-]?[0-9]+)/.exec(s);
      return m ? Number(m[1]) : 0;
    };
    /**
     * -pgt / -plt (a GRUB extension for versions, vmlinuz-2 -plt vmlinuz-11): the numbers after the common prefix,
     * backed up to the start of the digit run the prefix ends in.
     */
    const prefixed = (a: string, b: string) => {
      let k = 0;
      while (k < a.length && k < b.length && a[k] === b[k]) k++;
      // As GRUB's test.c backs up: never to the first character.
      let j = k - 1;
      while (j > 0 && /[0-9]/.test(a[j]!)) j--;
      return [int(a.slice(j + 1)), int(b.slice(j + 1))] as const;
    };
    const file = async (op: string, path: string): Promise<Status> => {
      const ref = this.resolve(path);
      if (typeof ref === 'string') return 'false';
      const { kind, size } = await this.fileKind(ref);
      if (kind === 'unknown') return 'unknown';
      switch (op) {
        case '-d':
          return bool(kind === 'dir');
        case '-e':
          return bool(kind !== 'none');
        case '-f':
          return bool(kind === 'file');
        default:
          return bool(kind === 'file' && size > 0);
      }
    };
    const primary = async (): Promise<Status> => {
      const a = args[i];
      if (a === undefined) return 'false';
      if (a === '(') {
        i++;
        const v = await orExpr();
        if (args[i] === ')') i++;
        return v;
      }
      const op = args[i + 1];
      if (op !== undefined && BINARY.has(op) && i + 2 < args.length) {
        const b = args[i + 2]!;
        i += 3;
        switch (op) {
          case '=':
          case '==':
            return bool(a === b);
          case '!=':
            return bool(a !== b);
          case '<':
            return bool(a < b);
          case '<=':
            return bool(a <= b);
          case '>':
            return bool(a > b);
          case '>=':
            return bool(a >= b);
          case '-eq':
            return bool(int(a) === int(b));
          case '-ne':
            return bool(int(a) !== int(b));
          case '-lt':
            return bool(int(a) < int(b));
          case '-le':
            return bool(int(a) <= int(b));
          case '-gt':
            return bool(int(a) > int(b));
          case '-ge':
            return bool(int(a) >= int(b));
          case '-pgt': {
            const [x, y] = prefixed(a, b);
            return bool(x > y);
          }
          case '-plt': {
            const [x, y] = prefixed(a, b);
            return bool(x < y);
          }
          default:
            // -nt / -ot compare modification times, which the Volume does not give.
            return 'unknown';
        }
      }
      if (UNARY.has(a) && i + 1 < args.length) {
        const v = args[i + 1]!;
        i += 2;
        if (a === '-n') return bool(v !== '');
        if (a === '-z') return bool(v === '');
        return file(a, v);
      }
      i++;
      return bool(a !== '');
    };
    const notExpr = async (): Promise<Status> => {
      if (++depth > MAX_TEST_DEPTH) throw new TooDeep();
      try {
        if (args[i] === '!') {
          i++;
          return not(await notExpr());
        }
        return await primary();
      } finally {
        depth--;
      }
    };
    const andExpr = async (): Promise<Status> => {
      let v = await notExpr();
      while (i < args.length && args[i] !== '-o' && args[i] !== ')') {
        if (args[i] === '-a') i++;
        v = and(v, await notExpr());
      }
      return v;
    };
    const orExpr = async (): Promise<Status> => {
      let v = await andExpr();
      while (args[i] === '-o') {
        i++;
        v = or(v, await andExpr());
      }
      return v;
    };
    if (args.length === 0) return 'false';
    let result: Status;
    try {
      result = await orExpr();
    } catch (e) {
      if (!(e instanceof TooDeep)) throw e;
      this.problem(`test: "!" and "(" nested more than ${MAX_TEST_DEPTH} deep`, line);
      return 'unknown';
    }
    if (i < args.length) this.problem(`test: unexpected "${args[i]}"`, line);
    return result;
  }

  // --- Commands with effects -----------------------------------------------------------------------------------

  private async loadEnv(args: string[], line: number): Promise<Status> {
    const parsed = parseOptions(args, LOAD_ENV_OPTIONS);
    if ('error' in parsed) {
      this.problem(`load_env: ${parsed.error}`, line);
      return 'false';
    }
    const path = parsed.opts.get('file')?.at(-1) ?? `${this.getVar('prefix')}/grubenv`;
    const ref = this.resolve(path);
    if (typeof ref === 'string') {
      this.problem(`load_env: ${ref}`, line);
      return 'false';
    }
    if (!(await this.volume(ref.device))) {
      this.problem(`load_env ${show(ref)}: device "${ref.device}" is not available`, line);
      return 'unknown';
    }
    const bytes = await this.readFile(ref, MAX_GRUBENV_BYTES, line, 'load_env: environment block');
    if (bytes === null) return 'false';
    try {
      const block = parseGrubEnv(bytes);
      const only = parsed.args;
      for (const [name, value] of block.entries) if (only.length === 0 || only.includes(name)) this.setVar(name, value);
      if (block.broken) this.problem(`load_env ${show(ref)}: the block ends in an unfinished line, which GRUB ignores`, line);
      return 'true';
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      this.problem(`load_env ${show(ref)}: ${e.message}`, line);
      return 'false';
    }
  }

  private async searchCommand(args: string[], line: number): Promise<Status> {
    const parsed = parseOptions(args, SEARCH_OPTIONS);
    if ('error' in parsed) {
      this.problem(`search: ${parsed.error}`, line);
      return 'false';
    }
    const { opts } = parsed;
    const kind: SearchKind | null = opts.has('fs-uuid') ? 'fs-uuid' : opts.has('label') ? 'label' : opts.has('file') ? 'file' : null;
    if (kind === null) {
      this.problem('search: no search type (--fs-uuid, --label or --file)', line);
      return 'false';
    }
    const value = parsed.args[0];
    if (value === undefined) {
      this.problem('search: nothing to search for', line);
      return 'false';
    }
    const setTo = opts.has('set') ? opts.get('set')!.at(-1) || 'root' : null;
    return this.doSearch(kind, value, setTo, line);
  }

  /** `search.fs_uuid VALUE [VAR]` and its siblings: the variable is set only when named. */
  private async searchSimple(kind: SearchKind, args: string[], line: number): Promise<Status> {
    if (args[0] === undefined) {
      this.problem(`search (${kind}): nothing to search for`, line);
      return 'false';
    }
    return this.doSearch(kind, args[0], args[1] ?? null, line);
  }

  private async doSearch(kind: SearchKind, value: string, setTo: string | null, line: number): Promise<Status> {
    const device = await this.search(kind, value);
    if (device === null) {
      this.problem(`search: no device with ${kind} "${value}"`, line);
      return 'false';
    }
    if (setTo !== null) this.setVar(setTo, device);
    return 'true';
  }

  /** `configfile` (a new context with its own menu) or `source` (the current one). */
  async include(path: string, newContext: boolean, line: number): Promise<Status> {
    const ref = this.resolve(path);
    if (typeof ref === 'string') {
      this.problem(`${newContext ? 'configfile' : 'source'}: ${ref}`, line);
      return 'false';
    }
    const key = `${ref.device}\u0000${ref.path}`;
    if (this.fileStack.includes(key)) {
      this.problem(`${show(ref)} includes itself (through ${newContext ? 'configfile' : 'source'}); not read again`, line);
      return 'false';
    }
    if (this.fileDepth >= this.limits.maxFileDepth) {
      this.problem(`${show(ref)}: configuration files nested more than ${this.limits.maxFileDepth} deep; not read`, line);
      return 'false';
    }
    if (!(await this.volume(ref.device))) {
      this.problem(`${show(ref)}: device "${ref.device}" is not available`, line);
      return 'unknown';
    }
    const bytes = await this.readFile(ref, this.limits.maxFileBytes, line, 'configuration file');
    if (bytes === null) return 'false';
    const saved = { ctx: this.s.ctx, file: this.s.file };
    if (newContext) this.s.ctx = this.newContext(ref);
    this.s.file = ref;
    this.fileStack.push(key);
    this.fileDepth++;
    try {
      await this.runConfigFile(path, utf8.decode(bytes), ref);
      if (this.s.flow?.kind === 'return') this.s.flow = null;
      // The context as it is now: an undecided condition may have replaced the state (and its context) by a copy.
      if (newContext) await this.finishContext(this.s.ctx);
    } finally {
      this.fileDepth--;
      this.fileStack.pop();
      this.s.file = saved.file;
      if (newContext) this.s.ctx = saved.ctx;
    }
    return 'true';
  }

  /** Runs the first configuration file in the top context, then evaluates its menu. */
  async runTop(start: BootFile): Promise<void> {
    if (!(await this.volume(start.device))) {
      this.problem(`device "${start.device}" of the configuration is not available`, null, start);
      return;
    }
    const bytes = await this.readFile(start, this.limits.maxFileBytes, null, 'configuration file');
    if (bytes === null) return;
    this.fileStack.push(`${start.device}\u0000${start.path}`);
    await this.runConfigFile(show(start), utf8.decode(bytes), start);
    this.s.flow = null;
    await this.finishContext(this.s.ctx);
  }

  /** A context that starts with the exported variables of the current one (grub_env_context_open). */
  newContext(file: BootFile): Ctx {
    const vars = new Map<string, string>();
    for (const name of this.s.ctx.exported) vars.set(name, this.s.ctx.vars.get(name) ?? '');
    return { id: this.nextCtxId++, vars, exported: new Set(this.s.ctx.exported), menu: [], file };
  }

  /**
   * Runs a configuration file as GRUB's read_config_file does: `config_file` and `config_directory` name it (as it was
   * given) while it runs, exported, and get their old values back after it.
   */
  private async runConfigFile(given: string, text: string, file: BootFile): Promise<void> {
    const old = [this.s.ctx.vars.get('config_file') ?? '', this.s.ctx.vars.get('config_directory') ?? ''] as const;
    const slash = given.lastIndexOf('/');
    this.setVar('config_file', given);
    this.setVar('config_directory', slash < 0 ? given : given.slice(0, slash));
    this.s.ctx.exported.add('config_file').add('config_directory');
    await this.runScript(text, file);
    this.setVar('config_file', old[0]);
    this.setVar('config_directory', old[1]);
  }

  async runScript(text: string, file: BootFile): Promise<void> {
    this.charge(text.length);
    const parsed = parseGrubScript(text, { maxTokens: this.limits.maxTokens, maxNesting: this.limits.maxNesting });
    if (parsed.error) {
      this.problem(`syntax error: ${parsed.error.message}; GRUB stops reading the file there`, parsed.error.line, file);
    }
    await this.runList(parsed.nodes);
  }

  private defineEntry(submenu: boolean, args: string[], block: Node[] | null, line: number): Status {
    const what = submenu ? 'submenu' : 'menuentry';
    if (!block) {
      this.problem(`${what} without a { … } body`, line);
      return 'false';
    }
    const parsed = parseOptions(args, MENUENTRY_OPTIONS, true);
    if ('error' in parsed || parsed.args.length === 0) {
      this.problem(`${what}: ${'error' in parsed ? parsed.error : 'no title'}`, line);
      return 'false';
    }
    const pending: Pending = {
      title: parsed.args[0]!,
      args: parsed.args,
      body: block,
      submenu,
      source: this.s.file,
      menuPath: this.s.menuPath,
    };
    const id = parsed.opts.get('id')?.at(-1);
    if (id !== undefined) pending.id = id;
    this.s.ctx.menu.push(pending);
    return 'true';
  }

  private async exists(refs: BootFile[]): Promise<BootFile[]> {
    const missing: BootFile[] = [];
    for (const r of refs) if ((await this.fileKind(r)).kind === 'none') missing.push(r);
    return missing;
  }

  private async loadKernel(args: string[], line: number): Promise<Status> {
    if (args.length === 0) {
      this.problem('linux: no kernel given', line);
      return 'false';
    }
    const ref = this.resolve(args[0]!);
    if (typeof ref === 'string') {
      this.problem(`linux: ${ref}`, line);
      this.s.loader = null;
      return 'false';
    }
    this.s.loader = { kernel: ref, kernelText: args[0]!, args: args.slice(1), initrds: [], missing: await this.exists([ref]), ctxId: this.s.ctx.id };
    return 'true';
  }

  private async loadInitrds(args: string[], line: number): Promise<Status> {
    const loader = this.s.loader;
    if (!loader) {
      this.problem('initrd before any linux: GRUB refuses it ("you need to load the kernel first")', line);
      return 'false';
    }
    const refs: BootFile[] = [];
    for (const a of args) {
      // GRUB 2.06+ accepts `--newc:NAME:PATH` to give an initrd file a name inside the archive.
      const path = a.startsWith('--newc:') ? a.slice(a.indexOf(':', 7) + 1) : a;
      const ref = this.resolve(path);
      if (typeof ref === 'string') {
        this.problem(`initrd: ${ref}`, line);
        return 'false';
      }
      refs.push(ref);
    }
    const kernelMissing = loader.missing.filter((m) => m === loader.kernel);
    this.s.loader = { ...loader, initrds: refs, missing: [...kernelMissing, ...(await this.exists(refs))] };
    return 'true';
  }

  /**
   * The `blscfg` command of Fedora's and Azure Linux's GRUB: a menu entry per BLS entry of `$blsdir` (or
   * /loader/entries, then /boot/loader/entries) on `$boot` (or `$root`), whose `options` are expanded as GRUB
   * script text, as that command does (so `$kernelopts` from grubenv works).
   */
  private async blscfg(line: number): Promise<Status> {
    const device = this.getVar('boot') || this.getVar('root');
    const vol = device ? await this.volume(device) : null;
    if (!vol) {
      this.problem(`blscfg: device "${device}" is not available`, line);
      return 'unknown';
    }
    const dirs = this.getVar('blsdir') ? [this.getVar('blsdir')] : ['/loader/entries', '/boot/loader/entries'];
    for (const dir of dirs) {
      try {
        if ((await vol.list(dir)) === null) continue;
        const { entries, problems } = await readBlsEntries(vol, dir);
        this.charge(entries.reduce((n, e) => n + e.options.length + 256, 0));
        for (const p of problems) this.problem(`blscfg: ${p}`, line);
        for (const e of entries) {
          if (!e.linux) continue;
          const quote = (p: string) => `'(${device})${p.replace(/'/g, `'\\''`)}'`;
          const text = `linux ${quote(e.linux)} ${e.options}\n${e.initrds.length ? `initrd ${e.initrds.map(quote).join(' ')}\n` : ''}`;
          const parsed = parseGrubScript(text, { maxTokens: this.limits.maxTokens, maxNesting: this.limits.maxNesting });
          const source = { device, path: `${dir}/${e.fileName}` };
          if (parsed.error) this.problem(`blscfg: ${source.path}: syntax error in its options: ${parsed.error.message}`, line);
          this.s.ctx.menu.push({ title: e.title ?? e.id, id: e.id, args: [e.title ?? e.id], body: parsed.nodes, submenu: false, source, menuPath: this.s.menuPath });
        }
        return 'true';
      } catch (e) {
        if (!(e instanceof VerityError)) throw e;
        this.problem(`blscfg: ${dir}: ${e.message}`, line);
        return 'false';
      }
    }
    return 'true';
  }

  // --- Menus ---------------------------------------------------------------------------------------------------

  /** At the end of a context's file: a kernel loaded outside entries, then each menu entry in order. */
  async finishContext(ctx: Ctx): Promise<void> {
    const loader = this.s.loader;
    if (loader && loader.ctxId === ctx.id) {
      this.addEntry({ title: '', args: [], body: [], submenu: false, source: ctx.file, menuPath: this.s.menuPath }, loader, []);
      this.s.loader = null;
    }
    for (const pending of ctx.menu) await this.evaluate(pending, ctx);
  }

  /** Runs an entry's body as booting it would, on a copy of the state; keeps only the entries and problems found. */
  private async evaluate(p: Pending, ctx: Ctx): Promise<void> {
    // One level past the deepest file, so that the entries of a file read at the limit are still evaluated.
    if (this.fileDepth > this.limits.maxFileDepth) {
      this.problem(`"${p.title}": menus nested more than ${this.limits.maxFileDepth} deep; not evaluated`, null, p.source);
      return;
    }
    const outer = this.s;
    this.s = this.copyState(outer);
    this.s.ctx = cloneCtx(ctx);
    this.s.ctx.menu = [];
    this.s.positional = p.args;
    this.s.loader = null;
    this.s.flow = null;
    this.s.entryAssumptions = [];
    this.s.file = p.source;
    this.s.menuPath = [...p.menuPath, p.title];
    this.fileDepth++;
    try {
      if (p.submenu) {
        // Entering a submenu opens a context with the exported variables only.
        this.s.ctx = this.newContext(p.source);
        await this.runList(p.body);
        this.s.flow = null;
        await this.finishContext(this.s.ctx);
      } else {
        this.s.ctx.file = p.source;
        await this.runList(p.body);
        if (this.s.loader) this.addEntry(p, this.s.loader, this.s.entryAssumptions);
      }
    } finally {
      this.fileDepth--;
      outer.entries = this.s.entries;
      outer.problems = this.s.problems;
      outer.assumptions = this.s.assumptions;
      this.s = outer;
    }
  }

  private addEntry(p: Pending, loader: Loader, assumptions: string[]): void {
    if (this.s.entries.length >= this.limits.maxEntries) {
      if (!this.truncatedEntries) this.problem(`more than ${this.limits.maxEntries} boot entries; the rest are not listed`, null, p.source);
      this.truncatedEntries = true;
      return;
    }
    const recovery = RECOVERY_TITLE.test(p.title) || loader.args.some((a) => RECOVERY_ARGS.has(a));
    const entry: BootEntry = {
      title: p.title,
      menuPath: p.menuPath,
      source: p.source,
      kernel: loader.kernel,
      initrds: loader.initrds,
      args: loader.args,
      cmdline: `BOOT_IMAGE=${grubLoaderCmdline([loader.kernelText, ...loader.args])}`,
      recovery,
      missing: loader.missing,
      assumptions: [...assumptions],
    };
    if (p.id !== undefined) entry.id = p.id;
    this.s.entries.push(entry);
  }
}

function show(ref: BootFile): string {
  return `(${ref.device})${ref.path}`;
}

/** A command's words as written, for messages. */
function describeWords(words: readonly Word[]): string {
  return words
    .map((w) => w.parts.map((p) => (p.k === 'text' ? p.v : `$${p.name}`)).join(''))
    .join(' ')
    .slice(0, 120);
}

function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '' : path.slice(0, i);
}

/** The variables GRUB itself sets before it reads grub.cfg (normal mode on x86-64 UEFI), all exported. */
const GRUB_DEFAULT_VARS: Record<string, string> = {
  grub_platform: 'efi',
  grub_cpu: 'x86_64',
  feature_chainloader_bpb: 'y',
  feature_ntldr: 'y',
  feature_platform_search_hint: 'y',
  feature_default_font_path: 'y',
  feature_all_video_module: 'y',
  feature_menuentry_id: 'y',
  feature_menuentry_options: 'y',
  feature_200_final: 'y',
  feature_nativedisk_cmd: 'y',
  feature_timeout_style: 'y',
};

/**
 * Interprets the GRUB configuration `start` (a file on one of the host's devices) and returns the boot entries it
 * offers, in menu order (a menu `configfile` opens comes before the rest of the menu that opened it), with the
 * problems met. `root` starts as `start.device` and `prefix` as the directory of `start` on it, as GRUB's core image
 * sets them for the grub.cfg beside it; `options.vars` overrides them and GRUB's other defaults (an x86-64 UEFI GRUB).
 */
export async function interpretGrubConfig(start: BootFile, host: GrubHost, options: GrubOptions = {}): Promise<GrubResult> {
  const limits = { ...DEFAULT_GRUB_LIMITS, ...options.limits };
  const interp = new Interpreter(host, limits);
  const vars = new Map<string, string>(Object.entries({
    ...GRUB_DEFAULT_VARS,
    root: start.device,
    prefix: `(${start.device})${dirname(start.path)}`,
    ...options.vars,
  }));
  const top: Ctx = { id: 0, vars, exported: new Set(vars.keys()), menu: [], file: start };
  interp.s = {
    ctx: top,
    positional: [],
    loader: null,
    entries: [],
    problems: [],
    assumptions: [],
    entryAssumptions: [],
    functions: new Map(),
    flow: null,
    status: 'true',
    file: start,
    menuPath: [],
  };
  try {
    await interp.runTop(start);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    interp.problem(e.message, null, null);
  }
  return { entries: interp.s.entries, problems: interp.s.problems, assumptions: interp.s.assumptions };
}
