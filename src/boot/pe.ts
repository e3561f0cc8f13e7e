/**
 * The section table of a PE/COFF image (an EFI program: a UKI, a UKI add-on), and the bytes of one section.
 *
 * Layout from the Microsoft PE/COFF specification: the MS-DOS header's `e_lfanew` (offset 0x3C) points at the
 * signature `PE\0\0`, followed by the 20-byte COFF file header (NumberOfSections, SizeOfOptionalHeader), the
 * optional header, and the section table of 40-byte headers. A section's file bytes are SizeOfRawData bytes at
 * PointerToRawData; VirtualSize is its size once loaded, zero-filled past the raw data, and is what systemd-stub
 * reads for `.cmdline`, `.osrel` and `.uname`.
 *
 * Everything is untrusted and bounded: at most 96 sections (the limit the specification states for images), the
 * headers and every section's raw bytes must lie within the file, and a section is read only up to the caller's limit.
 */
import { at, chars, latin1, struct, u16le, u32le, type StructValue } from '../binary/struct.js';
import { VerityError } from '../errors.js';
import { bytesSource, readExactly, type ByteSource } from '../io/source.js';

/** The MS-DOS stub header: the fields a PE loader reads [PE/COFF spec, "MS-DOS Stub (Image Only)"]. */
export const DOS_HEADER = struct('MS-DOS header', {
  magic: at(0x00, chars(2)), // e_magic: "MZ"
  lfanew: at(0x3c, u32le), // e_lfanew: file offset of the PE signature
}, { size: 0x40 });

/** The PE signature and COFF file header [PE/COFF spec, "Signature (Image Only)" and "COFF File Header"]. */
export const COFF_HEADER = struct('PE/COFF file header', {
  signature: at(0, chars(4)), // "PE\0\0"
  machine: at(4, u16le), // Machine: 0x8664 x64, 0xaa64 ARM64, 0x14c i386, …
  numberOfSections: at(6, u16le), // NumberOfSections
  timeDateStamp: at(8, u32le), // TimeDateStamp
  pointerToSymbolTable: at(12, u32le), // PointerToSymbolTable: 0 for images
  numberOfSymbols: at(16, u32le), // NumberOfSymbols
  sizeOfOptionalHeader: at(20, u16le), // SizeOfOptionalHeader: the section table follows it
  characteristics: at(22, u16le), // Characteristics
});

/** The optional header's magic: 0x10b PE32, 0x20b PE32+ [PE/COFF spec, "Optional Header Standard Fields"]. */
export const OPTIONAL_HEADER_MAGIC = struct('PE optional header', { magic: at(0, u16le) });

/** One section header [PE/COFF spec, "Section Table (Section Headers)"]. */
export const SECTION_HEADER = struct('PE section header', {
  name: at(0, latin1(8)), // Name: NUL-padded, not terminated when 8 bytes long
  virtualSize: at(8, u32le), // VirtualSize
  virtualAddress: at(12, u32le), // VirtualAddress
  sizeOfRawData: at(16, u32le), // SizeOfRawData
  pointerToRawData: at(20, u32le), // PointerToRawData
  pointerToRelocations: at(24, u32le), // PointerToRelocations
  pointerToLinenumbers: at(28, u32le), // PointerToLinenumbers
  numberOfRelocations: at(32, u16le), // NumberOfRelocations
  numberOfLinenumbers: at(34, u16le), // NumberOfLinenumbers
  characteristics: at(36, u32le), // Characteristics
});
export type PeSection = StructValue<typeof SECTION_HEADER.fields>;

/** The limit on sections the PE/COFF specification gives for images (the Windows loader's). */
export const MAX_PE_SECTIONS = 96;
const PE_SIGNATURE = 'PE\u0000\u0000';

export interface PeImage {
  machine: number;
  /** 0x10b (PE32), 0x20b (PE32+), or another value when the optional header is something else. */
  optionalMagic: number | null;
  /** In table order; names may repeat (multi-profile UKIs repeat `.cmdline` after each `.profile`). */
  sections: PeSection[];
  /** Size of the file the table was read from. */
  size: number;
}

function bad(message: string, offset: number, extra: { expected?: number | string; actual?: number | string } = {}): VerityError {
  return new VerityError('E_BAD_IMAGE', message, { data: { offset, ...extra } });
}

/** Reads `length` bytes at `offset` of `source`, refusing a range outside it. */
async function readRange(source: ByteSource, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (offset < 0 || length < 0 || offset + length > source.size) {
    throw bad(`${what} (${length} bytes at offset ${offset}) lies outside the ${source.size}-byte file.`, offset, {
      expected: offset + length,
      actual: source.size,
    });
  }
  const out = new Uint8Array(length);
  await readExactly(source, out, offset, what);
  return out;
}

/**
 * Reads the section table of the PE image in `source` (or in `bytes`). E_BAD_IMAGE when it is not a PE image, when
 * it declares more than 96 sections, or when the headers or a section's raw data lie outside the file.
 */
export async function readPeSections(source: ByteSource | Uint8Array): Promise<PeImage> {
  const src = source instanceof Uint8Array ? bytesSource(source) : source;
  if (src.size < DOS_HEADER.len) {
    throw bad(`A ${src.size}-byte file is too small for a PE image (the MS-DOS header alone is ${DOS_HEADER.len} bytes).`, 0);
  }
  const dos = DOS_HEADER.get(await readRange(src, 0, DOS_HEADER.len, 'MS-DOS header'), 0);
  if (dos.magic !== 'MZ') throw bad('Not a PE image: no "MZ" signature at offset 0.', 0, { expected: 'MZ' });
  const peOffset = dos.lfanew;
  if (peOffset + COFF_HEADER.len > src.size) {
    throw bad(`e_lfanew points at offset ${peOffset}, past what the ${src.size}-byte file holds of a PE header.`, 0x3c, {
      actual: peOffset,
    });
  }
  const coff = COFF_HEADER.get(await readRange(src, peOffset, COFF_HEADER.len, 'PE/COFF file header'), 0);
  if (coff.signature !== PE_SIGNATURE) throw bad(`Not a PE image: no "PE\\0\\0" signature at offset ${peOffset}.`, peOffset);
  const count = coff.numberOfSections;
  if (count > MAX_PE_SECTIONS) {
    throw bad(`The PE image declares ${count} sections; images have at most ${MAX_PE_SECTIONS}.`, peOffset + 6, {
      expected: MAX_PE_SECTIONS,
      actual: count,
    });
  }
  const optionalOffset = peOffset + COFF_HEADER.len;
  const tableOffset = optionalOffset + coff.sizeOfOptionalHeader;
  const table = await readRange(src, tableOffset, count * SECTION_HEADER.len, 'PE section table');
  let optionalMagic: number | null = null;
  if (coff.sizeOfOptionalHeader >= 2) {
    optionalMagic = OPTIONAL_HEADER_MAGIC.get(await readRange(src, optionalOffset, 2, 'PE optional header'), 0).magic;
  }
  const sections: PeSection[] = [];
  for (let i = 0; i < count; i++) {
    const s = SECTION_HEADER.get(table, i * SECTION_HEADER.len);
    // Sections without raw data (.bss) have nothing in the file to check.
    if (s.sizeOfRawData > 0 && s.pointerToRawData + s.sizeOfRawData > src.size) {
      throw bad(
        `PE section ${i + 1} "${s.name}" has ${s.sizeOfRawData} bytes at offset ${s.pointerToRawData}, past the end of the ${src.size}-byte file.`,
        tableOffset + i * SECTION_HEADER.len + 16,
        { expected: s.pointerToRawData + s.sizeOfRawData, actual: src.size },
      );
    }
    sections.push(s);
  }
  return { machine: coff.machine, optionalMagic, sections, size: src.size };
}

/**
 * The loaded bytes of `section`: VirtualSize bytes (SizeOfRawData when VirtualSize is 0), the part past the raw data
 * zero-filled as a loader fills it. E_UNSUPPORTED when that is more than `maxBytes`.
 */
export async function readPeSection(source: ByteSource | Uint8Array, section: PeSection, maxBytes: number): Promise<Uint8Array> {
  const src = source instanceof Uint8Array ? bytesSource(source) : source;
  const size = section.virtualSize !== 0 ? section.virtualSize : section.sizeOfRawData;
  if (size > maxBytes) {
    throw new VerityError('E_UNSUPPORTED', `PE section "${section.name}" is ${size} bytes; at most ${maxBytes} are read.`, {
      data: { expected: maxBytes, actual: size, field: section.name },
    });
  }
  const out = new Uint8Array(size);
  const fromFile = Math.min(size, section.sizeOfRawData);
  if (fromFile > 0) out.set(await readRange(src, section.pointerToRawData, fromFile, `PE section "${section.name}"`));
  return out;
}

/** The bytes of the first section named `name` (e.g. `.cmdline`), or null when the image has none. */
export async function peSectionBytes(source: ByteSource | Uint8Array, name: string, maxBytes: number): Promise<Uint8Array | null> {
  const src = source instanceof Uint8Array ? bytesSource(source) : source;
  const image = await readPeSections(src);
  const section = image.sections.find((s) => s.name === name);
  return section ? readPeSection(src, section, maxBytes) : null;
}
