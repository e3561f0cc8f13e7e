/**
 * Golden-vector generator: runs the REAL `veritysetup format` over a deterministic parameter matrix and records what it
 * produced (root hash, whole hash image digest, exact stdout) in test/golden/vectors.json, and the same with
 * `--fec-device` (plus the digest of the parity wherever it went) in test/golden/fec-vectors.json.
 *
 *   npx tsx scripts/gen-golden.ts                 # writes test/golden/vectors.json and fec-vectors.json
 *   npx tsx scripts/gen-golden.ts --out FILE      # writes the tree vectors elsewhere (e.g. to check determinism)
 *   npx tsx scripts/gen-golden.ts --fec-out FILE  # writes the FEC vectors elsewhere
 *   npx tsx scripts/gen-golden.ts --only tree     # only one of the two files ("tree" or "fec")
 *   npx tsx scripts/gen-golden.ts --dry-run       # lists the matrix without running veritysetup
 *   VERITYSETUP=/path/to/veritysetup npx tsx scripts/gen-golden.ts
 *
 * Everything (matrix, salts, UUIDs, data seeds) is derived from fixed PRNG seeds, so re-running with the same
 * veritysetup gives a byte-identical file. Test data comes from makeData() in test/support/data.ts.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { computeGeometry } from '../src/format/geometry.js';
import { makeData, type Fill } from '../test/support/data.js';
import { fecPaths } from '../test/support/fec-layout.js';
import { Rng } from '../test/support/rng.js';
import {
  GOLDEN_HASHES,
  type CaseOptions,
  type CaseSpec,
  type FecCaseSpec,
  type FecGoldenCase,
  type FecLayout,
  type GoldenCase,
  type GoldenHash,
} from '../test/golden/types.js';

// ---------------------------------------------------------------------------------------------------------------------
// Constants

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_OUT = join(ROOT, 'test', 'golden', 'vectors.json');
const DEFAULT_FEC_OUT = join(ROOT, 'test', 'golden', 'fec-vectors.json');
const VERITYSETUP = process.env.VERITYSETUP ?? (existsSync('/usr/sbin/veritysetup') ? '/usr/sbin/veritysetup' : 'veritysetup');

const KiB = 1024;
const MiB = 1024 * KiB;
/** Largest data file written: 64 MiB, plus 8 KiB so that 16385 blocks of 4096 bytes (and a partial block) still fit. */
const MAX_DATA_BYTES = 64 * MiB + 8 * KiB;
/** Block size veritysetup uses for the superblock read-modify-write on a regular file (min(f_bsize, page); docs/format.md §5). */
const SB_IO_BLOCK = 4096;

/** Salt used by upstream's tests/verity-compat-test, and by Examples A and B (docs/format.md §9). */
const UPSTREAM_SALT = 'e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d';
const EXAMPLE_UUID = 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033';

const HASHES = GOLDEN_HASHES;
type HashName = GoldenHash;
const DIGEST_SIZE: Record<HashName, number> = { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 };
const BLOCK_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] as const;

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

function hashesPerBlock(hash: HashName, hbs: number): number {
  return 2 ** Math.floor(Math.log2(hbs / DIGEST_SIZE[hash]));
}

const roundUp = (x: number, m: number): number => Math.ceil(x / m) * m;

// ---------------------------------------------------------------------------------------------------------------------
// Pairwise (AETG-style greedy) part of the matrix

type SaltKind = 'none' | 'empty' | '1' | '3' | '32' | '64' | '255' | '256' | 'upper32' | 'upper7';
type CountKind =
  | '1' | '2' | '3' | '127' | '128' | '129' | '1000' | '16384' | '16385'
  | 'hpb-1' | 'hpb' | 'hpb+1' | 'hpb^2' | 'hpb^2+1';
type OffsetKind = 0 | 512 | 4096 | 12800 | 1049088;

interface Dim {
  name: string;
  values: readonly (string | number | boolean)[];
  /** Tie-break weights (bias among values once their pairs are covered). */
  weights?: readonly number[];
}

const DIMS: Dim[] = [
  { name: 'hash', values: HASHES },
  { name: 'format', values: [0, 1] },
  { name: 'dbs', values: BLOCK_SIZES },
  { name: 'hbs', values: BLOCK_SIZES },
  { name: 'salt', values: ['none', 'empty', '1', '3', '32', '64', '255', '256', 'upper32', 'upper7'] satisfies SaltKind[], weights: [2, 1, 1, 1, 4, 1, 1, 1, 1, 1] },
  { name: 'sb', values: [true, false], weights: [2, 1] },
  { name: 'offset', values: [0, 512, 4096, 12800, 1049088] satisfies OffsetKind[], weights: [4, 1, 1, 1, 1] },
  {
    name: 'count',
    values: ['1', '2', '3', '127', '128', '129', '1000', '16384', '16385', 'hpb-1', 'hpb', 'hpb+1', 'hpb^2', 'hpb^2+1'] satisfies CountKind[],
  },
  { name: 'fill', values: ['random', 'zero', 'mixed'] satisfies Fill[], weights: [6, 1, 1] },
  { name: 'tail', values: [false, true], weights: [2, 1] },
  { name: 'shorter', values: [false, true], weights: [3, 1] },
];
const DIM_INDEX = new Map(DIMS.map((d, i) => [d.name, i]));

/** Dimension pairs whose every value combination must appear at least once (when feasible). */
const PAIRS: [string, string][] = [
  ['hash', 'format'], ['hash', 'dbs'], ['hash', 'hbs'], ['dbs', 'hbs'], ['format', 'dbs'], ['format', 'hbs'],
  ['salt', 'hash'], ['salt', 'format'],
  ['sb', 'offset'], ['sb', 'hash'], ['sb', 'format'], ['sb', 'hbs'], ['sb', 'dbs'],
  ['offset', 'hbs'], ['offset', 'format'], ['offset', 'hash'],
  ['count', 'hash'], ['count', 'format'], ['count', 'hbs'], ['count', 'dbs'], ['count', 'sb'],
  ['fill', 'hash'], ['fill', 'format'],
  ['tail', 'format'], ['tail', 'dbs'], ['tail', 'hash'],
  ['shorter', 'format'], ['shorter', 'sb'], ['shorter', 'hash'], ['shorter', 'dbs'],
];

type Assignment = (string | number | boolean)[];

interface Abstract {
  hash: HashName;
  format: 0 | 1;
  dbs: number;
  hbs: number;
  salt: SaltKind;
  sb: boolean;
  offset: OffsetKind;
  count: CountKind;
  fill: Fill;
  tail: boolean;
  shorter: boolean;
}

function toAbstract(a: Assignment): Abstract {
  const get = (n: string) => a[DIM_INDEX.get(n) as number];
  return {
    hash: get('hash') as HashName,
    format: get('format') as 0 | 1,
    dbs: get('dbs') as number,
    hbs: get('hbs') as number,
    salt: get('salt') as SaltKind,
    sb: get('sb') as boolean,
    offset: get('offset') as OffsetKind,
    count: get('count') as CountKind,
    fill: get('fill') as Fill,
    tail: get('tail') as boolean,
    shorter: get('shorter') as boolean,
  };
}

function resolveCount(kind: CountKind, hash: HashName, hbs: number): number {
  const hpb = hashesPerBlock(hash, hbs);
  switch (kind) {
    case 'hpb-1': return hpb - 1;
    case 'hpb': return hpb;
    case 'hpb+1': return hpb + 1;
    case 'hpb^2': return hpb * hpb;
    case 'hpb^2+1': return hpb * hpb + 1;
    default: return Number(kind);
  }
}

/** Extra whole blocks in the file beyond --data-blocks (0 when not shorter). Worst case used for feasibility. */
const MAX_EXTRA_BLOCKS = 3;

function feasible(x: Abstract): boolean {
  const n = resolveCount(x.count, x.hash, x.hbs);
  if (n < 1) return false;
  const fileBlocks = n + (x.shorter ? MAX_EXTRA_BLOCKS : 0);
  if (fileBlocks * x.dbs + (x.tail ? x.dbs - 1 : 0) > MAX_DATA_BYTES) return false;
  // Known veritysetup failure (docs/format.md §5): 1 data block + superblock at an offset that is not a multiple of the
  // read-modify-write block min(4096, hbs) -> "Error during update of verity header", exit 1.
  if (n === 1 && x.sb && x.offset % Math.min(SB_IO_BLOCK, x.hbs) !== 0) return false;
  return true;
}

function pairKey(i: number, a: unknown, j: number, b: unknown): string {
  return i < j ? `${i}=${String(a)}|${j}=${String(b)}` : `${j}=${String(b)}|${i}=${String(a)}`;
}

function coveredBy(a: Assignment, pairIdx: [number, number][]): string[] {
  return pairIdx.map(([i, j]) => pairKey(i, a[i], j, a[j]));
}

function pairwiseDesign(seed: number): { rows: Abstract[]; uncovered: string[] } {
  const rng = new Rng(seed);
  const pairIdx: [number, number][] = PAIRS.map(([p, q]) => [DIM_INDEX.get(p) as number, DIM_INDEX.get(q) as number]);
  const partners = DIMS.map((_, d) => pairIdx.filter(([i, j]) => i === d || j === d).map(([i, j]) => (i === d ? j : i)));
  const uncovered = new Set<string>();
  const pairList: { i: number; a: unknown; j: number; b: unknown }[] = [];
  for (const [i, j] of pairIdx) {
    for (const a of (DIMS[i] as Dim).values) {
      for (const b of (DIMS[j] as Dim).values) {
        uncovered.add(pairKey(i, a, j, b));
        pairList.push({ i, a, j, b });
      }
    }
  }

  const rows: Abstract[] = [];
  let stalls = 0;
  while (uncovered.size > 0 && stalls < 4) {
    const open = pairList.filter((p) => uncovered.has(pairKey(p.i, p.a, p.j, p.b)));
    let best: Assignment | null = null;
    let bestScore = 0;
    for (let c = 0; c < 40; c++) {
      const seedPair = rng.pick(open);
      for (let attempt = 0; attempt < 25; attempt++) {
        const a: Assignment = new Array(DIMS.length);
        const assigned = new Set<number>([seedPair.i, seedPair.j]);
        a[seedPair.i] = seedPair.a as string;
        a[seedPair.j] = seedPair.b as string;
        const order = rng.shuffle(DIMS.map((_, d) => d).filter((d) => !assigned.has(d)));
        for (const d of order) {
          const dim = DIMS[d] as Dim;
          // Greedy on the first attempt; later attempts randomise to escape infeasible completions.
          if (attempt > 0 && rng.next() < 0.5) {
            a[d] = rng.weighted(dim.values, dim.weights ?? dim.values.map(() => 1));
          } else {
            let top = -1;
            let tied: number[] = [];
            dim.values.forEach((v, vi) => {
              let s = 0;
              for (const p of partners[d] as number[]) if (assigned.has(p) && uncovered.has(pairKey(d, v, p, a[p]))) s++;
              if (s > top) [top, tied] = [s, [vi]];
              else if (s === top) tied.push(vi);
            });
            const w = dim.weights ?? dim.values.map(() => 1);
            a[d] = dim.values[rng.weighted(tied, tied.map((vi) => w[vi] ?? 1))] as string;
          }
          assigned.add(d);
        }
        if (!feasible(toAbstract(a))) continue;
        const score = coveredBy(a, pairIdx).filter((k) => uncovered.has(k)).length;
        if (score > bestScore) [best, bestScore] = [a, score];
        break;
      }
    }
    if (best === null) {
      stalls++;
      continue;
    }
    stalls = 0;
    for (const k of coveredBy(best, pairIdx)) uncovered.delete(k);
    rows.push(toAbstract(best));
  }
  const names = (k: string) =>
    k.replace(/(\d+)=/g, (_, d: string) => `${(DIMS[Number(d)] as Dim).name}=`);
  return { rows, uncovered: [...uncovered].map(names).sort() };
}

function saltFromKind(kind: SaltKind, rng: Rng): string {
  switch (kind) {
    case 'none': return '-';
    case 'empty': return '';
    case 'upper32': return rng.hex(32).toUpperCase();
    case 'upper7': {
      // Mixed case: upper-case the even-numbered characters.
      return rng.hex(7).split('').map((ch, i) => (i % 2 === 0 ? ch.toUpperCase() : ch)).join('');
    }
    default: return rng.hex(Number(kind));
  }
}

function saltLabel(salt: string): string {
  if (salt === '-') return 'nosalt';
  if (salt === '') return 'emptysalt';
  const upper = /[A-F]/.test(salt) ? 'U' : '';
  return `salt${salt.length / 2}${upper}`;
}

function autoName(prefix: string, spec: Omit<CaseSpec, 'name'>): string {
  const o = spec.options;
  const d = spec.data;
  const parts = [
    prefix,
    o.hash,
    `v${o.format}`,
    `d${o.dataBlockSize}`,
    `h${o.hashBlockSize}`,
    `n${o.dataBlocks ?? d.blocks}`,
  ];
  if (o.dataBlocks !== null && o.dataBlocks !== d.blocks) parts.push(`of${d.blocks}`);
  if (d.tailBytes > 0) parts.push(`tail${d.tailBytes}`);
  parts.push(saltLabel(o.salt));
  parts.push(o.noSuperblock ? 'nosb' : 'sb');
  if (o.hashOffset !== 0) parts.push(`off${o.hashOffset}`);
  if (o.sameFile) parts.push('samefile');
  parts.push(d.fill);
  return parts.join('-');
}

function concretise(x: Abstract, index: number): CaseSpec {
  const rng = new Rng(0x9e3779b9 ^ Math.imul(index + 1, 0x85ebca6b));
  const n = resolveCount(x.count, x.hash, x.hbs);
  const extra = x.shorter ? rng.int(1, MAX_EXTRA_BLOCKS) : 0;
  const tailBytes = x.tail ? rng.int(1, x.dbs - 1) : 0;
  const salt = saltFromKind(x.salt, rng);
  const uuid = rng.uuid();
  const spec: Omit<CaseSpec, 'name'> = {
    data: { blocks: n + extra, blockSize: x.dbs, tailBytes, fill: x.fill, seed: rng.seed() },
    options: {
      hash: x.hash,
      format: x.format,
      dataBlockSize: x.dbs,
      hashBlockSize: x.hbs,
      salt,
      uuid: x.sb ? uuid : null,
      noSuperblock: !x.sb,
      hashOffset: x.offset,
      dataBlocks: x.shorter ? n : null,
      sameFile: false,
    },
  };
  return { name: autoName(`pw${String(index).padStart(3, '0')}`, spec), ...spec };
}

// ---------------------------------------------------------------------------------------------------------------------
// Hand-picked edge cases

interface EdgeInput {
  name?: string;
  hash?: HashName;
  format?: 0 | 1;
  dbs?: number;
  hbs?: number;
  /** Hashed blocks (= --data-blocks when `fileBlocks` is larger, or in sameFile cases). */
  blocks: number;
  /** Whole blocks in the file; defaults to `blocks`. */
  fileBlocks?: number;
  tail?: number;
  fill?: Fill;
  salt?: string;
  uuid?: string;
  sb?: boolean;
  offset?: number;
  /** sameFile: the hash area offset is the data file size rounded up to 4096 (or to hbs without superblock) + this. */
  sameFileExtra?: number;
}

function edgeCases(): CaseSpec[] {
  const rng = new Rng(0x5eed0ed9);
  const E: EdgeInput[] = [];
  const zeros8M = { fill: 'zero' as Fill, salt: UPSTREAM_SALT, uuid: EXAMPLE_UUID };

  // Examples A and B (docs/format.md §9) and the upstream verity-compat-test combinations (8 MiB of zeros).
  E.push({ name: 'example-a', ...zeros8M, blocks: 2048 });
  E.push({ name: 'example-b', ...zeros8M, dbs: 512, hbs: 512, blocks: 16384 });
  E.push({ name: 'upstream-1024-sha256-v1', ...zeros8M, dbs: 1024, hbs: 1024, blocks: 8192 });
  E.push({ name: 'upstream-4096-sha256-v0', ...zeros8M, format: 0, blocks: 2048 });
  E.push({ name: 'upstream-4096-sha256-nosalt', ...zeros8M, salt: '-', blocks: 2048 });
  E.push({ name: 'upstream-1024-sha1-v1', ...zeros8M, hash: 'sha1', dbs: 1024, hbs: 1024, blocks: 8192 });
  E.push({ name: 'upstream-1024-sha1-dadada', ...zeros8M, hash: 'sha1', dbs: 1024, hbs: 1024, blocks: 8192, salt: 'dadada' });
  E.push({ name: 'upstream-8192-sha256-v1', ...zeros8M, dbs: 8192, hbs: 8192, blocks: 1024 });
  E.push({ name: 'example-a-nosb', ...zeros8M, sb: false, blocks: 2048 });
  E.push({ name: 'example-a-onedevice', ...zeros8M, blocks: 2048, sameFileExtra: 0 });
  E.push({ name: 'example-a-off8m', ...zeros8M, blocks: 2048, offset: 8 * MiB });
  E.push({ name: 'example-b-off8m', ...zeros8M, dbs: 512, hbs: 512, blocks: 16384, offset: 8 * MiB });
  E.push({ name: 'example-a-uppercase-uuid', ...zeros8M, uuid: EXAMPLE_UUID.toUpperCase(), blocks: 2048 });

  // One data block: no tree; the hash file is the superblock block only, or empty without superblock.
  for (const [hash, hbs, format] of [['sha256', 4096, 1], ['sha1', 512, 0], ['sha512', 65536, 1], ['sha384', 1024, 0], ['sha224', 8192, 1]] as const) {
    E.push({ hash, hbs, dbs: 4096, format, blocks: 1 });
  }
  E.push({ hash: 'sha256', dbs: 512, hbs: 4096, blocks: 1, sb: false });
  E.push({ hash: 'sha512', dbs: 65536, hbs: 512, blocks: 1, sb: false, format: 0 });
  E.push({ hash: 'sha256', blocks: 1, sb: false, offset: 4096 });
  E.push({ hash: 'sha1', blocks: 1, tail: 100 });
  E.push({ hash: 'sha256', blocks: 1, fileBlocks: 5, fill: 'mixed' });
  E.push({ hash: 'sha256', blocks: 1, fileBlocks: 2, sb: false, salt: '-' });
  E.push({ hash: 'sha256', blocks: 1, offset: 4096 }); // aligned to min(4096, hbs): works
  E.push({ hash: 'sha256', hbs: 512, dbs: 512, blocks: 1, offset: 12800 }); // 12800 % 512 == 0: works
  E.push({ hash: 'sha384', hbs: 1024, dbs: 2048, blocks: 1, offset: 1 * MiB });
  E.push({ hash: 'sha256', blocks: 1, fill: 'zero', salt: '-' });

  // Two and three blocks.
  E.push({ hash: 'sha256', blocks: 2 });
  E.push({ hash: 'sha1', blocks: 2, format: 0, dbs: 512, hbs: 65536 });
  E.push({ hash: 'sha512', blocks: 3, dbs: 65536, hbs: 512, sb: false });
  E.push({ hash: 'sha224', blocks: 3, tail: 1, format: 0 });

  // hpb boundaries: hpb-1, hpb, hpb+1, hpb^2, hpb^2+1 (and hpb^3 when small enough).
  const boundary: [HashName, number, number, 0 | 1][] = [
    ['sha256', 4096, 4096, 1], // hpb 128
    ['sha1', 512, 512, 0], // hpb 16
    ['sha512', 512, 1024, 1], // hpb 8
    ['sha384', 1024, 512, 0], // hpb 16
    ['sha224', 2048, 2048, 1], // hpb 64
    ['sha1', 4096, 2048, 0], // hpb 128 (204.8 rounded down)
    ['sha384', 4096, 1024, 1], // hpb 64 (85.3 rounded down)
  ];
  for (const [hash, hbs, dbs, format] of boundary) {
    const hpb = hashesPerBlock(hash, hbs);
    const counts = [hpb - 1, hpb, hpb + 1, hpb * hpb, hpb * hpb + 1];
    if (hpb ** 3 * dbs <= MAX_DATA_BYTES) counts.push(hpb ** 3, hpb ** 3 + 1);
    for (const blocks of counts) {
      if (blocks * dbs > MAX_DATA_BYTES) continue;
      E.push({ hash, hbs, dbs, format, blocks, sb: blocks % 2 === 0 });
    }
  }

  // Large counts and the 64 MiB limit.
  E.push({ hash: 'sha256', dbs: 4096, hbs: 4096, blocks: 16385, tail: 4095 });
  E.push({ hash: 'sha1', dbs: 4096, hbs: 512, blocks: 16384, format: 0, fill: 'mixed' });
  E.push({ hash: 'sha512', dbs: 65536, hbs: 65536, blocks: 1024 });
  E.push({ hash: 'sha384', dbs: 65536, hbs: 512, blocks: 1000, format: 0, sb: false });
  E.push({ hash: 'sha224', dbs: 512, hbs: 65536, blocks: 16385 });

  // Salts: none, empty, 1, 3, 32, 64, 255, 256 bytes, upper/mixed case, in both formats.
  for (const [i, salt] of ['-', '', rng.hex(1), rng.hex(3), rng.hex(32), rng.hex(64), rng.hex(255), rng.hex(256), rng.hex(256).toUpperCase(), 'ABCDEF0123', 'aBcDeF'].entries()) {
    E.push({ hash: HASHES[i % 5] as HashName, format: (i % 2) as 0 | 1, blocks: 129, salt });
    E.push({ hash: HASHES[(i + 2) % 5] as HashName, format: ((i + 1) % 2) as 0 | 1, dbs: 1024, hbs: 2048, blocks: 300, salt, sb: i % 3 !== 0 });
  }

  // Hash offsets with and without superblock; without superblock the offset is rounded down to a hash block.
  E.push({ hash: 'sha256', blocks: 1000, offset: 512 });
  E.push({ hash: 'sha256', blocks: 1000, offset: 512, sb: false }); // same image as offset 0
  E.push({ hash: 'sha256', blocks: 1000, offset: 0, sb: false });
  E.push({ hash: 'sha256', blocks: 1000, offset: 12800 });
  E.push({ hash: 'sha256', blocks: 1000, offset: 12800, sb: false }); // floor(12800/4096) = 3
  E.push({ hash: 'sha1', hbs: 8192, dbs: 4096, blocks: 777, offset: 12800, sb: false }); // floor -> block 1
  E.push({ hash: 'sha512', hbs: 65536, dbs: 4096, blocks: 4000, offset: 1 * MiB + 512, sb: false, format: 0 }); // floor -> 16
  E.push({ hash: 'sha512', hbs: 65536, dbs: 4096, blocks: 4000, offset: 1 * MiB + 512, format: 0 });
  E.push({ hash: 'sha224', hbs: 512, dbs: 8192, blocks: 100, offset: 1 * MiB + 512 });
  E.push({ hash: 'sha384', hbs: 2048, dbs: 512, blocks: 5000, offset: 65536 + 1536, sb: false }); // floor -> 32
  E.push({ hash: 'sha256', hbs: 1024, dbs: 1024, blocks: 4096, offset: 3 * MiB + 3584 });

  // One device: data and hash in the same file (with and without superblock).
  E.push({ hash: 'sha256', blocks: 1000, sameFileExtra: 0, fill: 'random' });
  E.push({ hash: 'sha256', blocks: 1000, fileBlocks: 1003, tail: 123, sameFileExtra: 8192, sb: false });
  E.push({ hash: 'sha1', format: 0, dbs: 512, hbs: 512, blocks: 5000, sameFileExtra: 512 });
  E.push({ hash: 'sha512', dbs: 1024, hbs: 4096, blocks: 129, fileBlocks: 130, tail: 1000, sameFileExtra: 12800 });
  E.push({ hash: 'sha384', format: 0, dbs: 4096, hbs: 1024, blocks: 2, sameFileExtra: 0, sb: false });
  E.push({ hash: 'sha224', dbs: 8192, hbs: 16384, blocks: 300, sameFileExtra: 16384, sb: false, fill: 'mixed' });
  E.push({ hash: 'sha256', dbs: 2048, hbs: 65536, blocks: 3000, sameFileExtra: 4096 });
  E.push({ hash: 'sha1', dbs: 65536, hbs: 512, blocks: 17, sameFileExtra: 0, fill: 'zero', salt: '-' });

  // Data ≠ hash block size in both directions, extreme ratios.
  E.push({ hash: 'sha256', dbs: 512, hbs: 65536, blocks: 20000, format: 0 });
  E.push({ hash: 'sha256', dbs: 65536, hbs: 512, blocks: 700, format: 1 });
  E.push({ hash: 'sha1', dbs: 32768, hbs: 1024, blocks: 513, format: 1, tail: 32767 });
  E.push({ hash: 'sha512', dbs: 1024, hbs: 32768, blocks: 9000, format: 0, fill: 'mixed' });

  return E.map((e, i) => {
    const hash = e.hash ?? 'sha256';
    const format = e.format ?? 1;
    const dbs = e.dbs ?? 4096;
    const hbs = e.hbs ?? 4096;
    const sb = e.sb ?? true;
    const fileBlocks = e.fileBlocks ?? e.blocks;
    const tailBytes = e.tail ?? 0;
    const sameFile = e.sameFileExtra !== undefined;
    const salt = e.salt ?? rng.hex(32);
    const uuid = e.uuid ?? rng.uuid();
    let hashOffset = e.offset ?? 0;
    if (sameFile) {
      const fileSize = fileBlocks * dbs + tailBytes;
      hashOffset = roundUp(fileSize, sb ? 4096 : Math.max(4096, hbs)) + (e.sameFileExtra ?? 0);
    }
    const spec: Omit<CaseSpec, 'name'> = {
      data: { blocks: fileBlocks, blockSize: dbs, tailBytes, fill: e.fill ?? 'random', seed: rng.seed() },
      options: {
        hash,
        format,
        dataBlockSize: dbs,
        hashBlockSize: hbs,
        salt,
        uuid: sb ? uuid : null,
        noSuperblock: !sb,
        hashOffset,
        dataBlocks: sameFile || fileBlocks !== e.blocks ? e.blocks : null,
        sameFile,
      },
    };
    return { name: e.name ?? autoName(`edge${String(i).padStart(3, '0')}`, spec), ...spec };
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Running veritysetup

interface Failure {
  name: string;
  args: string[];
  status: number | null;
  stderr: string;
}

const stderrSeen = new Map<string, number>();

function buildArgs(o: CaseOptions, dataPath: string, hashPath: string): string[] {
  const args = [
    'format',
    dataPath,
    hashPath,
    `--hash=${o.hash}`,
    `--format=${o.format}`,
    `--data-block-size=${o.dataBlockSize}`,
    `--hash-block-size=${o.hashBlockSize}`,
    `--salt=${o.salt}`,
  ];
  if (o.noSuperblock) args.push('--no-superblock');
  else args.push(`--uuid=${o.uuid ?? ''}`);
  if (o.hashOffset !== 0) args.push(`--hash-offset=${o.hashOffset}`);
  if (o.dataBlocks !== null) args.push(`--data-blocks=${o.dataBlocks}`);
  return args;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

function runCase(spec: CaseSpec): GoldenCase | Failure {
  const dir = mkdtempSync(join(tmpdir(), 'gen-golden-'));
  try {
    const dataPath = join(dir, 'data.img');
    const hashPath = spec.options.sameFile ? dataPath : join(dir, 'hash.img');
    writeFileSync(dataPath, makeData(spec.data));
    const args = buildArgs(spec.options, dataPath, hashPath);
    const placeholderArgs = args.map((a) => (a === dataPath ? '<DATA>' : a === hashPath ? '<HASH>' : a));
    // stderr goes to a file so that warnings of successful runs can be reported too.
    const errPath = join(dir, 'stderr.txt');
    const errFd = openSync(errPath, 'w');
    let stdout: string;
    let failed: unknown = null;
    try {
      stdout = execFileSync(VERITYSETUP, args, {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', errFd],
        env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
        maxBuffer: 16 * MiB,
      });
    } catch (err) {
      failed = err;
      stdout = '';
    } finally {
      closeSync(errFd);
    }
    const stderr = readFileSync(errPath, 'utf8').split(hashPath).join('<HASH>').split(dataPath).join('<DATA>').split(dir).join('<TMP>');
    if (failed !== null) {
      const e = failed as { status?: number | null; message?: string };
      return { name: spec.name, args: placeholderArgs, status: e.status ?? null, stderr: stderr || String(e.message) };
    }
    for (const line of stderr.split('\n').filter(Boolean)) stderrSeen.set(line, (stderrSeen.get(line) ?? 0) + 1);
    const image = readFileSync(hashPath);
    if (image.length !== statSync(hashPath).size) throw new Error(`${spec.name}: short read of hash image`);
    const rootMatch = /^Root hash:\s*([0-9a-f]+)$/m.exec(stdout);
    if (!rootMatch) throw new Error(`${spec.name}: no Root hash line in stdout:\n${stdout}`);
    const rootHash = rootMatch[1] as string;
    if (rootHash.length !== 2 * DIGEST_SIZE[spec.options.hash]) throw new Error(`${spec.name}: root hash has wrong length`);
    const dataBlocksLine = /^Data blocks:\s*(\d+)$/m.exec(stdout);
    if (Number(dataBlocksLine?.[1]) !== (spec.options.dataBlocks ?? spec.data.blocks)) throw new Error(`${spec.name}: unexpected Data blocks line`);
    const cleanStdout = stdout.split(hashPath).join('<HASH>').split(dataPath).join('<DATA>');
    if (cleanStdout.includes(dir)) throw new Error(`${spec.name}: temp path left in stdout`);
    return {
      name: spec.name,
      data: spec.data,
      options: spec.options,
      args: placeholderArgs,
      rootHash,
      hashImage: { size: image.length, sha256: sha256(image) },
      stdout: cleanStdout,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// FEC cases (test/golden/fec-vectors.json): the three layouts veritysetup supports (and the parity in the data file),
// roots 2, 3, 8 and 24, 512- and 4096-byte blocks, and hash files with bytes of their own after the tree.

interface FecEdge {
  name?: string;
  layout: FecLayout;
  roots: number;
  /** Data and hash block size (FEC needs them equal). */
  bs: number;
  /** Covered data blocks (= --data-blocks when the file holds more, and always in the one-device layout). */
  blocks: number;
  fileBlocks?: number;
  tail?: number;
  hash?: HashName;
  format?: 0 | 1;
  salt?: string;
  sb?: boolean;
  /** Hash offset (separate, hash-device and data-device layouts). */
  offset?: number;
  /** The parity's distance past the tree end (hash-device, one-device) or past the data file (data-device), in blocks. */
  gapBlocks?: number;
  /** --fec-offset of a separate FEC file. */
  fecOffset?: number;
  /** Bytes in the hash file before format. */
  prefill?: number;
  fill?: Fill;
}

function treeEnd(o: CaseOptions, dataBlocks: number): number {
  return computeGeometry({
    hashType: o.format,
    algorithm: o.hash,
    dataBlockSize: o.dataBlockSize,
    hashBlockSize: o.hashBlockSize,
    dataBlocks,
    salt: new Uint8Array(0),
    uuid: null,
    superblock: !o.noSuperblock,
    hashOffset: o.hashOffset,
  }).hashDeviceSize;
}

function fecCases(): FecCaseSpec[] {
  const rng = new Rng(0xfec5eed);
  const E: FecEdge[] = [];
  // Example A with the default 2 roots: 2048 zero blocks of 4 KiB, 73728 bytes of parity (docs/fec.md).
  E.push({ name: 'fec-example-a', layout: 'separate', roots: 2, bs: 4096, blocks: 2048, fill: 'zero', salt: UPSTREAM_SALT });
  // The core matrix: every layout × block size × roots, sizes drawn so that the round count varies.
  for (const layout of ['separate', 'hash-device', 'one-device'] as const) {
    for (const bs of [512, 4096]) {
      for (const roots of [2, 3, 8, 24]) {
        const blocks = bs === 512 ? rng.int(300, 3000) : rng.int(100, 800);
        E.push({ layout, roots, bs, blocks, gapBlocks: layout === 'separate' ? undefined : 0 });
      }
    }
  }
  // A separate hash file holding bytes of its own after the tree (covered to its end, a partial last block not).
  E.push({ layout: 'separate', roots: 2, bs: 4096, blocks: 500, prefill: 200 * 4096 + 1000 });
  E.push({ layout: 'separate', roots: 8, bs: 512, blocks: 1500, prefill: 300 * 512 });
  // A pre-filled hash file shorter than the tree: the tree extends it.
  E.push({ layout: 'separate', roots: 3, bs: 4096, blocks: 600, prefill: 3 * 4096 + 17 });
  // Parity on the hash device past foreign bytes after the tree (covered up to the FEC offset).
  E.push({ layout: 'hash-device', roots: 2, bs: 4096, blocks: 700, gapBlocks: 5, prefill: 40 * 4096 });
  E.push({ layout: 'hash-device', roots: 24, bs: 512, blocks: 2000, gapBlocks: 30, prefill: 400 * 512 });
  // A separate FEC file with the parity at an offset (the file starts with a hole).
  E.push({ layout: 'separate', roots: 3, bs: 4096, blocks: 400, fecOffset: 3 * 4096 });
  // Parity in the data file after the data, hash file separate.
  E.push({ layout: 'data-device', roots: 2, bs: 4096, blocks: 333, gapBlocks: 0 });
  E.push({ layout: 'data-device', roots: 8, bs: 512, blocks: 1234, fileBlocks: 1240, tail: 77, gapBlocks: 2 });
  // One device with a gap between the tree and the parity, which the first round reads after the parity grew the file.
  E.push({ layout: 'one-device', roots: 2, bs: 4096, blocks: 2048, gapBlocks: 2 });
  // No superblock; a hash offset with a superblock; format 0, sha1, sha512.
  E.push({ layout: 'separate', roots: 2, bs: 4096, blocks: 900, sb: false });
  E.push({ layout: 'hash-device', roots: 3, bs: 4096, blocks: 900, sb: false, offset: 8192, gapBlocks: 0 });
  E.push({ layout: 'separate', roots: 8, bs: 4096, blocks: 640, offset: 12800 });
  E.push({ layout: 'hash-device', roots: 2, bs: 512, blocks: 1600, offset: 1 * MiB + 512, gapBlocks: 0, hash: 'sha1', format: 0 });
  E.push({ layout: 'one-device', roots: 24, bs: 4096, blocks: 300, hash: 'sha512', fill: 'mixed', gapBlocks: 0 });
  // One data block: no tree, so the covered area is the data block alone (the new hash file is still empty).
  E.push({ layout: 'separate', roots: 2, bs: 4096, blocks: 1 });
  E.push({ layout: 'separate', roots: 5, bs: 512, blocks: 1, sb: false });
  // The covered area a whole number of rounds: 501 data blocks + a tree of 4 + 1 blocks = 506 = 2 × 253.
  E.push({ layout: 'separate', roots: 2, bs: 4096, blocks: 501 });
  // --data-blocks smaller than the file, a trailing partial block.
  E.push({ layout: 'separate', roots: 3, bs: 512, blocks: 2500, fileBlocks: 2503, tail: 300 });

  return E.map((e, i) => {
    const hash = e.hash ?? 'sha256';
    const format = e.format ?? 1;
    const sb = e.sb ?? true;
    const fileBlocks = e.fileBlocks ?? e.blocks;
    const tailBytes = e.tail ?? 0;
    const salt = e.salt ?? rng.hex(32);
    const uuid = rng.uuid();
    const oneDevice = e.layout === 'one-device';
    const fileSize = fileBlocks * e.bs + tailBytes;
    const hashOffset = oneDevice ? roundUp(fileSize, Math.max(4096, e.bs)) : (e.offset ?? 0);
    const options: CaseOptions = {
      hash,
      format,
      dataBlockSize: e.bs,
      hashBlockSize: e.bs,
      salt,
      uuid: sb ? uuid : null,
      noSuperblock: !sb,
      hashOffset,
      dataBlocks: oneDevice || fileBlocks !== e.blocks ? e.blocks : null,
      sameFile: oneDevice,
    };
    const gap = (e.gapBlocks ?? 0) * e.bs;
    const fecOffset =
      e.layout === 'hash-device' || e.layout === 'one-device'
        ? treeEnd(options, e.blocks) + gap
        : e.layout === 'data-device'
          ? roundUp(fileSize, e.bs) + gap
          : (e.fecOffset ?? 0);
    const spec = {
      data: { blocks: fileBlocks, blockSize: e.bs, tailBytes, fill: e.fill ?? 'random', seed: rng.seed() },
      options: {
        ...options,
        fecRoots: e.roots,
        fecOffset,
        layout: e.layout,
        hashPrefill: e.prefill === undefined ? null : { bytes: e.prefill, seed: rng.seed() },
      },
    };
    const extras = [
      e.prefill !== undefined ? `prefill${e.prefill}` : '',
      e.gapBlocks ? `gap${e.gapBlocks}` : '',
      e.fecOffset ? `fecoff${e.fecOffset}` : '',
    ].filter(Boolean);
    const name = e.name ?? [`fec${String(i).padStart(3, '0')}-${e.layout}-r${e.roots}-${autoName('b', spec).slice(2)}`, ...extras].join('-');
    return { name, ...spec };
  });
}

function fileDigest(path: string): { size: number; sha256: string } {
  const bytes = readFileSync(path);
  return { size: bytes.length, sha256: sha256(bytes) };
}

function runFecCase(spec: FecCaseSpec): FecGoldenCase | Failure {
  const dir = mkdtempSync(join(tmpdir(), 'gen-golden-fec-'));
  try {
    const o = spec.options;
    const paths = fecPaths(o.layout, dir);
    writeFileSync(paths.data, makeData(spec.data));
    if (o.hashPrefill) {
      writeFileSync(paths.hash, makeData({ blocks: 0, blockSize: 1, tailBytes: o.hashPrefill.bytes, fill: 'random', seed: o.hashPrefill.seed }));
    }
    const args = buildArgs(o, paths.data, paths.hash);
    args.push(`--fec-device=${paths.fec}`, `--fec-roots=${o.fecRoots}`);
    if (o.fecOffset !== 0) args.push(`--fec-offset=${o.fecOffset}`);
    // One placeholder per distinct file: <HASH> for a FEC on the hash device, <DATA> for everything on one device.
    const named: [string, string][] = [[paths.data, '<DATA>']];
    if (paths.hash !== paths.data) named.push([paths.hash, '<HASH>']);
    if (paths.fec !== paths.data && paths.fec !== paths.hash) named.push([paths.fec, '<FEC>']);
    const placeholders = (text: string) => named.reduce((t, [path, name]) => t.split(path).join(name), text);
    let stdout: string;
    try {
      stdout = execFileSync(VERITYSETUP, args, {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
        maxBuffer: 16 * MiB,
      });
    } catch (err) {
      const e = err as { status?: number | null; stderr?: string; message?: string };
      return { name: spec.name, args: args.map(placeholders), status: e.status ?? null, stderr: placeholders(e.stderr || String(e.message)) };
    }
    const rootMatch = /^Root hash:\s*([0-9a-f]+)$/m.exec(stdout);
    if (!rootMatch) throw new Error(`${spec.name}: no Root hash line in stdout:\n${stdout}`);
    if (!stdout.includes(`FEC RS roots:   \t${o.fecRoots}\n`)) throw new Error(`${spec.name}: no FEC lines in stdout:\n${stdout}`);
    const cleanStdout = stdout.split(paths.hash).join('<HASH>');
    if (cleanStdout.includes(dir)) throw new Error(`${spec.name}: temp path left in stdout`);
    return {
      name: spec.name,
      data: spec.data,
      options: o,
      args: args.map(placeholders),
      rootHash: rootMatch[1] as string,
      hashImage: fileDigest(paths.hash),
      fecImage: o.layout === 'separate' ? fileDigest(paths.fec) : null,
      dataImage: o.layout === 'data-device' ? fileDigest(paths.data) : null,
      stdout: cleanStdout,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function serialiseFec(doc: { generator: string; veritysetup: string; cases: FecGoldenCase[] }): string {
  const caseText = (c: FecGoldenCase) => {
    const keys = ['name', 'data', 'options', 'args', 'rootHash', 'hashImage', 'fecImage', 'dataImage', 'stdout'] as const;
    return `    {\n${keys.map((k) => `      ${JSON.stringify(k)}: ${JSON.stringify(c[k])}`).join(',\n')}\n    }`;
  };
  return (
    '{\n' +
    `  "generator": ${JSON.stringify(doc.generator)},\n` +
    `  "veritysetup": ${JSON.stringify(doc.veritysetup)},\n` +
    `  "cases": [\n${doc.cases.map(caseText).join(',\n')}\n  ]\n` +
    '}\n'
  );
}

function writeAtomically(out: string, text: string): void {
  JSON.parse(text); // sanity: well formed
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, out);
}

function generateFec(out: string, version: string, dryRun: boolean): void {
  const specs = fecCases();
  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name)) throw new Error(`duplicate case name ${s.name}`);
    names.add(s.name);
  }
  console.log(`FEC matrix: ${specs.length} cases`);
  if (dryRun) {
    for (const s of specs) console.log(s.name);
    return;
  }
  const cases: FecGoldenCase[] = [];
  const failures: Failure[] = [];
  for (const spec of specs) {
    const r = runFecCase(spec);
    if ('rootHash' in r) cases.push(r);
    else {
      failures.push(r);
      console.log(`FAILED (exit ${r.status}) ${r.name}: ${r.stderr.trim()}\n  veritysetup ${r.args.join(' ')}`);
    }
  }
  const text = serialiseFec({ generator: 'scripts/gen-golden.ts', veritysetup: version, cases });
  writeAtomically(out, text);
  console.log(`wrote ${out}: ${cases.length} cases, ${text.length} bytes, ${failures.length} not recorded`);
}

// ---------------------------------------------------------------------------------------------------------------------
// JSON output: one key per line for each case, nested values compact (keeps the file small and diffs readable).

function serialise(doc: { generator: string; veritysetup: string; cases: GoldenCase[] }): string {
  const caseText = (c: GoldenCase) => {
    const keys = ['name', 'data', 'options', 'args', 'rootHash', 'hashImage', 'stdout'] as const;
    return `    {\n${keys.map((k) => `      ${JSON.stringify(k)}: ${JSON.stringify(c[k])}`).join(',\n')}\n    }`;
  };
  return (
    '{\n' +
    `  "generator": ${JSON.stringify(doc.generator)},\n` +
    `  "veritysetup": ${JSON.stringify(doc.veritysetup)},\n` +
    `  "cases": [\n${doc.cases.map(caseText).join(',\n')}\n  ]\n` +
    '}\n'
  );
}

// ---------------------------------------------------------------------------------------------------------------------

function main(): void {
  const argv = process.argv.slice(2);
  const flag = (name: string) => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const out = resolve(flag('--out') ?? DEFAULT_OUT);
  const only = flag('--only');
  if (only !== undefined && only !== 'tree' && only !== 'fec') throw new Error('--only takes "tree" or "fec"');
  const started = Date.now();

  const version = argv.includes('--dry-run')
    ? '(dry run)'
    : (execFileSync(VERITYSETUP, ['--version'], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }).split('\n')[0] ?? '').trimEnd();
  console.log(`veritysetup: ${VERITYSETUP} (${version})`);
  if (only !== 'tree') generateFec(resolve(flag('--fec-out') ?? DEFAULT_FEC_OUT), version, argv.includes('--dry-run'));
  if (only === 'fec') return;

  const { rows, uncovered } = pairwiseDesign(0x7e571e55);
  const specs = [...edgeCases(), ...rows.map((r, i) => concretise(r, i))];
  console.log(`matrix: ${specs.length} cases (${rows.length} pairwise + ${specs.length - rows.length} hand-picked)`);
  if (uncovered.length > 0) console.log(`pairs not coverable under the constraints (${uncovered.length}): ${uncovered.join(', ')}`);

  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name)) throw new Error(`duplicate case name ${s.name}`);
    names.add(s.name);
    const n = s.options.dataBlocks ?? s.data.blocks;
    if (s.data.blocks * s.data.blockSize + s.data.tailBytes > MAX_DATA_BYTES) throw new Error(`${s.name}: data file too large`);
    if (s.options.dataBlocks !== null && s.options.dataBlocks > s.data.blocks) throw new Error(`${s.name}: dataBlocks > blocks`);
    if (s.options.sameFile && s.options.hashOffset < n * s.options.dataBlockSize) throw new Error(`${s.name}: overlap`);
  }

  if (argv.includes('--dry-run')) {
    const total = specs.reduce((a, s) => a + s.data.blocks * s.data.blockSize + s.data.tailBytes, 0);
    for (const s of specs) console.log(s.name);
    console.log(`dry run: ${specs.length} cases, ${(total / MiB).toFixed(0)} MiB of data in total`);
    return;
  }

  const cases: GoldenCase[] = [];
  const failures: Failure[] = [];
  for (const spec of specs) {
    const r = runCase(spec);
    if ('rootHash' in r) {
      cases.push(r);
    } else {
      failures.push(r);
      console.log(`FAILED (exit ${r.status}) ${r.name}: ${r.stderr.trim()}\n  veritysetup ${r.args.join(' ')}`);
    }
  }

  const doc = { generator: 'scripts/gen-golden.ts', veritysetup: version, cases };
  const text = serialise(doc);
  writeAtomically(out, text);

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`wrote ${out}: ${cases.length} cases, ${text.length} bytes, ${failures.length} not recorded, ${secs} s`);
  for (const [line, count] of stderrSeen) console.log(`  stderr of ${count} recorded case(s): ${line}`);
  if (failures.length > 0) {
    console.log('not recorded (veritysetup failed):');
    for (const f of failures) console.log(`  ${f.name}: exit ${f.status}: ${f.stderr.trim()}`);
  }
}

main();
