/**
 * `npm run bench:discovery`: what finding the targets through the boot configuration costs (#12). On a GPT disk in the
 * Azure Linux image-customizer layout (test/support/os-images.ts, buildCustomizerDisk with a BLS entry: ESP, boot
 * ext4 with loader/entries/*.conf whose options carry `roothash=… systemd.verity_root_data=PARTLABEL=root
 * systemd.verity_root_hash=PARTLABEL=roothash`, root data partition, hash partition), it times, interleaved:
 *
 * - `verity verify disk.raw`: the image alone, targets found from the BLS entry (discovery);
 * - `verity verify disk.raw::3 disk.raw::4 <root hash>`: the same partitions as explicit operands;
 * - `veritysetup verify root.img roothash.img <root hash>`: the partitions as files (context; when installed);
 * - `verity inspect disk.raw` and `verity --version`: the search alone, and start-up alone;
 * - with --vhdx, the first two on a dynamic VHDX of the same disk (qemu-img).
 *
 * It prints medians, each row's time against the explicit-operand row, peak RSS, and whether discovery costs at most
 * 1.1× explicit operands (#12's "done when"). Then it times the discovery step in process (open the disk, read its
 * GPT and search its boot configuration, as api/verify-image.ts does), cold and warm.
 *
 * Usage: tsx bench/discovery.ts [--size 4G] [--runs 5] [--vhdx] [--rebuild] [--rm]
 *        VERITY_BENCH_ARGS='--engine node-crypto' tsx bench/discovery.ts   # extra options for every `verity verify` row
 *
 *   --size     the root data partition (whole MiB; default 4G). The disk adds 12 MiB and the hash partition.
 *   --runs     timed rounds after one warm-up round (default 5); the order of the rows alternates per round.
 *   --vhdx     also time the disk as a dynamic VHDX (qemu-img convert; 32 MiB blocks).
 *   --rebuild  build the disk again even when a cached one is there.
 *   --rm       delete the cached disk and partition files at the end (they take about twice --size).
 *
 * The disk is built once per size and kept in $VERITY_BENCH_DIR/bench-discovery-<bytes> (default .cache/, ignored
 * by git): root.img (random bytes from AES-128-CTR with a fixed key, so no block is zero and every build is the same),
 * its tree roothash.img (`verity format`, fixed salt and UUID), the ESP (mkfs.vfat + mtools) and boot (mke2fs -d)
 * images, and disk.raw (sgdisk, then dd of each piece). root.img and roothash.img are the bytes of partitions 3 and 4:
 * veritysetup verifies them as files. Every file is read once before timing, so the runs hit the page cache.
 * OPENSSL_ia32cap, when set, reaches every child (as in bench/e2e.ts). Needs sgdisk, mke2fs, mkfs.vfat, mmd, mcopy
 * and dd (and qemu-img for --vhdx).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findTool } from '../test/support/tools.js';
import { seededUuid } from '../test/support/os-images.js';
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
  scratchDir,
  table,
  type Measured,
} from './support.js';

const { flag, option } = benchArgs();
const MIB = 1 << 20;
const SIZE = Math.ceil(parseBytes(option('--size', '4G')) / MIB) * MIB;
const RUNS = Number(option('--runs', '5'));
const VHDX = flag('--vhdx');
const EXTRA = (process.env.VERITY_BENCH_ARGS ?? '').split(/\s+/).filter(Boolean);
/** Bumped when the disk's layout or contents change, so an older cached disk is rebuilt. */
const BUILD_VERSION = 1;

const TOOLS = {
  sgdisk: findTool('sgdisk', '/usr/sbin/sgdisk', '/sbin/sgdisk'),
  mke2fs: findTool('mke2fs', '/usr/sbin/mke2fs', '/sbin/mke2fs'),
  'mkfs.vfat': findTool('mkfs.vfat', '/usr/sbin/mkfs.vfat', '/sbin/mkfs.vfat'),
  mmd: findTool('mmd', '/usr/bin/mmd'),
  mcopy: findTool('mcopy', '/usr/bin/mcopy'),
  dd: findTool('dd', '/usr/bin/dd', '/bin/dd'),
  ...(VHDX ? { 'qemu-img': findTool('qemu-img', '/usr/bin/qemu-img') } : {}),
};

function run(tool: string, args: string[]): string {
  const path = (TOOLS as Record<string, string | null>)[tool] ?? tool;
  const r = spawnSync(path, args, { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, LC_ALL: 'C', MTOOLS_SKIP_CHECK: '1' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

interface Disk {
  raw: string;
  vhdx: string | null;
  /** Partitions 3 and 4 as files. */
  root: string;
  hash: string;
  rootHash: string;
  partitions: { esp: number; boot: number; root: number; hash: number };
  /** Seconds the build took (0 when the cached disk was used). */
  built: number;
}

/** `bytes` of AES-128-CTR keystream (fixed key) into `path`: no zero blocks, the same on every build. */
function writeRandom(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    writeKeystream(fd, keystream('bench/discovery rootfs'), 0, bytes);
  } finally {
    closeSync(fd);
  }
}

/**
 * The customizer disk of buildCustomizerDisk (options `{ boot: 'bls', idType: 'partlabel' }`) with a `bytes`-long root
 * data partition of random bytes: esp (FAT, 2 MiB), boot (ext4, 8 MiB), root, roothash (the tree, whole MiB).
 */
function buildDisk(dir: string, bytes: number): Disk {
  const meta = join(dir, 'disk.json');
  const partitions = { esp: 1, boot: 2, root: 3, hash: 4 };
  const files = { raw: join(dir, 'disk.raw'), root: join(dir, 'root.img'), hash: join(dir, 'roothash.img') };
  const vhdx = VHDX ? join(dir, 'disk.vhdx') : null;
  if (!flag('--rebuild') && existsSync(meta)) {
    const cached = JSON.parse(readFileSync(meta, 'utf8')) as { version: number; bytes: number; rootHash: string };
    const present = [files.raw, files.root, files.hash].every((f) => existsSync(f)) && statSync(files.root).size === bytes;
    if (cached.version === BUILD_VERSION && cached.bytes === bytes && present) {
      if (vhdx && !existsSync(vhdx)) run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', files.raw, vhdx]);
      return { ...files, vhdx, rootHash: cached.rootHash, partitions, built: 0 };
    }
  }
  const missing = Object.entries(TOOLS).filter(([, p]) => !p).map(([name]) => name);
  if (missing.length > 0) throw new Error(`building the disk needs ${missing.join(', ')}`);
  const start = process.hrtime.bigint();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

  writeRandom(files.root, bytes);
  const rootHash = rootHashOf(run(process.execPath, [CLI, 'format', files.root, files.hash, `--salt=${SALT}`, `--uuid=${UUID}`, '--no-progress']));

  const cmdline =
    `console=ttyS0 rd.systemd.verity=1 roothash=${rootHash} systemd.verity_root_data=PARTLABEL=root ` +
    'systemd.verity_root_hash=PARTLABEL=roothash systemd.verity_root_options=panic-on-corruption root=/dev/mapper/root rd.auto=1';
  const kernel = '6.6.47.1-1.azl3';
  const boot = join(dir, 'boot');
  mkdirSync(join(boot, 'grub2'), { recursive: true });
  mkdirSync(join(boot, 'loader/entries'), { recursive: true });
  writeFileSync(join(boot, `vmlinuz-${kernel}`), createHash('sha256').update('kernel').digest().toString('hex').repeat(1024));
  writeFileSync(join(boot, `initramfs-${kernel}.img`), createHash('sha256').update('initrd').digest().toString('hex').repeat(1024));
  writeFileSync(
    join(boot, `loader/entries/azl-${kernel}.conf`),
    `title Azure Linux\nversion ${kernel}\nlinux /vmlinuz-${kernel}\ninitrd /initramfs-${kernel}.img\noptions ${cmdline}\n`,
  );
  const bootFsUuid = seededUuid('azl-bootfs');
  const bootImage = join(dir, 'boot.ext4');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-U', bootFsUuid, '-L', 'boot', '-E', `hash_seed=${bootFsUuid}`, '-d', boot, bootImage, '8M']);
  const esp = join(dir, 'esp.fat');
  run('mkfs.vfat', ['-C', '-i', 'a1b2c3d4', '-n', 'ESP', esp, String(2 * 1024)]);
  run('mmd', ['-i', esp, '::/boot', '::/boot/grub2']);
  const stub = join(dir, 'esp-grub.cfg');
  writeFileSync(stub, `search -n -u ${bootFsUuid} -s\nconfigfile ($root)/grub2/grub.cfg\n`);
  run('mcopy', ['-i', esp, stub, '::/boot/grub2/grub.cfg']);

  const hashMib = Math.ceil(statSync(files.hash).size / MIB);
  const pieces = [
    { name: 'esp', mib: 2, type: 'EF00', guid: seededUuid('azl-part-esp'), file: esp },
    { name: 'boot', mib: 8, type: '8300', guid: seededUuid('azl-part-boot'), file: bootImage },
    { name: 'root', mib: bytes / MIB, type: '8300', guid: seededUuid('azl-part-root'), file: files.root },
    { name: 'roothash', mib: hashMib, type: '8300', guid: seededUuid('azl-part-roothash'), file: files.hash },
  ];
  // 1 MiB before the first partition, 1 MiB after the last for the backup GPT (as os-images.ts assemble()).
  closeSync(openSync(files.raw, 'w'));
  run('truncate', ['-s', String((2 + pieces.reduce((n, p) => n + p.mib, 0)) * MIB), files.raw]);
  const sg = ['-a', '2048', '-U', seededUuid('azl-disk')];
  let sector = 2048;
  const starts: number[] = [];
  pieces.forEach((p, i) => {
    sg.push('-n', `${i + 1}:${sector}:+${p.mib}M`, '-t', `${i + 1}:${p.type}`, '-u', `${i + 1}:${p.guid}`, '-c', `${i + 1}:${p.name}`);
    starts.push(sector * 512);
    sector += (p.mib * MIB) / 512;
  });
  run('sgdisk', [...sg, files.raw]);
  pieces.forEach((p, i) => {
    run('dd', [`if=${p.file}`, `of=${files.raw}`, 'bs=16M', `seek=${starts[i]}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  });
  if (vhdx) run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', files.raw, vhdx]);
  // Written back now, not during the timed runs.
  run('sync', []);
  writeFileSync(meta, JSON.stringify({ version: BUILD_VERSION, bytes, rootHash }));
  return { ...files, vhdx, rootHash, partitions, built: Number(process.hrtime.bigint() - start) / 1e9 };
}

interface Row {
  name: string;
  command: [string, string[]];
  /** Extra check on a run's output (exit 0 is always required). */
  expect?: (m: Measured) => void;
}

/** `verify IMAGE` found exactly the boot entry's target on partitions 3 and 4, with the entry's root hash. */
function checkDiscovery(image: string, disk: Disk): void {
  const m = spawnSync(process.execPath, [CLI, 'verify', image, '--json', '--no-progress', ...EXTRA], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const r = JSON.parse(m.stdout) as {
    status: string;
    targets: Array<{ via: string; data: { path: string }; hash: { path: string }; rootHash: { from: string } }>;
  };
  const t = r.targets;
  const ok =
    m.status === 0 &&
    r.status === 'ok' &&
    t.length === 1 &&
    t[0]!.via === 'boot-entry' &&
    t[0]!.data.path === `${image}::${disk.partitions.root}` &&
    t[0]!.hash.path === `${image}::${disk.partitions.hash}`;
  if (!ok) throw new Error(`verify ${image} did not find the boot entry's target on partitions 3 and 4 (exit ${m.status}):\n${m.stdout}${m.stderr}`);
  console.log(`verify ${image}: 1 target via ${t[0]!.via}, ${t[0]!.data.path} + ${t[0]!.hash.path}, root hash from ${t[0]!.rootHash.from}`);
}

interface DiscoveryModules {
  openOperand: (address: string) => Promise<{ source: unknown; close(): Promise<void> }>;
  detectContent: (source: unknown) => Promise<string>;
  nodeCryptoEngine: unknown;
  inspectImage: (address: string) => Promise<unknown>;
  findTargets: (disk: unknown, isGpt: boolean, engine: unknown) => Promise<{ targets: unknown[]; bootEntries: unknown[] }>;
}

/** The built modules, loaded by path so that typechecking does not need dist/. */
async function loadDiscovery(): Promise<DiscoveryModules> {
  const index = (await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)) as Omit<DiscoveryModules, 'findTargets'>;
  const targets = (await import(pathToFileURL(join(ROOT, 'dist', 'discovery', 'targets.js')).href)) as Pick<DiscoveryModules, 'findTargets'>;
  return { ...index, findTargets: targets.findTargets };
}

/** The discovery step of api/verify-image.ts (open, detect, findTargets) in this process: cold, then `RUNS` warm. */
async function timeInProcess(image: string): Promise<string[][]> {
  const api = await loadDiscovery();
  const discover = async () => {
    const operand = await api.openOperand(image);
    try {
      const found = await api.findTargets(operand.source, (await api.detectContent(operand.source)) === 'gpt', api.nodeCryptoEngine);
      if (found.targets.length !== 1) throw new Error(`in-process discovery found ${found.targets.length} targets`);
    } finally {
      await operand.close();
    }
  };
  const rows: string[][] = [];
  for (const [name, step] of [
    ['open + findTargets (verify IMAGE\'s search)', discover],
    ['inspectImage (survey + the same search)', () => api.inspectImage(image)],
  ] as const) {
    const times: number[] = [];
    for (let i = 0; i <= RUNS; i++) {
      const t0 = process.hrtime.bigint();
      await step();
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    rows.push([name, times[0]!.toFixed(1), median(times.slice(1)).toFixed(2), times.slice(1).map((t) => t.toFixed(2)).join(' ')]);
  }
  return rows;
}

async function main(): Promise<void> {
  requireBuiltCli();
  const veritysetup = findVeritysetup();
  const cacheDir = join(process.env.VERITY_BENCH_DIR ?? join(ROOT, '.cache'), `bench-discovery-${SIZE}`);
  const disk = buildDisk(cacheDir, SIZE);
  const scratch = scratchDir('verity-discovery-');
  try {
    console.log(machine());
    const masked = process.env.OPENSSL_ia32cap ? `; OPENSSL_ia32cap=${process.env.OPENSSL_ia32cap} (in every child)` : '';
    console.log(
      `${humanBytes(SIZE)} random root partition + ${humanBytes(statSync(disk.hash).size)} tree, customizer layout with a BLS entry, ` +
        `in ${cacheDir} (${disk.built ? `built in ${disk.built.toFixed(1)} s` : 'cached'}); ${RUNS} rounds after a warm-up, rows alternating; ` +
        `peak RSS: ${rssMethod()}${masked}`,
    );
    for (const f of [disk.raw, disk.root, disk.hash, ...(disk.vhdx ? [disk.vhdx] : [])]) readWhole(f);
    checkDiscovery(disk.raw, disk);
    if (disk.vhdx) checkDiscovery(disk.vhdx, disk);

    const { root, hash } = disk.partitions;
    const verity = (...args: string[]): [string, string[]] => [process.execPath, [CLI, ...args]];
    const verify = (...operands: string[]) => verity('verify', ...operands, '--no-progress', ...EXTRA);
    const rows: Row[] = [
      { name: 'verify disk.raw (discovery)', command: verify(disk.raw) },
      { name: `verify disk.raw::${root} disk.raw::${hash} ROOT (explicit)`, command: verify(`${disk.raw}::${root}`, `${disk.raw}::${hash}`, disk.rootHash) },
      ...(veritysetup ? [{ name: 'veritysetup verify root.img roothash.img ROOT', command: [veritysetup, ['verify', disk.root, disk.hash, disk.rootHash]] as [string, string[]] }] : []),
      ...(disk.vhdx
        ? [
            { name: 'verify disk.vhdx (discovery)', command: verify(disk.vhdx) },
            { name: `verify disk.vhdx::${root} disk.vhdx::${hash} ROOT (explicit)`, command: verify(`${disk.vhdx}::${root}`, `${disk.vhdx}::${hash}`, disk.rootHash) },
          ]
        : []),
      {
        name: 'inspect disk.raw (the search alone)',
        command: verity('inspect', disk.raw),
        expect: (m) => {
          if (!m.stdout.includes(`PARTLABEL=root`)) throw new Error(`inspect did not show the boot entry:\n${m.stdout}`);
        },
      },
      { name: '--version (start-up alone)', command: verity('--version') },
    ];
    const results = rows.map(() => [] as Measured[]);
    for (let round = 0; round <= RUNS; round++) {
      const order = round % 2 === 0 ? [...rows.keys()] : [...rows.keys()].reverse();
      for (const i of order) {
        const m = check(await measure(...rows[i]!.command, scratch), rows[i]!.name);
        rows[i]!.expect?.(m);
        if (round > 0) results[i]!.push(m);
      }
      const a = results[0]!.at(-1)?.wall;
      const b = results[1]!.at(-1)?.wall;
      process.stderr.write(round === 0 ? 'warm-up done\n' : `round ${round}/${RUNS}: discovery ${a!.toFixed(2)} s, explicit ${b!.toFixed(2)} s, ratio ${(a! / b!).toFixed(3)}\n`);
    }

    const wall = (i: number) => median(results[i]!.map((m) => m.wall));
    const explicit = wall(1);
    const out = rows.map((r, i) => {
      const ms = results[i]!;
      return [
        r.name,
        wall(i).toFixed(2),
        `${(wall(i) / explicit).toFixed(3)}×`,
        mib(median(ms.map((m) => m.maxRssKiB))).toFixed(1),
        mib(Math.max(...ms.map((m) => m.maxRssKiB))).toFixed(1),
        ms.map((m) => m.wall.toFixed(2)).join(' '),
      ];
    });
    const settings = EXTRA.length ? `verify with ${EXTRA.join(' ')}` : 'default engine and threads';
    console.log(`\n${humanBytes(SIZE)} root partition, page-cached; ${settings}; wall includes process start-up`);
    console.log(table(['row', 'wall (median, s)', 'vs explicit', 'peak RSS (median, MiB)', 'peak RSS (max, MiB)', 'wall per run (s)'], out));

    const ratios = (a: number, b: number) => {
      const perRound = results[a]!.map((m, k) => m.wall / results[b]!.at(k)!.wall);
      const ratio = wall(a) / wall(b);
      return `${ratio.toFixed(3)} (median of per-round ratios ${median(perRound).toFixed(3)}): ${ratio <= 1.1 ? 'within' : 'OVER'} the 1.1× bound`;
    };
    console.log(`\ndiscovery / explicit, raw: ${ratios(0, 1)}`);
    if (disk.vhdx) {
      const v = rows.findIndex((r) => r.name.startsWith('verify disk.vhdx ('));
      console.log(`discovery / explicit, VHDX: ${ratios(v, v + 1)}`);
    }

    console.log(`\nThe discovery step in this process (ms; the first call is cold, as in a CLI run):`);
    console.log(table(['step', 'cold (ms)', `warm (median of ${RUNS}, ms)`, 'warm per run (ms)'], await timeInProcess(disk.raw)));
  } finally {
    if (flag('--rm')) rmSync(cacheDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`bench/discovery.ts: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
