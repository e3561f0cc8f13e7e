/**
 * The initramfs reader against images put together as distributions do, with the real tools: GNU cpio
 * (`-H newc`), gzip, zstd and xz. The trees written here are the oracle. Hostile images are cut, edited or bombs.
 */
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFiles, readInitramfs } from '../../src/boot/initramfs.js';
import { compressionOf } from '../../src/boot/decompress.js';
import { bytesSource } from '../../src/io/source.js';
import { makeData } from '../support/data.js';
import { failure } from '../support/sources.js';
import { findTool } from '../support/tools.js';

const CPIO = findTool('cpio', '/usr/bin/cpio', '/bin/cpio');
const GZIP = findTool('gzip', '/usr/bin/gzip', '/bin/gzip');
const ZSTD = findTool('zstd', '/usr/bin/zstd');
const XZ = findTool('xz', '/usr/bin/xz', '/bin/xz');
const skipReason = (...tools: Array<[string | null, string]>) => {
  const missing = tools.filter(([path]) => !path).map(([, name]) => name);
  return missing.length ? ` [SKIPPED: ${missing.join(', ')} not installed]` : '';
};
const NEEDS_CPIO = skipReason([CPIO, 'cpio']);

const text = (s: string) => new TextEncoder().encode(s);
const random = (n: number, seed: number) => makeData({ blocks: n, blockSize: 1, tailBytes: 0, fill: 'random', seed });
const same = (a: Uint8Array | undefined, b: Uint8Array) => !!a && a.length === b.length && Buffer.compare(a, b) === 0;
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};

/** The main archive's tree, as dracut lays one out (and a 1 MiB file, an empty one, deep names). */
const MAIN: Record<string, Uint8Array> = {
  'etc/cmdline.d/90-verity.conf': text('systemd.verity_root_data=/dev/sda2 roothash=00ff\n'),
  'etc/os-release': text('ID=main\n'),
  'usr/lib/modules/6.1/modules.dep': random(1 << 20, 3),
  'usr/lib/empty': new Uint8Array(0),
  'init': text('#!/bin/sh\nexec /sbin/init\n'),
  'a/b/c/d/e/f/deep.txt': text('deep\n'),
};
/** The early (microcode) archive. */
const EARLY: Record<string, Uint8Array> = {
  'kernel/x86/microcode/GenuineIntel.bin': random(70_000, 4),
};

function writeTree(root: string, files: Record<string, Uint8Array>): void {
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), data);
  }
}

function run(tool: string, args: string[], input: Uint8Array, cwd?: string): Uint8Array {
  const r = spawnSync(tool, args, { input, cwd, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${r.stderr}`);
  return new Uint8Array(r.stdout);
}

/** `find . | cpio -o -H <format>` in `dir`. */
function cpioOf(dir: string, format: 'newc' | 'crc' = 'newc'): Uint8Array {
  const list = spawnSync('find', ['.'], { cwd: dir, encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
  return run(CPIO!, ['-o', '--quiet', '-H', format], text(`${list.join('\n')}\n`), dir);
}

const gzip = (b: Uint8Array) => run(GZIP!, ['-c', '-n', '-6'], b);
const zstd = (b: Uint8Array, ...args: string[]) => run(ZSTD!, ['-c', '-q', ...args], b);
const xz = (b: Uint8Array, ...args: string[]) => run(XZ!, ['-c', '-3', ...args], b);

function expectTree(files: Map<string, Uint8Array>, tree: Record<string, Uint8Array>): void {
  for (const [name, data] of Object.entries(tree)) expect(same(files.get(name), data), name).toBe(true);
}

describe('the gzip decoder', () => {
  it('is not DecompressionStream, which cannot say where a gzip member ends', async () => {
    // A member followed by other data, as in an initramfs where an uncompressed archive follows a gzip'd one. Node's
    // DecompressionStream drops what follows the member without a word (and joins a following member to it); the
    // Compression Streams spec, which browsers follow, throws on it. Either way the bytes after the member are lost.
    const bytes = concat(gzipSync(text('first member')), text('070701 an uncompressed archive...'));
    const out = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip')))
      .arrayBuffer()
      .then((b) => new TextDecoder().decode(b), (e: Error) => `error: ${e.message}`);
    expect(out === 'first member' || out.startsWith('error')).toBe(true);
  });
});

describe(`initramfs images${NEEDS_CPIO}`, () => {
  let dir = '';
  let main: Uint8Array = new Uint8Array(0);
  let early: Uint8Array = new Uint8Array(0);

  beforeAll(() => {
    if (!CPIO) return;
    dir = mkdtempSync(join(tmpdir(), 'initramfs-test-'));
    writeTree(join(dir, 'main'), MAIN);
    symlinkSync('usr/lib', join(dir, 'main', 'lib'));
    writeFileSync(join(dir, 'main', 'usr/lib/hard-1'), text('linked data\n'));
    linkSync(join(dir, 'main', 'usr/lib/hard-1'), join(dir, 'main', 'usr/lib/hard-2'));
    writeTree(join(dir, 'early'), EARLY);
    writeTree(join(dir, 'over'), { 'etc/os-release': text('ID=override\n') });
    main = cpioOf(join(dir, 'main'));
    early = cpioOf(join(dir, 'early'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!CPIO)('a single uncompressed archive', async () => {
    const r = await readInitramfs(bytesSource(main));
    expectTree(r.files, MAIN);
    expect(r.symlinks.get('lib')).toBe('usr/lib');
    expect(r.others.get('usr/lib/modules')).toBe('directory');
    expect(r.segments).toEqual([expect.objectContaining({ offset: 0, length: main.length, compression: 'none', archives: 1 })]);
  });

  it.skipIf(!CPIO)('hard links: every name has the data, whichever name is asked for', async () => {
    for (const name of ['usr/lib/hard-1', 'usr/lib/hard-2']) {
      const files = await findFiles(bytesSource(main), (n) => n === name);
      expect([...files.keys()]).toEqual([name]);
      expect(files.get(name)).toEqual(text('linked data\n'));
    }
  });

  it.skipIf(!CPIO)('keeps only the files asked for', async () => {
    const files = await findFiles(bytesSource(main), (n) => n.startsWith('etc/'));
    expect([...files.keys()].sort()).toEqual(['etc/cmdline.d/90-verity.conf', 'etc/os-release']);
  });

  it.skipIf(!CPIO || !GZIP)(`the dracut layout: an uncompressed early archive, then a gzip'd one${skipReason([GZIP, 'gzip'])}`, async () => {
    const image = concat(early, gzip(main));
    const r = await readInitramfs(bytesSource(image));
    expectTree(r.files, { ...EARLY, ...MAIN });
    expect(r.segments.map((s) => s.compression)).toEqual(['none', 'gzip']);
    expect(r.segments[1]).toMatchObject({ offset: early.length, length: image.length - early.length, cpioBytes: main.length });
  });

  it.skipIf(!CPIO || !GZIP)(`multi-member gzip: members unpacked in order, later names replacing earlier ones${skipReason([GZIP, 'gzip'])}`, async () => {
    const replaced = cpioOf(join(dir, 'over'));
    const image = concat(gzip(main), gzip(early), gzip(replaced));
    const r = await readInitramfs(bytesSource(image));
    expectTree(r.files, { ...MAIN, ...EARLY, 'etc/os-release': text('ID=override\n') });
    expect(r.segments.map((s) => s.compression)).toEqual(['gzip', 'gzip', 'gzip']);
  });

  it.skipIf(!CPIO || !ZSTD)(`zstd, one frame and several${skipReason([ZSTD, 'zstd'])}`, async () => {
    const one = await readInitramfs(bytesSource(concat(early, zstd(main, '-12'))));
    expectTree(one.files, { ...EARLY, ...MAIN });
    const frames = concat(zstd(early), new Uint8Array(3), zstd(main, '--no-check', '-1'));
    const r = await readInitramfs(bytesSource(frames));
    expectTree(r.files, { ...EARLY, ...MAIN });
    expect(r.segments.map((s) => s.compression)).toEqual(['zstd', 'zstd']);
  });

  it.skipIf(!CPIO || !XZ)(`xz, with CRC64 (the default) and CRC32 (what the kernel documents)${skipReason([XZ, 'xz'])}`, async () => {
    for (const check of ['crc64', 'crc32']) {
      const image = concat(early, xz(main, '-C', check));
      const r = await readInitramfs(bytesSource(image));
      expectTree(r.files, { ...EARLY, ...MAIN });
      expect(r.segments.map((s) => s.compression)).toEqual(['none', 'xz']);
    }
  });

  it.skipIf(!CPIO || !GZIP || !ZSTD || !XZ)(`a concatenation of every kind, with padding between (ukify)${skipReason([GZIP, 'gzip'], [ZSTD, 'zstd'], [XZ, 'xz'])}`, async () => {
    const pad = (b: Uint8Array) => concat(b, new Uint8Array((4 - (b.length % 4)) % 4 + 8));
    const image = concat(pad(xz(early)), pad(zstd(main)), pad(gzip(early)), early, pad(xz(main)));
    const r = await readInitramfs(bytesSource(image));
    expectTree(r.files, { ...EARLY, ...MAIN });
    expect(r.segments.map((s) => s.compression)).toEqual(['xz', 'zstd', 'gzip', 'none', 'xz']);
  });

  it.skipIf(!CPIO)('070702 (crc) archives', async () => {
    const r = await readInitramfs(bytesSource(cpioOf(join(dir, 'main'), 'crc')));
    expectTree(r.files, MAIN);
  });

  describe('hostile images', () => {
    it.skipIf(!CPIO || !GZIP)('a truncated gzip stream or archive: E_TRUNCATED', async () => {
      const gz = gzip(main);
      for (const cut of [5, 30, gz.length >> 1, gz.length - 4]) {
        const f = await failure(readInitramfs(bytesSource(gz.subarray(0, cut))));
        expect(f.code, `cut at ${cut}`).toBe('E_TRUNCATED');
      }
      const f = await failure(readInitramfs(bytesSource(main.subarray(0, main.length - 700))));
      expect(f.code).toBe('E_TRUNCATED');
      // An archive cut short inside a compressed stream that is itself whole.
      const g = await failure(readInitramfs(bytesSource(gzip(main.subarray(0, 5000)))));
      expect(g.code).toBe('E_TRUNCATED');
    });

    it.skipIf(!GZIP)('a gzip bomb (100 MiB of zeros) stops at the limit, quickly and without holding its output', async () => {
      const bomb = run(GZIP!, ['-c', '-9'], new Uint8Array(100 << 20));
      expect(bomb.length).toBeLessThan(200_000);
      const before = process.memoryUsage().arrayBuffers;
      const start = Date.now();
      const f = await failure(readInitramfs(bytesSource(bomb), { maxExpandedBytes: 16 << 20 }));
      expect(f.code).toBe('E_UNSUPPORTED');
      expect(f.message).toMatch(/expands to more than 16777216 bytes/);
      expect(Date.now() - start).toBeLessThan(5000);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20);
    });

    it.skipIf(!CPIO || !ZSTD)('a zstd bomb and a window above the limit', async () => {
      const bomb = zstd(new Uint8Array(64 << 20), '-19');
      expect((await failure(readInitramfs(bytesSource(bomb), { maxExpandedBytes: 1 << 20 }))).code).toBe('E_UNSUPPORTED');
      const long = zstd(main, '--long=27', '--no-content-size');
      const f = await failure(readInitramfs(bytesSource(long), { maxWindowBytes: 8 << 20 }));
      expect(f).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/window/) });
    });

    it.skipIf(!CPIO)('a wanted file above maxFileBytes is refused before its data is read', async () => {
      const f = await failure(findFiles(bytesSource(main), () => true, { maxFileBytes: 1000 }));
      expect(f).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/modules.dep.*1048576 bytes/) });
      const files = await findFiles(bytesSource(main), (n) => n.startsWith('etc/'), { maxFileBytes: 1000 });
      expect(files.size).toBe(2);
      const t = await failure(findFiles(bytesSource(main), () => true, { maxTotalBytes: 100_000 }));
      expect(t.message).toMatch(/more than the 100000 bytes/);
    });

    it.skipIf(!CPIO || !GZIP)('garbage after the trailer, outside and inside a compressed stream', async () => {
      const outside = await failure(readInitramfs(bytesSource(concat(main, text('GARBAGE!')))));
      expect(outside).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/Junk in the initramfs at offset/) });
      const inside = await failure(readInitramfs(bytesSource(gzip(concat(main, text('GARBAGE!'))))));
      expect(inside).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/Junk within the initramfs gzip stream/) });
    });

    it.skipIf(!CPIO || !GZIP)('a corrupt gzip stream: E_BAD_IMAGE (deflate error or CRC)', async () => {
      const gz = gzip(main);
      const crc = gz.slice();
      crc[crc.length - 6]! ^= 0xff;
      expect(await failure(readInitramfs(bytesSource(crc)))).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/CRC32/) });
      const body = gz.slice();
      for (let i = 40; i < 200; i++) body[i] = 0xff;
      expect((await failure(readInitramfs(bytesSource(body)))).code).toMatch(/E_BAD_IMAGE|E_TRUNCATED/);
    });

    it('compressions the kernel knows but this reader does not: E_UNSUPPORTED; anything else is junk', async () => {
      for (const [magic, name] of [[[0x42, 0x5a, 0x68], 'bzip2'], [[0x02, 0x21, 0x4c, 0x18], 'lz4'], [[0x5d, 0, 0, 0x80], 'lzma'], [[0x89, 0x4c, 0x5a, 0x4f], 'lzo']] as const) {
        expect(compressionOf(new Uint8Array(magic))).toBe(name);
        const f = await failure(readInitramfs(bytesSource(concat(new Uint8Array(magic), new Uint8Array(64)))));
        expect(f).toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringContaining(name) });
      }
      expect((await failure(readInitramfs(bytesSource(text('hello world'))))).code).toBe('E_BAD_IMAGE');
      // A cpio header must start on a multiple of 4.
      expect((await failure(readInitramfs(bytesSource(concat(new Uint8Array(1), text('070701')))))).message).toMatch(/multiple of 4/);
    });

    it.skipIf(!CPIO || !XZ || !ZSTD)('truncated or corrupt xz and zstd streams', async () => {
      const x = xz(main);
      for (const cut of [6, 20, x.length >> 1, x.length - 1]) {
        expect((await failure(readInitramfs(bytesSource(x.subarray(0, cut))))).code, `xz cut at ${cut}`).toMatch(/E_TRUNCATED|E_BAD_IMAGE/);
      }
      const z = zstd(main);
      for (const cut of [3, 10, z.length >> 1, z.length - 1]) {
        expect((await failure(readInitramfs(bytesSource(z.subarray(0, cut))))).code, `zstd cut at ${cut}`).toMatch(/E_TRUNCATED|E_BAD_IMAGE/);
      }
      const bad = x.slice();
      for (let i = 100; i < 300; i++) bad[i] = 0x55;
      expect((await failure(readInitramfs(bytesSource(bad)))).code).toMatch(/E_BAD_IMAGE|E_TRUNCATED/);
      // A later xz read still works: a failed decoder does not hold xz-decompress's lock.
      expectTree((await readInitramfs(bytesSource(x))).files, MAIN);
    });

    it.skipIf(!CPIO || !GZIP || !XZ || !ZSTD)('random damage to gzip, zstd and xz streams: a result or a VerityError, quickly', async () => {
      const streams = { gzip: gzip(early), zstd: zstd(early), xz: xz(early) };
      let seed = 11;
      const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed);
      const outcomes = new Map<string, number>();
      for (const [kind, stream] of Object.entries(streams)) {
        for (let round = 0; round < 120; round++) {
          let image = stream.slice();
          for (let k = 0; k <= round % 3; k++) image[next() % image.length]! ^= 1 << (next() % 8);
          if (round % 5 === 0) image = image.subarray(0, next() % image.length);
          const start = Date.now();
          let outcome = 'ok';
          try {
            await readInitramfs(bytesSource(image), { maxExpandedBytes: 8 << 20, maxWindowBytes: 8 << 20 });
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (!code || code === 'E_INTERNAL') throw e;
            outcome = code;
          }
          expect(Date.now() - start, `${kind} round ${round}`).toBeLessThan(3000);
          outcomes.set(`${kind} ${outcome}`, (outcomes.get(`${kind} ${outcome}`) ?? 0) + 1);
        }
      }
      // Damage is found, in the data too: gzip's CRC32, zstd's XXH64 content checksum, xz's CRC64.
      for (const kind of Object.keys(streams)) expect(outcomes.get(`${kind} E_BAD_IMAGE`) ?? 0, kind).toBeGreaterThan(10);
      expectTree((await readInitramfs(bytesSource(concat(early, streams.xz)))).files, EARLY);
    });
  });
});
