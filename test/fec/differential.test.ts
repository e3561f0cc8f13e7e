/**
 * Differential test of `format --fec-device` against the real veritysetup: a few random parameter sets (layout, roots
 * 2..24, block size, hash, format, superblock, hash offset, FEC offset, a hash file with bytes of its own), small
 * sizes. veritysetup and our CLI format copies of the same files; every file must come out byte for byte the same,
 * stdout too, and `veritysetup verify --fec-device` must accept ours.
 *
 *   npx vitest run test/fec/differential.test.ts                              # new random seed each run (printed)
 *   VERITY_FEC_DIFF_SEED=123 VERITY_FEC_DIFF_CASES=50 npx vitest run test/fec/differential.test.ts
 *
 * Skipped, with the reason in the suite name, when veritysetup is not installed.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeGeometry } from '../../src/format/geometry.js';
import type { FecLayout } from '../golden/types.js';
import { runCaptured } from '../support/cli-harness.js';
import { makeData, type DataSpec } from '../support/data.js';
import { fecPaths } from '../support/fec-layout.js';
import { Rng } from '../support/rng.js';
import { VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return n;
}

const SEED = envInt('VERITY_FEC_DIFF_SEED', randomInt(1, 2 ** 31 - 1)) >>> 0;
const CASES = envInt('VERITY_FEC_DIFF_CASES', 6);
const SKIP_REASON = VERITYSETUP ? null : 'veritysetup not found or not runnable (set VERITYSETUP=/path)';
const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

interface Case {
  index: number;
  layout: FecLayout;
  hash: string;
  format: 0 | 1;
  bs: number;
  salt: string;
  uuid: string | null;
  hashOffset: number;
  dataBlocksArg: number | null;
  roots: number;
  fecOffset: number;
  prefill: { bytes: number; seed: number } | null;
  data: DataSpec;
}

function makeCase(rng: Rng, index: number): Case {
  const layout = rng.pick<FecLayout>(['separate', 'separate', 'hash-device', 'one-device', 'data-device']);
  const hash = rng.pick(['sha256', 'sha1', 'sha512']);
  const format = rng.pick([0, 1] as const);
  const bs = rng.pick([512, 1024, 2048, 4096]);
  const superblock = rng.chance(0.8);
  const blocks = rng.chance(0.1) ? 1 : rng.logInt(1, Math.floor((4 << 20) / bs));
  const fileBlocks = rng.chance(0.2) ? blocks + rng.int(1, 5) : blocks;
  const tailBytes = rng.chance(0.3) ? rng.int(1, bs - 1) : 0;
  const fileSize = fileBlocks * bs + tailBytes;
  const oneDevice = layout === 'one-device';
  const hashOffset = oneDevice ? roundUp(fileSize, 4096) + 4096 * rng.int(0, 2) : rng.pick([0, 0, 4096, 8192 * rng.int(1, 4)]);
  const geometry = computeGeometry({
    hashType: format,
    algorithm: hash,
    dataBlockSize: bs,
    hashBlockSize: bs,
    dataBlocks: blocks,
    salt: new Uint8Array(0),
    uuid: null,
    superblock,
    hashOffset,
  });
  const treeEnd = geometry.hashDeviceSize;
  // A hash file with bytes of its own: shorter or longer than the tree (not in the one-device layout: that is the data).
  const prefill = !oneDevice && rng.chance(0.35) ? { bytes: rng.int(1, 3 * treeEnd + 1), seed: rng.int(1, 0x7fffffff) } : null;
  // Without a tree (one data block), a hash file that ends inside the gap before the hash area makes veritysetup fail
  // (its unsigned E − hash start wraps; fec/geometry.ts); keep the file past it.
  const hashStart = geometry.hashStartBlock * bs;
  if (prefill && prefill.bytes >= bs && prefill.bytes < hashStart) prefill.bytes += hashStart;
  let fecOffset = 0;
  if (layout === 'separate') fecOffset = rng.chance(0.3) ? bs * rng.int(1, 8) : 0;
  else if (layout === 'data-device') fecOffset = roundUp(fileSize, bs) + bs * rng.int(0, 3);
  else {
    // After the tree; past a gap only where the gap is already in the file (veritysetup reads it before it writes).
    const held = Math.floor((prefill?.bytes ?? 0) / bs) * bs;
    fecOffset = held > treeEnd && rng.chance(0.5) ? rng.int(treeEnd / bs, held / bs) * bs : treeEnd;
  }
  return {
    index,
    layout,
    hash,
    format,
    bs,
    salt: rng.chance(0.1) ? '-' : rng.hex(rng.int(1, 64)),
    uuid: superblock ? rng.uuid() : null,
    hashOffset,
    dataBlocksArg: oneDevice || fileBlocks !== blocks ? blocks : null,
    roots: rng.int(2, 24),
    fecOffset,
    prefill,
    data: { blocks: fileBlocks, blockSize: bs, tailBytes, fill: rng.pick(['random', 'random', 'mixed', 'zero'] as const), seed: rng.int(1, 0x7fffffff) },
  };
}

function describeCase(c: Case): string {
  return (
    `#${c.index} ${c.layout} roots=${c.roots} ${c.hash} v${c.format} bs=${c.bs} blocks=${c.dataBlocksArg ?? c.data.blocks}/${c.data.blocks}` +
    `${c.data.tailBytes ? `+${c.data.tailBytes}B` : ''} ${c.uuid ? 'sb' : 'no-sb'} off=${c.hashOffset} fec-off=${c.fecOffset}` +
    `${c.prefill ? ` prefill=${c.prefill.bytes}` : ''}`
  );
}

function formatArgs(c: Case, paths: { data: string; hash: string; fec: string }): string[] {
  const args = ['format', paths.data, paths.hash, `--hash=${c.hash}`, `--format=${c.format}`, `--data-block-size=${c.bs}`, `--hash-block-size=${c.bs}`, `--salt=${c.salt}`];
  if (c.uuid) args.push(`--uuid=${c.uuid}`);
  else args.push('--no-superblock');
  if (c.hashOffset) args.push(`--hash-offset=${c.hashOffset}`);
  if (c.dataBlocksArg !== null) args.push(`--data-blocks=${c.dataBlocksArg}`);
  args.push(`--fec-device=${paths.fec}`, `--fec-roots=${c.roots}`);
  if (c.fecOffset) args.push(`--fec-offset=${c.fecOffset}`);
  return args;
}

function lay(c: Case, dir: string) {
  const paths = fecPaths(c.layout, dir);
  writeFileSync(paths.data, makeData(c.data));
  if (c.prefill) writeFileSync(paths.hash, makeData({ blocks: 0, blockSize: 1, tailBytes: c.prefill.bytes, fill: 'random', seed: c.prefill.seed }));
  return paths;
}

const rng = new Rng(SEED);
const cases = Array.from({ length: CASES }, (_, i) => makeCase(rng, i));

describe.skipIf(SKIP_REASON !== null)(
  `format --fec-device against veritysetup, ${CASES} random cases, seed ${SEED}${SKIP_REASON ? ` [SKIPPED: ${SKIP_REASON}]` : ''}`,
  () => {
    const root = mkdtempSync(join(tmpdir(), 'verity-fec-diff-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it.each(cases.map((c) => [describeCase(c), c] as const))('%s', async (_name, c) => {
      const theirs = lay(c, mkdtempSync(join(root, `${c.index}-vs-`)));
      const ours = lay(c, mkdtempSync(join(root, `${c.index}-us-`)));
      const v = veritysetup(formatArgs(c, theirs));
      expect(v.code, `veritysetup failed (seed ${SEED}): ${v.stderr}`).toBe(0);
      const r = await runCaptured([...formatArgs(c, ours), '--no-progress']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split(ours.hash).join('<HASH>')).toBe(v.stdout.split(theirs.hash).join('<HASH>'));
      for (const which of ['data', 'hash', 'fec'] as const) {
        const a = readFileSync(theirs[which]);
        const b = readFileSync(ours[which]);
        expect(b.length, `${which} size`).toBe(a.length);
        expect(b.equals(a), `${which} bytes (seed ${SEED})`).toBe(true);
      }
      if (c.uuid) {
        const rootHash = /^Root hash:\s+(\w+)$/m.exec(r.stdout)![1]!;
        const verify = ['verify', ours.data, ours.hash, rootHash, `--fec-device=${ours.fec}`, `--fec-roots=${c.roots}`, `--fec-offset=${c.fecOffset}`];
        if (c.hashOffset) verify.push(`--hash-offset=${c.hashOffset}`);
        const checked = veritysetup(verify);
        expect(checked.code, checked.stderr).toBe(0);
      }
    });
  },
);
