/**
 * `verify --fec-device`: for each damaged image, whether the parity can restore it. Damage within the erasure limit
 * (up to `roots` damaged blocks per round) is repairable, past it or with damaged parity it is not, and the exit code
 * is 2 either way. The parity comes from veritysetup where it is installed (so the decoder is checked against the
 * real producer), else from our format (byte-identical to it: test/fec/golden.test.ts). veritysetup's own verify, which
 * corrects errors rather than erasures, is run on the same files to show where the two differ.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeFecGeometry } from '../../src/fec/geometry.js';
import { expectFailure, runCaptured } from '../support/cli-harness.js';
import { makeData } from '../support/data.js';
import { Rng } from '../support/rng.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

const SALT = '5a1f';
const B = 4096;
const BLOCKS = 600;
const DATA = makeData({ blocks: BLOCKS, blockSize: B, tailBytes: 0, fill: 'random', seed: 4242 });

const dir = tempDirPerTest('verity-verify-fec-');

interface Setup {
  data: string;
  hash: string;
  fec: string;
  root: string;
  roots: number;
  rounds: number;
  /** Where the tree starts on the hash device (after the superblock), in blocks. */
  hashStart: number;
}

/** Data, tree and a separate FEC file with `roots` roots, made by veritysetup when installed, else by us. */
async function setup(roots: number): Promise<Setup> {
  const d = dir();
  const s = { data: join(d, 'data.img'), hash: join(d, 'hash.img'), fec: join(d, 'fec.img') };
  writeFileSync(s.data, DATA);
  const args = ['format', s.data, s.hash, `--salt=${SALT}`, `--fec-device=${s.fec}`, `--fec-roots=${roots}`];
  const out = hasVeritysetup ? veritysetup(args).stdout : (await runCaptured([...args, '--no-progress'])).stdout;
  const root = /Root hash:\s+([0-9a-f]+)/.exec(out)![1]!;
  const hashSize = readFileSync(s.hash).length;
  const g = computeFecGeometry({
    roots,
    dataBlockSize: B,
    hashBlockSize: B,
    dataBlocks: BLOCKS,
    hashStartBlock: 1,
    fecOffset: 0,
    onHashDevice: false,
    hashDeviceSize: hashSize,
  });
  return { ...s, root, roots, rounds: g.rounds, hashStart: 1 };
}

function damage(path: string, blocks: number[], rng: Rng): void {
  const bytes = readFileSync(path);
  for (const b of blocks) bytes[b * B + rng.int(0, B - 1)]! ^= 1 + rng.int(0, 254);
  writeFileSync(path, bytes);
}

const verify = (s: Setup, ...extra: string[]) =>
  runCaptured(['verify', s.data, s.hash, s.root, `--fec-device=${s.fec}`, `--fec-roots=${s.roots}`, '--json', '--no-progress', ...extra]);

describe('verify --fec-device', () => {
  it('a clean image: exit 0, nothing to restore', async () => {
    const s = await setup(2);
    const r = await verify(s);
    expect(r.code).toBe(0);
    const fec = JSON.parse(r.stdout).fec;
    expect(fec).toMatchObject({ roots: 2, assessed: true, repairable: true, damagedBlocks: { data: 0, hash: 0 }, placement: 'separate' });
  });

  it(`two damaged data blocks in one round, 2 roots: repairable by erasures (exit 2), where veritysetup verify (error correction only) fails${NEEDS_VERITYSETUP}`, async () => {
    const s = await setup(2);
    const blocks = [3, 3 + s.rounds];
    // Whole blocks of new bytes: each codeword of the round has two wrong symbols, past what error correction fixes.
    const bytes = readFileSync(s.data);
    for (const b of blocks) bytes.set(makeData({ blocks: 1, blockSize: B, tailBytes: 0, fill: 'random', seed: 90 + b }), b * B);
    writeFileSync(s.data, bytes);
    const r = await verify(s);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc.status).toBe('corrupt');
    expect(doc.fec).toMatchObject({ repairable: true, damagedBlocks: { data: 2, hash: 0 }, restorableBlocks: 2, recheckStatus: 'ok' });
    const text = await runCaptured(['verify', s.data, s.hash, s.root, `--fec-device=${s.fec}`, '--no-progress']);
    expect(text.stdout).toContain('FEC (' + s.fec + ', 2 roots): all 2 damaged blocks can be restored by erasure decoding');
    if (hasVeritysetup) {
      expect(veritysetup(['verify', s.data, s.hash, s.root, `--fec-device=${s.fec}`]).code).not.toBe(0);
    }
  });

  it(`damage veritysetup corrects (one wrong byte per codeword) is repairable for us too, and still exit 2${NEEDS_VERITYSETUP}`, async () => {
    const s = await setup(4);
    const rng = new Rng(2);
    damage(s.data, [10, 200, 10 + s.rounds], rng);
    const r = await verify(s);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).fec, r.stdout).toMatchObject({ repairable: true, damagedBlocks: { data: 3, hash: 0 } });
    if (hasVeritysetup) expect(veritysetup(['verify', s.data, s.hash, s.root, `--fec-device=${s.fec}`, '--fec-roots=4']).code).toBe(0);
  });

  it('more damaged blocks in a round than roots: not repairable, and the blocks are named', async () => {
    const s = await setup(2);
    const rng = new Rng(3);
    const round = [5, 5 + s.rounds, 5 + 2 * s.rounds];
    damage(s.data, [...round, 100], rng);
    const r = await verify(s);
    expect(r.code).toBe(2);
    const fec = JSON.parse(r.stdout).fec;
    expect(fec).toMatchObject({ repairable: false, damagedBlocks: { data: 4, hash: 0 }, restorableBlocks: 1 });
    expect(fec.unrestorable.data.map((x: { first: number }) => x.first)).toEqual(round);
  });

  it('damaged tree blocks are restored too', async () => {
    const s = await setup(2);
    const rng = new Rng(4);
    damage(s.hash, [s.hashStart + 1], rng);
    const r = await verify(s);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).fec).toMatchObject({ repairable: true, damagedBlocks: { data: 0, hash: 1 }, recheckStatus: 'ok' });
  });

  it('damaged parity as well: the spare syndromes or the second verification say not repairable', async () => {
    for (const roots of [2, 6]) {
      const s = await setup(roots);
      const rng = new Rng(5 + roots);
      damage(s.data, [7], rng);
      // Covered block 7 is in round 7 mod rounds; damage codeword 100's first parity byte of that round.
      const fec = readFileSync(s.fec);
      fec[((7 % s.rounds) * B + 100) * roots]! ^= 0x55;
      writeFileSync(s.fec, fec);
      const r = await verify(s);
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).fec, `roots ${roots}`).toMatchObject({ repairable: false });
    }
  });

  it('refuses a FEC file shorter than its parity, and FEC options on a whole image (exit 4 and 1)', async () => {
    const s = await setup(2);
    const short = join(dir(), 'short.fec');
    copyFileSync(s.fec, short);
    writeFileSync(short, readFileSync(short).subarray(0, 4096));
    expectFailure(await runCaptured(['verify', s.data, s.hash, s.root, `--fec-device=${short}`]), 4, /FEC device is too small/);
    expectFailure(await runCaptured(['verify', s.data, `--fec-device=${s.fec}`]), 1, /apply to verify <data> <hash>/);
    expectFailure(await runCaptured(['verify', s.data, s.hash, s.root, '--fec-roots=3']), 1, '--fec-roots needs --fec-device.');
    expectFailure(await runCaptured(['verify', s.data, s.hash, s.root, `--fec-device=${s.fec}`, '--fec-roots=30']), 1, /FEC roots 30/);
  });
});
