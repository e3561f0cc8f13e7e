/**
 * End-to-end: `verity format` / `verify` (the built CLI, dist/cli/main.js) against `veritysetup format` / `verify` on
 * the same page-cached file of random data. Runs alternate between the tools (5 each by default) and medians are
 * printed, with the ratio verity / veritysetup and each tool's peak RSS.
 *
 *   npm run build && npx tsx bench/e2e.ts
 *   VERITY_BENCH_BYTES=256M VERITY_BENCH_RUNS=9 npx tsx bench/e2e.ts
 *   VERITY_BENCH_ARGS='--hash=sha1' npx tsx bench/e2e.ts        # extra tree options for both tools
 *   VERITY_BENCH_DIR=/dev/shm npx tsx bench/e2e.ts              # where the files go (default: os.tmpdir())
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

function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
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
}

type Tool = 'veritysetup' | 'verity';
type Op = 'format' | 'verify';

async function main(): Promise<void> {
  requireBuiltCli();
  const veritysetup = findVeritysetup();
  if (!veritysetup) {
    console.error('bench/e2e.ts needs veritysetup (not found; set VERITYSETUP=/path).');
    process.exit(1);
  }
  const dir = scratchDir('verity-e2e-');
  const img = join(dir, 'random.img');
  console.log(machine());
  console.log(`data: ${humanBytes(BYTES)} of random bytes in ${dir}; ${RUNS} runs per tool, alternating; peak RSS: ${rssMethod()}`);
  writeRandomFile(img, BYTES);
  readWhole(img);

  const common = [`--salt=${SALT}`, `--uuid=${UUID}`, ...EXTRA];
  const cmd = (tool: Tool, op: Op, hash: string, root?: string): [string, string[]] => {
    const tail = op === 'format' ? common : [root!, ...EXTRA];
    return tool === 'verity'
      ? [process.execPath, [CLI, op, img, hash, ...tail, '--no-progress']]
      : [veritysetup, [op, img, hash, ...tail]];
  };

  const results = new Map<string, Measured[]>();
  const roots = new Set<string>();
  for (let run = 0; run < RUNS; run++) {
    const order: Tool[] = run % 2 === 0 ? ['veritysetup', 'verity'] : ['verity', 'veritysetup'];
    for (const tool of order) {
      const hash = join(dir, `${tool}.hash`);
      rmSync(hash, { force: true });
      const f = check(await measure(...cmd(tool, 'format', hash), dir), `${tool} format`);
      const root = rootHashOf(f.stdout);
      roots.add(root);
      const v = check(await measure(...cmd(tool, 'verify', hash, root), dir), `${tool} verify`);
      for (const [op, m] of [['format', f], ['verify', v]] as const) {
        results.set(`${tool} ${op}`, [...(results.get(`${tool} ${op}`) ?? []), m]);
      }
      process.stderr.write(`run ${run + 1}/${RUNS} ${tool}: format ${f.wall.toFixed(2)} s, verify ${v.wall.toFixed(2)} s\n`);
    }
  }
  if (roots.size !== 1) throw new Error(`root hashes differ: ${[...roots].join(', ')}`);
  if (!sameFileContents(join(dir, 'verity.hash'), join(dir, 'veritysetup.hash'))) throw new Error('hash files differ');

  const rows: string[][] = [];
  for (const op of ['format', 'verify'] as const) {
    const base = median(results.get(`veritysetup ${op}`)!.map((m) => m.wall));
    for (const tool of ['veritysetup', 'verity'] as const) {
      const ms = results.get(`${tool} ${op}`)!;
      const wall = median(ms.map((m) => m.wall));
      rows.push([
        op,
        tool,
        wall.toFixed(2),
        (BYTES / 1e6 / wall).toFixed(0),
        tool === 'verity' ? `${(wall / base).toFixed(2)}×` : '1.00×',
        mib(median(ms.map((m) => m.maxRssKiB))).toFixed(1),
        mib(Math.max(...ms.map((m) => m.maxRssKiB))).toFixed(1),
        ms.map((m) => m.wall.toFixed(2)).join(' '),
      ]);
    }
  }
  console.log(`\n${humanBytes(BYTES)} random, page-cached; sha256 4096/4096 unless VERITY_BENCH_ARGS says otherwise${EXTRA.length ? ` (${EXTRA.join(' ')})` : ''}`);
  console.log(
    table(['op', 'tool', 'wall (median, s)', 'MB/s', 'verity/veritysetup', 'peak RSS (median, MiB)', 'peak RSS (max, MiB)', 'wall per run (s)'], rows, 2),
  );
}

main().catch((e: unknown) => {
  console.error(`bench/e2e.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
