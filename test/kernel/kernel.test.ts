/**
 * The Linux kernel's dm-verity is the judge: every case is formatted by OUR `verity format` (veritysetup only in one
 * FEC sanity case),
 * then Debian's kernel, booted once under qemu (TCG) with the initramfs of scripts/kernel/kit.sh, maps it with
 * `dmsetup create ... verity ...` and reads it end to end. Per case:
 *   - clean: the device maps, reads fully (O_DIRECT), its sha256 equals the data's and dm status is "V";
 *   - corrupted (bytes flipped in a few data blocks): in the default error mode a full read fails; with
 *     `ignore_corruption` the kernel logs "data block N is corrupted" for exactly the blocks that OUR
 *     `verity verify --json` reports (and that we flipped).
 * Plus a control: a wrong root hash makes the kernel refuse the read (so a test that cannot fail would show).
 * And FEC: parity from OUR `verity format --fec-device` (separate, or on the hash device after the tree; 2 to 24
 * roots; 512 to 4096-byte blocks), 1 to `roots` data blocks damaged in one round: the kernel, with
 * `use_fec_from_device`, reads the device through, logs "FEC <n>: corrected <k> errors", and returns the original
 * data; `roots` + 1 fail the read ("failed to correct"). Up to roots / 2 are errors; past that the kernel needs the
 * erasures its tree locates. One case with veritysetup's parity checks the test itself (and that ours is the same).
 *
 * The CLI runs from a copy of dist/ made when the matrix starts, so a concurrent build cannot remove it mid-run.
 *
 * Run with `npm run test:kernel` (builds, makes the kit, runs only this file). Skips, saying why in the titles,
 * when qemu-system-x86_64 or the kit is absent. KERNEL_KIT_DIR: the kit's directory (default .cache/kernel-kit);
 * KERNEL_TEST_TIMEOUT_S: qemu's time limit (default 1200); KERNEL_TEST_KEEP=1 keeps the images and serial log;
 * KERNEL_TEST_ONLY=k01,f02 runs only those cases (the others are generated the same way, not run).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../support/rng.js';
import { findTool } from '../support/tools.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST_CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** The CLI the cases are formatted with: a private copy of dist/ (see snapshotCli), set in beforeAll. */
let CLI = DIST_CLI;
const KIT_DIR = process.env.KERNEL_KIT_DIR ?? join(ROOT, '.cache', 'kernel-kit');
const BOOT_TIMEOUT_S = Number(process.env.KERNEL_TEST_TIMEOUT_S ?? 1200);

interface Kit {
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelRelease: string;
  busyboxVersion: string;
  dmsetupVersion: string;
  qemuVersion: string;
  vmlinuz: string;
  initramfs: string;
}

function loadKit(): Kit | null {
  try {
    const kit = JSON.parse(readFileSync(join(KIT_DIR, 'kit.json'), 'utf8')) as Kit;
    return existsSync(kit.vmlinuz) && existsSync(kit.initramfs) ? kit : null;
  } catch {
    return null;
  }
}

const QEMU = findTool('qemu-system-x86_64', '/usr/bin/qemu-system-x86_64');
const KIT = loadKit();
const SKIP = !QEMU
  ? ' [SKIPPED: qemu-system-x86_64 not installed; run `bash scripts/kernel/kit.sh`]'
  : !KIT
    ? ` [SKIPPED: no kernel kit in ${KIT_DIR}; run \`bash scripts/kernel/kit.sh\`]`
    : !existsSync(DIST_CLI)
      ? ' [SKIPPED: dist/cli/main.js not built; run `npm run build`]'
      : '';
const KERNEL = KIT ? `${KIT.kernelPackage} ${KIT.kernelPackageVersion}` : 'Debian kernel';

// ---------------------------------------------------------------------------------------------------------------
// The matrix

type Alg = 'sha256' | 'sha1' | 'sha512';
const DIGEST: Record<Alg, number> = { sha1: 20, sha256: 32, sha512: 64 };

interface Spec {
  id: string;
  alg: Alg;
  hashType: 0 | 1;
  dataBlockSize: number;
  hashBlockSize: number;
  blocks: number;
  /** hex, '' for none (passed as "-") */
  salt: string;
  superblock: boolean;
  /** 'separate': hash file of its own (at hashOffset in it); 'same': the tree at hashOffset in the data file */
  layout: 'separate' | 'same';
  hashOffset: number;
  /** data blocks to damage, ascending */
  corrupt: number[];
  seed: number;
}

function hashesPerBlock(alg: Alg, hashBlockSize: number): number {
  return 2 ** Math.floor(Math.log2(hashBlockSize / DIGEST[alg]));
}

function treeLevels(s: Pick<Spec, 'alg' | 'hashBlockSize' | 'blocks'>): number {
  let n = s.blocks;
  let levels = 0;
  const per = hashesPerBlock(s.alg, s.hashBlockSize);
  while (n > 1) {
    n = Math.ceil(n / per);
    levels++;
  }
  return levels;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function buildMatrix(): Spec[] {
  const rng = new Rng(0x6b65726e); // "kern"
  const saltLengths = [0, 1, 32, 256];
  const specs: Spec[] = [];
  const shapes: Array<[Alg, 0 | 1, number, number]> = [];
  for (const alg of ['sha256', 'sha1', 'sha512'] as const)
    for (const hashType of [1, 0] as const) for (const bs of [512, 1024, 4096]) shapes.push([alg, hashType, bs, bs]);
  // data block size != hash block size
  shapes.push(['sha256', 1, 4096, 1024], ['sha1', 0, 512, 4096], ['sha512', 1, 1024, 4096], ['sha256', 0, 4096, 512]);

  shapes.forEach(([alg, hashType, dataBlockSize, hashBlockSize], i) => {
    // A few hundred KiB to 2 MiB of data, at least two tree levels.
    const bytes = rng.int(300, 2048) * 1024;
    let blocks = Math.max(Math.floor(bytes / dataBlockSize), hashesPerBlock(alg, hashBlockSize) + rng.int(1, 64));
    if (treeLevels({ alg, hashBlockSize, blocks }) < 2) blocks = hashesPerBlock(alg, hashBlockSize) + 1;
    const superblock = i % 3 !== 2;
    const layout = i % 4 === 1 || i % 4 === 2 ? 'same' : 'separate';
    const dataBytes = blocks * dataBlockSize;
    const hashOffset =
      layout === 'same'
        ? alignUp(dataBytes, hashBlockSize) + (i % 2 === 0 ? 0 : rng.int(1, 3) * hashBlockSize)
        : i % 4 === 3
          ? rng.int(1, 4) * hashBlockSize
          : 0;
    const count = rng.int(3, 7);
    const picked = new Set<number>();
    if (i % 3 === 0) picked.add(0);
    if (i % 3 === 1) picked.add(blocks - 1);
    if (i % 5 === 0) {
      picked.add(0);
      picked.add(blocks - 1);
    }
    if (i % 4 === 0) {
      const b = rng.int(1, blocks - 3); // two neighbours
      picked.add(b).add(b + 1);
    }
    while (picked.size < count) picked.add(rng.int(0, blocks - 1));
    specs.push({
      id: `k${String(i + 1).padStart(2, '0')}`,
      alg,
      hashType,
      dataBlockSize,
      hashBlockSize,
      blocks,
      salt: rng.hex(saltLengths[i % saltLengths.length]!),
      superblock,
      layout,
      hashOffset,
      corrupt: [...picked].sort((a, b) => a - b),
      seed: rng.seed(),
    });
  });
  return specs;
}

const ONLY = (process.env.KERNEL_TEST_ONLY ?? '').split(',').filter((x) => x !== '');
const SPECS = buildMatrix().filter((s) => ONLY.length === 0 || ONLY.includes(s.id));

function describeSpec(s: Spec): string {
  const bs =
    s.dataBlockSize === s.hashBlockSize
      ? `block size ${s.dataBlockSize}`
      : `block sizes data ${s.dataBlockSize}/hash ${s.hashBlockSize}`;
  const salt = s.salt === '' ? 'no salt' : `${s.salt.length / 2}-byte salt`;
  const where =
    s.layout === 'same' ? `tree in the data file at --hash-offset ${s.hashOffset}` : `hash file${s.hashOffset ? ` at --hash-offset ${s.hashOffset}` : ''}`;
  return `${s.id} ${s.alg} format ${s.hashType}, ${bs}, ${salt}, ${s.superblock ? 'superblock' : '--no-superblock'}, ${where}, ${s.blocks} blocks/${treeLevels(s)} levels`;
}

// ---------------------------------------------------------------------------------------------------------------
// Host side: images, our format and verify

/**
 * Copies dist/ (and package.json, which the CLI reads its version from) to a directory of this run under .cache/, so
 * that a concurrent `npm run build` (which empties dist/ first) cannot pull the CLI away mid-matrix. Packages still
 * resolve from the repository's node_modules (a parent directory). Returns the copy's directory.
 */
function snapshotCli(): string {
  const at = join(ROOT, '.cache', `kernel-cli-${process.pid}`);
  rmSync(at, { recursive: true, force: true });
  mkdirSync(at, { recursive: true });
  cpSync(join(ROOT, 'dist'), join(at, 'dist'), { recursive: true });
  copyFileSync(join(ROOT, 'package.json'), join(at, 'package.json'));
  CLI = join(at, 'dist', 'cli', 'main.js');
  if (!existsSync(CLI)) throw new Error(`dist/ was incomplete when copied (is a build running?); copy in ${at}`);
  return at;
}

/** Deterministic random bytes (AES-128-CTR keystream of the seed). */
function randomBytes(seed: number, n: number): Buffer {
  const key = createHash('sha256').update(`kernel-test:${seed}`).digest();
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(n));
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function verity(args: string[]): { code: number; json: Record<string, any> } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json', '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status === null) throw new Error(`verity ${args.join(' ')}: killed (${String(r.signal)})`);
  try {
    return { code: r.status, json: JSON.parse(r.stdout) as Record<string, any> };
  } catch {
    throw new Error(`verity ${args.join(' ')}: exit ${r.status}, no JSON on stdout: ${r.stdout}${r.stderr}`);
  }
}

/** The tree parameters as options (all of them: with --no-superblock verify needs them again). */
function treeArgs(s: Spec): string[] {
  const a = ['--hash', s.alg, '--format', String(s.hashType), '--data-block-size', String(s.dataBlockSize)];
  a.push('--hash-block-size', String(s.hashBlockSize), '--salt', s.salt === '' ? '-' : s.salt);
  a.push('--data-blocks', String(s.blocks), '--hash-offset', String(s.hashOffset));
  if (!s.superblock) a.push('--no-superblock');
  return a;
}

interface Built {
  spec: Spec;
  rootHash: string;
  /** hash_start_block for the table: hash_offset / hash_block_size + (superblock ? 1 : 0) */
  hashStart: number;
  formatHashStart: number;
  formatLevels: number;
  cleanSha: string;
  corruptSha: string;
  /** data blocks our `verify --json` names as corrupted in the damaged copy */
  reported: number[];
  verifyExit: number;
  /** 512-byte sectors on the images disk */
  clean: { dataOff: number; dataLen: number; hashOff: number | null; hashLen: number };
  damaged: { dataOff: number; dataLen: number };
}

/** Expands the `corrupt` ranges of a verify report to block numbers. */
function blocksOf(ranges: Array<{ first: number; last: number }>): number[] {
  const out: number[] = [];
  for (const r of ranges) for (let b = r.first; b <= r.last; b++) out.push(b);
  return out;
}

class ImagesDisk {
  private fd: number;
  private end = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }
  /** Appends `bytes` (4 KiB aligned); returns [offset, length] in 512-byte sectors, length rounded up. */
  add(bytes: Uint8Array): [number, number] {
    const at = this.end;
    writeSync(this.fd, bytes, 0, bytes.length, at);
    this.end = alignUp(at + bytes.length, 4096);
    return [at / 512, Math.ceil(bytes.length / 512)];
  }
  close(): void {
    writeSync(this.fd, new Uint8Array(4096), 0, 4096, this.end); // the last region's padding, and a tail
    closeSync(this.fd);
  }
}

function buildCase(s: Spec, dir: string, disk: ImagesDisk): Built {
  const dataBytes = s.blocks * s.dataBlockSize;
  const data = randomBytes(s.seed, dataBytes);
  const dataPath = join(dir, `${s.id}.data`);
  const hashPath = s.layout === 'same' ? dataPath : join(dir, `${s.id}.hash`);
  writeFileSync(dataPath, data);
  const f = verity(['format', ...treeArgs(s), dataPath, hashPath]);
  if (f.code !== 0) throw new Error(`verity format ${s.id}: ${JSON.stringify(f.json)}`);
  const rootHash = String(f.json.rootHash);
  const tree = f.json.tree as { hashStartBlock: number; levels: unknown[] };

  // The damaged copy: flip 1-3 bytes of each chosen block (never a no-op: masks are non-zero).
  const rng = new Rng(s.seed);
  const whole = readFileSync(dataPath); // data (+ tree when 'same')
  const damaged = Buffer.from(whole);
  for (const b of s.corrupt) {
    for (let k = rng.int(1, 3); k > 0; k--) {
      const at = b * s.dataBlockSize + rng.int(0, s.dataBlockSize - 1);
      damaged[at] = damaged[at]! ^ rng.int(1, 255);
    }
  }
  const damagedPath = join(dir, `${s.id}.damaged`);
  writeFileSync(damagedPath, damaged);
  const v = verity(['verify', ...treeArgs(s), damagedPath, s.layout === 'same' ? damagedPath : hashPath, rootHash]);
  const reported = v.json.data?.corrupt ? blocksOf(v.json.data.corrupt) : [];

  const [dataOff, dataLen] = disk.add(whole);
  let hashOff: number | null = null;
  let hashLen = 0;
  if (s.layout === 'separate') [hashOff, hashLen] = disk.add(readFileSync(hashPath));
  const [dOff, dLen] = disk.add(damaged);
  rmSync(damagedPath);
  return {
    spec: s,
    rootHash,
    hashStart: s.hashOffset / s.hashBlockSize + (s.superblock ? 1 : 0),
    formatHashStart: tree.hashStartBlock,
    formatLevels: tree.levels.length,
    cleanSha: sha256(data),
    corruptSha: sha256(damaged.subarray(0, dataBytes)),
    reported,
    verifyExit: v.code,
    clean: { dataOff, dataLen, hashOff, hashLen },
    damaged: { dataOff: dOff, dataLen: dLen },
  };
}

function manifestLine(b: Built, id: string, mode: string, dataOff: number, dataLen: number, root = b.rootHash): string {
  const s = b.spec;
  const hash = b.clean.hashOff === null ? '- 0' : `${b.clean.hashOff} ${b.clean.hashLen}`;
  return [
    'case', id, mode, s.hashType, s.dataBlockSize, s.hashBlockSize, s.blocks, b.hashStart, s.alg, root,
    s.salt === '' ? '-' : s.salt, dataOff, dataLen, hash,
  ].join(' ');
}

// ---------------------------------------------------------------------------------------------------------------
// FEC: the kernel corrects damaged blocks with OUR parity (verity format --fec-device)
//
// Covered block k is symbol floor(k / rounds) of the codewords of round k mod rounds, so the data blocks 0, rounds,
// 2·rounds, … all fall in round 0: damaging n of them (the same byte positions in each) puts n bad symbols in those
// codewords. The kernel first decodes them as errors (at most roots / 2 per codeword), and when that fails, again with
// every block of the round whose digest does not match its tree entry as an erasure (dm-verity-fec.c: fec_decode_rsb
// with use_erasures, fec_is_erasure): at most roots.

interface FecSpec {
  id: string;
  blockSize: number;
  blocks: number;
  roots: number;
  /** 'separate': a FEC file of its own; 'hash': on the hash device after the tree (--fec-offset). */
  place: 'separate' | 'hash';
  /** Damaged data blocks, all in round 0. */
  damaged: number;
  /** Whether the kernel must read the device through (at most roots damaged blocks in the round). */
  correctable: boolean;
  /** Who writes the tree and the parity: OUR `verity format`, or veritysetup (the test's own sanity check). */
  maker: 'verity' | 'veritysetup';
  seed: number;
}

const VERITYSETUP = findTool('veritysetup', '/usr/sbin/veritysetup', '/sbin/veritysetup');

const FEC_SPECS = (
  [
    // Within roots / 2: error decoding alone corrects them (the first attempt).
    { id: 'f01', blockSize: 4096, blocks: 600, roots: 2, place: 'separate', damaged: 1, correctable: true, maker: 'verity', seed: 1 },
    { id: 'f02', blockSize: 4096, blocks: 900, roots: 8, place: 'hash', damaged: 4, correctable: true, maker: 'verity', seed: 2 },
    { id: 'f03', blockSize: 1024, blocks: 2000, roots: 24, place: 'separate', damaged: 12, correctable: true, maker: 'verity', seed: 3 },
    { id: 'f04', blockSize: 512, blocks: 3000, roots: 6, place: 'hash', damaged: 3, correctable: true, maker: 'verity', seed: 4 },
    // Past roots / 2 up to roots: only erasure decoding (blocks located by their digests) corrects them.
    { id: 'f05', blockSize: 4096, blocks: 600, roots: 2, place: 'separate', damaged: 2, correctable: true, maker: 'verity', seed: 5 },
    { id: 'f07', blockSize: 1024, blocks: 1500, roots: 8, place: 'hash', damaged: 8, correctable: true, maker: 'verity', seed: 7 },
    // roots + 1: past any decoding; the read must fail.
    { id: 'f06', blockSize: 4096, blocks: 600, roots: 2, place: 'separate', damaged: 3, correctable: false, maker: 'verity', seed: 6 },
    { id: 'f08', blockSize: 1024, blocks: 1500, roots: 8, place: 'hash', damaged: 9, correctable: false, maker: 'verity', seed: 8 },
    // Sanity for the test itself: veritysetup's tree and parity on the same data as f01, damaged past roots / 2.
    ...(VERITYSETUP
      ? [{ id: 'f09', blockSize: 4096, blocks: 600, roots: 4, place: 'separate', damaged: 3, correctable: true, maker: 'veritysetup', seed: 1 } satisfies FecSpec]
      : []),
  ] satisfies FecSpec[]
).filter((s) => ONLY.length === 0 || ONLY.includes(s.id));

interface FecBuilt {
  spec: FecSpec;
  line: string;
  cleanSha: string;
  /** Data blocks damaged (round 0: 0, rounds, 2·rounds, …). */
  blocks: number[];
  rounds: number;
  coveredBlocks: number;
  /** veritysetup cases: whether OUR format of the same data and options wrote the same hash and FEC files. */
  sameAsOurs: boolean | null;
}

const FEC_SALT = '0011';
const FEC_UUID = '6b65726e-656c-4fec-8000-000000000001';

/** veritysetup format with a separate FEC file; returns the root hash it prints. */
function veritysetupFormat(s: FecSpec, dataPath: string, hashPath: string, fecPath: string): string {
  const r = spawnSync(
    VERITYSETUP!,
    ['format', '--data-block-size', String(s.blockSize), '--hash-block-size', String(s.blockSize), '--salt', FEC_SALT,
      '--uuid', FEC_UUID, '--fec-device', fecPath, '--fec-roots', String(s.roots), dataPath, hashPath],
    { encoding: 'utf8', timeout: 120_000 },
  );
  const root = /^Root hash:\s*([0-9a-f]+)$/m.exec(r.stdout ?? '')?.[1];
  if (r.status !== 0 || !root) throw new Error(`veritysetup format ${s.id}: exit ${r.status}: ${r.stdout}${r.stderr}`);
  return root;
}

function buildFecCase(s: FecSpec, dir: string, disk: ImagesDisk): FecBuilt {
  const data = randomBytes(s.seed + 1000, s.blocks * s.blockSize);
  const dataPath = join(dir, `${s.id}.data`);
  const hashPath = join(dir, `${s.id}.hash`);
  const fecPath = s.place === 'hash' ? hashPath : join(dir, `${s.id}.fec`);
  writeFileSync(dataPath, data);
  const bs = String(s.blockSize);
  const tree = ['--data-block-size', bs, '--hash-block-size', bs, '--salt', FEC_SALT, '--uuid', FEC_UUID];
  let rootHash: string;
  let rounds: number;
  let coveredBlocks: number;
  let startBlock: number;
  let sameAsOurs: boolean | null = null;
  if (s.maker === 'veritysetup') {
    rootHash = veritysetupFormat(s, dataPath, hashPath, fecPath);
    // The table values from the files alone (not from our JSON): everything on the hash device after the
    // superblock is covered; the parity starts at block 0 of its file.
    coveredBlocks = s.blocks + readFileSync(hashPath).length / s.blockSize - 1;
    rounds = Math.ceil(coveredBlocks / (255 - s.roots));
    startBlock = 0;
    const ours = verity(['format', ...tree, '--fec-roots', String(s.roots), '--fec-device', join(dir, `${s.id}.ours.fec`),
      dataPath, join(dir, `${s.id}.ours.hash`)]);
    sameAsOurs =
      ours.code === 0 &&
      ours.json.rootHash === rootHash &&
      readFileSync(join(dir, `${s.id}.ours.hash`)).equals(readFileSync(hashPath)) &&
      readFileSync(join(dir, `${s.id}.ours.fec`)).equals(readFileSync(fecPath));
  } else {
    // The tree's end, for parity right after it on the hash device: format once without FEC to learn it.
    let offset = 0;
    if (s.place === 'hash') {
      const probe = verity(['format', ...tree, dataPath, join(dir, `${s.id}.probe`)]);
      offset = alignUp(Number(probe.json.tree.hashDeviceSize), s.blockSize);
    }
    const f = verity(['format', ...tree, '--fec-roots', String(s.roots), '--fec-device', fecPath, '--fec-offset', String(offset),
      dataPath, hashPath]);
    if (f.code !== 0) throw new Error(`verity format ${s.id}: ${JSON.stringify(f.json)}`);
    const fec = f.json.fec as { rounds: number; coveredBlocks: number; startBlock: number; roots: number };
    rootHash = String(f.json.rootHash);
    ({ rounds, coveredBlocks, startBlock } = fec);
  }
  const blocks = Array.from({ length: s.damaged }, (_, i) => i * rounds);
  if (blocks.at(-1)! >= s.blocks) throw new Error(`${s.id}: ${s.damaged} blocks of round 0 need more than ${s.blocks} data blocks`);
  const damaged = Buffer.from(data);
  const rng = new Rng(s.seed);
  // The same few byte positions in every damaged block: those codewords get `damaged` bad symbols each.
  const positions = [rng.int(0, s.blockSize - 1), rng.int(0, s.blockSize - 1)];
  for (const b of blocks) for (const p of positions) damaged[b * s.blockSize + p] = damaged[b * s.blockSize + p]! ^ rng.int(1, 255);
  const [dOff, dLen] = disk.add(damaged);
  const [hOff, hLen] = disk.add(readFileSync(hashPath));
  const fecField = s.place === 'hash' ? '- 0' : disk.add(readFileSync(fecPath)).join(' ');
  const line = [
    'case', s.id, 'fec', 1, s.blockSize, s.blockSize, s.blocks, 1, 'sha256', rootHash, FEC_SALT, dOff, dLen, hOff, hLen,
    fecField, s.roots, coveredBlocks, startBlock,
  ].join(' ');
  for (const p of [dataPath, hashPath, fecPath]) rmSync(p, { force: true });
  return { spec: s, line, cleanSha: sha256(data), blocks, rounds, coveredBlocks, sameAsOurs };
}

// ---------------------------------------------------------------------------------------------------------------
// Guest results

type Fields = Record<string, string>;
interface Run {
  results: Map<string, Fields>; // "<id> <mode>"
  klog: string[];
  kitLines: string[];
  done: string | null;
  wallSeconds: number;
  serial: string;
}

function parseSerial(text: string): Omit<Run, 'wallSeconds' | 'serial'> {
  const results = new Map<string, Fields>();
  const klog: string[] = [];
  const kitLines: string[] = [];
  let done: string | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('@@RESULT ')) {
      const [, id, mode, ...kv] = line.split(' ');
      const fields: Fields = {};
      for (const p of kv) {
        const eq = p.indexOf('=');
        if (eq > 0) fields[p.slice(0, eq)] = p.slice(eq + 1);
      }
      results.set(`${id} ${mode}`, fields);
    } else if (line.startsWith('@@KLOG ')) klog.push(line.slice(7));
    else if (line.startsWith('@@KIT ')) kitLines.push(line.slice(6));
    else if (line.startsWith('@@DONE ')) done = line.slice(7);
  }
  return { results, klog, kitLines, done };
}

function boot(kit: Kit, qemu: string, manifest: string, images: string, serialPath: string): Promise<number> {
  const args = [
    '-accel', 'tcg', '-m', '512', '-smp', '1', '-nodefaults', '-display', 'none', '-no-reboot',
    '-serial', `file:${serialPath}`,
    '-kernel', kit.vmlinuz, '-initrd', kit.initramfs,
    '-append', 'console=ttyS0 quiet loglevel=3 panic=-1',
    '-drive', `file=${manifest},format=raw,if=virtio,readonly=on`,
    '-drive', `file=${images},format=raw,if=virtio,readonly=on`,
  ];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (d: Buffer) => (err += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`qemu killed after ${BOOT_TIMEOUT_S} s (KERNEL_TEST_TIMEOUT_S); serial log: ${serialPath}`));
    }, BOOT_TIMEOUT_S * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`qemu exited ${code ?? signal}: ${err}`));
      else resolve((performance.now() - t0) / 1000);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------

describe.skipIf(SKIP !== '')(`Linux dm-verity (${KERNEL}, qemu TCG) accepts what verity format writes${SKIP}`, () => {
  let dir = '';
  const built = new Map<string, Built>();
  const fecBuilt = new Map<string, FecBuilt>();
  let run: Run;
  let cliCopy = '';
  const CONTROL = 'control-badroot';
  const controlRuns = SPECS.length > 0;

  beforeAll(async () => {
    const kit = KIT!;
    dir = mkdtempSync(join(tmpdir(), 'verity-kernel-'));
    cliCopy = snapshotCli();
    const t0 = performance.now();
    const disk = new ImagesDisk(join(dir, 'images.raw'));
    for (const s of SPECS) built.set(s.id, buildCase(s, dir, disk));
    for (const s of FEC_SPECS) fecBuilt.set(s.id, buildFecCase(s, dir, disk));
    disk.close();
    const lines = ['VERITY-KIT-MANIFEST 1'];
    for (const b of built.values()) {
      lines.push(manifestLine(b, b.spec.id, 'clean', b.clean.dataOff, b.clean.dataLen));
      lines.push(manifestLine(b, b.spec.id, 'corrupt', b.damaged.dataOff, b.damaged.dataLen));
    }
    // Control: the first case's clean images with one hex digit of the root hash changed.
    if (controlRuns) {
      const first = built.get(SPECS[0]!.id)!;
      const wrong = (first.rootHash[0] === '0' ? '1' : '0') + first.rootHash.slice(1);
      lines.push(manifestLine(first, CONTROL, 'badroot', first.clean.dataOff, first.clean.dataLen, wrong));
    }
    for (const b of fecBuilt.values()) lines.push(b.line);
    const text = Buffer.from(lines.join('\n') + '\n');
    const manifest = Buffer.alloc(alignUp(text.length + 1, 4096));
    text.copy(manifest);
    writeFileSync(join(dir, 'manifest.raw'), manifest);
    const hostSeconds = (performance.now() - t0) / 1000;

    const serialPath = join(dir, 'serial.log');
    const wallSeconds = await boot(kit, QEMU!, join(dir, 'manifest.raw'), join(dir, 'images.raw'), serialPath);
    const serial = readFileSync(serialPath, 'utf8');
    run = { ...parseSerial(serial), wallSeconds, serial };
    console.log(
      `[kernel] ${kit.kernelPackage} ${kit.kernelPackageVersion} (${kit.kernelRelease}), busybox ${kit.busyboxVersion}, ` +
        `dmsetup ${kit.dmsetupVersion}, ${kit.qemuVersion}\n` +
        `[kernel] ${SPECS.length} cases (+${controlRuns ? 1 : 0} control), ${FEC_SPECS.length} FEC cases: images ` +
        `${hostSeconds.toFixed(1)} s on the host, boot + matrix ${wallSeconds.toFixed(1)} s wall (TCG); guest: ` +
        run.kitLines.join('; '),
    );
    // What the kernel said about FEC, per case (the first lines of each; the full log is in the serial file).
    for (const b of fecBuilt.values()) {
      const lines = run.klog.filter((l) => l.startsWith(`${b.spec.id} fec `)).map((l) => l.slice(b.spec.id.length + 5));
      const r = run.results.get(`${b.spec.id} fec`);
      console.log(
        `[kernel] ${b.spec.id} roots ${b.spec.roots}, ${b.coveredBlocks} covered, ${b.rounds} rounds, blocks ` +
          `${b.blocks.join(',')} damaged: read=${r?.read} corrected-lines=${r?.corrected} ms=${r?.ms}\n` +
          lines.slice(0, 4).map((l) => `    ${l}`).join('\n') +
          (lines.length > 4 ? `\n    … ${lines.length - 4} more` : ''),
      );
    }
  }, BOOT_TIMEOUT_S * 1000 + 300_000);

  afterAll(() => {
    if (cliCopy) rmSync(cliCopy, { recursive: true, force: true });
    if (!dir) return;
    if (process.env.KERNEL_TEST_KEEP) console.log(`[kernel] kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  const result = (id: string, mode: string): Fields => {
    const r = run.results.get(`${id} ${mode}`);
    if (!r) throw new Error(`no "${id} ${mode}" result on the serial console; tail:\n${run.serial.slice(-3000)}`);
    return r;
  };

  it(`the guest ran all ${SPECS.length} cases (clean, ignore_corruption, default mode) and the control, and powered off`, () => {
    expect(run.done, run.serial.slice(-3000)).toBe('ok');
    expect(run.results.size).toBe(SPECS.length * 3 + (controlRuns ? 1 : 0) + FEC_SPECS.length);
    expect(run.kitLines).toContain(`uname=${KIT!.kernelRelease}`);
  });

  for (const s of SPECS) {
    it(`${describeSpec(s)}: the kernel maps our tree, reads every block and returns exactly the data`, () => {
      const b = built.get(s.id)!;
      expect(b.formatLevels, 'tree levels').toBeGreaterThanOrEqual(2);
      expect(b.formatHashStart, 'format --json tree.hashStartBlock').toBe(b.hashStart);
      const r = result(s.id, 'clean');
      expect(r.create, r.reason).toBe('0');
      expect(r.read, 'dd exit code').toBe('0');
      expect(r.status, 'dmsetup status').toBe('V');
      expect(r.sha256, 'sha256 of the mapped device').toBe(b.cleanSha);
    });

    it(`${describeSpec(s)}: blocks ${s.corrupt.join(',')} damaged: default mode fails the read; ignore_corruption logs exactly the blocks verify --json reports`, () => {
      const b = built.get(s.id)!;
      expect(b.verifyExit, 'verify exit code (2: corrupted blocks)').toBe(2);
      expect(b.reported, 'our report vs the blocks we damaged').toEqual(s.corrupt);
      const eio = result(s.id, 'eio');
      expect(eio.create, eio.reason).toBe('0');
      expect(eio.read, 'dd exit code in the default (EIO) mode').not.toBe('0');
      expect(eio.status).toBe('C');
      const ic = result(s.id, 'ignore');
      expect(ic.create, ic.reason).toBe('0');
      expect(ic.suppressed, 'rate-limited (suppressed) kernel messages').toBe('0');
      expect(ic.other, 'other corruption messages (metadata blocks, other devices)').toBe('0');
      expect(ic.read, 'dd exit code with ignore_corruption').toBe('0');
      expect(ic.sha256, 'with ignore_corruption the device reads as the damaged data').toBe(b.corruptSha);
      const kernelBlocks = (ic.blocks ?? '-').split(',').filter((x) => x !== '' && x !== '-').map(Number);
      expect(kernelBlocks, 'data blocks the kernel logged as corrupted').toEqual(b.reported);
    });
  }

  const fecLog = (id: string): string[] => run.klog.filter((l) => l.startsWith(`${id} fec `));

  for (const s of FEC_SPECS) {
    const maker = s.maker === 'veritysetup' ? "veritysetup's" : 'our';
    const what =
      `${s.id} FEC ${s.roots} roots (${maker} tree and parity), ` +
      `${s.place === 'hash' ? 'on the hash device after the tree' : 'a separate file'}, block size ${s.blockSize}, ` +
      `${s.damaged} damaged blocks in one round`;
    if (s.maker === 'veritysetup') {
      it(`${s.id}: our format of the same data and options writes the same hash and FEC files as veritysetup`, () => {
        expect(fecBuilt.get(s.id)!.sameAsOurs).toBe(true);
      });
    }
    if (s.correctable) {
      const how = 2 * s.damaged <= s.roots ? 'as errors (at most roots / 2)' : 'as erasures located by the tree (past roots / 2)';
      it(`${what}: the kernel corrects them ${how} and returns exactly the data`, () => {
        const b = fecBuilt.get(s.id)!;
        const r = result(s.id, 'fec');
        expect(r.create, r.reason).toBe('0');
        expect(r.read, 'dd exit code').toBe('0');
        expect(r.sha256, 'sha256 of the mapped device').toBe(b.cleanSha);
        expect(Number(r.corrected), `kernel "corrected" lines for blocks ${b.blocks.join(',')}`).toBeGreaterThan(0);
        expect(fecLog(s.id).some((l) => /verity-fec: \S+: FEC \d+: corrected \d+ errors/.test(l)), fecLog(s.id).join('\n')).toBe(true);
      });
    } else {
      it(`${what}: more than roots, the kernel cannot correct them and fails the read`, () => {
        const r = result(s.id, 'fec');
        expect(r.create, r.reason).toBe('0');
        expect(r.read, 'dd exit code').not.toBe('0');
        expect(fecLog(s.id).some((l) => /FEC \d+: failed to correct/.test(l)), fecLog(s.id).join('\n')).toBe(true);
      });
    }
  }

  it.skipIf(!controlRuns)(`control: a wrong root hash (one hex digit changed, ${SPECS[0]?.id}'s images) makes the kernel fail the read`, () => {
    const r = result(CONTROL, 'badroot');
    expect(r.create, r.reason).toBe('0');
    expect(r.read, 'dd exit code').not.toBe('0');
    expect(r.status).toBe('C');
    expect(run.klog.some((l) => l.startsWith(`${CONTROL} `) && /metadata block \d+ is corrupted/.test(l))).toBe(true);
  });
});
