/**
 * `verity format --fec-device` through the CLI and the API: bad parameters and overlapping areas are refused before
 * anything is written (exit 1, or 4 for inputs that cannot be used), the JSON document reports the parity, existing
 * files keep their other bytes, and the hash image stays verifiable (by us and by veritysetup, with the parity).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatFiles, verifyFiles } from '../../src/index.js';
import { expectFailure, runCaptured } from '../support/cli-harness.js';
import { makeData } from '../support/data.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

const SALT = 'e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d';
const UUID = 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033';
/** 300 blocks of 4096 bytes: a tree of 3 + 1 blocks, so the tree of a new hash file ends at byte 5 × 4096. */
const DATA = makeData({ blocks: 300, blockSize: 4096, tailBytes: 0, fill: 'random', seed: 1313 });
const TREE_END = 5 * 4096;

const dir = tempDirPerTest('verity-fec-cli-');

function files() {
  const d = dir();
  const f = { dir: d, data: join(d, 'data.img'), hash: join(d, 'hash.img'), fec: join(d, 'fec.img') };
  writeFileSync(f.data, DATA);
  return f;
}

const format = (f: ReturnType<typeof files>, ...extra: string[]) =>
  runCaptured(['format', f.data, f.hash, `--salt=${SALT}`, `--uuid=${UUID}`, '--no-progress', ...extra]);

describe('format --fec-device refuses bad parameters, writing nothing (exit 1)', () => {
  it.each([
    ['--fec-roots=1', ['--fec-roots=1'], /Invalid number of parity bytes: FEC roots 1 is not an integer from 2 to 24/],
    ['--fec-roots=25', ['--fec-roots=25'], /Invalid number of parity bytes: FEC roots 25/],
    ['different block sizes', ['--hash-block-size=512'], /Block sizes must match for FEC: the data block size is 4096 and the hash block size 512/],
    ['an offset that is not a whole block', ['--fec-offset=512'], /Unsupported VERITY FEC offset 512: it must be a non-negative multiple of the 4096-byte block size/],
  ])('%s', async (_name, extra, message) => {
    const f = files();
    expectFailure(await format(f, `--fec-device=${f.fec}`, ...extra), 1, message);
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });

  it('--fec-roots or --fec-offset without --fec-device', async () => {
    const f = files();
    expectFailure(await format(f, '--fec-roots=3'), 1, '--fec-roots needs --fec-device.');
    expectFailure(await format(f, '--fec-offset=4096'), 1, '--fec-offset needs --fec-device.');
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });

  it('the parity over the tree on the hash device, or before it (the kernel needs the tree covered)', async () => {
    const f = files();
    for (const offset of [0, 4096, TREE_END - 4096]) {
      expectFailure(
        await format(f, `--fec-device=${f.hash}`, `--fec-offset=${offset}`),
        1,
        `Hash area overlaps with FEC area: on ${f.hash} the hash tree ends at byte ${TREE_END} and the FEC area must start there or later; --fec-offset is ${offset}.`,
      );
    }
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });

  it('the parity over the data in the data file, also with the tree in the same file', async () => {
    const f = files();
    const before = readFileSync(f.data);
    expectFailure(await format(f, `--fec-device=${f.data}`, `--fec-offset=${299 * 4096}`), 1, /Data area overlaps with FEC area: in .*data\.img the data covers bytes 0\.\.1228800/);
    const one = ['format', f.data, f.data, `--hash-offset=${300 * 4096}`, `--salt=${SALT}`, `--fec-device=${f.data}`, '--no-progress'];
    expectFailure(await runCaptured([...one, '--fec-offset=4096']), 1, /overlaps with FEC area/);
    expect(readFileSync(f.data).equals(before)).toBe(true);
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });

  it('a --json run reports the error as a document', async () => {
    const f = files();
    const run = await format(f, `--fec-device=${f.fec}`, '--fec-roots=30', '--json');
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ command: 'format', exitCode: 1, error: { code: 'E_PARAM' } });
  });
});

describe('format --fec-device with inputs it cannot use (exit 4)', () => {
  it('a FEC path that is a directory, or in a missing directory', async () => {
    const f = files();
    expectFailure(await format(f, `--fec-device=${f.dir}`), 4, 'is a directory');
    expectFailure(await format(f, `--fec-device=${join(f.dir, 'no', 'fec.img')}`), 4, /Cannot create .*fec\.img: the directory .* does not exist/);
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });

  it('data that can only be read front to back (stdin)', async () => {
    const f = files();
    await expect(
      formatFiles('-', f.hash, { stdin: Readable.from([DATA]), dataBlocks: 300, fecDevice: f.fec }),
    ).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/FEC reads blocks out of order/) });
    expect(readdirSync(f.dir)).toEqual(['data.img']);
  });
});

describe('format --fec-device output', () => {
  it('--json reports where the parity is and what the kernel table needs', async () => {
    const f = files();
    const run = await format(f, `--fec-device=${f.hash}`, `--fec-offset=${TREE_END}`, '--fec-roots=3', '--json');
    expect(run.code, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout);
    // 300 data blocks + 4 tree blocks = 304 covered blocks, 2 rounds of 252.
    expect(doc.fec).toEqual({
      path: f.hash,
      placement: 'hash-device',
      roots: 3,
      offset: TREE_END,
      startBlock: 5,
      blockSize: 4096,
      coveredBlocks: 304,
      dataBlocks: 300,
      hashBlocks: { first: 1, count: 4 },
      rounds: 2,
      parityBlocks: 6,
      parityBytes: 6 * 4096,
    });
    expect(readFileSync(f.hash).length).toBe(TREE_END + 6 * 4096);
  });

  it('reports progress over the data and then the covered area, to the end', async () => {
    const f = files();
    const seen: { bytesDone: number; bytesTotal: number }[] = [];
    await formatFiles(f.data, f.hash, { salt: SALT, fecDevice: f.fec, onProgress: (p) => seen.push(p) });
    const total = 300 * 4096 + 304 * 4096;
    expect(seen.every((p) => p.bytesTotal === total)).toBe(true);
    expect(seen.map((p) => p.bytesDone)).toEqual(seen.map((p) => p.bytesDone).sort((a, b) => a - b));
    expect(seen.at(-1)!.bytesDone).toBe(total);
  });

  it('updates an existing FEC file in place, keeping its bytes outside the parity, as veritysetup does', async () => {
    const f = files();
    writeFileSync(f.fec, new Uint8Array(100_000).fill(0xee));
    const run = await format(f, `--fec-device=${f.fec}`, '--fec-offset=8192');
    expect(run.code, run.stderr).toBe(0);
    const fec = readFileSync(f.fec);
    // 304 covered blocks in 2 rounds of 253: 2 · 2 · 4096 bytes of parity at 8192.
    expect(fec.length).toBe(100_000);
    expect(fec.subarray(0, 8192).every((b) => b === 0xee)).toBe(true);
    expect(fec.subarray(8192 + 4 * 4096).every((b) => b === 0xee)).toBe(true);
    expect(existsSync(f.hash)).toBe(true);
  });

  it(`leaves a tree that verifies, for us and for veritysetup with the parity${NEEDS_VERITYSETUP}`, async () => {
    const f = files();
    const run = await format(f, `--fec-device=${f.hash}`, `--fec-offset=${TREE_END}`);
    expect(run.code, run.stderr).toBe(0);
    const root = /^Root hash:\s+(\w+)$/m.exec(run.stdout)![1]!;
    expect((await verifyFiles(f.data, f.hash, { rootHash: root })).status).toBe('ok');
    if (hasVeritysetup) {
      const v = veritysetup(['verify', f.data, f.hash, root, `--fec-device=${f.hash}`, `--fec-offset=${TREE_END}`]);
      expect(v.code, v.stderr).toBe(0);
      // With one data block damaged, veritysetup's FEC repairs it from our parity (and, as upstream does, exits 0).
      const damaged = Buffer.from(DATA);
      damaged[5 * 4096 + 7]! ^= 0xff;
      writeFileSync(f.data, damaged);
      const r = veritysetup(['verify', f.data, f.hash, root, `--fec-device=${f.hash}`, `--fec-offset=${TREE_END}`]);
      expect(r.stderr).toMatch(/Found 1 repairable errors with FEC device/);
    }
  });
});

describe('dump --fec-device', () => {
  it(`prints veritysetup's FEC lines for a separate FEC file and for parity on the hash device${NEEDS_VERITYSETUP}`, async () => {
    const f = files();
    expect((await format(f, `--fec-device=${f.fec}`)).code).toBe(0);
    const separate = await runCaptured(['dump', f.hash, `--fec-device=${f.fec}`]);
    expect(separate.code, separate.stderr).toBe(0);
    expect(separate.stdout).toBe(
      [
        `VERITY header information for ${f.hash}`,
        `UUID:            \t${UUID}`,
        'Hash type:       \t1',
        'Data blocks:     \t300',
        'Data block size: \t4096',
        'Hash blocks:     \t4',
        'Hash block size: \t4096',
        'Hash algorithm:  \tsha256',
        'FEC RS roots:   \t2',
        'FEC blocks:     \t4',
        `Salt:            \t${SALT}`,
        'Hash device size: \t20480 [bytes]',
        'FEC device size: \t16384 [bytes]',
        '',
      ].join('\n'),
    );
    const onHash = ['dump', f.hash, `--fec-device=${f.hash}`, `--fec-offset=${TREE_END}`, '--fec-roots=3'];
    const run = await runCaptured(onHash);
    expect(run.stdout).toContain('FEC RS roots:   \t3\nFEC blocks:     \t6\n');
    expect(run.stdout).toContain(`Hash device size: \t${TREE_END + 6 * 4096} [bytes]\n`);
    expect(run.stdout).not.toContain('FEC device size');
    const json = JSON.parse((await runCaptured([...onHash, '--json'])).stdout);
    expect(json.fec).toMatchObject({ placement: 'hash-device', roots: 3, coveredBlocks: 304, parityBlocks: 6, startBlock: 5 });
    if (hasVeritysetup) {
      expect(separate.stdout).toBe(veritysetup(['dump', f.hash, `--fec-device=${f.fec}`]).stdout);
      expect(run.stdout).toBe(veritysetup(onHash).stdout);
    }
  });

  it('refuses a missing FEC device (exit 4) and bad FEC parameters (exit 1)', async () => {
    const f = files();
    expect((await format(f)).code).toBe(0);
    expectFailure(await runCaptured(['dump', f.hash, `--fec-device=${join(f.dir, 'none.img')}`]), 4, 'does not exist or access denied');
    expectFailure(await runCaptured(['dump', f.hash, `--fec-device=${f.data}`, '--fec-roots=1']), 1, 'Invalid number of parity bytes');
  });
});
