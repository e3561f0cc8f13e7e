/**
 * Operands: where the data or the hash tree lives, as one string.
 *
 *     <file>[::<step>]...      <file> is a path, or "-" for stdin
 *
 * Containers are recognised by their content. A VHDX or VHD file always reads as its virtual disk. Each step then
 * goes one level in: inside a zip archive it names an entry (its full name, `/` separators); on a GPT disk it names
 * a partition by 1-based index, GPT name, partition GUID or DPS type (`root-x86-64-verity`). For example
 * `eflow.zip::EFLOW.vhdx::3` is partition 3 of the disk in the VHDX inside the zip. A file whose own name contains
 * `::` is used whole when it exists.
 */
import { fstatSync, type Stats } from 'node:fs';
import { VerityError } from '../errors.js';
import { streamSource, type StreamSource } from '../io/sequential.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { readGpt, selectPartition, partitionSource, describePartition, type GptPartition, type GptTable } from '../image/gpt.js';
import { classifyMbr } from '../image/mbr.js';
import { openVhd, type VhdInfo } from '../image/vhd.js';
import { openVhdx, type VhdxInfo } from '../image/vhdx/vhdx.js';
import { openFileSource, pathExists } from '../files/files.js';
import { looksLikeZip, openZip, type ZipArchive, type ZipEntryInfo } from './zip.js';
import { printable } from '../binary/printable.js';

export const STEP_SEPARATOR = '::';

export type Layer =
  | { kind: 'file'; path: string; size: number }
  | { kind: 'stdin'; size: number | null }
  | { kind: 'zip'; archive: ZipArchive }
  | { kind: 'zip-entry'; entry: ZipEntryInfo }
  | { kind: 'vhdx'; info: VhdxInfo }
  | { kind: 'vhd'; info: VhdInfo }
  | { kind: 'partition'; table: GptTable; partition: GptPartition };

export interface Operand {
  /** The text the user gave. */
  address: string;
  source: ByteSource;
  /** Outermost first. */
  layers: Layer[];
  /** Identity of the file the address names (null for stdin), for same-file checks. */
  file: Stats | null;
  /**
   * Where the operand's bytes begin in that file when they are its bytes unchanged (0 for a plain file, the offset of
   * a GPT partition on it), else null (a VHDX, VHD or zip in between).
   */
  extent: number | null;
  /** False for a pipe on stdin: its length is known only at its end. */
  sizeKnown: boolean;
  close(): Promise<void>;
}

/** What a source holds, from its first bytes (and, for a fixed VHD, its last 512). */
export type ContentKind = 'zip' | 'vhdx' | 'vhd' | 'gpt' | 'other';

export async function detectContent(source: ByteSource): Promise<ContentKind> {
  const head = new Uint8Array(Math.min(source.size, 1024));
  if (head.length > 0) await readExactly(source, head, 0, 'Image');
  const text = (at: number, length: number) => String.fromCharCode(...head.subarray(at, at + length));
  if (text(0, 8) === 'vhdxfile') return 'vhdx';
  if (text(0, 8) === 'conectix') return 'vhd';
  if (looksLikeZip(head)) return 'zip';
  // A fixed VHD has its footer only at the end; a streamed one is left unrecognised (it reads as the raw disk it
  // holds plus 512 bytes) rather than read to its end first.
  if (!source.sequential && source.size >= 512 + 512) {
    const tail = new Uint8Array(512);
    await readExactly(source, tail, source.size - 512, 'Image');
    if (String.fromCharCode(...tail.subarray(0, 8)) === 'conectix') return 'vhd';
  }
  if (classifyMbr(head) !== null) return 'gpt';
  return 'other';
}

export function splitAddress(address: string): { path: string; steps: string[] } {
  const [path, ...steps] = address.split(STEP_SEPARATOR);
  if (steps.some((s) => s === '')) {
    throw new VerityError('E_PARAM', `Invalid address "${address}": an empty step between "${STEP_SEPARATOR}" separators.`, {
      data: { path: address },
    });
  }
  return { path: path!, steps };
}

export function describeLayer(layer: Layer): string {
  switch (layer.kind) {
    case 'file':
      return `file ${layer.path} (${layer.size} bytes)`;
    case 'stdin':
      return `stdin${layer.size === null ? '' : ` (${layer.size} bytes)`}`;
    case 'zip':
      return `zip archive (${layer.archive.entryCount} entries)`;
    case 'zip-entry':
      return `zip entry ${printable(layer.entry.name)} (${layer.entry.compressionMethod === 0 ? 'stored' : 'deflated'}, ${layer.entry.uncompressedSize} bytes)`;
    case 'vhdx':
      return `VHDX ${layer.info.subformat} disk (${layer.info.virtualSize} bytes, ${layer.info.blockSize}-byte blocks)`;
    case 'vhd':
      return `VHD ${layer.info.type} disk (${layer.info.currentSize} bytes)`;
    case 'partition':
      return `GPT partition ${describePartition(layer.partition)}`;
  }
}

export interface OpenOptions {
  /** stdin, for "-" (default: process.stdin). */
  stdin?: NodeJS.ReadableStream & { fd?: number };
  /** Stop at a zip archive the address names no entry of, instead of asking for one (inspect lists it). */
  stopAtArchive?: boolean;
}

function fstatOrNull(fd: number): Stats | null {
  try {
    return fstatSync(fd);
  } catch {
    return null;
  }
}

async function openBase(path: string, options: OpenOptions): Promise<{ source: ByteSource; layer: Layer; stats: Stats | null; sizeKnown: boolean; close(): Promise<void> }> {
  if (path !== '-') {
    const file = await openFileSource(path);
    return { source: file, layer: { kind: 'file', path, size: file.size }, stats: file.stats, sizeKnown: true, close: () => file.close() };
  }
  const stdin = options.stdin ?? process.stdin;
  // A redirected file is read with random access, like any file, through its /dev/fd path. Windows has no such
  // path: there `\\dev\\fd\\0` would name a file on the current drive, so stdin is streamed instead.
  const fd = stdin.fd ?? (stdin === process.stdin ? 0 : undefined);
  if (fd !== undefined && process.platform !== 'win32') {
    const stats = fstatOrNull(fd);
    if (stats?.isFile()) {
      const file = await openFileSource(`/dev/fd/${fd}`).catch(() => null);
      if (file) return { source: file, layer: { kind: 'stdin', size: file.size }, stats: null, sizeKnown: true, close: () => file.close() };
    }
  }
  // A pipe has no length until it ends; a redirected file that has no /dev/fd path (Windows) has one.
  const stats = fd !== undefined ? fstatOrNull(fd) : null;
  const known = stats?.isFile() ? stats.size : null;
  let used = false;
  const source: StreamSource = streamSource({
    size: known ?? Number.MAX_SAFE_INTEGER,
    declared: known !== null,
    name: 'stdin',
    reopenable: false,
    open: () => {
      if (used) throw new VerityError('E_UNSUPPORTED', 'stdin can be read only once.', { data: { path: '-' } });
      used = true;
      return stdin as AsyncIterable<Uint8Array>;
    },
  });
  return { source, layer: { kind: 'stdin', size: known }, stats: null, sizeKnown: known !== null, close: async () => {} };
}

/** Opens an operand, read-only: the file (or stdin), then every container and step in it. */
export async function openOperand(address: string, options: OpenOptions = {}): Promise<Operand> {
  let split = splitAddress(address);
  if (split.steps.length > 0 && (await pathExists(address))) {
    split = { path: address, steps: [] };
  }
  const { path, steps } = split;
  const base = await openBase(path, options);
  try {
    const layers: Layer[] = [base.layer];
    let source = base.source;
    let next = 0;
    for (;;) {
      const kind = base.sizeKnown ? await detectContent(source) : 'other';
      if (kind === 'vhdx') {
        const image = await openVhdx(source);
        layers.push({ kind: 'vhdx', info: image.info });
        source = image;
      } else if (kind === 'vhd') {
        const image = await openVhd(source);
        layers.push({ kind: 'vhd', info: image.info });
        source = image;
      } else if (kind === 'zip') {
        if (source.sequential) {
          throw new VerityError('E_UNSUPPORTED', `${address}: a zip inside a compressed entry or a stream cannot be read; extract it first.`, {
            data: { path: address },
          });
        }
        const archive = await openZip(source, layers.map(describeLayer).at(-1)!);
        layers.push({ kind: 'zip', archive });
        const step = steps[next++];
        if (step === undefined && options.stopAtArchive) break;
        if (step === undefined) {
          const names = archive.entries.filter((e) => !e.name.endsWith('/')).map((e) => printable(e.name));
          throw new VerityError(
            'E_PARAM',
            `${address} is a zip archive: name the entry, as in ${path}${STEP_SEPARATOR}${names[0] ?? '<entry>'}` +
              ` (it holds ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}).`,
            { data: { path: address } },
          );
        }
        const entry = await archive.open(step);
        layers.push({ kind: 'zip-entry', entry: entry.entry });
        source = entry;
      } else if (kind === 'gpt' && next < steps.length) {
        const table = await readGpt(source);
        const partition = selectPartition(table, steps[next++]!);
        layers.push({ kind: 'partition', table, partition });
        source = partitionSource(source, partition);
        break;
      } else break;
    }
    if (next < steps.length) {
      throw new VerityError(
        'E_PARAM',
        `${address}: nothing to select "${steps[next]}" in: ${describeLayer(layers.at(-1)!)} is not a zip archive or a GPT disk.`,
        { data: { path: address } },
      );
    }
    const raw = layers.slice(1).every((l) => l.kind === 'partition');
    const partition = layers.find((l) => l.kind === 'partition');
    const extent = raw ? (partition?.kind === 'partition' ? partition.partition.offset : 0) : null;
    return { address, source: addressed(source, address), layers, file: base.stats, extent, sizeKnown: base.sizeKnown, close: base.close };
  } catch (e) {
    await base.close();
    throw withPath(e, address);
  }
}

/**
 * `e` with `path` in its data when it is a VerityError that names no input yet. The layers inside an operand (image
 * readers, the zip reader, streams) do not know the address the user gave; the operand does.
 */
export function withPath(e: unknown, path: string): unknown {
  if (!(e instanceof VerityError) || e.data.path !== undefined) return e;
  const named = new VerityError(e.code, e.message, { cause: e, data: { ...e.data, path } });
  // --debug prints the stack of the error that reaches the CLI: keep the one of the place that failed.
  if (e.stack !== undefined) named.stack = e.stack;
  return named;
}

/**
 * `source`, with `address` in the data of any error its reads raise (a damaged block table found mid-pass, a
 * deflate stream that ends early). A front-to-back origin is wrapped once, here, so that every slice of this operand
 * (a discovered data/hash pair) still shares one origin object, which is how a pass knows they are the same stream.
 */
function addressed(source: ByteSource, address: string): ByteSource {
  const named = (inner: ByteSource): ByteSource['read'] => (dst, position) =>
    inner.read(dst, position).catch((e: unknown) => {
      throw withPath(e, address);
    });
  const map = source.sequential;
  // What an image knows is zero (ByteSource.knownZero) is kept, so a pass over a sparse image skips it.
  const zeros = source.knownZero && { knownZero: (offset: number, length: number) => source.knownZero!(offset, length) };
  // So are the files the bytes lie in (ByteSource.fileSpans), which threads read by themselves.
  const files = source.fileSpans && {
    fileSpans: (offset: number, length: number) => source.fileSpans!(offset, length),
  };
  if (!map) return { size: source.size, read: named(source), ...zeros, ...files };
  const origin: ByteSource = { size: map.origin.size, read: named(map.origin) };
  return {
    size: source.size,
    read: named(source),
    ...zeros,
    sequential: {
      origin,
      runs: (offset, length) => map.runs(offset, length),
      ...(map.patch && { patch: (bytes: Uint8Array, from: number) => map.patch!(bytes, from) }),
    },
  };
}
