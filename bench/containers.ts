/**
 * `npm run bench:containers`: verify the same partition as a raw file, inside a VHDX (qemu-img, dynamic, 32 MiB
 * blocks), inside a stored zip entry holding that VHDX, and inside a deflated zip entry (one streaming pass), and
 * report medians, each form's ratio to raw, and peak RSS.
 *
 * Usage: tsx bench/containers.ts [--mib 1024] [--runs 5]
 * Needs sgdisk, qemu-img and zip. The image is random data (incompressible: the deflated case is the worst one).
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, measure, requireBuiltCli, rootHashOf, rssMethod, SALT, UUID } from './support.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const MIB = opt('--mib', 1024);
const RUNS = opt('--runs', 5);
requireBuiltCli();

function run(cmd: string, a: string[]): string {
  const r = spawnSync(cmd, a, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const dir = mkdtempSync(join(tmpdir(), 'verity-bench-containers-'));
try {
  const root = join(dir, 'root.img');
  const fd = openSync(root, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < MIB; i++) writeSync(fd, randomFillSync(chunk));
  closeSync(fd);
  const hash = join(dir, 'hash.img');
  const rootHash = rootHashOf(run(process.execPath, [CLI, 'format', root, hash, '--salt', SALT, '--uuid', UUID, '--no-progress']));
  const hashMiB = Math.ceil(MIB / 100) + 1;
  const disk = join(dir, 'disk.raw');
  run('truncate', ['-s', `${MIB + hashMiB + 4}M`, disk]);
  run('sgdisk', ['-n', `1:2048:+${MIB}M`, '-n', `2:0:+${hashMiB}M`, disk]);
  const startOf = (n: number) => Number(/First sector: (\d+)/.exec(run('sgdisk', ['-i', String(n), disk]))![1]) * 512;
  run('dd', [`if=${root}`, `of=${disk}`, 'bs=1M', `seek=${startOf(1)}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  run('dd', [`if=${hash}`, `of=${disk}`, 'bs=1M', `seek=${startOf(2)}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  const vhdx = join(dir, 'disk.vhdx');
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', disk, vhdx]);
  run('zip', ['-q', '-0', '-j', join(dir, 'stored.zip'), vhdx]);
  run('zip', ['-q', '-1', '-j', join(dir, 'deflated.zip'), vhdx]);

  const forms: Array<[string, string[]]> = [
    ['raw partition file', [root, hash]],
    ['VHDX partitions', [`${vhdx}::1`, `${vhdx}::2`]],
    ['stored zip > VHDX', [`${dir}/stored.zip::disk.vhdx::1`, `${dir}/stored.zip::disk.vhdx::2`]],
    ['deflated zip > VHDX', [`${dir}/deflated.zip::disk.vhdx::1`, `${dir}/deflated.zip::disk.vhdx::2`]],
  ];
  const times = forms.map(() => [] as number[]);
  const rss = forms.map(() => 0);
  for (let r = 0; r < RUNS; r++) {
    for (const [i, [name, operands]] of forms.entries()) {
      const m = await measure(process.execPath, [CLI, 'verify', ...operands, rootHash, '--no-progress'], dir);
      if (m.code !== 0) throw new Error(`${name}: exit ${m.code}: ${m.stderr}`);
      times[i]!.push(m.wall);
      rss[i] = Math.max(rss[i]!, m.maxRssKiB);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = median(times[0]!);
  console.log(`verify of a ${MIB} MiB random partition, ${RUNS} runs each (alternating), default engine and threads`);
  console.log(`peak RSS: ${rssMethod()}`);
  console.log('| form | median s | × raw | peak RSS MiB |\n|---|---|---|---|');
  for (const [i, [name]] of forms.entries()) {
    console.log(`| ${name} | ${median(times[i]!).toFixed(2)} | ${(median(times[i]!) / base).toFixed(2)} | ${(rss[i]! / 1024).toFixed(0)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
