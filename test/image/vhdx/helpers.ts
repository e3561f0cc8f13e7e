/** Helpers shared by the VHDX reader tests in this folder. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { VerityError } from '../../../src/errors.js';
import { openVhdx, type VhdxImage } from '../../../src/image/vhdx/vhdx.js';
import { bytesSource, type ByteSource } from '../../../src/io/source.js';
import type { Built } from '../../support/vhdx-writer.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const FIXTURES = new URL('../../fixtures/vhdx/', import.meta.url);

export function hasCommand(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return !r.error && r.status === 0;
}
export const HAS_BZIP2 = hasCommand('bzip2', ['--help']);
export const HAS_QEMU_IMG = hasCommand('qemu-img', ['--version']);
export const HAS_QEMU_IO = hasCommand('qemu-io', ['--version']);
export const SKIP_BZIP2 = HAS_BZIP2 ? '' : ' [SKIPPED: bzip2 not installed]';
export const SKIP_QEMU = HAS_QEMU_IMG ? '' : ' [SKIPPED: qemu-img not installed]';
export const SKIP_QEMU_IO = HAS_QEMU_IO && HAS_QEMU_IMG ? '' : ' [SKIPPED: qemu-io/qemu-img not installed]';

let work = '';
/** A temporary folder for the calling test file's images, removed after its tests. Call once at the top level. */
export function useWorkDir(): void {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'vhdx-test-'));
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });
}

/** The current test file's temporary folder (see useWorkDir). */
export function workDir(): string {
  return work;
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

/** Every read from `src` is recorded: the largest one bounds what the reader allocated for file structures. */
export function counted(src: ByteSource): { src: ByteSource; stats: { reads: number; largest: number } } {
  const stats = { reads: 0, largest: 0 };
  return {
    stats,
    src: {
      size: src.size,
      read(dst, position) {
        stats.reads++;
        stats.largest = Math.max(stats.largest, dst.length);
        return src.read(dst, position);
      },
    },
  };
}

export async function readAll(img: ByteSource, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const n = await img.read(out, position);
  expect(n).toBe(Math.min(length, Math.max(0, img.size - position)));
  return out.subarray(0, n);
}

/** sha256 of the whole virtual disk, read in 16 MiB requests. */
export async function sha256Of(img: ByteSource): Promise<string> {
  const h = createHash('sha256');
  const buf = new Uint8Array(16 * MiB);
  for (let p = 0; p < img.size; ) {
    const n = await img.read(buf, p);
    expect(n).toBeGreaterThan(0);
    h.update(buf.subarray(0, n));
    p += n;
  }
  return h.digest('hex');
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Offsets of the first and last byte in [from, to) of the virtual disk that differ from `value`, or null. */
export async function findNot(img: ByteSource, value: number, from: number, to: number): Promise<number | null> {
  const buf = new Uint8Array(32 * MiB);
  const ref = Buffer.alloc(buf.length, value);
  for (let p = from; p < to; ) {
    const n = await img.read(buf.subarray(0, Math.min(buf.length, to - p)), p);
    if (Buffer.compare(Buffer.from(buf.buffer, 0, n), ref.subarray(0, n)) !== 0) {
      const i = buf.subarray(0, n).findIndex((b) => b !== value);
      return p + i;
    }
    p += n;
  }
  return null;
}

/** Byte equality without vitest's deep equality, which walks typed arrays key by key (and runs out of memory on MiBs). */
export function expectSame(actual: Uint8Array, expected: Uint8Array, what = 'bytes'): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(b)) return;
  let i = 0;
  while (i < Math.min(a.length, b.length) && a[i] === b[i]) i++;
  expect.fail(`${what}: ${a.length} bytes vs ${b.length} expected; first difference at byte ${i} (${a[i]} vs ${b[i]})`);
}

export async function rejection(p: Promise<unknown>): Promise<VerityError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(VerityError);
  return e as VerityError;
}

export async function expectError(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const e = await rejection(p);
  expect({ code: e.code, message: e.message }).toMatchObject({ code, message: expect.stringMatching(message) });
}

export function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Decompresses a fixture into the work directory with the bzip2 command. */
export function bunzip(name: string): Promise<string> {
  const out = join(work, name.replace(/\.bz2$/, ''));
  return new Promise((resolve, reject) => {
    const fd = openSync(out, 'w');
    const child = spawn('bzip2', ['-dc', new URL(name, FIXTURES).pathname], { stdio: ['ignore', fd, 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += String(d)));
    child.on('error', reject);
    child.on('close', (code) => {
      closeSync(fd);
      if (code === 0) resolve(out);
      else reject(new Error(`bzip2 -dc ${name} failed: ${stderr}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers over the test writer (test/support/vhdx-writer.ts)

/** The 4 KiB page of the file at `offset`, copied. */
export function page(file: Uint8Array, offset: number): Uint8Array {
  return file.slice(offset, offset + 4096);
}

export async function open(bytes: Uint8Array): Promise<VhdxImage> {
  return openVhdx(bytesSource(bytes));
}

/** Compares every block of `img` with the builder's model (present blocks in full, absent ones checked for zeros). */
export async function expectMatchesModel(img: VhdxImage, built: Built, bs: number): Promise<void> {
  const buf = new Uint8Array(bs);
  for (let p = 0; p < img.size; p += bs) {
    const n = await img.read(buf, p);
    const want = built.expected(p, bs);
    expect(n).toBe(want.length);
    if (!Buffer.from(buf.buffer, 0, n).equals(Buffer.from(want.buffer, want.byteOffset, want.length))) {
      throw new Error(`virtual bytes ${p}-${p + n - 1} differ from the model`);
    }
  }
}

/** Writes the built file to disk and reads it with qemu-img (replaying a dirty log on a copy first). */
export function qemuRaw(bytes: Uint8Array, name: string, replay = false): string {
  const vhdx = join(work, `${name}.vhdx`);
  const raw = join(work, `${name}.raw`);
  writeFileSync(vhdx, bytes);
  if (replay) run('qemu-img', ['check', '-r', 'all', '-f', 'vhdx', vhdx]);
  run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', vhdx, raw]);
  return raw;
}

// ---------------------------------------------------------------------------------------------------------------------

/** Writes a sparse raw disk of `size` bytes: random bytes at `spots` ([offset, length], cut at the end), zeros (holes) elsewhere. */
export function writeSparseRaw(path: string, size: number, spots: ReadonlyArray<readonly [number, number]>): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [at, len] of spots) {
      const n = Math.min(len, size - at);
      const data = new Uint8Array(n);
      for (let j = 0; j < n; j += 65536) globalThis.crypto.getRandomValues(data.subarray(j, Math.min(n, j + 65536)));
      writeSync(fd, data, 0, n, at);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}
