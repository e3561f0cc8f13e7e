/**
 * Peak RSS and wall time of `verity format` / `verify` (the built CLI, dist/cli/main.js) on large sparse zero images,
 * next to `veritysetup` on the same files. The goal: memory bounded by the tree's depth, not the image size
 * (peak RSS < 150 MiB at 4 GiB, and about the same at 1 GiB).
 *
 *   npm run build && npx tsx bench/rss.ts
 *   VERITY_RSS_SIZES=1G,4G,16G VERITY_BENCH_RUNS=5 npx tsx bench/rss.ts
 *   VERITY_BENCH_DIR=/mnt/scratch npx tsx bench/rss.ts         # where the sparse images go (default: os.tmpdir())
 *
 * The images are created with truncate (holes: no disk space, reads return zeros without disk I/O), so the runs are
 * CPU-bound hashing. Each image is read once, untimed, before the runs: the first reader of a sparse file pays for
 * filling the page cache. Each format writes a fresh hash file. Every run is repeated (default 3) with the tools
 * alternating, and medians are printed. Both tools get the same salt and UUID; their hash files must be identical.
 */
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
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

const SIZES = (process.env.VERITY_RSS_SIZES ?? '1G,4G').split(',').map(parseBytes);
const RUNS = Number(process.env.VERITY_BENCH_RUNS ?? 3);

type Tool = 'verity' | 'veritysetup';
type Op = 'format' | 'verify';

async function main(): Promise<void> {
  requireBuiltCli();
  const veritysetup = findVeritysetup();
  const dir = scratchDir('verity-rss-');
  console.log(machine());
  console.log(`peak RSS: ${rssMethod()}; ${RUNS} runs per cell, medians; images in ${dir}`);
  if (!veritysetup) console.log('veritysetup not found (set VERITYSETUP=/path): measuring verity only');

  const tools: Tool[] = veritysetup ? ['verity', 'veritysetup'] : ['verity'];
  const rows: string[][] = [];
  for (const size of SIZES) {
    const img = join(dir, 'zero.img');
    writeFileSync(img, '');
    truncateSync(img, size);
    // The first reader of a sparse file pays for filling the page cache with zero pages (4 GiB: ~10 s); do it untimed.
    readWhole(img);
    const results = new Map<string, Measured[]>();
    const add = (tool: Tool, op: Op, m: Measured) => {
      const key = `${tool} ${op}`;
      results.set(key, [...(results.get(key) ?? []), m]);
    };
    const roots = new Set<string>();
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 === 0 ? tools : [...tools].reverse();
      for (const tool of order) {
        const hash = join(dir, `${tool}.hash`);
        rmSync(hash, { force: true });
        const common = [`--salt=${SALT}`, `--uuid=${UUID}`];
        const f =
          tool === 'verity'
            ? await measure(process.execPath, [CLI, 'format', img, hash, '--no-progress', ...common], dir)
            : await measure(veritysetup!, ['format', img, hash, ...common], dir);
        check(f, `${tool} format (${humanBytes(size)})`);
        add(tool, 'format', f);
        const root = rootHashOf(f.stdout);
        roots.add(root);
        const v =
          tool === 'verity'
            ? await measure(process.execPath, [CLI, 'verify', img, hash, root, '--no-progress'], dir)
            : await measure(veritysetup!, ['verify', img, hash, root], dir);
        check(v, `${tool} verify (${humanBytes(size)})`);
        add(tool, 'verify', v);
        process.stderr.write(`${humanBytes(size)} run ${run + 1}/${RUNS} ${tool}: format ${f.wall.toFixed(2)} s ${mib(f.maxRssKiB).toFixed(1)} MiB, verify ${v.wall.toFixed(2)} s ${mib(v.maxRssKiB).toFixed(1)} MiB\n`);
      }
    }
    if (roots.size !== 1) throw new Error(`root hashes differ between runs or tools: ${[...roots].join(', ')}`);
    if (veritysetup && !sameFileContents(join(dir, 'verity.hash'), join(dir, 'veritysetup.hash'))) {
      throw new Error(`hash files differ (${humanBytes(size)}): ${join(dir, 'verity.hash')} vs ${join(dir, 'veritysetup.hash')}`);
    }
    const sizeRows: string[][] = [];
    for (const [key, ms] of results) {
      const [tool, op] = key.split(' ') as [Tool, Op];
      const wall = median(ms.map((m) => m.wall));
      sizeRows.push([
        humanBytes(size),
        tool,
        op,
        mib(median(ms.map((m) => m.maxRssKiB))).toFixed(1),
        mib(Math.max(...ms.map((m) => m.maxRssKiB))).toFixed(1),
        wall.toFixed(2),
        (size / 1e6 / wall).toFixed(0),
        ms.map((m) => m.wall.toFixed(2)).join(' '),
      ]);
    }
    sizeRows.sort((a, b) => (a[2]! + a[1]!).localeCompare(b[2]! + b[1]!));
    rows.push(...sizeRows);
    rmSync(img, { force: true });
    for (const tool of tools) rmSync(join(dir, `${tool}.hash`), { force: true });
  }
  console.log(`\nsparse zero images, sha256, 4096-byte blocks, 32-byte salt; RSS in MiB, wall in s, MB = 10^6 bytes`);
  console.log(
    table(['image', 'tool', 'op', 'peak RSS (median)', 'peak RSS (max)', 'wall (median)', 'MB/s', 'wall per run'], rows, 3),
  );
}

main().catch((e: unknown) => {
  console.error(`bench/rss.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
