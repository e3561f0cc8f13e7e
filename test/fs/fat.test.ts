/**
 * The FAT reader against volumes made at test time by the real mkfs.vfat (dosfstools) and filled by mtools
 * (`mcopy -s`, `mmd`) from a tree written here: the tree is the oracle for names and contents. FAT12, FAT16 and FAT32
 * are each forced (-F) and checked to be what the reader says. Hostile volumes are edited copies of a real one.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerityError } from '../../src/errors.js';
import { FAT_BPB, openFat, parseFatBootSector, shortNameChecksum, type FatVolume } from '../../src/fs/fat.js';
import { bytesSource } from '../../src/io/source.js';
import { makeData } from '../support/data.js';
import { failure } from '../support/sources.js';
import { findTool } from '../support/tools.js';

const MKFS = findTool('mkfs.vfat', '/usr/sbin/mkfs.vfat', '/sbin/mkfs.vfat');
const MCOPY = findTool('mcopy', '/usr/bin/mcopy');
const MMD = findTool('mmd', '/usr/bin/mmd');
const HAVE_TOOLS = !!(MKFS && MCOPY && MMD);
const NEEDS_TOOLS = HAVE_TOOLS ? '' : ' [SKIPPED: mkfs.vfat (dosfstools) and mcopy/mmd (mtools) not installed]';

const random = (n: number, seed: number) => makeData({ blocks: n, blockSize: 1, tailBytes: 0, fill: 'random', seed });
const same = (a: Uint8Array | null, b: Uint8Array) => !!a && a.length === b.length && Buffer.compare(a, b) === 0;

const LONG_NAME = 'A long file name with spaces, ünïcödé and more than 13 characters.conf';
const DEEP = Array.from({ length: 12 }, (_, i) => `level-${i}`).join('/');

/** The tree copied onto every volume. */
function writeTree(root: string): void {
  const file = (rel: string, data: Uint8Array | string) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
  };
  file('empty', '');
  file('ONE.TXT', 'x');
  file('big.bin', random(1_300_000, 1));
  file(LONG_NAME, 'long\n');
  file('MixedCase.Txt', 'mixed\n');
  file('lower.txt', 'lower\n');
  file('EFI/BOOT/BOOTX64.EFI', random(50_000, 2));
  file('loader/entries/linux.conf', 'title Linux\nlinux /vmlinuz\noptions roothash=abcd\n');
  file(`${DEEP}/leaf.txt`, 'deep\n');
  for (let i = 0; i < 150; i++) file(`many/file-${String(i).padStart(3, '0')}.txt`, `entry ${i}\n`);
  mkdirSync(join(root, 'empty-dir'));
}

interface Variant {
  name: string;
  fatType: 12 | 16 | 32;
  sizeKiB: number;
  options: string[];
  clusterSize: number;
}

const VARIANTS: Variant[] = [
  { name: 'FAT12', fatType: 12, sizeKiB: 3072, options: ['-F', '12', '-s', '2', '-S', '512'], clusterSize: 1024 },
  { name: 'FAT16', fatType: 16, sizeKiB: 16384, options: ['-F', '16', '-s', '4', '-S', '512'], clusterSize: 2048 },
  { name: 'FAT32', fatType: 32, sizeKiB: 40960, options: ['-F', '32', '-s', '1', '-S', '512'], clusterSize: 512 },
];

function sh(tool: string, args: string[]): void {
  const r = spawnSync(tool, args, { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${r.stderr}`);
}

/** Makes a volume image of the tree at `tree`: mkfs.vfat, then mmd and mcopy -s. */
function makeImage(dir: string, tree: string, v: Variant): Uint8Array {
  const image = join(dir, `${v.name}.img`);
  sh(MKFS!, ['-C', ...v.options, '-n', `VOL${v.fatType}`, '-i', `1234ab${v.fatType}`, image, String(v.sizeKiB)]);
  sh(MMD!, ['-i', image, '::/made-by-mmd']);
  sh(MCOPY!, ['-s', '-i', image, ...readdirSync(tree).map((n) => join(tree, n)), '::/']);
  return new Uint8Array(readFileSync(image));
}

/** Every file and directory of the tree, relative, with a leading '/'. */
function treePaths(root: string, rel = ''): Array<{ path: string; dir: boolean }> {
  return readdirSync(join(root, rel)).flatMap((name) => {
    const path = `${rel}/${name}`;
    const dir = statSync(join(root, path)).isDirectory();
    return [{ path, dir }, ...(dir ? treePaths(root, path) : [])];
  });
}

describe(`FAT volumes made by mkfs.vfat and mtools${NEEDS_TOOLS}`, () => {
  let dir = '';
  let tree = '';
  const images = new Map<string, Uint8Array>();

  beforeAll(() => {
    if (!HAVE_TOOLS) return;
    dir = mkdtempSync(join(tmpdir(), 'fat-test-'));
    tree = join(dir, 'tree');
    mkdirSync(tree);
    writeTree(tree);
    for (const v of VARIANTS) images.set(v.name, makeImage(dir, tree, v));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const v of VARIANTS) {
    describe(v.name, () => {
      let volume: FatVolume;
      beforeAll(async () => {
        if (HAVE_TOOLS) volume = await openFat(bytesSource(images.get(v.name)!));
      });

      it.skipIf(!HAVE_TOOLS)('is the FAT type forced, with its geometry, volume id and label', () => {
        expect(volume.kind).toBe('fat');
        expect(volume.fatType).toBe(v.fatType);
        expect(volume.clusterSize).toBe(v.clusterSize);
        expect(volume.uuid).toBe(`1234-AB${v.fatType}`);
        expect(volume.label).toBe(`VOL${v.fatType}`);
      });

      it.skipIf(!HAVE_TOOLS)('holds every file of the tree, byte for byte, under its long name', async () => {
        for (const { path, dir: isDir } of treePaths(tree)) {
          if (isDir) {
            expect(await volume.list(path), path).not.toBeNull();
            continue;
          }
          const data = await volume.readFile(path, 4 << 20);
          expect(same(data, new Uint8Array(readFileSync(join(tree, path)))), path).toBe(true);
        }
      });

      it.skipIf(!HAVE_TOOLS)('lists directories as the tree has them (without . and ..)', async () => {
        for (const { path } of [{ path: '' }, ...treePaths(tree).filter((p) => p.dir)]) {
          const listed = (await volume.list(path || '/'))!.map((e) => e.name).sort();
          const expected = readdirSync(join(tree, path)).concat(path === '' ? ['made-by-mmd'] : []).sort();
          expect(listed, path || '/').toEqual(expected);
        }
        const root = await volume.list('/');
        expect(root!.find((e) => e.name === 'big.bin')).toEqual({ name: 'big.bin', kind: 'file', size: 1_300_000 });
        expect(root!.find((e) => e.name === 'EFI')).toEqual({ name: 'EFI', kind: 'directory', size: 0 });
      });

      it.skipIf(!HAVE_TOOLS)('looks names up case-insensitively, by long name or short alias, through . and ..', async () => {
        const conf = new TextEncoder().encode('title Linux\nlinux /vmlinuz\noptions roothash=abcd\n');
        expect(await volume.readFile('/LOADER/Entries/LINUX.CONF', 1000)).toEqual(conf);
        expect(await volume.readFile('/efi/boot/../../loader/./entries/linux.conf', 1000)).toEqual(conf);
        expect(await volume.readFile(`/${LONG_NAME.toUpperCase()}`, 1000)).toEqual(new TextEncoder().encode('long\n'));
        const alias = (await volume.directory(0)).find((e) => e.name === LONG_NAME)!.shortName;
        expect(alias).toMatch(/~1/);
        expect(await volume.readFile(`/${alias.toLowerCase()}`, 1000)).toEqual(new TextEncoder().encode('long\n'));
        expect(await volume.readFile('/missing', 1000)).toBeNull();
        expect(await volume.readFile('/EFI', 1000)).toBeNull();
        expect(await volume.list('/big.bin')).toBeNull();
        expect(await volume.readFile('/big.bin/x', 1000)).toBeNull();
      });

      it.skipIf(!HAVE_TOOLS)('opens a file spanning many clusters as a lazily mapped source', async () => {
        const source = (await volume.open('/big.bin'))!;
        expect(source.size).toBe(1_300_000);
        const expected = random(1_300_000, 1);
        for (const [at, length] of [[0, 10], [v.clusterSize - 3, 7], [654_321, 100_000], [1_299_990, 100]] as const) {
          const out = new Uint8Array(length);
          const n = await source.read(out, at);
          expect(n).toBe(Math.min(length, 1_300_000 - at));
          expect(same(out.subarray(0, n), expected.subarray(at, at + n))).toBe(true);
        }
        expect(await source.read(new Uint8Array(4), 1_300_000)).toBe(0);
        expect(await volume.open('/nothing')).toBeNull();
      });

      it.skipIf(!HAVE_TOOLS)('refuses a file above maxBytes before reading it', async () => {
        const f = await failure(volume.readFile('/big.bin', 1000));
        expect(f).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/1300000 bytes/) });
        expect(await volume.readFile('/empty', 0)).toEqual(new Uint8Array(0));
      });
    });
  }

  describe('hostile volumes', () => {
    /** Offsets the tests edit, found in the image by its own layout (not by the reader). */
    function layout(image: Uint8Array) {
      const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
      const bps = dv.getUint16(11, true);
      const rsvd = dv.getUint16(14, true);
      const entryOf = (shortName: string) => {
        const needle = new TextEncoder().encode(shortName);
        for (let off = 0; off + 32 <= image.length; off += 32) {
          if (needle.every((b, i) => image[off + i] === b) && (image[off + 11]! & 0x0f) !== 0x0f) return off;
        }
        throw new Error(`no entry ${shortName}`);
      };
      const clusterOf = (entry: number) => dv.getUint16(entry + 26, true);
      return { dv, fat: rsvd * bps, entryOf, clusterOf };
    }

    async function outcome(image: Uint8Array, action: (v: FatVolume) => Promise<unknown>): Promise<string> {
      const run = (async () => {
        try {
          await action(await openFat(bytesSource(image)));
          return 'ok';
        } catch (e) {
          if (e instanceof VerityError && e.code !== 'E_INTERNAL') return `${e.code}: ${e.message}`;
          throw e;
        }
      })();
      const timeout = new Promise<string>((_, reject) => setTimeout(() => reject(new Error('hang')), 5000));
      return Promise.race([run, timeout]);
    }

    it.skipIf(!HAVE_TOOLS)('a cluster chain that loops, leaves the volume, or reaches a free cluster: E_BAD_IMAGE', async () => {
      const base = images.get('FAT16')!;
      const { dv, fat, entryOf, clusterOf } = layout(base);
      const first = clusterOf(entryOf('BIG     BIN'));
      const edits: Array<[string, number, RegExp]> = [
        ['loop back to the first cluster', first, /loops/],
        ['past the last cluster', 0xffe0, /outside the volume/],
        ['a free cluster', 0, /free cluster/],
        ['a bad cluster', 0xfff7, /marked bad/],
        ['end of chain too early', 0xffff, /chain ends after/],
      ];
      for (const [what, value, message] of edits) {
        const image = base.slice();
        new DataView(image.buffer).setUint16(fat + (first + 5) * 2, value, true);
        const r = await outcome(image, (v) => v.readFile('/big.bin', 4 << 20));
        expect(r, what).toMatch(/^E_BAD_IMAGE/);
        expect(r, what).toMatch(message);
      }
      void dv;
    });

    it.skipIf(!HAVE_TOOLS)('a FAT12 chain that loops (12-bit entries packed in pairs)', async () => {
      const image = images.get('FAT12')!.slice();
      const { fat, entryOf, clusterOf } = layout(image);
      const first = clusterOf(entryOf('BIG     BIN'));
      const n = first + 9;
      const off = fat + n + (n >> 1);
      const v = image[off]! | (image[off + 1]! << 8);
      const packed = n & 1 ? (v & 0x000f) | (first << 4) : (v & 0xf000) | first;
      image[off] = packed & 0xff;
      image[off + 1] = packed >> 8;
      expect(await outcome(image, (vol) => vol.readFile('/big.bin', 4 << 20))).toMatch(/^E_BAD_IMAGE.*loops/);
    });

    it.skipIf(!HAVE_TOOLS)('a directory whose chain loops, and entries pointing past the volume', async () => {
      const image = images.get('FAT32')!.slice();
      const { dv, fat, entryOf } = layout(image);
      const many = entryOf('MANY       ');
      const first = dv.getUint16(many + 26, true) + dv.getUint16(many + 20, true) * 0x10000;
      const second = dv.getUint32(fat + first * 4, true) & 0x0fffffff;
      dv.setUint32(fat + second * 4, first, true);
      expect(await outcome(image, (v) => v.list('/many'))).toMatch(/^E_BAD_IMAGE.*loops/);
      const past = images.get('FAT32')!.slice();
      const l = layout(past);
      l.dv.setUint16(l.entryOf('BIG     BIN') + 20, 0x0fff, true);
      expect(await outcome(past, (v) => v.readFile('/big.bin', 4 << 20))).toMatch(/^E_BAD_IMAGE.*outside the volume/);
    });

    it.skipIf(!HAVE_TOOLS)('BPB fields zero or huge: a VerityError naming the field, never a hang', async () => {
      const base = images.get('FAT16')!;
      const fields: Array<[keyof typeof FAT_BPB.fields, number, RegExp]> = [
        ['bytsPerSec', 0, /BytsPerSec/],
        ['bytsPerSec', 0xffff, /BytsPerSec/],
        ['secPerClus', 0, /SecPerClus/],
        ['secPerClus', 3, /SecPerClus/],
        ['rsvdSecCnt', 0, /RsvdSecCnt/],
        ['rsvdSecCnt', 0xffff, /E_/],
        ['numFats', 0, /NumFATs/],
        ['numFats', 0xff, /E_|ok/],
        ['rootEntCnt', 0, /root directory entries/],
        ['rootEntCnt', 0xffff, /E_|ok/],
        ['totSec16', 0, /E_/],
        ['totSec32', 0xffffffff, /E_|ok/], // ignored: BPB_TotSec16 holds the count of this 16 MiB volume
        ['fatSz16', 0, /E_/],
        ['fatSz16', 0xffff, /E_/],
      ];
      for (const [name, value, expected] of fields) {
        const image = base.slice();
        const { offset, field } = FAT_BPB.fields[name];
        (field as { put(b: Uint8Array, o: number, v: number): void }).put(image, offset, value);
        const r = await outcome(image, async (v) => {
          for (const p of ['/big.bin', '/loader/entries/linux.conf']) await v.readFile(p, 4 << 20);
          await v.list('/many');
        });
        expect(r, `${name} = ${value}`).toMatch(expected);
        if (expected.source !== 'E_|ok') expect(r, `${name} = ${value}`).not.toBe('ok');
      }
    });

    it.skipIf(!HAVE_TOOLS)('FAT32 fields zero or huge: the sector count, the FAT size, the root cluster, the version', async () => {
      const base = images.get('FAT32')!;
      const edits: Array<[string, number, number, number, RegExp]> = [
        ['BPB_TotSec32', 32, 4, 0xffffffff, /^E_BAD_IMAGE.*more than FAT32 can number/],
        ['BPB_TotSec32', 32, 4, 0, /^E_BAD_IMAGE.*sector count/],
        ['BPB_FATSz32', 36, 4, 0, /^E_BAD_IMAGE.*FAT size/],
        ['BPB_FATSz32', 36, 4, 0xffffffff, /^E_BAD_IMAGE/],
        ['BPB_RootClus', 44, 4, 0, /^E_BAD_IMAGE.*RootClus/],
        ['BPB_RootClus', 44, 4, 0x0ffffff0, /^E_BAD_IMAGE.*RootClus/],
        ['BPB_FSVer', 42, 2, 0x0100, /^E_UNSUPPORTED/],
        ['BPB_ExtFlags', 40, 2, 0x008f, /^E_BAD_IMAGE.*active/],
      ];
      for (const [name, at, size, value, expected] of edits) {
        const image = base.slice();
        const dv = new DataView(image.buffer);
        if (size === 4) dv.setUint32(at, value, true);
        else dv.setUint16(at, value, true);
        expect(await outcome(image, (v) => v.list('/')), `${name} = ${value}`).toMatch(expected);
      }
    });

    it.skipIf(!HAVE_TOOLS)('a volume cut short: E_TRUNCATED when a file reaches past its end', async () => {
      const image = images.get('FAT16')!;
      const r = await outcome(image.subarray(0, 600_000), (v) => v.readFile('/big.bin', 4 << 20));
      expect(r).toMatch(/^E_TRUNCATED/);
      expect((await failure(openFat(bytesSource(image.subarray(0, 100))))).code).toBe('E_TRUNCATED');
    });

    it.skipIf(!HAVE_TOOLS)('random damage to the metadata: a result or a VerityError, quickly', async () => {
      const base = images.get('FAT12')!;
      let seed = 7;
      const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0), seed);
      const metadataEnd = 40_000;
      for (let round = 0; round < 150; round++) {
        const image = base.slice();
        for (let k = 0; k < 1 + (round % 6); k++) image[next() % metadataEnd] = next() & 0xff;
        await outcome(image, async (v) => {
          const walk = async (path: string, depth: number): Promise<void> => {
            const entries = (await v.list(path)) ?? [];
            for (const e of entries.slice(0, 40)) {
              const p = `${path === '/' ? '' : path}/${e.name}`;
              if (e.kind === 'directory' && depth < 16) await walk(p, depth + 1);
              else await v.readFile(p, 2 << 20).catch((err) => {
                if (!(err instanceof VerityError) || err.code === 'E_INTERNAL') throw err;
              });
            }
          };
          await walk('/', 0);
        });
      }
    });
  });
});

describe('FAT structures', () => {
  it('the long-name checksum of the specification', () => {
    // "README  TXT": the rotate-right-and-add of §7.2, worked out by hand.
    const name = new TextEncoder().encode('README  TXT');
    let sum = 0;
    for (const b of name) sum = (((sum & 1) << 7) + (sum >> 1) + b) & 0xff;
    expect(shortNameChecksum(name)).toBe(sum);
  });

  it('decides the FAT type by the cluster count alone', () => {
    const sector = (clusters: number, fat32: boolean) => {
      const s = new Uint8Array(512);
      const dv = new DataView(s.buffer);
      dv.setUint16(11, 512, true);
      s[13] = 1;
      dv.setUint16(14, fat32 ? 32 : 1, true);
      s[16] = 2;
      dv.setUint16(17, fat32 ? 0 : 512, true);
      const fatSz = Math.ceil(((clusters + 2) * 4) / 512);
      if (fat32) dv.setUint32(36, fatSz, true);
      else dv.setUint16(22, fatSz, true);
      dv.setUint32(32, (fat32 ? 32 : 1 + 32) + 2 * fatSz + clusters, true);
      if (fat32) dv.setUint32(44, 2, true);
      return s;
    };
    expect(parseFatBootSector(sector(4084, false), 1 << 30).fatType).toBe(12);
    expect(parseFatBootSector(sector(4085, false), 1 << 30).fatType).toBe(16);
    expect(parseFatBootSector(sector(65524, false), 1 << 30).fatType).toBe(16);
    expect(parseFatBootSector(sector(65525, true), 1 << 30).fatType).toBe(32);
    expect(() => parseFatBootSector(sector(65525, false), 1 << 30)).toThrow(/FAT12\/16 fields set/);
  });
});
