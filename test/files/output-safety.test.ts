/**
 * Interrupting a format at any moment leaves the previous output or none, never a hash device that looks valid but
 * is not; and no command ever changes its inputs.
 *
 * The kill tests run the built CLI as a child process on a data file big enough to take a good fraction of a second,
 * measure one whole run, then kill runs at moments spread over that time (SIGKILL: no handler runs; SIGINT: ours
 * does). After each kill the destination must be in one of the states the protocol allows.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILT_CLI, spawnBuiltCli } from '../support/cli-harness.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { findTool } from '../support/tools.js';

const dir = tempDirPerTest('verity-output-safety-');
const UUID = '0c2a7e1f-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
/** Fixed UUID and salt: two formats of the same data are then byte-identical. */
const FIXED = [`--uuid=${UUID}`, `--salt=${'5a'.repeat(32)}`];
const DATA_MIB = 96;

interface Killed {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Milliseconds from spawn to the signal. */
  at: number;
}

/**
 * Runs `verity argv…` and sends `signal` after `when` ms, or as soon as `when()` holds (polled), if it is still
 * running then.
 */
function runAndKill(argv: readonly string[], signal: NodeJS.Signals, when: number | (() => boolean)): Promise<Killed> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [BUILT_CLI, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer =
      typeof when === 'number'
        ? setTimeout(() => child.kill(signal), when)
        : setInterval(() => {
            if (!when()) return;
            child.kill(signal);
            clearInterval(timer);
          }, 2);
    child.on('error', reject);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve({ code, signal: sig, stderr, at: Date.now() - started });
    });
  });
}

/** The temporary file a format is writing for `destination` (named `.<destination>.<hex>.tmp`), or null. */
function temporaryFor(destination: string): { path: string; size: number } | null {
  const directory = dirname(destination);
  const name = readdirSync(directory).find((n) => n.startsWith(`.${basename(destination)}.`) && n.endsWith('.tmp'));
  if (!name) return null;
  try {
    return { path: join(directory, name), size: statSync(join(directory, name)).size };
  } catch {
    return null; // renamed or removed between the listing and the stat
  }
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Milliseconds of one full `verity argv…` run, so kills can be spread across it. */
function timeRun(argv: readonly string[]): number {
  const started = Date.now();
  const run = spawnBuiltCli(argv);
  expect(run.code, run.stderr).toBe(0);
  return Date.now() - started;
}

/** Kill moments from the very start to just before the end of a run of `total` ms. */
function moments(total: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.round(((i + 0.5) / count) * total * 0.95));
}

function rootOf(dataPath: string, hashPath: string, extra: readonly string[] = []): string {
  const run = spawnBuiltCli(['verify', dataPath, hashPath, '0'.repeat(64), '--json', ...extra]);
  return JSON.parse(run.stdout).rootHash.actual as string;
}

// The kill -9 tests hold on Windows too: there Node's kill() ends a process with TerminateProcess, whatever the
// signal, which like SIGKILL runs no handler, and the child's exit still reports the signal it was sent (checked
// with Node 22 under Wine). The SIGINT tests pin our handler, which a signal from another process reaches on POSIX
// systems only: on Windows, kill('SIGINT') is TerminateProcess as well, and Ctrl-C reaches the handler only through
// a console the two processes share (GenerateConsoleCtrlEvent), which a test cannot set up portably.
const POSIX_SIGNALS = process.platform !== 'win32';
const NEEDS_POSIX_SIGNALS = POSIX_SIGNALS ? '' : " [SKIPPED on Windows: kill('SIGINT') terminates the process, no handler runs]";

describe('interrupting format', () => {
  it(`kill -9 at any moment of a format to a new file leaves no destination (only a stray temporary) or the complete one`, async () => {
    const data = join(dir(), 'data.img');
    const hash = join(dir(), 'hash.img');
    writeFileSync(data, randomBytes(DATA_MIB << 20));
    const total = timeRun(['format', data, hash, ...FIXED]);
    const complete = sha256(hash);
    // Moments spread over a run, plus two that a loaded machine cannot miss: the temporary exists, it holds bytes.
    const triggers: (number | (() => boolean))[] = [
      () => temporaryFor(hash) !== null,
      () => (temporaryFor(hash)?.size ?? 0) > 0,
      ...moments(total, 5),
    ];
    let interrupted = 0;
    for (const when of triggers) {
      rmSync(hash, { force: true });
      const k = await runAndKill(['format', data, hash, ...FIXED], 'SIGKILL', when);
      if (k.signal === 'SIGKILL' && !existsSync(hash)) interrupted++;
      // Killed before the rename: no destination. After it (the run was exiting), or not killed: the complete file.
      if (existsSync(hash)) expect(sha256(hash), `killed at ${k.at} ms`).toBe(complete);
    }
    expect(interrupted, 'the kills on file states landed before the rename').toBeGreaterThanOrEqual(2);
    // kill -9 runs no handler: what remains is dot-named temporaries, which no command reads as a hash device (and
    // the destination if the last run finished).
    for (const name of readdirSync(dir())) expect(name).toMatch(/^(data\.img|hash\.img|\.hash\.img\.[0-9a-f]{12}\.tmp)$/);
  });

  it.skipIf(!POSIX_SIGNALS)(`Ctrl-C (SIGINT) during a format to a new file exits 130, removes the temporary and leaves no destination${NEEDS_POSIX_SIGNALS}`, async () => {
    const data = join(dir(), 'data.img');
    const hash = join(dir(), 'hash.img');
    const rootFile = join(dir(), 'root.hex');
    writeFileSync(data, randomBytes(DATA_MIB << 20));
    for (const when of [() => temporaryFor(hash) !== null, () => (temporaryFor(hash)?.size ?? 0) > 0]) {
      const k = await runAndKill(['format', data, hash, `--root-hash-file=${rootFile}`], 'SIGINT', when);
      expect(k.code, k.stderr).toBe(130);
      expect(k.stderr).toContain('interrupted; no output was left behind');
      expect(readdirSync(dir()).sort(), `interrupted at ${k.at} ms`).toEqual(['data.img']);
    }
  });

  it('kill -9 during an in-place format of an existing hash file: the old tree, no superblock, or the new tree', async () => {
    // An existing hash file is updated in place, as veritysetup does (it keeps the file's other bytes). Our order:
    // clear the superblock (synced), write the tree, write the superblock. So a verify after any kill either finds
    // the old image intact, finds no superblock, or finds the new image complete; never a superblock over a partial
    // tree.
    const oldData = join(dir(), 'old.img');
    const newData = join(dir(), 'new.img');
    const hash = join(dir(), 'hash.img');
    writeFileSync(oldData, randomBytes(DATA_MIB << 20));
    writeFileSync(newData, randomBytes(DATA_MIB << 20));
    const fresh = () => {
      rmSync(hash, { force: true });
      expect(spawnBuiltCli(['format', oldData, hash, ...FIXED]).code).toBe(0);
    };
    fresh();
    const oldRoot = rootOf(oldData, hash);
    const oldBytes = sha256(hash);
    const total = timeRun(['format', newData, hash, ...FIXED]);
    const newRoot = rootOf(newData, hash);
    const states = new Set<string>();
    // Moments spread over a run, and one a loaded machine cannot miss: just after the old superblock was cleared.
    const cleared = () => readFileSync(hash).subarray(0, 8).every((b) => b === 0);
    for (const when of [cleared, ...moments(total, 7)]) {
      fresh();
      const k = await runAndKill(['format', newData, hash, ...FIXED], 'SIGKILL', when);
      const dump = spawnBuiltCli(['dump', hash]);
      let state: string;
      if (dump.code !== 0) {
        expect(dump.stderr, `killed at ${k.at} ms`).toMatch(/No VERITY signature/);
        state = 'no superblock';
      } else if (sha256(hash) === oldBytes) {
        state = 'old';
      } else {
        // A superblock is present and the file changed: it must be the new tree, complete.
        expect(spawnBuiltCli(['verify', newData, hash, newRoot]).code, `killed at ${k.at} ms`).toBe(0);
        state = 'new';
      }
      if (state === 'old') expect(spawnBuiltCli(['verify', oldData, hash, oldRoot]).code).toBe(0);
      states.add(state);
    }
    expect(states.has('no superblock'), `states seen: ${[...states].join(', ')}`).toBe(true);
  });

  it.skipIf(!POSIX_SIGNALS)(`SIGINT during an in-place format says the file is incomplete, and the superblock is gone${NEEDS_POSIX_SIGNALS}`, async () => {
    const data = join(dir(), 'data.img');
    const hash = join(dir(), 'hash.img');
    writeFileSync(data, randomBytes(DATA_MIB << 20));
    expect(spawnBuiltCli(['format', data, hash, ...FIXED]).code).toBe(0);
    // Interrupt once the in-place update has visibly begun (the old superblock is cleared first).
    const k = await runAndKill(['format', data, hash, ...FIXED], 'SIGINT', () => readFileSync(hash).subarray(0, 8).every((b) => b === 0));
    expect(k.code, k.stderr).toBe(130);
    expect(k.stderr).toContain(`interrupted while updating ${hash} in place`);
    expect(spawnBuiltCli(['dump', hash]).stderr).toMatch(/No VERITY signature/);
  });
});

// ---------------------------------------------------------------------------------------------------------------------

const zipTool = findTool('zip');
const qemuImg = findTool('qemu-img');

/** Content hash and modification time of each file: what "never modified" means, observably. */
function fingerprint(paths: readonly string[]): Record<string, string> {
  return Object.fromEntries(paths.map((p) => [p, `${sha256(p)} ${statSync(p).mtimeMs}`]));
}

describe('inputs are never modified', () => {
  it(`format, verify (clean, corrupt, one file, JSON), dump and inspect leave every input byte and mtime as they were${zipTool && qemuImg ? '' : ' (zip or qemu-img absent: raw files only)'}`, () => {
    const data = join(dir(), 'data.img');
    const hash = join(dir(), 'hash.img');
    const bad = join(dir(), 'bad.img');
    const combined = join(dir(), 'combined.img');
    const blocks = 300;
    const content = randomBytes(blocks * 4096);
    writeFileSync(data, content);
    const f = spawnBuiltCli(['format', data, hash, ...FIXED, '--json']);
    expect(f.code, f.stderr).toBe(0);
    const root = JSON.parse(f.stdout).rootHash as string;
    const damaged = Buffer.from(content);
    damaged[4096 * 7]! ^= 1;
    writeFileSync(bad, damaged);
    // Data and tree in one file, the tree right after the data: what discovery finds.
    writeFileSync(combined, Buffer.concat([content, readFileSync(hash)]));
    const inputs = [data, hash, bad, combined];
    const commands: string[][] = [
      ['verify', data, hash, root],
      ['verify', bad, hash, root, '--json'],
      ['verify', combined, combined, root, `--hash-offset=${blocks * 4096}`],
      ['verify', data, combined, root, `--hash-offset=${blocks * 4096}`],
      ['dump', hash],
      ['dump', combined, `--hash-offset=${blocks * 4096}`],
      ['inspect', combined, '--json'],
      ['format', data, join(dir(), 'out1.img')],
    ];
    if (zipTool && qemuImg) {
      const vhdx = join(dir(), 'disk.vhdx');
      expect(spawnSync(qemuImg, ['convert', '-O', 'vhdx', combined, vhdx]).status).toBe(0);
      const zip = join(dir(), 'disk.zip');
      expect(spawnSync(zipTool, ['-q', '-j', zip, vhdx, hash], { cwd: dir() }).status).toBe(0);
      inputs.push(vhdx, zip);
      commands.push(
        ['verify', vhdx, vhdx, root, `--hash-offset=${blocks * 4096}`],
        ['verify', `${zip}::disk.vhdx`, `${zip}::hash.img`, root],
        ['inspect', zip],
        ['dump', `${zip}::hash.img`],
        ['format', `${zip}::disk.vhdx`, join(dir(), 'out2.img'), `--data-blocks=${blocks}`],
      );
    }
    const before = fingerprint(inputs);
    for (const argv of commands) {
      const run = spawnBuiltCli(argv);
      expect([0, 2], `${argv.join(' ')}: ${run.stderr}`).toContain(run.code);
      expect(fingerprint(inputs), argv.join(' ')).toEqual(before);
    }
  });
});
