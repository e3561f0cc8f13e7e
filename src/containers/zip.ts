/**
 * Images inside zip archives, read with yauzl (ZIP64, CRC and size checks, well kept; a zip reader is not worth
 * writing again). Stored entries are windows onto the archive, read with random access at their data offset;
 * deflated entries are front-to-back streams (io/sequential.ts) that are inflated again from the top only when a
 * reader must go back.
 *
 * yauzl trusts the central directory and reads only the length fields of a local header. An archive is hostile
 * input, so an entry is opened only when its local header agrees with its central record (name, method, sizes),
 * its data lies between its own header and the next one (not across another entry or the central directory, as
 * in overlapping-entry zip bombs), and its declared size is one its compressed data can inflate to.
 */
import { Readable } from 'node:stream';
import { createInflateRaw } from 'node:zlib';
import yauzl from 'yauzl';
import { VerityError } from '../errors.js';
import { sliceSource } from '../io/slice.js';
import { streamSource } from '../io/sequential.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { printable } from '../binary/printable.js';

export interface ZipEntryInfo {
  name: string;
  /** 0 stored, 8 deflated; others are refused when opened. */
  compressionMethod: number;
  compressedSize: number;
  uncompressedSize: number;
  encrypted: boolean;
}

export interface ZipArchive {
  /** The first `MAX_LISTED` entries, in central-directory order. */
  entries: ZipEntryInfo[];
  /** Entries in the archive (may exceed `entries.length`). */
  entryCount: number;
  /** The entry named `name` (exactly, with `/` separators) as a source. */
  open(name: string): Promise<ByteSource & { entry: ZipEntryInfo }>;
}

export const MAX_LISTED = 10_000;
const READ_PIECE = 1 << 20;
const INFLATE_CHUNK = 1 << 20;
/** No deflate stream expands more than 1032:1 (a 258-byte match in 2 bits); the constant covers a stream's edges. */
const MAX_DEFLATE_RATIO = 1032;
const DEFLATE_SLACK = 1024;
const ZIP64_MARKER = 0xffffffff;
const DATA_DESCRIPTOR_FLAG = 0x8;

/** yauzl's back end over our ByteSource, so a zip can be read from a file or from another container. */
class SourceReader extends yauzl.RandomAccessReader {
  constructor(private readonly src: ByteSource) {
    super();
  }

  /**
   * Offsets come from the archive (a ZIP64 locator, a central directory offset): one outside it is damage. This must
   * be checked here: yauzl turns a range past 2^53, where start + length rounds to start, into an empty read and
   * then parses the unfilled `Buffer.allocUnsafe` it meant to read into.
   */
  private outside(start: number, end: number): VerityError | null {
    if (Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= this.src.size) return null;
    return new VerityError('E_BAD_IMAGE', `a zip structure at bytes ${start}..${end} lies outside the ${this.src.size}-byte archive.`, {
      data: Number.isFinite(start) ? { offset: start } : {},
    });
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null) => void): void {
    const bad = this.outside(position, position + length);
    if (bad) return void setImmediate(() => callback(bad));
    readExactly(this.src, buffer.subarray(offset, offset + length), position, 'Zip archive').then(() => callback(null), callback);
  }

  override _readStreamForRange(start: number, end: number): Readable {
    const src = this.src;
    let position = start;
    const bad = this.outside(start, end);
    return new Readable({
      read() {
        if (bad) return void this.destroy(bad);
        if (position >= end) {
          this.push(null);
          return;
        }
        const bytes = Buffer.allocUnsafe(Math.min(READ_PIECE, end - position));
        readExactly(src, bytes, position, 'Zip archive').then(
          () => {
            position += bytes.length;
            this.push(bytes);
          },
          (e: unknown) => this.destroy(e as Error),
        );
      },
    });
  }
}

/** An error of yauzl or of our reader, said in terms of the archive or entry `what`; a VerityError keeps its data. */
function zipError(e: unknown, what: string): VerityError {
  if (e instanceof VerityError) return new VerityError(e.code, `${what}: ${e.message}`, { cause: e, data: e.data });
  return new VerityError('E_BAD_IMAGE', `${what}: ${(e as Error).message}`, { cause: e });
}

function describe(entry: yauzl.Entry): ZipEntryInfo {
  return {
    name: entry.fileName,
    compressionMethod: entry.compressionMethod,
    compressedSize: entry.compressedSize,
    uncompressedSize: entry.uncompressedSize,
    encrypted: (entry.generalPurposeBitFlag & 1) !== 0,
  };
}

/** True when `head` (the first bytes of a file) starts like a zip archive. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head[0] === 0x50 && head[1] === 0x4b && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
}

export async function openZip(source: ByteSource, name: string): Promise<ZipArchive> {
  const options = { lazyEntries: true, autoClose: false, decodeStrings: true, validateEntrySizes: true, strictFileNames: false };
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromRandomAccessReaderPromise(new SourceReader(source), source.size, options);
  } catch (e) {
    throw zipError(e, `${name} is not a readable zip archive`);
  }
  const entries: ZipEntryInfo[] = [];
  const byName = new Map<string, yauzl.Entry>();
  // yauzl starts its cursor at the central directory (the ZIP64 one when there is one). It is not public API: a
  // yauzl that renames it must fail loudly here, not silently disable the overlap check below.
  const directoryStart = (zip as unknown as { readEntryCursor: unknown }).readEntryCursor;
  if (typeof directoryStart !== 'number') {
    throw new VerityError('E_INTERNAL', 'yauzl no longer exposes where the central directory starts (readEntryCursor).');
  }
  try {
    for await (const entry of zip.eachEntry()) {
      if (entries.length < MAX_LISTED) entries.push(describe(entry));
      // Entry names repeat in hostile archives; the first one wins, as in most unzip tools.
      if (!byName.has(entry.fileName) && byName.size < MAX_LISTED) byName.set(entry.fileName, entry);
    }
  } catch (e) {
    throw zipError(e, `The zip directory of ${name} is damaged`);
  }
  // Where each openable entry's data must end: at the next local header, or at the central directory.
  const headers = [...new Set([...byName.values()].map((e) => e.relativeOffsetOfLocalHeader))].sort((a, b) => a - b);
  const dataLimit = (entry: yauzl.Entry): number => {
    let lo = 0;
    let hi = headers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (headers[mid]! <= entry.relativeOffsetOfLocalHeader) lo = mid + 1;
      else hi = mid;
    }
    return Math.min(headers[lo] ?? directoryStart, directoryStart);
  };

  return {
    entries,
    entryCount: zip.entryCount,
    async open(entryName) {
      const entry = byName.get(entryName);
      if (!entry) {
        const names = entries.filter((e) => !e.name.endsWith('/')).map((e) => printable(e.name));
        const shown = names.slice(0, 20).join(', ') + (names.length > 20 ? `, … (${names.length} files)` : '');
        throw new VerityError('E_NO_ENTRY', `${name} has no entry "${printable(entryName)}". It holds: ${shown || 'no files'}.`);
      }
      const info = describe(entry);
      const what = `zip entry ${printable(entryName)}`;
      if (info.encrypted) throw new VerityError('E_UNSUPPORTED', `${what} is encrypted.`);
      if (info.compressionMethod !== 0 && info.compressionMethod !== 8) {
        throw new VerityError('E_UNSUPPORTED', `${what} uses compression method ${info.compressionMethod}; only stored and deflated entries are read.`, {
          data: { field: 'compressionMethod', actual: info.compressionMethod },
        });
      }
      const local = await zip.readLocalFileHeaderPromise(entry).catch((e: unknown) => {
        throw zipError(e, `The local header of ${what} is damaged`);
      });
      checkLocalHeader(entry, local, what);
      const dataEnd = local.fileDataStart + entry.compressedSize;
      const limit = dataLimit(entry);
      if (dataEnd > limit) {
        throw new VerityError(
          'E_BAD_IMAGE',
          `${what} has data at bytes ${local.fileDataStart}..${dataEnd} of the archive, which overlaps the ` +
            `${limit === directoryStart ? 'central directory' : 'next entry'} at byte ${limit}.`,
          { data: { offset: local.fileDataStart } },
        );
      }
      if (info.compressionMethod === 0) {
        if (info.compressedSize !== info.uncompressedSize) {
          throw new VerityError('E_BAD_IMAGE', `${what} is stored but its sizes differ (${info.compressedSize}, ${info.uncompressedSize}).`, {
            data: { field: 'compressedSize', expected: info.uncompressedSize, actual: info.compressedSize },
          });
        }
        return { ...sliceSource(source, local.fileDataStart, info.uncompressedSize), entry: info };
      }
      // A size beyond what the data can inflate to would size a hash tree (format) or a read plan by a lie.
      if (info.uncompressedSize > info.compressedSize * MAX_DEFLATE_RATIO + DEFLATE_SLACK) {
        throw new VerityError(
          'E_BAD_IMAGE',
          `${what} declares ${info.uncompressedSize} bytes from ${info.compressedSize} deflated bytes; deflate expands at ` +
            `most ${MAX_DEFLATE_RATIO}:1.`,
          { data: { field: 'uncompressedSize', actual: info.uncompressedSize } },
        );
      }
      const stream = streamSource({
        size: info.uncompressedSize,
        name: what,
        reopenable: true,
        open: () => inflate(zip, entry, what),
      });
      return Object.assign(stream, { entry: info });
    },
  };
}

/** The ZIP64 sizes of a local header's extra field, where its 32-bit fields say to look there. */
function localSizes(local: yauzl.LocalFileHeader): { compressed: number; uncompressed: number } | null {
  let uncompressed = local.uncompressedSize;
  let compressed = local.compressedSize;
  if (uncompressed !== ZIP64_MARKER && compressed !== ZIP64_MARKER) return { compressed, uncompressed };
  const extra = local.extraField;
  for (let at = 0; at + 4 <= extra.length; at += 4 + extra.readUInt16LE(at + 2)) {
    if (extra.readUInt16LE(at) !== 1) continue;
    const end = at + 4 + extra.readUInt16LE(at + 2);
    let p = at + 4;
    const next = (): number | null => {
      if (p + 8 > end || p + 8 > extra.length) return null;
      const v = Number(extra.readBigUInt64LE(p));
      p += 8;
      return v;
    };
    if (uncompressed === ZIP64_MARKER) uncompressed = next() ?? -1;
    if (compressed === ZIP64_MARKER) compressed = next() ?? -1;
    return uncompressed < 0 || compressed < 0 ? null : { compressed, uncompressed };
  }
  return null;
}

/**
 * A local header that says something else than the central record is how one archive shows different files to
 * different readers; refuse it rather than pick a side. Sizes and CRC are compared only when the local header holds
 * them (no data descriptor).
 */
function checkLocalHeader(entry: yauzl.Entry, local: yauzl.LocalFileHeader, what: string): void {
  const value = (v: unknown) => (typeof v === 'number' ? v : String(v));
  const differs = (field: string, l: unknown, c: unknown) =>
    new VerityError('E_BAD_IMAGE', `The local header of ${what} disagrees with the central directory: ${field} ${String(l)} there, ${String(c)} in the directory.`, {
      // The central directory is what the archive's reader trusts, so its value is the one expected.
      data: { offset: entry.relativeOffsetOfLocalHeader, field, expected: value(c), actual: value(l) },
    });
  if (!Buffer.from(local.fileName).equals(Buffer.from(entry.fileNameRaw))) {
    throw differs('name', `"${printable(Buffer.from(local.fileName).toString('latin1'))}"`, `"${printable(entry.fileName)}"`);
  }
  if (local.compressionMethod !== entry.compressionMethod) throw differs('compression method', local.compressionMethod, entry.compressionMethod);
  if ((local.generalPurposeBitFlag & 1) !== (entry.generalPurposeBitFlag & 1)) throw differs('encryption flag', local.generalPurposeBitFlag & 1, entry.generalPurposeBitFlag & 1);
  if (local.generalPurposeBitFlag & DATA_DESCRIPTOR_FLAG) return;
  if (local.crc32 !== entry.crc32) throw differs('CRC-32', local.crc32, entry.crc32);
  const sizes = localSizes(local);
  if (!sizes) throw differs('sizes', 'missing from its ZIP64 field', `${entry.compressedSize}/${entry.uncompressedSize}`);
  if (sizes.compressed !== entry.compressedSize) throw differs('compressed size', sizes.compressed, entry.compressedSize);
  if (sizes.uncompressed !== entry.uncompressedSize) throw differs('uncompressed size', sizes.uncompressed, entry.uncompressedSize);
}

/**
 * Inflates an entry with our own zlib stream rather than yauzl's: its default 16 KiB output chunks cost a thread-pool
 * round trip each, which made inflating several times slower than hashing. The declared size is enforced by the
 * stream source (io/sequential.ts), which refuses a stream that ends early or runs on.
 */
async function* inflate(zip: yauzl.ZipFile, entry: yauzl.Entry, what: string): AsyncGenerator<Uint8Array> {
  let raw: Readable;
  try {
    raw = await zip.openReadStreamPromise(entry, { decompress: false });
  } catch (e) {
    throw zipError(e, `Cannot read ${what}`);
  }
  const inflater = createInflateRaw({ chunkSize: INFLATE_CHUNK });
  raw.on('error', (e) => inflater.destroy(e));
  raw.pipe(inflater);
  try {
    for await (const chunk of inflater) yield chunk as Buffer;
  } catch (e) {
    throw zipError(e, `${what} is damaged`);
  } finally {
    raw.destroy();
    inflater.destroy();
  }
}
