/**
 * The PE/COFF section table reader. Oracles: a real UKI made with objcopy from systemd's EFI stub
 * (linuxx64.efi.stub, Debian package systemd-boot-efi), whose section table `objdump -h` prints; and the small
 * images test/fixtures/boot/pe-writer.ts writes, which objdump must read too. Then hostile tables: out of the file,
 * 65535 sections, sections past the end, short and foreign files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COFF_HEADER, DOS_HEADER, MAX_PE_SECTIONS, SECTION_HEADER, peSectionBytes, readPeSection, readPeSections, type PeSection } from '../../src/boot/pe.js';
import { VerityError } from '../../src/errors.js';
import { bytesSource } from '../../src/io/source.js';
import { buildPe } from '../fixtures/boot/pe-writer.js';
import { findTool } from '../support/tools.js';

const OBJCOPY = findTool('objcopy', '/usr/bin/objcopy');
const OBJDUMP = findTool('objdump', '/usr/bin/objdump');
const STUB = ['/usr/lib/systemd/boot/efi/linuxx64.efi.stub', '/lib/systemd/boot/efi/linuxx64.efi.stub'].find((p) => existsSync(p)) ?? null;
const missing = (tools: Record<string, string | null>) => {
  const names = Object.entries(tools).filter(([, v]) => v === null).map(([k]) => k);
  return names.length ? ` [SKIPPED: ${names.join(', ')} not installed (apt packages binutils, systemd-boot-efi)]` : '';
};
const dir = mkdtempSync(join(tmpdir(), 'pe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** `objdump -h`: name, size, VMA and file offset of each section. */
function objdumpSections(file: string): Array<{ name: string; size: number; vma: number; offset: number }> {
  const out: Array<{ name: string; size: number; vma: number; offset: number }> = [];
  for (const line of run(OBJDUMP!, ['-h', file]).split('\n')) {
    const m = /^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s/.exec(line);
    if (m) out.push({ name: m[1]!, size: parseInt(m[2]!, 16), vma: parseInt(m[3]!, 16), offset: parseInt(m[4]!, 16) });
  }
  return out;
}

/** The size objdump prints for a PE section: the smaller of VirtualSize and SizeOfRawData. */
const loadedSize = (s: PeSection) => Math.min(s.virtualSize, s.sizeOfRawData);

async function failure(p: Promise<unknown>): Promise<VerityError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof VerityError) return e;
    throw e;
  }
  throw new Error('expected a VerityError');
}

describe(`a UKI made with objcopy from systemd's stub${missing({ objcopy: OBJCOPY, objdump: OBJDUMP, 'linuxx64.efi.stub': STUB })}`, () => {
  it.skipIf(!OBJCOPY || !OBJDUMP || !STUB)('lists the sections objdump lists, and returns .cmdline and .osrel as written', async () => {
    const cmdline = 'root=/dev/mapper/root roothash=c2bca389b1d4562accee487aa39662ad51ba27e193e02fac383a980dab517f06\0\0';
    const osrel = 'ID=azurelinux\nPRETTY_NAME="Azure Linux 3.0"\n';
    writeFileSync(join(dir, 'cmdline'), cmdline);
    writeFileSync(join(dir, 'osrel'), osrel);
    writeFileSync(join(dir, 'uname'), '6.6.57.1-2.azl3');
    const uki = join(dir, 'uki.efi');
    run(OBJCOPY!, [
      '--add-section', `.osrel=${join(dir, 'osrel')}`, '--change-section-vma', '.osrel=0x20000',
      '--add-section', `.cmdline=${join(dir, 'cmdline')}`, '--change-section-vma', '.cmdline=0x30000',
      '--add-section', `.uname=${join(dir, 'uname')}`, '--change-section-vma', '.uname=0x40000',
      STUB!, uki,
    ]);
    const bytes = new Uint8Array(readFileSync(uki));
    const image = await readPeSections(bytesSource(bytes));
    // objdump prints VMAs with the image base added.
    const imageBase = parseInt(/ImageBase\s+([0-9a-f]+)/.exec(run(OBJDUMP!, ['-p', uki]))![1]!, 16);
    expect(image.sections.map((s) => ({ name: s.name, size: loadedSize(s), vma: s.virtualAddress + imageBase, offset: s.pointerToRawData }))).toEqual(
      objdumpSections(uki),
    );
    expect(image.machine).toBe(0x8664);
    expect(image.optionalMagic).toBe(0x20b);
    expect(new TextDecoder().decode((await peSectionBytes(bytes, '.cmdline', 4096))!)).toBe(cmdline);
    expect(new TextDecoder().decode((await peSectionBytes(bytes, '.osrel', 4096))!)).toBe(osrel);
    expect(await peSectionBytes(bytes, '.linux', 4096)).toBeNull();
  });
});

describe('images from pe-writer', () => {
  it.skipIf(!OBJDUMP)(`are read by objdump as we read them${missing({ objdump: OBJDUMP })}`, async () => {
    const bytes = buildPe([{ name: '.osrel', data: 'ID=x\n' }, { name: '.cmdline', data: 'quiet' }, { name: '.bss', data: '', virtualSize: 4096 }]);
    const file = join(dir, 'written.efi');
    writeFileSync(file, bytes);
    const image = await readPeSections(bytes);
    expect(image.sections.map((s) => [s.name, loadedSize(s), s.pointerToRawData])).toEqual(
      objdumpSections(file).map((t) => [t.name, t.size, t.offset]),
    );
  });

  it('returns VirtualSize bytes: zero-filled past the raw data, cut to it when smaller, SizeOfRawData when 0', async () => {
    const bytes = buildPe([
      { name: '.big', data: 'abc', virtualSize: 8 },
      { name: '.small', data: 'abcdef', virtualSize: 2 },
      { name: '.zero', data: 'xyz', virtualSize: 0 },
    ]);
    const [big, small, zero] = (await readPeSections(bytes)).sections;
    expect([...(await readPeSection(bytes, big!, 100))]).toEqual([97, 98, 99, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(await readPeSection(bytes, small!, 100))).toBe('ab');
    // The raw data is padded to the file alignment, 512 bytes.
    expect((await readPeSection(bytes, zero!, 1000)).length).toBe(512);
    const e = await failure(readPeSection(bytes, big!, 4));
    expect(e.code).toBe('E_UNSUPPORTED');
  });

  it('finds the first of repeated sections, and reads an image with no sections', async () => {
    const bytes = buildPe([{ name: '.cmdline', data: 'one' }, { name: '.profile', data: 'ID=a' }, { name: '.cmdline', data: 'two' }]);
    expect(new TextDecoder().decode((await peSectionBytes(bytes, '.cmdline', 10))!)).toBe('one');
    expect((await readPeSections(buildPe([]))).sections).toEqual([]);
  });
});

describe('hostile images', () => {
  const good = buildPe([{ name: '.cmdline', data: 'quiet' }]);
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const lfanew = 0x80;
  const table = lfanew + COFF_HEADER.len + 240;

  it('refuses what is not a PE image', async () => {
    expect((await failure(readPeSections(new Uint8Array(10)))).message).toMatch(/too small/);
    expect((await failure(readPeSections(new Uint8Array(4096)))).message).toMatch(/no "MZ"/);
    const noPe = good.slice();
    noPe[lfanew] = 0x51;
    expect((await failure(readPeSections(noPe))).message).toMatch(/no "PE\\0\\0"/);
  });

  it('refuses e_lfanew past the file, and a section table out of the file', async () => {
    for (const value of [0xffffffff, good.length - 10, good.length]) {
      const b = good.slice();
      view(b).setUint32(0x3c, value, true);
      const e = await failure(readPeSections(b));
      expect(e.code).toBe('E_BAD_IMAGE');
      expect(e.data.offset).toBe(0x3c);
    }
    const b = good.slice();
    view(b).setUint16(lfanew + 20, 0xffff, true); // SizeOfOptionalHeader
    expect((await failure(readPeSections(b))).message).toMatch(/PE section table .* lies outside/);
  });

  it('refuses 65535 sections (and 97) without reading them, and accepts 96', async () => {
    for (const count of [0xffff, MAX_PE_SECTIONS + 1]) {
      const b = good.slice();
      view(b).setUint16(lfanew + 6, count, true);
      const e = await failure(readPeSections(b));
      expect(e.message).toMatch(new RegExp(`declares ${count} sections`));
      expect(e.data).toMatchObject({ expected: MAX_PE_SECTIONS, actual: count });
    }
    const many = buildPe(Array.from({ length: MAX_PE_SECTIONS }, (_, i) => ({ name: `.s${i}`, data: 'x' })));
    expect((await readPeSections(many)).sections).toHaveLength(MAX_PE_SECTIONS);
  });

  it('refuses a section whose raw data lies past the end of the file', async () => {
    for (const [field, value] of [[16, 0xfffffe00], [20, 0xfffffe00], [16, good.length]] as const) {
      const b = good.slice();
      view(b).setUint32(table + field, value, true);
      const e = await failure(readPeSections(b));
      expect(e.message).toMatch(/past the end of the/);
      expect(e.code).toBe('E_BAD_IMAGE');
    }
    const truncated = good.slice(0, good.length - 1);
    expect((await failure(readPeSections(truncated))).message).toMatch(/section 1 ".cmdline"/);
  });

  it('declares its structures with the sizes of the specification', () => {
    expect([DOS_HEADER.len, COFF_HEADER.len, SECTION_HEADER.len]).toEqual([64, 24, 40]);
  });
});
