/**
 * `npm run bench:sparse`: a sparse disk (issue #14 item 3). An 8 GiB raw GPT disk whose data partition holds 200 MiB
 * of random bytes in four runs and zeros elsewhere, with the partition's tree in a second partition, and a dynamic
 * VHDX of that disk (qemu-img, 32 MiB blocks). It times, interleaved:
 *
 * - `veritysetup verify data.img hash.img ROOT`: the two partitions as (sparse) files, the reference;
 * - `verity verify disk.vhdx::1 disk.vhdx::2 ROOT`: the VHDX, whose absent blocks are known zero (not read);
 * - `verity verify disk.raw::1 disk.raw::2 ROOT` and `verity verify data.img hash.img ROOT`: the raw forms, read
 *   whole (Node has no SEEK_DATA/SEEK_HOLE: docs/performance.md, "Sparse images");
 * - and the same for format: `veritysetup format data.img`, `verity format disk.vhdx::1`, `verity format data.img`,
 *   each into a scratch hash file whose root hash is checked against the cached tree's.
 *
 * It prints medians, each row against veritysetup's row of the same command, and peak RSS.
 *
 * Usage: tsx bench/sparse.ts [--size 8G] [--data 200M] [--runs 5] [--rebuild] [--rm]
 *        VERITY_BENCH_ARGS='--threads 1' tsx bench/sparse.ts   # extra options for every `verity` row
 *        VERITY_BENCH_BASE_CLI=/path/to/other/dist/cli/main.js tsx bench/sparse.ts   # adds its VHDX rows ("before")
 *
 * The disk is built once per size and kept in $VERITY_BENCH_DIR/bench-sparse-<bytes> (default .cache/, ignored by
 * git): data.img (truncate, then AES-128-CTR keystream with a fixed key in four runs), hash.img (`verity format`, fixed
 * salt and UUID), disk.raw (sgdisk, then `dd conv=sparse` of each so the holes stay holes) and disk.vhdx. Every file
 * is read once before timing, so the runs hit the page cache. Needs sgdisk, dd, qemu-img and veritysetup.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findTool } from '../test/support/tools.js';
import {
  benchArgs,
  keystream,
  writeKeystream,
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
  table,
  type Measured,
} from './support.js';

const { flag, option } = benchArgs();
const MIB = 1 << 20;
const SIZE = Math.ceil(parseBytes(option('--size', '8G')) / MIB) * MIB;
const DATA = Math.ceil(parseBytes(option('--data', '200M')) / MIB) * MIB;
const RUNS = Number(option('--runs', '5'));
const EXTRA = (process.env.VERITY_BENCH_ARGS ?? '').split(/\s+/).filter(Boolean);
/** Bumped when the disk's layout or contents change, so an older cached disk is rebuilt. */
const BUILD_VERSION = 1;
/** Random runs in the data partition: where each starts, as a fraction of the partition. */
const RUN_STARTS = [0, 0.31, 0.62, 0.93];

const TOOLS = {
  sgdisk: findTool('sgdisk', '/usr/sbin/sgdisk', '/sbin/sgdisk'),
  dd: findTool('dd', '/usr/bin/dd', '/bin/dd'),
  'qemu-img': findTool('qemu-img', '/usr/bin/qemu-img'),
};
const VERITYSETUP = findVeritysetup();

function run(tool: string, args: string[]): string {
  const path = (TOOLS as Record<string, string | null>)[tool] ?? tool;
  const r = spawnSync(path, args, { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

interface Disk {
  data: string;
  hash: string;
  raw: string;
  vhdx: string;
  rootHash: string;
  built: number;
}

/** A sparse `size`-byte file with `bytes` of AES-128-CTR keystream (fixed key) in four runs; zeros (holes) elsewhere. */
function writeSparseData(path: string, size: number, bytes: number): void {
  const cipher = keystream('bench/sparse data');
  const perRun = Math.floor(bytes / RUN_STARTS.length / MIB) * MIB;
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const f of RUN_STARTS) {
      const start = Math.min(Math.floor((f * size) / MIB) * MIB, size - perRun);
      writeKeystream(fd, cipher, start, perRun);
    }
  } finally {
    closeSync(fd);
  }
}

function buildDisk(dir: string): Disk {
  const meta = join(dir, 'disk.json');
  const files = { data: join(dir, 'data.img'), hash: join(dir, 'hash.img'), raw: join(dir, 'disk.raw'), vhdx: join(dir, 'disk.vhdx') };
  if (!flag('--rebuild') && existsSync(meta)) {
    const cached = JSON.parse(readFileSync(meta, 'utf8')) as { version: number; size: number; data: number; rootHash: string };
    const present = Object.values(files).every((f) => existsSync(f));
    if (cached.version === BUILD_VERSION && cached.size === SIZE && cached.data === DATA && present) {
      return { ...files, rootHash: cached.rootHash, built: 0 };
    }
  }
  const missing = Object.entries(TOOLS).filter(([, p]) => !p).map(([name]) => name);
  if (missing.length > 0) throw new Error(`building the disk needs ${missing.join(', ')}`);
  const start = process.hrtime.bigint();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // The data partition takes what the hash partition and the GPT (1 MiB at each end) leave.
  const hashMib = Math.ceil(SIZE / MIB / 127) + 1;
  const dataBytes = SIZE - (hashMib + 2) * MIB;
  writeSparseData(files.data, dataBytes, DATA);
  const rootHash = rootHashOf(run(process.execPath, [CLI, 'format', files.data, files.hash, `--salt=${SALT}`, `--uuid=${UUID}`, '--no-progress']));
  closeSync(openSync(files.raw, 'w'));
  run('truncate', ['-s', String(SIZE), files.raw]);
  run('sgdisk', ['-a', '2048', '-n', `1:2048:+${dataBytes / MIB}M`, '-c', '1:data', '-n', `2:0:+${hashMib}M`, '-c', '2:hash', files.raw]);
  const startOf = (n: number) => Number(/First sector: (\d+)/.exec(run('sgdisk', ['-i', String(n), files.raw]))![1]) * 512;
  for (const [n, file] of [[1, files.data], [2, files.hash]] as const) {
    run('dd', [`if=${file}`, `of=${files.raw}`, 'bs=16M', `seek=${startOf(n)}`, 'oflag=seek_bytes', 'conv=sparse,notrunc', 'status=none']);
  }
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', files.raw, files.vhdx]);
  run('sync', []);
  writeFileSync(meta, JSON.stringify({ version: BUILD_VERSION, size: SIZE, data: DATA, rootHash }));
  return { ...files, rootHash, built: Number(process.hrtime.bigint() - start) / 1e9 };
}

interface Row {
  name: string;
  /** The row its ratio is against. */
  base: string;
  command: string;
  args: string[];
  /** For format rows: the root hash the output must show. */
  root?: string;
}

async function main(): Promise<void> {
  requireBuiltCli();
  if (!VERITYSETUP) throw new Error('bench:sparse needs veritysetup (set VERITYSETUP=/path)');
  const dir = join(process.env.VERITY_BENCH_DIR ?? join(ROOT, '.cache'), `bench-sparse-${SIZE}`);
  const disk = buildDisk(dir);
  const out = join(dir, 'out.hash');
  const node = process.execPath;
  const verity = (...a: string[]) => [CLI, ...a, '--no-progress', ...EXTRA];
  const fmt = [`--salt=${SALT}`, `--uuid=${UUID}`];
  const R = disk.rootHash;
  const rows: Row[] = [
    { name: 'veritysetup verify data.img hash.img', base: 'vs-verify', command: VERITYSETUP, args: ['verify', disk.data, disk.hash, R] },
    { name: 'verity verify disk.vhdx::1 disk.vhdx::2', base: 'vs-verify', command: node, args: verity('verify', `${disk.vhdx}::1`, `${disk.vhdx}::2`, R) },
    { name: 'verity verify disk.raw::1 disk.raw::2', base: 'vs-verify', command: node, args: verity('verify', `${disk.raw}::1`, `${disk.raw}::2`, R) },
    { name: 'verity verify data.img hash.img', base: 'vs-verify', command: node, args: verity('verify', disk.data, disk.hash, R) },
    { name: 'veritysetup format data.img', base: 'vs-format', command: VERITYSETUP, args: ['format', disk.data, out, ...fmt], root: R },
    { name: 'verity format disk.vhdx::1', base: 'vs-format', command: node, args: verity('format', `${disk.vhdx}::1`, out, ...fmt), root: R },
    { name: 'verity format data.img', base: 'vs-format', command: node, args: verity('format', disk.data, out, ...fmt), root: R },
  ];
  // Another build of verity (e.g. the commit before a change, from `git archive`), timed on the VHDX rows too.
  const baseCli = process.env.VERITY_BENCH_BASE_CLI;
  if (baseCli) {
    const other = (...a: string[]) => [baseCli, ...a, '--no-progress', ...EXTRA];
    rows.splice(2, 0, { name: 'before: verify disk.vhdx::1 disk.vhdx::2', base: 'vs-verify', command: node, args: other('verify', `${disk.vhdx}::1`, `${disk.vhdx}::2`, R) });
    rows.push({ name: 'before: format disk.vhdx::1', base: 'vs-format', command: node, args: other('format', `${disk.vhdx}::1`, out, ...fmt), root: R });
  }
  const bases: Record<string, number> = {
    'vs-verify': rows.findIndex((r) => r.base === 'vs-verify'),
    'vs-format': rows.findIndex((r) => r.base === 'vs-format'),
  };
  for (const f of [disk.data, disk.hash, disk.raw, disk.vhdx]) readWhole(f);

  const times = rows.map(() => [] as number[]);
  const rss = rows.map(() => [] as number[]);
  const once = async (i: number): Promise<Measured> => {
    const row = rows[i]!;
    rmSync(out, { force: true });
    const m = check(await measure(row.command, row.args, dir), row.name);
    if (row.root && rootHashOf(m.stdout) !== row.root) throw new Error(`${row.name}: root hash ${rootHashOf(m.stdout)}, expected ${row.root}`);
    return m;
  };
  // One warm-up round, then RUNS rounds with the order of the rows reversed every other round.
  for (let i = 0; i < rows.length; i++) await once(i);
  for (let r = 0; r < RUNS; r++) {
    const order = rows.map((_, i) => i);
    if (r % 2) order.reverse();
    for (const i of order) {
      const m = await once(i);
      times[i]!.push(m.wall);
      rss[i]!.push(m.maxRssKiB);
    }
  }
  rmSync(out, { force: true });
  const allocated = statSync(disk.vhdx).size;
  console.log(
    `${humanBytes(SIZE)} GPT disk, data partition of ${humanBytes(statSync(disk.data).size)} with ${humanBytes(DATA)} of random data in ` +
      `${RUN_STARTS.length} runs; VHDX file ${(allocated / MIB).toFixed(0)} MiB; in ${dir} ` +
      `(${disk.built ? `built in ${disk.built.toFixed(1)} s` : 'cached'}); ${RUNS} rounds after a warm-up, rows alternating`,
  );
  console.log(`${machine()}; peak RSS: ${rssMethod()}${EXTRA.length ? `; verity options: ${EXTRA.join(' ')}` : ''}\n`);
  console.log(
    table(
      ['row', 'median s', '× veritysetup', 'peak RSS MiB (median)'],
      rows.map((row, i) => [
        row.name,
        median(times[i]!).toFixed(2),
        `${(median(times[i]!) / median(times[bases[row.base]!]!)).toFixed(3)}×`,
        mib(median(rss[i]!)).toFixed(0),
      ]),
    ),
  );
  // Ratios within each round, so a slow moment of the shared machine hits both sides of a ratio alike.
  const perRound = (i: number) => times[i]!.map((t, r) => t / times[bases[rows[i]!.base]!]![r]!);
  console.log('\nper-round ratios to veritysetup (min–max):');
  for (const [i, row] of rows.entries()) {
    if (row.command === VERITYSETUP) continue;
    const ratios = perRound(i);
    console.log(`  ${row.name}: ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}× (median ${median(ratios).toFixed(3)}×)`);
  }
  if (flag('--rm')) rmSync(dir, { recursive: true, force: true });
}

await main();
