/**
 * The options of the library API, and the part each layer below receives. The API resolves the tree options and the
 * root hash into a plan once (plan.ts) and hands each layer only its own options: operands get `OpenOptions`, the
 * engine `EngineOptions`, the tree passes `PassOptions` (the tree itself comes as a `TreePlan`).
 */
import type { OpenOptions } from '../containers/operand.js';
import type { TreeOptions } from '../format/options.js';
import type { EngineOptions } from '../threads/engines.js';
import type { PassOptions } from '../tree/progress.js';

/** What every command that hashes takes besides the tree: progress and cancellation, the engine, stdin. */
export interface RunOptions extends PassOptions, EngineOptions, OpenOptions {}

/** Forward error correction (Reed–Solomon parity over the data and the hash device), as veritysetup's `--fec-*`. */
export interface FecOptions {
  /** Where to write the parity: a file of its own, the hash file (with `fecOffset` after the tree) or the data file. */
  fecDevice?: string;
  /** Byte offset of the parity on the FEC device, a whole number of blocks (default 0). */
  fecOffset?: number;
  /** Parity bytes per 255-byte codeword, 2 to 24 (default 2). */
  fecRoots?: number;
}

/** Options of `formatFiles`. */
export interface FormatOptions extends TreeOptions, RunOptions, FecOptions {
  /** Also write the root hash, as lower-case hex without a newline, to this file. */
  rootHashFile?: string;
}

/** Options of `verifyFiles`. With a superblock (the default) its parameters win over the tree options given. */
export interface VerifyOptions extends TreeOptions, RunOptions, FecOptions {
  /** The expected root hash, as bytes or hex. */
  rootHash?: Uint8Array | string;
  /** Read the expected root hash from this file instead (it wins over `rootHash`, as in veritysetup). */
  rootHashFile?: string;
  /**
   * `verifyImage`: certificates (file paths, or PEM/DER bytes) whose signatures authenticate the root hashes an image
   * claims. With any given, every target must be authenticated, or the image's status is `unauthenticated`.
   */
  trustedCertificates?: ReadonlyArray<string | Uint8Array>;
}

/** Where the operands were read: each one's file and containers, outermost first (containers/operand.ts: describeLayer). */
export interface Sources {
  data: string[];
  hash: string[];
}

/** The part of the options `openOperand` takes. */
export function openOptions(o: OpenOptions): OpenOptions {
  return { ...(o.stdin !== undefined ? { stdin: o.stdin } : {}), ...(o.stopAtArchive !== undefined ? { stopAtArchive: o.stopAtArchive } : {}) };
}

/** The part of the options `openEngine` takes. */
export function engineOptions(o: EngineOptions): EngineOptions {
  return { ...(o.engine !== undefined ? { engine: o.engine } : {}), ...(o.threads !== undefined ? { threads: o.threads } : {}) };
}

/** The part of the options a pass over the tree takes. */
export function passOptions(o: PassOptions): PassOptions {
  return { ...(o.onProgress !== undefined ? { onProgress: o.onProgress } : {}), ...(o.signal !== undefined ? { signal: o.signal } : {}) };
}
