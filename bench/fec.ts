/**
 * FEC end to end: `verity format --fec-device` (the built CLI, dist/cli/main.js) against `veritysetup format
 * --fec-device` on the same page-cached file of random data, 256 MiB and 1 GiB (generated once, kept in .cache/),
 * roots 2, and roots 24 on the first size only (veritysetup takes minutes there). verity runs with its default
 * threads and with `--threads 1` and `--threads 2` (FEC on worker threads). Runs alternate between the tools (3
 * each by default); medians are printed with the ratio verity / veritysetup and each tool's peak RSS. Both tools get the same salt and UUID: their hash and parity files must be byte-identical.
 *
 *   npm run bench:fec
 *   OPENSSL_ia32cap=":~0x20000000" npm run bench:fec            # hide SHA extensions from OpenSSL in both tools
 *   VERITY_BENCH_SIZES=256M VERITY_BENCH_RUNS=5 npx tsx bench/fec.ts
 *   VERITY_BENCH_DIR=/dev/shm npx tsx bench/fec.ts              # where the outputs go (default: os.tmpdir())
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLI,
  ROOT,
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

const SIZES = (process.env.VERITY_BENCH_SIZES ?? '256M,1G').split(',').map(parseBytes);
const RUNS = Number(process.env.VERITY_BENCH_RUNS ?? 3);
const CHUNK = 16 << 20;

/** Random data in .cache/, written once (through a temporary name, so an interrupted run leaves no short file). */
function cachedRandomFile(size: number): string {
  const dir = join(ROOT, '.cache');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `fec-random-${humanBytes(size).replace(' ', '')}.img`);
  if (existsSync(path) && statSync(path).size === size) return path;
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let done = 0; done < size; ) {
      const n = Math.min(CHUNK, size - done);
      randomFillSync(buf, 0, n);
      done += writeSync(fd, buf, 0, n, done);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return path;
}

interface Row {
  tool: 'veritysetup' | 'verity';
  roots: number;
  /** `--threads N` for verity, or undefined for its default. */
  threads?: number;
}

const label = (r: Row) => `${r.tool}${r.threads ? ` --threads ${r.threads}` : ''} (roots ${r.roots})`;
const slug = (r: Row) => `${r.tool}-${r.roots}-${r.threads ?? 'd'}`;

async function main(): Promise<void> {
  requireBuiltCli();
  const veritysetup = findVeritysetup();
  if (!veritysetup) {
    console.error('bench/fec.ts needs veritysetup (not found; set VERITYSETUP=/path).');
    process.exit(1);
  }
  const dir = scratchDir('verity-fec-');
  console.log(machine());
  const masked = process.env.OPENSSL_ia32cap ? ` OPENSSL_ia32cap=${process.env.OPENSSL_ia32cap} (in both tools)` : '';
  console.log(`outputs in ${dir}; ${RUNS} runs per row, alternating; peak RSS: ${rssMethod()}${masked}`);
  const rows: Row[] = [
    { tool: 'veritysetup', roots: 2 },
    { tool: 'verity', roots: 2 },
    { tool: 'verity', roots: 2, threads: 1 },
    { tool: 'verity', roots: 2, threads: 2 },
    { tool: 'veritysetup', roots: 24 },
    { tool: 'verity', roots: 24 },
  ];
  const tables: string[] = [];
  for (const [i, size] of SIZES.entries()) {
    const img = cachedRandomFile(size);
    readWhole(img);
    tables.push(await runSize(size, img, dir, veritysetup, i === 0 ? rows : rows.filter((r) => r.roots === 2)));
  }
  console.log(tables.join('\n'));
}

async function runSize(size: number, img: string, dir: string, veritysetup: string, rows: Row[]): Promise<string> {
  const cmd = (r: Row, hash: string, fec: string): [string, string[]] => {
    const args = ['format', img, hash, `--salt=${SALT}`, `--uuid=${UUID}`, `--fec-device=${fec}`, `--fec-roots=${r.roots}`];
    if (r.tool === 'veritysetup') return [veritysetup, args];
    return [process.execPath, [CLI, ...args, ...(r.threads ? ['--threads', String(r.threads)] : []), '--no-progress']];
  };
  const results = new Map<string, Measured[]>();
  const roots = new Map<number, Set<string>>();
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? rows : [...rows].reverse();
    for (const r of order) {
      const hash = join(dir, `${slug(r)}.hash`);
      const fec = join(dir, `${slug(r)}.fec`);
      rmSync(hash, { force: true });
      rmSync(fec, { force: true });
      const m = check(await measure(...cmd(r, hash, fec), dir), label(r));
      roots.set(r.roots, (roots.get(r.roots) ?? new Set()).add(rootHashOf(m.stdout)));
      results.set(slug(r), [...(results.get(slug(r)) ?? []), m]);
      process.stderr.write(`${humanBytes(size)} run ${run + 1}/${RUNS} ${label(r)}: ${m.wall.toFixed(2)} s\n`);
    }
  }
  for (const [n, set] of roots) if (set.size !== 1) throw new Error(`roots ${n}: root hashes differ: ${[...set].join(', ')}`);
  for (const r of rows.filter((x) => x.tool === 'verity')) {
    const base = slug({ tool: 'veritysetup', roots: r.roots });
    for (const ext of ['hash', 'fec']) {
      if (!sameFileContents(join(dir, `${slug(r)}.${ext}`), join(dir, `${base}.${ext}`))) throw new Error(`${label(r)}: ${ext} file differs from veritysetup's`);
    }
  }
  const out: string[][] = [];
  for (const r of rows) {
    const ms = results.get(slug(r))!;
    const wall = median(ms.map((m) => m.wall));
    const base = median(results.get(slug({ tool: 'veritysetup', roots: r.roots }))!.map((m) => m.wall));
    out.push([
      label(r),
      wall.toFixed(2),
      (size / 1e6 / wall).toFixed(0),
      `${(wall / base).toFixed(3)}×`,
      mib(median(ms.map((m) => m.maxRssKiB))).toFixed(1),
      mib(Math.max(...ms.map((m) => m.maxRssKiB))).toFixed(1),
      ms.map((m) => m.wall.toFixed(2)).join(' '),
    ]);
  }
  return (
    `\n${humanBytes(size)} random, page-cached; sha256 4096/4096, format with --fec-device (a new parity file)\n` +
    table(['tool', 'wall (median, s)', 'MB/s', 'time vs veritysetup', 'peak RSS (median, MiB)', 'peak RSS (max, MiB)', 'wall per run (s)'], out)
  );
}

main().catch((e: unknown) => {
  console.error(`bench/fec.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
