/**
 * The compressed streams of an initramfs, decoded one at a time as the kernel does (init/initramfs.c with
 * lib/decompress_*.c): one gzip member, one zstd frame or one xz stream per call, whose compressed length is returned
 * so that the caller goes on with what follows it (zero padding, an uncompressed cpio archive, another stream).
 *
 * The decoders are libraries loaded on first use:
 * - gzip: pako's zlib API (a port of zlib, the same inflate as the kernel's lib/zlib_inflate). Its z_stream reports
 *   where the deflate data ends (`next_in`), which is what a member boundary needs. The web-standard
 *   DecompressionStream cannot give it: Node's joins concatenated members and silently drops whatever non-gzip bytes
 *   follow the first member, while browsers (the Compression Streams spec) throw on them, and neither says where a
 *   member ended.
 * - zstd: fzstd (pure JavaScript). The frame's end is found here by walking its block headers (RFC 8878, §3.1.1),
 *   so the decoder is given exactly one frame; its content checksum is checked here with hash-wasm's XXH64.
 * - xz: xz-decompress (xz-embedded compiled to WebAssembly, inlined; no native code). Its stream ends after one xz
 *   stream but does not say where; the end is found here from the stream footer (the .xz file format, §2.1.2.4),
 *   checked by its CRC32 and by the index it points back to.
 *
 * Output goes to a synchronous sink chunk by chunk, is never gathered, and is bounded by `maxOutput`: a bomb stops
 * with E_UNSUPPORTED as soon as it passes the limit. Magic numbers are those of the kernel's decompress_method
 * (lib/decompress.c): two bytes each.
 */
import { VerityError } from '../errors.js';
import { at, struct, u16le, u32le, u64leBig, u8 } from '../binary/struct.js';
import { crc32 } from '../binary/crc32.js';
import { readExactly, type ByteSource } from '../io/source.js';

export type Compression = 'gzip' | 'zstd' | 'xz' | 'bzip2' | 'lzma' | 'lzo' | 'lz4';

/** Compressions this module decodes; the others are recognised and refused with E_UNSUPPORTED. */
export const DECODED: readonly Compression[] = ['gzip', 'zstd', 'xz'];

/** The compression whose magic starts `head` (2 bytes at least), or null. lib/decompress.c, compressed_formats[]. */
export function compressionOf(head: Uint8Array): Compression | null {
  if (head.length < 2) return null;
  const a = head[0]!;
  const b = head[1]!;
  if (a === 0x1f && (b === 0x8b || b === 0x9e)) return 'gzip';
  if (a === 0x42 && b === 0x5a) return 'bzip2';
  if (a === 0x5d && b === 0x00) return 'lzma';
  if (a === 0xfd && b === 0x37) return 'xz';
  if (a === 0x89 && b === 0x4c) return 'lzo';
  if (a === 0x02 && b === 0x21) return 'lz4';
  if (a === 0x28 && b === 0xb5) return 'zstd';
  return null;
}

export interface DecompressOptions {
  /** The most output bytes accepted; past it the stream is refused (E_UNSUPPORTED). */
  maxOutput: number;
  /** The largest zstd window (the decoder's history buffer) allocated; default 128 MiB, zstd's own default limit. */
  maxWindowBytes?: number;
  /** What to call the stream in messages. */
  what?: string;
}

export interface Decompressed {
  /** Bytes of the source the stream occupies, from its first byte (the kernel's in_pos). */
  compressedBytes: number;
  outputBytes: number;
}

/** Receives output in order; a chunk is valid only during the call. Throwing stops the decoding. */
export type Sink = (chunk: Uint8Array) => void;

export const DEFAULT_MAX_WINDOW_BYTES = 128 * 1024 * 1024;
const CHUNK = 64 * 1024;

/**
 * Decodes the one compressed stream of kind `kind` at `offset` of `source` into `sink`. Throws E_UNSUPPORTED for the
 * compressions it does not decode and past `maxOutput`; E_BAD_IMAGE for corrupt data; E_TRUNCATED when the source
 * ends inside the stream.
 */
export async function decompressStream(
  kind: Compression,
  source: ByteSource,
  offset: number,
  sink: Sink,
  options: DecompressOptions,
): Promise<Decompressed> {
  const what = options.what ?? `${kind} stream at offset ${offset}`;
  const output = new Output(sink, options.maxOutput, what);
  const run = async (): Promise<number> => {
    switch (kind) {
      case 'gzip':
        return gunzipMember(source, offset, output, what);
      case 'zstd':
        return unzstdFrame(source, offset, output, what, options.maxWindowBytes ?? DEFAULT_MAX_WINDOW_BYTES);
      case 'xz':
        return unxzStream(source, offset, output, what);
      default:
        throw new VerityError('E_UNSUPPORTED', `${what} is ${kind}-compressed; only gzip, zstd and xz are read.`, {
          data: { offset, field: 'compression', expected: DECODED.join(', '), actual: kind },
        });
    }
  };
  const compressedBytes = await run();
  return { compressedBytes, outputBytes: output.total };
}

/** Counts output against the limit before passing it on. */
class Output {
  total = 0;
  constructor(
    private readonly sink: Sink,
    private readonly max: number,
    private readonly what: string,
  ) {}

  emit(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.total += chunk.length;
    if (this.total > this.max) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `${this.what} expands to more than ${this.max} bytes, the limit on decompressed initramfs data ` +
          '(a compression bomb, or raise the limit).',
        { data: { field: 'maxExpandedBytes', expected: `<= ${this.max}`, actual: `> ${this.max}` } },
      );
    }
    this.sink(chunk);
  }
}

/** Up to `length` bytes at `position` (fewer only at the end of the source). */
async function readUpTo(source: ByteSource, position: number, length: number, what: string): Promise<Uint8Array> {
  const n = Math.max(0, Math.min(length, source.size - position));
  const out = new Uint8Array(n);
  await readExactly(source, out, position, what);
  return out;
}

function truncated(what: string, offset: number, needed: string): VerityError {
  return new VerityError('E_TRUNCATED', `${what} is cut short: the source ends at offset ${offset} ${needed}.`, {
    data: { offset },
  });
}

function wrapDecoderError(e: unknown, what: string, offset: number): VerityError {
  if (e instanceof VerityError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new VerityError('E_BAD_IMAGE', `${what} is corrupt: ${message}.`, { cause: e, data: { offset } });
}

// ---------------------------------------------------------------------------------------------------------------
// gzip (RFC 1952)

/** The fixed part of a gzip member header (RFC 1952 §2.3.1). */
export const GZIP_HEADER = struct('gzip member header', {
  id1: at(0, u8), // ID1: 0x1f
  id2: at(1, u8), // ID2: 0x8b
  cm: at(2, u8), // CM: 8 = deflate
  flg: at(3, u8), // FLG: FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16; bits 5-7 reserved
  mtime: at(4, u32le), // MTIME
  xfl: at(8, u8), // XFL
  os: at(9, u8), // OS
});
/** The member trailer (RFC 1952 §2.3.1): CRC-32 and size mod 2^32 of the uncompressed data. */
export const GZIP_TRAILER = struct('gzip member trailer', {
  crc32: at(0, u32le), // CRC32
  isize: at(4, u32le), // ISIZE
});
const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const FRESERVED = 0xe0;
/** The longest optional header part (FEXTRA's XLEN is 16 bits; names and comments are held to the same). */
const MAX_HEADER_PART = 0xffff;

/** Where the deflate data of the member at `offset` starts, after the optional parts its flags announce. */
async function gzipDataStart(source: ByteSource, offset: number, what: string): Promise<number> {
  const head = await readUpTo(source, offset, GZIP_HEADER.len, what);
  if (head.length < GZIP_HEADER.len) throw truncated(what, source.size, 'inside its header');
  const h = GZIP_HEADER.get(head, 0);
  if (h.id1 !== 0x1f || h.id2 !== 0x8b || h.cm !== 8) {
    throw new VerityError('E_BAD_IMAGE', `${what} is not a gzip member: it starts ${hex(head.subarray(0, 3))}, expected 1f 8b 08.`, {
      data: { offset, field: 'ID1/ID2/CM', expected: '1f 8b 08', actual: hex(head.subarray(0, 3)) },
    });
  }
  if (h.flg & FRESERVED) {
    throw new VerityError('E_BAD_IMAGE', `${what} sets reserved header flags (FLG 0x${h.flg.toString(16)}).`, {
      data: { offset: offset + 3, field: 'FLG', actual: h.flg },
    });
  }
  let pos = offset + GZIP_HEADER.len;
  if (h.flg & FEXTRA) {
    const xlen = await readUpTo(source, pos, 2, what);
    if (xlen.length < 2) throw truncated(what, source.size, 'inside its header');
    pos += 2 + u16le.get(xlen, 0);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(h.flg & flag)) continue;
    const part = await readUpTo(source, pos, MAX_HEADER_PART + 1, what);
    const nul = part.indexOf(0);
    if (nul < 0) {
      if (part.length <= MAX_HEADER_PART) throw truncated(what, source.size, 'inside its header');
      throw new VerityError('E_BAD_IMAGE', `${what}: its ${flag === FNAME ? 'file name' : 'comment'} is longer than ${MAX_HEADER_PART} bytes.`, {
        data: { offset: pos, field: flag === FNAME ? 'FNAME' : 'FCOMMENT' },
      });
    }
    pos += nul + 1;
  }
  if (h.flg & FHCRC) pos += 2;
  if (pos > source.size) throw truncated(what, source.size, 'inside its header');
  return pos;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

async function gunzipMember(source: ByteSource, offset: number, output: Output, what: string): Promise<number> {
  const dataStart = await gzipDataStart(source, offset, what);
  const pako = await import('pako');
  const strm = new pako.ZStream();
  // Raw deflate (negative window bits), as the kernel's __gunzip after it has skipped the header itself.
  if (pako.zlibInflateInit2(strm, -15) !== pako.Z_OK) throw new VerityError('E_INTERNAL', `inflate could not start: ${strm.msg}`);
  const out = new Uint8Array(CHUNK);
  let crc = 0;
  let pos = dataStart;
  let deflateEnd = -1;
  try {
    while (deflateEnd < 0) {
      const chunk = await readUpTo(source, pos, CHUNK, what);
      if (chunk.length === 0) throw truncated(what, source.size, 'inside its deflate data');
      strm.input = chunk;
      strm.next_in = 0;
      strm.avail_in = chunk.length;
      for (;;) {
        strm.output = out;
        strm.next_out = 0;
        strm.avail_out = out.length;
        const status = pako.zlibInflate(strm, pako.Z_NO_FLUSH);
        if (status !== pako.Z_OK && status !== pako.Z_STREAM_END && status !== pako.Z_BUF_ERROR) {
          throw new VerityError('E_BAD_IMAGE', `${what} is corrupt: inflate failed (${strm.msg || `status ${status}`}) near offset ${pos + strm.next_in}.`, {
            data: { offset: pos + strm.next_in, field: 'deflate data' },
          });
        }
        if (strm.next_out > 0) {
          const produced = out.subarray(0, strm.next_out);
          crc = crc32(produced, crc);
          output.emit(produced);
        }
        if (status === pako.Z_STREAM_END) {
          deflateEnd = pos + strm.next_in;
          break;
        }
        // Z_BUF_ERROR with room on both sides would mean no progress: zlib never does that, but do not spin on it.
        if (status === pako.Z_BUF_ERROR && strm.avail_in > 0 && strm.avail_out > 0) {
          throw new VerityError('E_BAD_IMAGE', `${what}: inflate made no progress at offset ${pos + strm.next_in}.`, { data: { offset: pos + strm.next_in } });
        }
        if (strm.avail_in === 0 && strm.avail_out > 0) break;
      }
      pos += chunk.length;
    }
  } finally {
    pako.zlibInflateEnd(strm);
  }
  const tail = await readUpTo(source, deflateEnd, GZIP_TRAILER.len, what);
  if (tail.length < GZIP_TRAILER.len) throw truncated(what, source.size, 'inside its trailer');
  const trailer = GZIP_TRAILER.get(tail, 0);
  // The kernel does not check these; a mismatch still means the data is not what was compressed.
  if (trailer.crc32 !== crc || trailer.isize !== output.total % 2 ** 32) {
    const field = trailer.crc32 !== crc ? 'CRC32' : 'ISIZE';
    throw new VerityError('E_BAD_IMAGE', `${what}: the ${field} of its trailer does not match the ${output.total} bytes it holds.`, {
      data: { offset: deflateEnd, field, expected: field === 'CRC32' ? crc : output.total % 2 ** 32, actual: field === 'CRC32' ? trailer.crc32 : trailer.isize },
    });
  }
  return deflateEnd + GZIP_TRAILER.len - offset;
}

// ---------------------------------------------------------------------------------------------------------------
// zstd (RFC 8878)

/** The fixed start of a zstd frame (RFC 8878 §3.1.1); the rest of the header depends on the descriptor's bits. */
export const ZSTD_FRAME_START = struct('zstd frame header', {
  magic: at(0, u32le), // Magic_Number: 0xFD2FB528
  descriptor: at(4, u8), // Frame_Header_Descriptor
});
const ZSTD_MAGIC = 0xfd2fb528;
/** Block_Maximum_Size: 128 KiB (RFC 8878 §3.1.1.2.3). */
const ZSTD_BLOCK_MAX = 128 * 1024;

interface ZstdFrame {
  headerBytes: number;
  window: number;
  checksum: boolean;
  contentSize: number | null;
}

async function zstdFrameHeader(source: ByteSource, offset: number, what: string, maxWindow: number): Promise<ZstdFrame> {
  const head = await readUpTo(source, offset, 18, what);
  if (head.length < ZSTD_FRAME_START.len) throw truncated(what, source.size, 'inside its frame header');
  const { magic, descriptor } = ZSTD_FRAME_START.get(head, 0);
  if (magic !== ZSTD_MAGIC) {
    throw new VerityError('E_BAD_IMAGE', `${what} is not a zstd frame (magic 0x${magic.toString(16)}).`, {
      data: { offset, field: 'Magic_Number', expected: ZSTD_MAGIC, actual: magic },
    });
  }
  const fcsFlag = descriptor >> 6;
  const single = (descriptor >> 5) & 1;
  const checksum = ((descriptor >> 2) & 1) === 1;
  const dictFlag = descriptor & 3;
  if (descriptor & 0x08) {
    throw new VerityError('E_BAD_IMAGE', `${what}: the reserved bit of its frame header descriptor is set.`, {
      data: { offset: offset + 4, field: 'Frame_Header_Descriptor', actual: descriptor },
    });
  }
  let pos = 5;
  let window = 0;
  if (!single) {
    const wd = head[pos++] ?? 0;
    const log = 10 + (wd >> 3);
    window = 2 ** log + (2 ** log / 8) * (wd & 7);
  }
  const dictBytes = [0, 1, 2, 4][dictFlag]!;
  const fcsBytes = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]!;
  if (head.length < pos + dictBytes + fcsBytes) throw truncated(what, source.size, 'inside its frame header');
  let dictId = 0;
  if (dictBytes === 1) dictId = u8.get(head, pos);
  else if (dictBytes === 2) dictId = u16le.get(head, pos);
  else if (dictBytes === 4) dictId = u32le.get(head, pos);
  pos += dictBytes;
  if (dictId !== 0) {
    throw new VerityError('E_UNSUPPORTED', `${what} needs zstd dictionary ${dictId}; an initramfs cannot carry one.`, {
      data: { offset: offset + 5, field: 'Dictionary_ID', actual: dictId },
    });
  }
  let contentSize: number | null = null;
  if (fcsBytes === 1) contentSize = u8.get(head, pos);
  else if (fcsBytes === 2) contentSize = u16le.get(head, pos) + 256;
  else if (fcsBytes === 4) contentSize = u32le.get(head, pos);
  else if (fcsBytes === 8) contentSize = Number(u64leBig.get(head, pos));
  pos += fcsBytes;
  if (single) window = contentSize ?? 0;
  if (window > maxWindow) {
    throw new VerityError('E_UNSUPPORTED', `${what} needs a ${window}-byte window, more than the ${maxWindow} bytes allowed.`, {
      data: { offset, field: single ? 'Frame_Content_Size' : 'Window_Descriptor', expected: `<= ${maxWindow}`, actual: window },
    });
  }
  return { headerBytes: pos, window, checksum, contentSize };
}

/**
 * Where the frame whose blocks start at `blocksAt` ends: walks the 3-byte block headers (RFC 8878 §3.1.1.2),
 * reading the source in windows so that tiny blocks do not cost a read each.
 */
async function zstdFrameEnd(source: ByteSource, blocksAt: number, frame: ZstdFrame, what: string): Promise<number> {
  const blockMax = Math.min(ZSTD_BLOCK_MAX, Math.max(frame.window, 1));
  let pos = blocksAt;
  let window: Uint8Array = new Uint8Array(0);
  let windowAt = 0;
  for (;;) {
    if (pos + 3 > windowAt + window.length) {
      windowAt = pos;
      window = await readUpTo(source, pos, CHUNK, what);
      if (window.length < 3) throw truncated(what, source.size, 'inside a block header');
    }
    const o = pos - windowAt;
    const v = window[o]! | (window[o + 1]! << 8) | (window[o + 2]! << 16);
    const last = v & 1;
    const type = (v >> 1) & 3;
    const size = v >>> 3;
    if (type === 3) {
      throw new VerityError('E_BAD_IMAGE', `${what}: reserved block type at offset ${pos}.`, { data: { offset: pos, field: 'Block_Type', actual: 3 } });
    }
    if (size > blockMax) {
      throw new VerityError('E_BAD_IMAGE', `${what}: the block at offset ${pos} is ${size} bytes, above the ${blockMax}-byte maximum.`, {
        data: { offset: pos, field: 'Block_Size', expected: `<= ${blockMax}`, actual: size },
      });
    }
    pos += 3 + (type === 1 ? 1 : size);
    if (pos > source.size) throw truncated(what, source.size, 'inside a block');
    if (last) break;
  }
  if (frame.checksum) pos += 4;
  if (pos > source.size) throw truncated(what, source.size, 'inside its checksum');
  return pos;
}

async function unzstdFrame(source: ByteSource, offset: number, output: Output, what: string, maxWindow: number): Promise<number> {
  const frame = await zstdFrameHeader(source, offset, what, maxWindow);
  const end = await zstdFrameEnd(source, offset + frame.headerBytes, frame, what);
  const { Decompress } = await import('fzstd');
  // fzstd does not check Content_Checksum (RFC 8878 §3.1.1: the low 32 bits of XXH64, seed 0); the kernel's zstd
  // does, and so does this, with hash-wasm's XXH64.
  const hasher = frame.checksum ? await (await import('hash-wasm')).createXXHash64(0, 0) : null;
  hasher?.init();
  const decoder = new Decompress((chunk) => {
    output.emit(chunk);
    hasher?.update(chunk);
  });
  try {
    for (let pos = offset; pos < end; ) {
      const chunk = await readUpTo(source, pos, Math.min(CHUNK, end - pos), what);
      pos += chunk.length;
      decoder.push(chunk, pos >= end);
    }
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (!(e instanceof VerityError) && code === 5) throw truncated(what, end, 'inside a block');
    throw wrapDecoderError(e, what, offset);
  }
  if (hasher) {
    const stored = u32le.get(await readUpTo(source, end - 4, 4, what), 0);
    const computed = Number.parseInt(hasher.digest('hex').slice(8), 16);
    if (stored !== computed) {
      throw new VerityError('E_BAD_IMAGE', `${what}: its content checksum does not match the ${output.total} bytes it holds.`, {
        data: { offset: end - 4, field: 'Content_Checksum', expected: computed, actual: stored },
      });
    }
  }
  if (frame.contentSize !== null && output.total !== frame.contentSize) {
    throw new VerityError('E_BAD_IMAGE', `${what} holds ${output.total} bytes, but its header says ${frame.contentSize}.`, {
      data: { offset, field: 'Frame_Content_Size', expected: frame.contentSize, actual: output.total },
    });
  }
  return end - offset;
}

// ---------------------------------------------------------------------------------------------------------------
// xz (the .xz file format 1.2.1)

/** Stream Header (§2.1.1). */
export const XZ_STREAM_HEADER = struct('xz stream header', {
  magic0: at(0, u32le), // Header Magic Bytes: fd 37 7a 58 5a 00
  magic1: at(4, u16le),
  flags: at(6, u16le), // Stream Flags: first byte 0, second the check type
  crc32: at(8, u32le), // CRC32 of the Stream Flags
});
/** Stream Footer (§2.1.2). */
export const XZ_STREAM_FOOTER = struct('xz stream footer', {
  crc32: at(0, u32le), // CRC32 of Backward Size and Stream Flags
  backwardSize: at(4, u32le), // Backward Size: the Index is (value + 1) * 4 bytes
  flags: at(8, u16le), // Stream Flags: as in the header
  magic: at(10, u16le), // Footer Magic Bytes: "YZ"
});
const XZ_FOOTER_MAGIC = 0x5a59;
/** The largest Index looked at when checking a footer candidate (a million blocks). */
const XZ_MAX_INDEX = 16 * 1024 * 1024;

async function xzHeader(source: ByteSource, offset: number, what: string): Promise<number> {
  const head = await readUpTo(source, offset, XZ_STREAM_HEADER.len, what);
  if (head.length < XZ_STREAM_HEADER.len) throw truncated(what, source.size, 'inside its stream header');
  const h = XZ_STREAM_HEADER.get(head, 0);
  if (h.magic0 !== 0x587a37fd || h.magic1 !== 0x005a) {
    throw new VerityError('E_BAD_IMAGE', `${what} is not an xz stream: it starts ${hex(head.subarray(0, 6))}.`, {
      data: { offset, field: 'Header Magic Bytes', expected: 'fd 37 7a 58 5a 00', actual: hex(head.subarray(0, 6)) },
    });
  }
  if (crc32(head.subarray(6, 8)) !== h.crc32) {
    throw new VerityError('E_BAD_IMAGE', `${what}: the CRC32 of its stream flags does not match.`, {
      data: { offset: offset + 8, field: 'CRC32', expected: crc32(head.subarray(6, 8)), actual: h.crc32 },
    });
  }
  return h.flags;
}

/**
 * Whether the 12 bytes ending at `end` are the footer of the stream that started at `start`: the magic, a matching
 * CRC32 and flags, and an Index (§4) right before it whose indicator byte and CRC32 check out.
 */
async function isXzFooter(source: ByteSource, start: number, end: number, flags: number, footer: Uint8Array, what: string): Promise<boolean> {
  const f = XZ_STREAM_FOOTER.get(footer, 0);
  if (f.magic !== XZ_FOOTER_MAGIC || f.flags !== flags || crc32(footer.subarray(4, 10)) !== f.crc32) return false;
  const indexBytes = (f.backwardSize + 1) * 4;
  const indexAt = end - 12 - indexBytes;
  if (indexBytes > XZ_MAX_INDEX || indexAt < start + XZ_STREAM_HEADER.len) return false;
  const index = await readUpTo(source, indexAt, indexBytes, what);
  if (index.length !== indexBytes || index[0] !== 0x00) return false;
  return crc32(index.subarray(0, indexBytes - 4)) === u32le.get(index, indexBytes - 4);
}

interface XzModule {
  XzReadableStream: new (input: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>;
}

async function loadXz(): Promise<XzModule> {
  // A CommonJS (UMD) package: Node's ESM loader offers it as the default export.
  const mod = (await import('xz-decompress')) as unknown as Partial<XzModule> & { default?: Partial<XzModule> };
  const ctor = mod.XzReadableStream ?? mod.default?.XzReadableStream;
  if (!ctor) throw new VerityError('E_INTERNAL', 'xz-decompress does not export XzReadableStream.');
  return { XzReadableStream: ctor };
}

async function unxzStream(source: ByteSource, offset: number, output: Output, what: string): Promise<number> {
  const flags = await xzHeader(source, offset, what);
  const { XzReadableStream } = await loadXz();
  // The input handed to the decoder: the source from `offset`, cut at the first verified footer.
  let readAt = offset;
  let end = -1;
  let carry: Uint8Array = new Uint8Array(0);
  let scanError: unknown = null;
  const input = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        if (end >= 0 || readAt >= source.size) {
          controller.close();
          return;
        }
        const chunk = await readUpTo(source, readAt, CHUNK, what);
        // Footer candidates: "YZ" ending a 12-byte footer at a multiple of 4 from the stream start (§2.1.2).
        const joined = new Uint8Array(carry.length + chunk.length);
        joined.set(carry);
        joined.set(chunk, carry.length);
        const joinedAt = readAt - carry.length;
        let cut = chunk.length;
        for (let i = 11; i < joined.length; i++) {
          const footerEnd = joinedAt + i + 1;
          if (joined[i] !== 0x5a || joined[i - 1] !== 0x59 || (footerEnd - offset) % 4 !== 0) continue;
          if (footerEnd - offset < XZ_STREAM_HEADER.len + 8 + 12) continue;
          if (await isXzFooter(source, offset, footerEnd, flags, joined.subarray(i - 11, i + 1), what)) {
            end = footerEnd;
            cut = footerEnd - readAt;
            break;
          }
        }
        carry = joined.subarray(Math.max(0, joined.length - 11)).slice();
        readAt += chunk.length;
        controller.enqueue(chunk.subarray(0, cut));
        if (end >= 0) controller.close();
      } catch (e) {
        scanError = e;
        controller.error(e);
      }
    },
  });
  const reader = new XzReadableStream(input).getReader();
  let done = false;
  try {
    let idle = 0;
    for (;;) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        break;
      }
      if (r.value.length === 0) {
        // The decoder yields an empty chunk when it has nothing to say; do not wait on it for ever.
        if (++idle > 1024) throw new VerityError('E_BAD_IMAGE', `${what}: the decoder stopped making progress.`, { data: { offset } });
        continue;
      }
      idle = 0;
      output.emit(r.value);
    }
  } catch (e) {
    if (scanError) throw wrapDecoderError(scanError, what, offset);
    throw xzError(e, what, offset, end < 0 ? source.size : end);
  } finally {
    // Always settle the decoder: xz-decompress serialises its decoders, so one left open blocks the next for ever.
    if (!done) await reader.cancel().catch(() => {});
  }
  if (end < 0) throw truncated(what, source.size, 'before its stream footer');
  return end - offset;
}

/** xz-embedded's codes (xz.h, enum xz_ret) as xz-decompress reports them. */
function xzError(e: unknown, what: string, offset: number, end: number): VerityError {
  if (e instanceof VerityError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const code = /error code (\d+)/.exec(message)?.[1];
  switch (code) {
    case '2':
      return new VerityError('E_UNSUPPORTED', `${what} uses an integrity check the decoder does not know.`, { cause: e, data: { offset } });
    case '4':
      return new VerityError('E_UNSUPPORTED', `${what} needs a dictionary larger than the decoder's 64 MiB.`, { cause: e, data: { offset } });
    case '6':
      return new VerityError('E_UNSUPPORTED', `${what} uses filters or options the decoder does not support.`, { cause: e, data: { offset } });
    case '8':
      return truncated(what, end, 'inside its data');
    default:
      return wrapDecoderError(e, what, offset);
  }
}
