/**
 * End-to-end: `verity format` / `verify` (the built CLI, dist/cli/main.js) against `veritysetup format` / `verify` on
 * the same page-cached file, once of random data and once of a file whose blocks are 50% zero (in runs of 1-512
 * blocks, as free space lies in a filesystem). verity runs with its default threads and with `--threads N` for each N
 * of VERITY_BENCH_THREADS (default 1). Runs
 * alternate between the tools (5 each by default); medians are printed with the ratio verity / veritysetup and each
 * tool's peak RSS.
 *
 *   npm run bench:e2e
 *   OPENSSL_ia32cap=":~0x20000000" npm run bench:e2e             # hide SHA extensions from OpenSSL in both tools
 *   VERITY_BENCH_BYTES=256M VERITY_BENCH_RUNS=9 npx tsx bench/e2e.ts
 *   VERITY_BENCH_ARGS='--hash=sha1' npx tsx bench/e2e.ts        # extra tree options for both tools
 *   VERITY_BENCH_FILES=random npx tsx bench/e2e.ts               # random, zero50 or both (default)
 *   VERITY_BENCH_DIR=/dev/shm npx tsx bench/e2e.ts              # where the files go (default: os.tmpdir())
 *   VERITY_BENCH_THREADS=1,2,3,4 npm run bench:e2e              # a `verity --threads N` row per N (scaling)
 *   VERITY_BENCH_THREADS= npm run bench:e2e                     # the default thread count only
 *
 * Both tools get the same salt and UUID; their root hashes and hash files must be identical. Each format writes a
 * fresh hash file (both tools fsync it). The data file is read once before timing so every run hits the page cache.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLI,
  SALT,
  UUID,
  check,
  findVeritysetup,
  humanBytes,
  machine,
  measure,
  median,
  mib,
  parseBytes,
  readWhole,
  requireBuiltCli,
  rootHashOf,
  rssMethod,
  sameFileContents,
  scratchDir,
  table,
  type Measured,
} from './support.js';

const BYTES = parseBytes(process.env.VERITY_BENCH_BYTES ?? '1G');
const RUNS = Number(process.env.VERITY_BENCH_RUNS ?? 5);
const EXTRA = (process.env.VERITY_BENCH_ARGS ?? '').split(/\s+/).filter(Boolean);
const CHUNK = 16 << 20;

/** Random data; with `zeroHalf`, runs of 1-512 zero blocks alternate with runs of random ones (about 50% zero). */
function writeDataFile(path: string, size: number, zeroHalf: boolean): void {
  const fd = openSync(path, 'w');
  let state = 12345;
  const runLength = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return 1 + (state >>> 16) % 512;
  };
  let zero = false;
  let left = runLength();
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let done = 0; done < size; ) {
      const n = Math.min(CHUNK, size - done);
      randomFillSync(buf, 0, n);
      if (zeroHalf) {
        for (let b = 0; b < n; b += 4096) {
          if (zero) buf.fill(0, b, Math.min(n, b + 4096));
          if (--left === 0) {
            zero = !zero;
            left = runLength();
          }
        }
      }
      done += writeSync(fd, buf, 0, n, done);
    }
  } finally {
    closeSync(fd);
  }
}

/** 'veritysetup', 'verity' (default threads) or `verity --threads N`. */
type Tool = string;
type Op = 'format' | 'verify';
const THREADS = (process.env.VERITY_BENCH_THREADS ?? '1').split(',').filter(Boolean).map((n) => {
  const t = Number(n);
  if (!Number.isInteger(t) || t < 1) throw new Error(`VERITY_BENCH_THREADS: "${n}" is not a thread count`);
  return t;
});
const TOOLS: Tool[] = ['veritysetup', 'verity', ...THREADS.map((n) => `verity --threads ${n}`)];
const FILES = (process.env.VERITY_BENCH_FILES ?? 'random,zero50').split(',');

async function main(): Promise<void> {
  requireBuiltCli();
  const veritysetup = findVeritysetup();
  if (!veritysetup) {
    console.error('bench/e2e.ts needs veritysetup (not found; set VERITYSETUP=/path).');
    process.exit(1);
  }
  const dir = scratchDir('verity-e2e-');
  console.log(machine());
  const masked = process.env.OPENSSL_ia32cap ? ` OPENSSL_ia32cap=${process.env.OPENSSL_ia32cap} (in both tools)` : '';
  console.log(`${humanBytes(BYTES)} files in ${dir}; ${RUNS} runs per tool, alternating; peak RSS: ${rssMethod()}${masked}`);
  const tables: string[] = [];
  for (const file of FILES) {
    const img = join(dir, `${file}.img`);
    writeDataFile(img, BYTES, file === 'zero50');
    readWhole(img);
    tables.push(await runFile(file, img, dir, veritysetup));
    rmSync(img, { force: true });
  }
  console.log(tables.join('\n'));
}

async function runFile(file: string, img: string, dir: string, veritysetup: string): Promise<string> {
  const common = [`--salt=${SALT}`, `--uuid=${UUID}`, ...EXTRA];
  const cmd = (tool: Tool, op: Op, hash: string, root?: string): [string, string[]] => {
    const tail = op === 'format' ? common : [root!, ...EXTRA];
    if (tool === 'veritysetup') return [veritysetup, [op, img, hash, ...tail]];
    const threads = tool.startsWith('verity --threads ') ? ['--threads', tool.slice('verity --threads '.length)] : [];
    return [process.execPath, [CLI, op, img, hash, ...tail, ...threads, '--no-progress']];
  };

  const results = new Map<string, Measured[]>();
  const roots = new Set<string>();
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? TOOLS : [...TOOLS].reverse();
    for (const tool of order) {
      const hash = join(dir, `${tool.replaceAll(' ', '')}.hash`);
      rmSync(hash, { force: true });
      const f = check(await measure(...cmd(tool, 'format', hash), dir), `${tool} format`);
      const root = rootHashOf(f.stdout);
      roots.add(root);
      const v = check(await measure(...cmd(tool, 'verify', hash, root), dir), `${tool} verify`);
      for (const [op, m] of [['format', f], ['verify', v]] as const) {
        results.set(`${tool} ${op}`, [...(results.get(`${tool} ${op}`) ?? []), m]);
      }
      process.stderr.write(`${file} run ${run + 1}/${RUNS} ${tool}: format ${f.wall.toFixed(2)} s, verify ${v.wall.toFixed(2)} s\n`);
    }
  }
  if (roots.size !== 1) throw new Error(`root hashes differ: ${[...roots].join(', ')}`);
  for (const tool of TOOLS.slice(1)) {
    if (!sameFileContents(join(dir, `${tool.replaceAll(' ', '')}.hash`), join(dir, 'veritysetup.hash'))) {
      throw new Error(`${tool} and veritysetup hash files differ`);
    }
  }

  const rows: string[][] = [];
  for (const op of ['format', 'verify'] as const) {
    const base = median(results.get(`veritysetup ${op}`)!.map((m) => m.wall));
    for (const tool of TOOLS) {
      const ms = results.get(`${tool} ${op}`)!;
      const wall = median(ms.map((m) => m.wall));
      rows.push([
        op,
        tool,
        wall.toFixed(2),
        (BYTES / 1e6 / wall).toFixed(0),
        `${(wall / base).toFixed(2)}×`,
        mib(median(ms.map((m) => m.maxRssKiB))).toFixed(1),
        mib(Math.max(...ms.map((m) => m.maxRssKiB))).toFixed(1),
        ms.map((m) => m.wall.toFixed(2)).join(' '),
      ]);
    }
  }
  const what = file === 'zero50' ? '50% zero blocks' : 'random';
  return (
    `\n${humanBytes(BYTES)} ${what}, page-cached; sha256 4096/4096 unless VERITY_BENCH_ARGS says otherwise${EXTRA.length ? ` (${EXTRA.join(' ')})` : ''}\n` +
    table(['op', 'tool', 'wall (median, s)', 'MB/s', 'time vs veritysetup', 'peak RSS (median, MiB)', 'peak RSS (max, MiB)', 'wall per run (s)'], rows, 2)
  );
}

main().catch((e: unknown) => {
  console.error(`bench/e2e.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
