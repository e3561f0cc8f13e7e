/**
 * Shared helpers for the process-level benchmarks (bench/rss.ts, bench/e2e.ts): run a command, measure its wall time
 * and peak RSS, find the tools, keep statistics honest (medians), and print tables.
 *
 * Peak RSS comes from GNU time (`/usr/bin/time -f '%M'`, the child's ru_maxrss in KiB) when it is installed
 * (`apt-get install -y time`). Without it: Node children get a preload that records `process.resourceUsage().maxRSS`
 * at exit; other children are sampled through /proc/<pid>/status VmHWM (a lower bound, sampled every few ms).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The one veritysetup finder, shared with the tests (bench/rss.ts and bench/e2e.ts import it from here). */
export { findVeritysetup } from '../test/support/veritysetup-bin.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
export const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/** Fixed salt and UUID so veritysetup and verity write byte-identical hash files (checked by the benches). */
export const SALT = '5c0d6a1e3f4b2a7988e0f1d2c3b4a5968778695a4b3c2d1e0f1e2d3c4b5a6978';
export const UUID = '2b9c6f0e-8d1a-4c3b-9e7f-5a6b7c8d9e0f';

/** Exits with a message unless dist/ is built and not older than src/. */
export function requireBuiltCli(): void {
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run \`npm run build\` (npx tsc -p tsconfig.json) first.`);
    process.exit(1);
  }
  const newest = spawnSync('find', [join(ROOT, 'src'), '-newer', CLI, '-name', '*.ts'], { encoding: 'utf8' }).stdout.trim();
  if (newest) console.warn(`warning: dist/ is older than ${newest.split('\n')[0]} (and maybe more): run \`npm run build\` for current figures.`);
}

export interface Measured {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time in seconds (hrtime around the child, so includes process start-up). */
  wall: number;
  /** Peak resident set size in KiB. */
  maxRssKiB: number;
}

const NODE_PRELOAD =
  'data:text/javascript,' +
  encodeURIComponent(
    `import { writeFileSync } from 'node:fs';
     process.on('exit', () => { try { writeFileSync(process.env.BENCH_RSS_FILE, String(process.resourceUsage().maxRSS)); } catch {} });`,
  );

let seq = 0;

/** Runs `command args` to completion and measures it. */
export async function measure(command: string, args: readonly string[], scratchDir: string): Promise<Measured> {
  const rssFile = join(scratchDir, `.rss-${process.pid}-${seq++}`);
  let argv: string[];
  let env = process.env;
  let poll = false;
  if (GNU_TIME) argv = [GNU_TIME, '-f', '%M %e', '-o', rssFile, command, ...args];
  else if (command === process.execPath) {
    argv = [command, '--import', NODE_PRELOAD, ...args];
    env = { ...process.env, BENCH_RSS_FILE: rssFile };
  } else {
    argv = [command, ...args];
    poll = true;
  }
  const start = process.hrtime.bigint();
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let polledKiB = 0;
  const timer = poll
    ? setInterval(() => {
        try {
          const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          if (m) polledKiB = Math.max(polledKiB, Number(m[1]));
        } catch {
          /* exited */
        }
      }, 5)
    : null;
  const code = await new Promise<number | null>((res, rej) => {
    child.on('error', rej);
    child.on('close', (c) => res(c));
  });
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  if (timer) clearInterval(timer);
  let maxRssKiB = polledKiB;
  if (!poll) {
    const text = existsSync(rssFile) ? readFileSync(rssFile, 'utf8').trim() : '';
    rmSync(rssFile, { force: true });
    // GNU time writes "Command exited with non-zero status N" first when the command fails: take the last line.
    maxRssKiB = Number(text.split('\n').pop()?.split(' ')[0] ?? NaN);
  }
  return { code, stdout, stderr, wall, maxRssKiB };
}

export function rssMethod(): string {
  return GNU_TIME
    ? `${GNU_TIME} -f %M (ru_maxrss)`
    : 'no /usr/bin/time (apt-get install -y time): Node children report process.resourceUsage().maxRSS, others are sampled from /proc VmHWM';
}

/** Root hash from the "Root hash:" line both tools print. */
export function rootHashOf(stdout: string): string {
  const m = /^Root hash:\s+([0-9a-f]+)$/m.exec(stdout);
  if (!m) throw new Error(`no root hash in output:\n${stdout}`);
  return m[1]!;
}

export function check(m: Measured, what: string): Measured {
  if (m.code !== 0) throw new Error(`${what} exited ${m.code}:\n${m.stderr || m.stdout}`);
  return m;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function parseBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}" (e.g. 1073741824, 512M, 1G)`);
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 2 ** 10 : unit === 'm' ? 2 ** 20 : unit === 'g' ? 2 ** 30 : unit === 't' ? 2 ** 40 : 1;
  return Math.round(Number(m[1]) * mult);
}

export function humanBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} B`;
}

export const mib = (kib: number) => kib / 1024;

/** A temporary directory removed on exit, Ctrl-C included. */
export function scratchDir(prefix: string): string {
  const base = process.env.VERITY_BENCH_DIR ?? tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  return dir;
}

export function sameFileContents(a: string, b: string): boolean {
  if (statSync(a).size !== statSync(b).size) return false;
  return spawnSync('cmp', ['-s', a, b]).status === 0;
}

/** A Markdown table with the first `leftColumns` columns left-aligned and the rest right-aligned. */
export function table(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < leftColumns ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export function machine(): string {
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? 'unknown CPU';
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)?.length ?? 0;
  return `node ${process.version}, ${cores} × ${cpu}`;
}

/** Reads a whole file once, so that the timed runs find it in the page cache (holes of sparse files included). */
export function readWhole(path: string): void {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 << 20);
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/** `--name` flags and `--name value` options of this script's command line. */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)) {
  return {
    flag: (name: string) => argv.includes(name),
    option: (name: string, def: string) => {
      const i = argv.indexOf(name);
      return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : def;
    },
  };
}

/**
 * Writes `length` bytes of AES-128-CTR keystream at `position` of `fd`, continuing `cipher`: fast, incompressible,
 * never a zero block, and the same bytes on every build for the same key.
 */
export function writeKeystream(fd: number, cipher: ReturnType<typeof keystream>, position: number, length: number): void {
  const zeros = Buffer.alloc(Math.min(length, 16 << 20));
  for (let done = 0; done < length; ) {
    const n = Math.min(zeros.length, length - done);
    done += writeSync(fd, cipher.update(zeros.subarray(0, n)), 0, n, position + done);
  }
}

/** An AES-128-CTR keystream whose key is derived from `label` (fixed IV). */
export function keystream(label: string) {
  return createCipheriv('aes-128-ctr', createHash('sha256').update(label).digest().subarray(0, 16), Buffer.alloc(16));
}
