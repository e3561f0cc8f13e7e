/**
 * The newc/crc cpio parser against archives made by the real GNU cpio (`cpio -o -H newc` and `-H crc`) from a tree
 * written here: the tree is the oracle for names and contents. Hostile archives are cut or edited copies.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, linkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpioParser, hex8, NEWC_HEADER, normaliseCpioName, readCpio, type CpioFile } from '../../src/boot/cpio.js';
import { makeData } from '../support/data.js';
import { failure } from '../support/sources.js';
import { findTool } from '../support/tools.js';

const CPIO = findTool('cpio', '/usr/bin/cpio', '/bin/cpio');
const NEEDS_CPIO = CPIO ? '' : ' [SKIPPED: cpio (GNU cpio) not installed]';

const random = (n: number, seed: number) => makeData({ blocks: n, blockSize: 1, tailBytes: 0, fill: 'random', seed });
const text = (s: string) => new TextEncoder().encode(s);

/** The tree archived: names and contents (symlinks and hard links beside). */
const TREE: Record<string, Uint8Array> = {
  'empty': new Uint8Array(0),
  'one': text('x'),
  'etc/cmdline.d/90-verity.conf': text('roothash=0123abcd\n'),
  'etc/os-release': text('ID=test\n'),
  'big.bin': random(1 << 20, 1),
  'odd-size': random(4099, 2),
  'deep/a/b/c/d/e/f/g/leaf.txt': text('deep\n'),
  'name with spaces & ünïcode.txt': text('names\n'),
};

/** Writes TREE under `root`, with a symlink and a pair of hard links. */
function writeTree(root: string): void {
  for (const [name, data] of Object.entries(TREE)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), data);
  }
  mkdirSync(join(root, 'empty-dir'));
  symlinkSync('etc/os-release', join(root, 'link'));
  writeFileSync(join(root, 'hard-a'), text('shared by two names\n'));
  linkSync(join(root, 'hard-a'), join(root, 'hard-b'));
}

/** `cpio -o` in `dir` over the names `find .` lists, sorted; `format` is newc or crc. */
function cpioOf(dir: string, format: 'newc' | 'crc' | 'odc' = 'newc', names?: string[]): Uint8Array {
  const list = names ?? spawnSync('find', ['.'], { cwd: dir, encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
  const r = spawnSync(CPIO!, ['-o', '--quiet', '-H', format], { cwd: dir, input: `${list.join('\n')}\n`, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`cpio failed: ${r.stderr}`);
  return new Uint8Array(r.stdout);
}

function byName(files: CpioFile[]): Map<string, CpioFile> {
  return new Map(files.map((f) => [f.name, f]));
}

describe('hex8 and the newc header', () => {
  it('reads and writes 8 hexadecimal digits, either case', () => {
    const b = new Uint8Array(8);
    hex8.put(b, 0, 0xdeadbeef);
    expect(new TextDecoder().decode(b)).toBe('deadbeef');
    expect(hex8.get(text('DEADBEEF'), 0)).toBe(0xdeadbeef);
    expect(hex8.get(text('00000000'), 0)).toBe(0);
  });

  it('refuses anything else, naming the header field', () => {
    expect(() => hex8.get(text('0000001G'), 0)).toThrow(/not 8 hexadecimal digits/);
    expect(() => hex8.get(text(' 0000001'), 0)).toThrow(/not 8 hexadecimal digits/);
    const header = new Uint8Array(110).fill(0x30);
    header.set(text('070701'));
    header.set(text('zz'), 54);
    expect(() => NEWC_HEADER.get(header, 0)).toThrow(/field filesize/);
  });

  it('normalises names as the unpacker resolves them', () => {
    expect(normaliseCpioName('./etc/x')).toBe('etc/x');
    expect(normaliseCpioName('/etc//x/')).toBe('etc/x');
    expect(normaliseCpioName('.')).toBe('');
    expect(normaliseCpioName('a/./b/../c')).toBe('a/c');
    expect(normaliseCpioName('../../x')).toBe('x');
  });
});

describe(`archives made by GNU cpio${NEEDS_CPIO}`, () => {
  let dir = '';
  let newc: Uint8Array = new Uint8Array(0);
  let crc: Uint8Array = new Uint8Array(0);

  beforeAll(() => {
    if (!CPIO) return;
    dir = mkdtempSync(join(tmpdir(), 'cpio-test-'));
    writeTree(dir);
    newc = cpioOf(dir, 'newc');
    crc = cpioOf(dir, 'crc');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!CPIO)('reads every file of a newc archive as the tree holds it', () => {
    expect(new TextDecoder().decode(newc.subarray(0, 6))).toBe('070701');
    const files = byName(readCpio(newc));
    for (const [name, data] of Object.entries(TREE)) {
      expect(files.get(name)?.kind, name).toBe('file');
      expect(same(files.get(name)!.data, data), name).toBe(true);
    }
    expect(files.get('link')).toMatchObject({ kind: 'symlink', data: text('etc/os-release') });
    expect(files.get('empty-dir')?.kind).toBe('directory');
    expect(files.get('deep/a/b')?.kind).toBe('directory');
    // `find .` lists "." (GNU cpio stores the rest without "./"): the root, normalised to ''.
    expect(files.get('')?.kind).toBe('directory');
  });

  it.skipIf(!CPIO)('sees hard links as GNU cpio writes them: size 0 on the first name, the data on the last', () => {
    const files = readCpio(newc).filter((f) => f.name === 'hard-a' || f.name === 'hard-b');
    expect(files.map((f) => f.header.nlink)).toEqual([2, 2]);
    expect(files[0]!.header.ino).toBe(files[1]!.header.ino);
    expect(files.map((f) => f.size).sort()).toEqual([0, 20]);
  });

  it.skipIf(!CPIO)('reads 070702 archives and checks the byte sum of every regular file', () => {
    expect(new TextDecoder().decode(crc.subarray(0, 6))).toBe('070702');
    const files = byName(readCpio(crc));
    expect(same(files.get('big.bin')!.data, TREE['big.bin']!)).toBe(true);
    expect(files.get('big.bin')!.header.check).toBeGreaterThan(0);
    const bad = crc.slice();
    const at = findBytes(bad, TREE['odd-size']!.subarray(0, 64));
    bad[at + 100]! ^= 1;
    return failure(() => readCpio(bad)).then((f) => {
      expect(f.code).toBe('E_BAD_IMAGE');
      expect(f.message).toMatch(/odd-size.*sums to/);
    });
  });

  it.skipIf(!CPIO)('gives the same entries whatever the pieces the bytes come in', () => {
    const seen: string[] = [];
    const parser = new CpioParser({
      entry: (e) => (seen.push(`${e.name}:${e.size}`), true),
      body: () => {},
      bodyEnd: () => {},
      trailer: () => seen.push('TRAILER'),
    });
    for (let i = 0; i < newc.length; i += 61) expect(parser.write(newc.subarray(i, i + 61))).toBe(Math.min(61, newc.length - i));
    parser.finish();
    expect(seen).toEqual([...readCpio(newc).map((f) => `${f.name}:${f.size}`), 'TRAILER']);
    expect(parser.archiveCount).toBe(1);
  });

  it.skipIf(!CPIO)('keeps absolute names without their leading slash', () => {
    const abs = cpioOf('/', 'newc', [join(dir, 'etc/os-release')]);
    const [file] = readCpio(abs);
    expect(file!.rawName).toBe(join(dir, 'etc/os-release'));
    expect(file!.name).toBe(join(dir, 'etc/os-release').slice(1));
    expect(file!.data).toEqual(TREE['etc/os-release']);
  });

  it.skipIf(!CPIO)('reads archives one after the other, with zero padding between them', () => {
    const two = new Uint8Array(newc.length * 2 + 512);
    two.set(newc);
    two.set(newc, newc.length + 512);
    const files = readCpio(two);
    expect(files.filter((f) => f.name === 'big.bin')).toHaveLength(2);
  });

  describe('hostile archives', () => {
    it.skipIf(!CPIO)('a truncated archive: E_TRUNCATED, whether the cut is in a header, a name or a body', async () => {
      const big = findBytes(newc, TREE['big.bin']!.subarray(0, 64));
      for (const cut of [50, 115, big + 1000, newc.length - 600]) {
        const parser = new CpioParser({ entry: () => true, body: () => {}, bodyEnd: () => {}, trailer: () => {} });
        parser.write(newc.subarray(0, cut));
        const f = await failure(() => parser.finish());
        expect(f.code, `cut at ${cut}`).toBe('E_TRUNCATED');
      }
      // With the end known, a body past it is refused at its header.
      const f = await failure(() => readCpio(newc.subarray(0, big + 1000)));
      expect(f.code).toBe('E_TRUNCATED');
      expect(f.message).toMatch(/past the end of its data/);
    });

    it.skipIf(!CPIO)('a name size or file size past the end: E_TRUNCATED naming the field', async () => {
      const namePast = newc.slice(0, 4096);
      hex8.put(namePast, 94, 0x00000fff);
      const e1 = await failure(() => readCpio(namePast));
      expect(e1.code).toBe('E_TRUNCATED');
      // Name sizes near 2^32 once made the kernel's N_ALIGN arithmetic go negative here (32-bit `& ~3`).
      for (const namesize of [0xffffffff, 0xfffffffe, 0x80000001]) {
        const wide = newc.slice();
        hex8.put(wide, 94, namesize);
        expect((await failure(() => readCpio(wide))).code, `namesize ${namesize}`).toBe('E_TRUNCATED');
        const parser = new CpioParser({ entry: () => true, body: () => {}, bodyEnd: () => {}, trailer: () => {} });
        expect(parser.write(wide)).toBe(wide.length);
        expect((await failure(() => parser.finish())).code).toBe('E_TRUNCATED');
      }
      const huge = newc.slice();
      hex8.put(huge, 54, 0xffffffff);
      const e2 = await failure(() => readCpio(huge));
      expect(e2.code).toBe('E_TRUNCATED');
      expect(e2.message).toMatch(/4294967295 body bytes/);
    });

    it.skipIf(!CPIO)('garbage after the trailer: E_BAD_IMAGE, or broken padding when unaligned', async () => {
      const junk = new Uint8Array(newc.length + 8);
      junk.set(newc);
      junk.set(text('JUNK'), newc.length);
      expect((await failure(() => readCpio(junk))).message).toMatch(/junk at offset/);
      const unaligned = junk.slice();
      unaligned.copyWithin(newc.length + 1, newc.length, newc.length + 4);
      unaligned[newc.length] = 0;
      expect((await failure(() => readCpio(unaligned))).message).toMatch(/broken padding/);
    });

    it.skipIf(!CPIO)('a bad magic or an odc archive', async () => {
      const bad = newc.slice();
      bad[5] = 0x39;
      expect(await failure(() => readCpio(bad))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/no cpio magic/) });
      const odc = cpioOf(dir, 'odc', ['./one']);
      expect(await failure(() => readCpio(odc))).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/-H newc/) });
    });

    it('entries the kernel skips: name size 0 or above PATH_MAX, special files with a body', () => {
      const entry = (name: string, mode: number, body: Uint8Array, namesize = name.length + 1) => {
        const header = NEWC_HEADER.serialize({
          magic: '070701', ino: 1, mode, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: body.length,
          devmajor: 0, devminor: 0, rdevmajor: 0, rdevminor: 0, namesize, check: 0,
        });
        const nameArea = ((namesize + 1) & ~3) + 2;
        const out = new Uint8Array(110 + nameArea + ((body.length + 3) & ~3));
        out.set(header);
        out.set(text(name).subarray(0, namesize), 110);
        out.set(body, 110 + nameArea);
        return out;
      };
      const parts = [
        entry('skipped-empty-name', 0o100644, text('abc'), 0),
        entry('x'.repeat(5000), 0o100644, text('abc')),
        entry('dir-with-body', 0o040755, text('abcd')),
        entry('./etc/kept', 0o100644, text('abc')),
        entry('TRAILER!!!', 0, new Uint8Array(0)),
      ];
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
      expect(readCpio(all).map((f) => f.name)).toEqual(['etc/kept']);
    });
  });
});

/** Byte equality without vitest's element-by-element diff, which takes seconds on a MiB. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function findBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error('needle not found');
}
