/**
 * Images inside zip archives, read with yauzl (ZIP64, CRC and size checks, well kept; a zip reader is not worth
 * writing again). Stored entries are windows onto the archive, read with random access at their data offset;
 * deflated entries are front-to-back streams (io/sequential.ts) that are inflated again from the top only when a
 * reader must go back.
 */
import { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { VerityError } from '../errors.js';
import { sliceSource } from '../io/slice.js';
import { streamSource } from '../io/sequential.js';
import { readExactly, type ByteSource } from '../io/source.js';

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

/** yauzl's back end over our ByteSource, so a zip can be read from a file or from another container. */
class SourceReader extends yauzl.RandomAccessReader {
  constructor(private readonly src: ByteSource) {
    super();
  }

  override _readStreamForRange(start: number, end: number): Readable {
    const src = this.src;
    let position = start;
    return new Readable({
      read() {
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

function zipError(e: unknown, what: string): VerityError {
  if (e instanceof VerityError) return e;
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
  try {
    for await (const entry of zip.eachEntry()) {
      if (entries.length < MAX_LISTED) entries.push(describe(entry));
      // Entry names repeat in hostile archives; the first one wins, as in most unzip tools.
      if (!byName.has(entry.fileName) && byName.size < MAX_LISTED) byName.set(entry.fileName, entry);
    }
  } catch (e) {
    throw zipError(e, `The zip directory of ${name} is damaged`);
  }

  return {
    entries,
    entryCount: zip.entryCount,
    async open(entryName) {
      const entry = byName.get(entryName);
      if (!entry) {
        const names = entries.filter((e) => !e.name.endsWith('/')).map((e) => e.name);
        const shown = names.slice(0, 20).join(', ') + (names.length > 20 ? `, … (${names.length} files)` : '');
        throw new VerityError('E_NOT_FOUND', `${name} has no entry "${entryName}". It holds: ${shown || 'no files'}.`);
      }
      const info = describe(entry);
      const what = `zip entry ${entryName}`;
      if (info.encrypted) throw new VerityError('E_UNSUPPORTED', `${what} is encrypted.`);
      if (info.compressionMethod === 0) {
        if (info.compressedSize !== info.uncompressedSize) {
          throw new VerityError('E_BAD_IMAGE', `${what} is stored but its sizes differ (${info.compressedSize}, ${info.uncompressedSize}).`);
        }
        const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true }).catch((e: unknown) => {
          throw zipError(e, `The local header of ${what} is damaged`);
        });
        return { ...sliceSource(source, fileDataStart, info.uncompressedSize), entry: info };
      }
      if (info.compressionMethod !== 8) {
        throw new VerityError('E_UNSUPPORTED', `${what} uses compression method ${info.compressionMethod}; only stored and deflated entries are read.`);
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

async function* inflate(zip: yauzl.ZipFile, entry: yauzl.Entry, what: string): AsyncGenerator<Uint8Array> {
  let stream: Readable;
  try {
    stream = await zip.openReadStreamPromise(entry);
  } catch (e) {
    throw zipError(e, `Cannot read ${what}`);
  }
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (e) {
    throw zipError(e, `${what} is damaged`);
  } finally {
    stream.destroy();
  }
}
