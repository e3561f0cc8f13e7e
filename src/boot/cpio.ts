/**
 * cpio archives in the "newc" format (magic `070701`) and its checksummed twin "crc" (`070702`): the only formats the
 * kernel unpacks into the initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
 *
 * A header is 110 ASCII bytes: the magic and thirteen 8-digit hexadecimal numbers. The name (`c_namesize` bytes, its
 * NUL included) follows, padded so that header and name end on a multiple of 4; then the body (`c_filesize` bytes),
 * padded to a multiple of 4. An archive ends with an entry named `TRAILER!!!`. Archives may follow each other. The
 * kernel's unpacker returns to its Reset state after every entry, so zero bytes may follow any entry; the next non-zero
 * byte must sit on a multiple of 4 ("broken padding" otherwise).
 *
 * `CpioParser` is a push parser: it takes the bytes of an archive sequence in pieces of any size and never holds more
 * than one header and one name (at most PATH_MAX), so a stream is parsed without being kept. It reports entries as the
 * kernel's unpacker (init/initramfs.c) acts on them: an entry whose name size is 0 or above PATH_MAX is skipped, as
 * is a symbolic link whose target is longer than PATH_MAX, and so is any entry that is neither a regular file nor a
 * symbolic link but has a body. What each entry means for the resulting tree (hard links, replacements) is
 * initramfs.ts's business.
 */
import { VerityError } from '../errors.js';
import { at, chars, struct, type Field, type StructValue } from '../binary/struct.js';

/** PATH_MAX: the longest name (NUL included) and symbolic link target the kernel unpacks. */
export const CPIO_PATH_MAX = 4096;

const HEX_DIGIT = /^[0-9A-Fa-f]{8}$/;

/**
 * An unsigned number written as 8 ASCII hexadecimal digits (either case), as every numeric field of a newc header.
 * Anything but 8 hex digits is refused (GNU cpio does the same; a kernel before 6.x read a leading run of digits).
 */
export const hex8: Field<number> = {
  len: 8,
  get: (b, o) => {
    const text = String.fromCharCode(...b.subarray(o, o + 8));
    if (!HEX_DIGIT.test(text)) {
      throw new VerityError('E_BAD_IMAGE', `"${escapeText(text)}" is not 8 hexadecimal digits.`, { data: { actual: escapeText(text) } });
    }
    return Number.parseInt(text, 16);
  },
  put: (b, o, v) => {
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) {
      throw new VerityError('E_PARAM', `${v} does not fit 8 hexadecimal digits.`, { data: { actual: v } });
    }
    const text = v.toString(16).padStart(8, '0');
    for (let i = 0; i < 8; i++) b[o + i] = text.charCodeAt(i);
  },
};

/** Control and non-ASCII characters of a header shown as \xNN, so an error message stays one readable line. */
function escapeText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The newc/crc header (buffer-format.rst, "cpio_file" and the table of its fields). */
export const NEWC_HEADER = struct('cpio newc header', {
  magic: at(0, chars(6)), // c_magic: "070701", or "070702" when c_chksum holds the body's byte sum
  ino: at(6, hex8), // c_ino
  mode: at(14, hex8), // c_mode: file type and permissions (S_IFMT bits as in stat)
  uid: at(22, hex8), // c_uid
  gid: at(30, hex8), // c_gid
  nlink: at(38, hex8), // c_nlink
  mtime: at(46, hex8), // c_mtime
  filesize: at(54, hex8), // c_filesize: body bytes
  devmajor: at(62, hex8), // c_maj: with c_min and c_ino, what identifies hard links
  devminor: at(70, hex8), // c_min
  rdevmajor: at(78, hex8), // c_rmaj: device nodes only
  rdevminor: at(86, hex8), // c_rmin
  namesize: at(94, hex8), // c_namesize: name bytes including its NUL
  check: at(102, hex8), // c_chksum: "070702" only: the sum of the body's bytes, mod 2^32
});
export type NewcHeader = StructValue<typeof NEWC_HEADER.fields>;
/** 110. */
export const NEWC_HEADER_BYTES = NEWC_HEADER.len;

export const NEWC_MAGIC = '070701';
export const CRC_MAGIC = '070702';
/** The old portable ("odc") format, which the kernel refuses with a hint to use newc. */
const ODC_MAGIC = '070707';
export const TRAILER_NAME = 'TRAILER!!!';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

export type CpioKind = 'file' | 'directory' | 'symlink' | 'other';

export function cpioKind(mode: number): CpioKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/**
 * A name as the unpacker uses it, relative to the root: '/'-separated components without empty ones and `.`, a
 * leading `/` or `./` dropped, and `..` taken lexically (never above the root). `''` is the root itself.
 */
export function normaliseCpioName(name: string): string {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

export interface CpioEntry {
  /** The normalised name (normaliseCpioName); `rawName` is the name as stored, before its NUL. */
  name: string;
  rawName: string;
  kind: CpioKind;
  header: NewcHeader;
  /** `c_filesize`. */
  size: number;
  /** Where the header starts, counted in the byte space the parser was given (file or decompressed offsets). */
  offset: number;
}

/** What a parser reports. The methods run synchronously inside `CpioParser.write`; one that throws stops the parse. */
export interface CpioHandler {
  /**
   * An entry the kernel acts on (not the trailer). Return true to receive its body through `body` (symbolic links:
   * the target; regular files: the contents), false to have it skipped.
   */
  entry(entry: CpioEntry): boolean;
  /** A piece of the body of the last entry that asked for it; valid only during the call (copy what you keep). */
  body(chunk: Uint8Array): void;
  /** The body of the last entry that asked for it is complete (its checksum, for `070702`, checked). */
  bodyEnd(): void;
  /** A `TRAILER!!!` entry: the kernel forgets the hard links seen so far. */
  trailer(): void;
}

type State = 'between' | 'header' | 'name' | 'body' | 'skip';

const ZERO = 0x00;
const DIGIT_ZERO = 0x30;

/** N_ALIGN in init/initramfs.c: a name padded so that the 110-byte header and the name end on a multiple of 4. */
const paddedName = (nameSize: number) => Math.floor((nameSize + 1) / 4) * 4 + 2; // not `& ~3`: sizes reach 2^32 - 1
const NAME_DECODER = new TextDecoder('utf-8');

/**
 * A push parser for a sequence of newc/crc archives. `write` returns how many bytes it took: all of them, unless the
 * sequence ends there (a non-zero byte that cannot start a header, after an entry and any zero padding).
 * `finish` checks that the bytes did not stop inside an entry.
 */
export class CpioParser {
  private state: State = 'between';
  /** Offset of the next byte, in the byte space the parser was given. */
  private position: number;
  /** Bytes still to come for the header, the name, the body or the skip. */
  private remaining = 0;
  private readonly headerBytes = new Uint8Array(NEWC_HEADER_BYTES);
  private nameBytes = new Uint8Array(0);
  private entryOffset = 0;
  private header: NewcHeader | null = null;
  private collecting = false;
  private crc = false;
  private sum = 0;
  /** Body padding to skip after the body. */
  private bodyPad = 0;
  private archives = 0;
  private entries = 0;

  /**
   * @param handler receives the entries.
   * @param options.offset the offset of the first byte written, for alignment and messages (a segment's file offset).
   * @param options.end where the bytes end when known (an uncompressed segment): sizes that pass it are refused at
   *   once, before anything is skipped.
   * @param options.what what to call the bytes in messages.
   */
  constructor(
    private readonly handler: CpioHandler,
    private readonly options: { offset?: number; end?: number; what?: string } = {},
  ) {
    this.position = options.offset ?? 0;
  }

  /** Trailers read so far. */
  get archiveCount(): number {
    return this.archives;
  }

  /** Entries (trailers included) read so far. */
  get entryCount(): number {
    return this.entries;
  }

  /** True between entries: before any byte, or after a whole entry (and its padding). */
  get atBoundary(): boolean {
    return this.state === 'between';
  }

  private get what(): string {
    return this.options.what ?? 'cpio archive';
  }

  write(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'between') {
        let j = i;
        while (j < chunk.length && chunk[j] === ZERO) j++;
        this.position += j - i;
        i = j;
        if (i === chunk.length) break;
        if (this.position % 4 !== 0) {
          throw new VerityError('E_BAD_IMAGE', `${this.what}: broken padding: data resumes at offset ${this.position}, not a multiple of 4.`, {
            data: { offset: this.position, field: 'padding', expected: 'a multiple of 4', actual: this.position },
          });
        }
        // Not a header: the archive sequence ends here (a compressed stream may follow).
        if (chunk[i] !== DIGIT_ZERO) return i;
        this.startHeader();
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - i);
      const piece = chunk.subarray(i, i + take);
      i += take;
      this.position += take;
      this.remaining -= take;
      switch (this.state) {
        case 'header':
          this.headerBytes.set(piece, NEWC_HEADER_BYTES - this.remaining - take);
          if (this.remaining === 0) this.onHeader();
          break;
        case 'name':
          this.nameBytes.set(piece, this.nameBytes.length - this.remaining - take);
          if (this.remaining === 0) this.onName();
          break;
        case 'body':
          if (this.crc) this.sum = byteSum(piece, this.sum);
          if (this.collecting) this.handler.body(piece);
          if (this.remaining === 0) this.onBodyEnd();
          break;
        case 'skip':
          if (this.remaining === 0) this.afterSkip();
          break;
        default:
          break;
      }
    }
    return chunk.length;
  }

  /** Throws E_TRUNCATED when the bytes ended inside an entry. */
  finish(): void {
    if (this.state === 'between') return;
    const inside = this.state === 'header' ? 'its header' : this.header ? `entry "${this.currentName()}"` : 'an entry';
    throw new VerityError(
      'E_TRUNCATED',
      `${this.what} ends at offset ${this.position} inside the entry at offset ${this.entryOffset} (${inside}); ` +
        `${this.remaining} more bytes were due.`,
      { data: { offset: this.entryOffset, expected: this.position + this.remaining, actual: this.position } },
    );
  }

  private startHeader(): void {
    this.state = 'header';
    this.entryOffset = this.position;
    this.remaining = NEWC_HEADER_BYTES;
    this.header = null;
    this.nameBytes = new Uint8Array(0);
  }

  private currentName(): string {
    const nul = this.nameBytes.indexOf(0);
    return escapeText(NAME_DECODER.decode(nul < 0 ? this.nameBytes : this.nameBytes.subarray(0, nul)));
  }

  /** A header is complete; `position` is at the byte that follows it. */
  private onHeader(): void {
    const magic = NEWC_HEADER.fields.magic.field.get(this.headerBytes, 0);
    if (magic !== NEWC_MAGIC && magic !== CRC_MAGIC) {
      const data = { offset: this.entryOffset, field: 'c_magic', expected: NEWC_MAGIC, actual: escapeText(magic) };
      if (magic === ODC_MAGIC) {
        throw new VerityError(
          'E_UNSUPPORTED',
          `${this.what}: the entry at offset ${this.entryOffset} has an old-format (odc, 070707) cpio header; the kernel reads only newc (cpio -H newc).`,
          { data },
        );
      }
      throw new VerityError(
        'E_BAD_IMAGE',
        `${this.what}: no cpio magic at offset ${this.entryOffset}: found "${escapeText(magic)}", expected "070701" or "070702".`,
        { data },
      );
    }
    let header: NewcHeader;
    try {
      header = NEWC_HEADER.get(this.headerBytes, 0);
    } catch (e) {
      if (!(e instanceof VerityError)) throw e;
      throw new VerityError('E_BAD_IMAGE', `${this.what}: header at offset ${this.entryOffset}: ${e.message}`, {
        cause: e,
        data: { ...e.data, offset: this.entryOffset + (e.data.offset ?? 0) },
      });
    }
    this.entries++;
    this.header = header;
    this.crc = magic === CRC_MAGIC;
    const afterHeader = this.position;
    const nameArea = paddedName(header.namesize);
    const bodyEnd = afterHeader + nameArea + header.filesize;
    const end = bodyEnd + ((4 - (bodyEnd % 4)) % 4);
    if (this.options.end !== undefined && end > this.options.end) {
      const field = afterHeader + nameArea > this.options.end ? 'c_namesize' : 'c_filesize';
      throw new VerityError(
        'E_TRUNCATED',
        `${this.what}: the entry at offset ${this.entryOffset} declares ${header.namesize} name and ${header.filesize} body bytes, ` +
          `which end at offset ${end}, past the end of its data at ${this.options.end}.`,
        { data: { offset: this.entryOffset, field, expected: `<= ${this.options.end - afterHeader}`, actual: end - afterHeader } },
      );
    }
    const kind = cpioKind(header.mode);
    // The cases in which the kernel's do_header skips the entry whole, name and body.
    const skipped =
      header.namesize === 0 ||
      header.namesize > CPIO_PATH_MAX ||
      (kind === 'symlink' && header.filesize > CPIO_PATH_MAX) ||
      (kind !== 'file' && kind !== 'symlink' && header.filesize > 0);
    this.bodyPad = end - bodyEnd;
    if (skipped) {
      this.skip(end - afterHeader);
      return;
    }
    this.nameBytes = new Uint8Array(nameArea);
    this.remaining = nameArea;
    this.state = 'name';
  }

  private onName(): void {
    const header = this.header!;
    const raw = this.nameBytes.subarray(0, header.namesize);
    const nul = raw.indexOf(0);
    const rawName = NAME_DECODER.decode(nul < 0 ? raw : raw.subarray(0, nul));
    if (rawName === TRAILER_NAME) {
      this.archives++;
      this.handler.trailer();
      // The trailer's body, if any, is skipped.
      this.skip(header.filesize + this.bodyPad);
      return;
    }
    const kind = cpioKind(header.mode);
    const entry: CpioEntry = { name: normaliseCpioName(rawName), rawName, kind, header, size: header.filesize, offset: this.entryOffset };
    this.collecting = this.handler.entry(entry);
    this.sum = 0;
    this.remaining = header.filesize;
    this.state = 'body';
    if (this.remaining === 0) this.onBodyEnd();
  }

  private onBodyEnd(): void {
    const header = this.header!;
    // The kernel sums the bytes it writes to regular files only (xwrite in init/initramfs.c).
    if (this.crc && cpioKind(header.mode) === 'file' && this.sum !== header.check) {
      throw new VerityError(
        'E_BAD_IMAGE',
        `${this.what}: the data of "${this.currentName()}" (entry at offset ${this.entryOffset}) sums to ${this.sum}, but its 070702 header says ${header.check}.`,
        { data: { offset: this.entryOffset, field: 'c_chksum', expected: header.check, actual: this.sum } },
      );
    }
    const collected = this.collecting;
    this.collecting = false;
    if (collected) this.handler.bodyEnd();
    this.skip(this.bodyPad);
  }

  private skip(bytes: number): void {
    this.remaining = bytes;
    this.state = 'skip';
    if (bytes === 0) this.afterSkip();
  }

  /**
   * After every entry the kernel's unpacker is in its Reset state (do_name and do_symlink set next_state = Reset):
   * zero bytes may follow, then the next header on a multiple of 4, or the end of the uncompressed cpio data.
   */
  private afterSkip(): void {
    this.state = 'between';
  }
}

/** The sum of `bytes` added to `sum`, mod 2^32: the `070702` checksum. */
function byteSum(bytes: Uint8Array, sum: number): number {
  let s = sum;
  for (let i = 0; i < bytes.length; i++) s += bytes[i]!;
  return s >>> 0;
}

/** One entry of a whole archive read at once by `readCpio`. */
export interface CpioFile extends CpioEntry {
  /** The body: contents for regular files, target bytes for symbolic links. */
  data: Uint8Array;
}

/**
 * Every entry of the archive sequence in `bytes`, in order, with its body: for small archives and tests. The bytes
 * must hold whole archives; trailing zeros are allowed, anything else after the last trailer is an error.
 */
export function readCpio(bytes: Uint8Array, what = 'cpio archive'): CpioFile[] {
  const out: CpioFile[] = [];
  let current: CpioEntry | null = null;
  let pieces: Uint8Array[] = [];
  const parser = new CpioParser(
    {
      entry(e) {
        current = e;
        pieces = [];
        return true;
      },
      body(chunk) {
        pieces.push(chunk.slice());
      },
      bodyEnd() {
        const data = new Uint8Array(current!.size);
        let at = 0;
        for (const p of pieces) {
          data.set(p, at);
          at += p.length;
        }
        out.push({ ...current!, data });
      },
      trailer() {},
    },
    { end: bytes.length, what },
  );
  const taken = parser.write(bytes);
  if (taken < bytes.length) {
    throw new VerityError('E_BAD_IMAGE', `${what}: junk at offset ${taken} after the last archive.`, {
      data: { offset: taken, actual: bytes[taken]! },
    });
  }
  parser.finish();
  return out;
}
