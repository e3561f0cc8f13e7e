/**
 * The `verity` command line: every error path with its exit code and message, the JSON documents, byte-for-byte
 * compatibility of the text output with veritysetup, what format leaves on disk, and that inputs are never modified.
 * Most runs are in-process through `runCli`; the "built CLI" suite spawns `node dist/cli/main.js` to check real
 * process exit codes and that no stack trace reaches stderr (`npm test` builds dist/ first).
 */
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { BUILT_CLI, type CliRun, expectFailure, expectNoStackTrace, runCaptured, spawnBuiltCli } from '../support/cli-harness.js';
import { makeData } from '../support/data.js';
import { flipByte, tempDirPerTest, writeAt } from '../support/tree-damage.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

vi.stubEnv('VERITY_DEBUG', ''); // VERITY_DEBUG=1 prints stack traces on purpose

const SALT = 'e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d';
const UUID = 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033';
const BLOCKS = 300; // 4096-byte blocks: level 0 has 3 hash blocks (2..4), the top block is hash block 1
const DATA = makeData({ blocks: BLOCKS, blockSize: 4096, tailBytes: 100, fill: 'mixed', seed: 99 });

const dir = tempDirPerTest('verity-cli-');

interface Fixture {
  dir: string;
  data: string;
  hash: string;
  rootFile: string;
  root: string;
}

/** A data file and its hash file (sha256, 4096/4096, fixed salt and UUID), formatted by our CLI. */
async function fixture(): Promise<Fixture> {
  const d = dir();
  const f = { dir: d, data: join(d, 'data.img'), hash: join(d, 'hash.img'), rootFile: join(d, 'root.hex'), root: '' };
  writeFileSync(f.data, DATA);
  const r = await runCaptured(['format', f.data, f.hash, `--salt=${SALT}`, `--uuid=${UUID}`, '--root-hash-file', f.rootFile]);
  expect(r.code, r.stderr).toBe(0);
  f.root = readFileSync(f.rootFile, 'latin1');
  return f;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** sha256 of every file in `d`. */
function snapshot(d: string): Record<string, string> {
  return Object.fromEntries(readdirSync(d).sort().map((name) => [name, sha256(join(d, name))]));
}

/** A root hash of the right length that is not the image's. */
function otherRoot(root: string): string {
  return (root[0] === '0' ? '1' : '0') + root.slice(1);
}

function parseOneJson(run: CliRun): Record<string, any> {
  expect(run.stdout.trim(), 'stdout holds a JSON document').toMatch(/^\{[\s\S]*\}$/);
  // JSON.parse of the whole stdout fails on anything but exactly one value.
  const doc = JSON.parse(run.stdout) as Record<string, any>;
  expect(doc.schemaVersion).toBe(1);
  expect(doc.exitCode, 'exitCode is the exit code').toBe(run.code);
  return doc;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('missing and unreadable inputs (exit 4)', () => {
  it('format: a missing data file', async () => {
    const d = dir();
    const r = await runCaptured(['format', join(d, 'nope.img'), join(d, 'h.img')]);
    expectFailure(r, 4, /^verity format: Device .*nope\.img does not exist or access denied\.$/m);
    expect(readdirSync(d)).toEqual([]);
  });

  it('verify: a missing data file', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', join(f.dir, 'nope.img'), f.hash, f.root]), 4, 'nope.img does not exist or access denied');
  });

  it('verify: a missing hash file', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.data, join(f.dir, 'nope.hash'), f.root]), 4, 'nope.hash does not exist or access denied');
  });

  it('dump: a missing hash file', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['dump', join(f.dir, 'nope.hash')]), 4, 'nope.hash does not exist or access denied');
  });

  it('verify: a directory instead of a data file', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.dir, f.hash, f.root]), 4, 'is a directory');
  });

  it('verify: a hash file truncated inside the tree', async () => {
    const f = await fixture();
    truncateSync(f.hash, 3 * 4096);
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root]), 4, 'Hash device is too small: 12288 bytes, but the tree needs 20480.');
  });

  it('verify and dump: a hash file too short for a superblock', async () => {
    const f = await fixture();
    truncateSync(f.hash, 100);
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root]), 4, /is not a valid VERITY device: it is 100 bytes, too short/);
    expectFailure(await runCaptured(['dump', f.hash]), 4, /is not a valid VERITY device: it is 100 bytes, too short/);
  });

  it('verify: a data file shorter than the blocks the superblock covers', async () => {
    const f = await fixture();
    truncateSync(f.data, 299 * 4096);
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root]), 4, /Data device is too small/);
  });

  it(`verify: --root-hash-file naming a missing file fails with 4 (veritysetup 2.6.1 exits 0 there)${NEEDS_VERITYSETUP}`, async () => {
    const f = await fixture();
    const missing = join(f.dir, 'missing.roothash');
    expectFailure(await runCaptured(['verify', f.data, f.hash, '--root-hash-file', missing]), 4, /Cannot read root hash file .*missing\.roothash/);
    if (hasVeritysetup) {
      // The upstream bug this guards against (docs/format.md §6): nothing is verified, yet exit 0.
      expect(veritysetup(['verify', f.data, f.hash, `--root-hash-file=${missing}`]).code).toBe(0);
    }
  });
});

describe('invalid superblocks (exit 4)', () => {
  const cases: { name: string; offset: number; bytes: number[]; message: RegExp }[] = [
    { name: 'bad magic', offset: 0, bytes: [0x56], message: /is not a valid VERITY device: No VERITY signature detected/ },
    { name: 'bad version (2)', offset: 8, bytes: [2], message: /is not a valid VERITY device: Unsupported VERITY version 2\./ },
    { name: 'bad hash type (2)', offset: 12, bytes: [2], message: /is not a valid VERITY device: Unsupported VERITY hash type 2\./ },
    { name: 'unknown algorithm', offset: 32, bytes: [...Buffer.from('md5\0\0\0')], message: /Hash algorithm md5 not supported/ },
    { name: 'data block size 1000', offset: 64, bytes: [0xe8, 0x03, 0, 0], message: /data block size 1000 is not a power of two/ },
    { name: 'salt size 300', offset: 80, bytes: [0x2c, 0x01], message: /salt size 300 exceeds 256/ },
  ];
  it.each(cases)('$name: verify and dump exit 4 and name the field', async ({ offset, bytes, message }) => {
    const f = await fixture();
    writeAt(f.hash, offset, new Uint8Array(bytes));
    const v = await runCaptured(['verify', f.data, f.hash, f.root]);
    expectFailure(v, 4, message);
    expect(v.stdout).toBe('');
    expectFailure(await runCaptured(['dump', f.hash]), 4, message);
  });
});

describe('invalid parameters (exit 1)', () => {
  const formatCases: { name: string; args: string[]; message: RegExp | string }[] = [
    { name: 'salt of 257 bytes', args: [`--salt=${'ab'.repeat(257)}`], message: 'Salt is 257 bytes long; the maximum is 256.' },
    { name: 'salt with an odd number of hex digits', args: ['--salt=abc'], message: /Invalid salt string: expected an even number of hex digits, got "abc"/ },
    { name: 'salt that is not hex', args: ['--salt=zz'], message: /Invalid salt string/ },
    { name: 'data block size 333 (not a power of two, below 512)', args: ['--data-block-size=333'], message: /--data-block-size.*'333' is invalid/ },
    { name: 'data block size 1000 (not a power of two)', args: ['--data-block-size=1000'], message: /data block size 1000 is not a power of two from 512 to 524288/ },
    { name: 'hash block size 3000 (not a power of two)', args: ['--hash-block-size=3000'], message: /hash block size 3000 is not a power of two/ },
    { name: 'data block size 256 (too small)', args: ['--data-block-size=256'], message: /--data-block-size.*'256' is invalid\. must be from 512 to 524288/ },
    { name: 'hash block size 1048576 (too large)', args: ['--hash-block-size=1048576'], message: /--hash-block-size.*'1048576' is invalid\. must be from 512 to 524288/ },
    { name: 'unknown hash algorithm', args: ['-h', 'md5'], message: 'Hash algorithm md5 not supported. Supported: sha1, sha224, sha256, sha384, sha512.' },
    { name: 'negative --data-blocks', args: ['--data-blocks=-1'], message: /--data-blocks.*'-1' is invalid\. expected a non-negative decimal integer/ },
    { name: '--data-blocks=0', args: ['--data-blocks=0'], message: /--data-blocks.*'0' is invalid/ },
    { name: 'suffixed --data-block-size=4k', args: ['--data-block-size=4k'], message: /--data-block-size.*'4k' is invalid\. expected a non-negative decimal integer/ },
    { name: 'negative --hash-offset (veritysetup wraps it)', args: ['--hash-offset=-512'], message: /--hash-offset.*'-512' is invalid/ },
    { name: '--hash-offset not a multiple of 512', args: ['--hash-offset=513'], message: /Unsupported VERITY hash offset 513/ },
    { name: 'a --hash-offset whose hash area would end past 2^53 bytes', args: ['--hash-offset=9007199254740480'], message: /Device offset overflow: the hash area would end beyond 2\^53 bytes/ },
    { name: 'a --hash-offset past 2^53 (veritysetup takes any u64)', args: ['--hash-offset=18446744073709551104'], message: /--hash-offset.*is invalid\. must be from 0 to 9007199254740991/ },
    { name: '--format=2', args: ['--format=2'], message: /--format.*'2' is invalid\. must be 0 \(Chrome OS\) or 1/ },
    { name: 'a malformed --uuid', args: ['--uuid=nope'], message: /Invalid UUID "nope"/ },
  ];
  it.each(formatCases)('format: $name', async ({ args, message }) => {
    const d = dir();
    writeFileSync(join(d, 'data.img'), DATA);
    const before = snapshot(d);
    expectFailure(await runCaptured(['format', join(d, 'data.img'), join(d, 'hash.img'), ...args]), 1, message);
    expect(snapshot(d), 'no output, input unchanged').toEqual(before);
  });

  it('format: the largest block size (524288) and a 256-byte salt are accepted', async () => {
    const d = dir();
    writeFileSync(join(d, 'data.img'), new Uint8Array(2 * 524288));
    const r = await runCaptured(['format', join(d, 'data.img'), join(d, 'h'), '--data-block-size=524288', `--salt=${'ab'.repeat(256)}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('WARNING: Kernel cannot activate device if data block size exceeds page size (4096).\n');
  });

  it('verify: a root hash of the wrong length', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root.slice(0, 62)]), 1, 'Invalid root hash string specified: 31 bytes, but sha256 digests are 32 bytes.');
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root + '00']), 1, /Invalid root hash string specified: 33 bytes/);
  });

  it('verify: a root hash that is not hex, or has an odd length', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.data, f.hash, 'zz' + f.root.slice(2)]), 1, /Invalid root hash string: expected an even number of hex digits/);
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root.slice(1)]), 1, /Invalid root hash string/);
  });

  it('verify: a root hash file too short for a root hash', async () => {
    const f = await fixture();
    writeFileSync(f.rootFile, f.root.slice(0, 10));
    expectFailure(await runCaptured(['verify', f.data, f.hash, '--root-hash-file', f.rootFile]), 1, /Invalid root hash file .*: it holds 10 characters, a root hash needs 64/);
  });

  it('verify: no root hash at all', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.data, f.hash]), 1, 'A root hash is required: give it as an argument or with a root hash file.');
  });

  it('verify --no-superblock without --salt (veritysetup would silently use a random salt)', async () => {
    const f = await fixture();
    expectFailure(
      await runCaptured(['verify', f.data, f.hash, f.root, '--no-superblock', '--hash-offset=4096']),
      1,
      'Without a superblock the salt must be given (use "-" for none).',
    );
  });

  it('format: data and hash in one file with a --hash-offset inside the data: overlap, file untouched', async () => {
    const f = await fixture();
    const before = sha256(f.data);
    expectFailure(
      await runCaptured(['format', f.data, f.data, '--hash-offset=4096']),
      1,
      /Data area overlaps with hash area: .* the data covers its bytes 0\.\.1228800 and the hash area starts at 4096\./,
    );
    expect(sha256(f.data)).toBe(before);
  });

  it('verify: data and hash in one file overlapping (--no-superblock)', async () => {
    const f = await fixture();
    expectFailure(
      await runCaptured(['verify', f.data, f.data, f.root, '--no-superblock', '--salt=-', '--hash-offset=8192']),
      1,
      /Data area overlaps with hash area/,
    );
  });

  it('format --no-superblock in one file: an offset that rounds down into the data is an overlap (veritysetup misses it)', async () => {
    const f = await fixture();
    const before = sha256(f.data);
    // The data ends at 2399 * 512 = 1228288, and so does the offset; but without a superblock the tree starts at the
    // offset rounded down to a 4096-byte hash block, 1224704, over the last data blocks.
    expectFailure(
      await runCaptured(['format', f.data, f.data, '--no-superblock', '--salt=-', '--data-block-size=512', '--data-blocks=2399', '--hash-offset=1228288']),
      1,
      /Data area overlaps with hash area: .* the data covers its bytes 0\.\.1228288 and the hash area starts at 1224704\./,
    );
    expect(sha256(f.data)).toBe(before);
  });

  it('usage: an unknown option, an unknown command, missing and excess arguments', async () => {
    const f = await fixture();
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root, '--bogus']), 1, "error: unknown option '--bogus'");
    expectFailure(await runCaptured(['bogus']), 1, "error: unknown command 'bogus'");
    expectFailure(await runCaptured(['format']), 1, "error: missing required argument 'data'");
    expectFailure(await runCaptured(['verify']), 1, "error: missing required argument 'data'");
    expectFailure(await runCaptured(['verify', f.data, f.hash]), 1, 'A root hash is required');
    expectFailure(await runCaptured(['dump']), 1, "error: missing required argument 'hash'");
    expectFailure(await runCaptured(['verify', f.data, f.hash, f.root, 'extra']), 1, /too many arguments for 'verify'/);
    expectFailure(await runCaptured([]), 1, /Usage: verity/);
  });

  it('--help exits 0 and lists format, verify and dump', async () => {
    const r = await runCaptured(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const command of ['format', 'verify', 'dump']) expect(r.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    const v = await runCaptured(['verify', '--help']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/--root-hash-file/);
  });
});

describe('verify outcomes', () => {
  it('an intact image: exit 0, a success line, nothing on stderr', async () => {
    const f = await fixture();
    const r = await runCaptured(['verify', f.data, f.hash, f.root]);
    expect(r).toEqual({
      code: 0,
      stdout: `Verification succeeded: 300 data blocks and 4 hash blocks match root hash ${f.root}.\n`,
      stderr: '',
    });
  });

  it('a wrong root hash is 3, corrupted data is 2', async () => {
    const f = await fixture();
    const wrong = await runCaptured(['verify', f.data, f.hash, otherRoot(f.root)]);
    expectFailure(wrong, 3, /^Verification of root hash failed\.$/m);
    expect(wrong.stdout).toContain(`Root hash mismatch: the hash tree's root is ${f.root}, expected ${otherRoot(f.root)}.`);
    expect(wrong.stdout).toContain('the root hash given does not belong to this image');

    flipByte(f.data, 7 * 4096 + 123);
    const corrupt = await runCaptured(['verify', f.data, f.hash, f.root]);
    expect(corrupt.stderr).toBe('Verification failed at position 28672.\nVerification of data area failed.\n');
    expectFailure(corrupt, 2, 'Verification failed at position 28672.');
    expect(corrupt.stdout).toBe(
      'Verification failed: 1 corrupted data block.\nCorrupted data blocks (1 in 1 range):\n  block 7 at data bytes 28672-32767\n',
    );
  });

  it('a wrong root hash over a damaged tree: the text says the root hash did not match, as the JSON does', async () => {
    const f = await fixture();
    flipByte(f.hash, 3 * 4096 + 100); // a level-0 hash block: the tree is damaged below an intact top block
    const r = await runCaptured(['verify', f.data, f.hash, otherRoot(f.root)]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(new RegExp(`^Root hash mismatch: the top hash block hashes to ${f.root}, expected ${otherRoot(f.root)}\\.`));
    const json = parseOneJson(await runCaptured(['verify', f.data, f.hash, otherRoot(f.root), '--json']));
    expect(json.rootHash).toMatchObject({ expected: otherRoot(f.root), actual: f.root, matches: false });
  });

  it('a superblock that disagrees with the options given: a warning, and the superblock wins', async () => {
    const f = await fixture();
    const r = await runCaptured(['verify', f.data, f.hash, f.root, '-h', 'sha1', '--data-block-size=512']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('WARNING: hash sha1 ignored: the superblock says sha256.');
    expect(r.stderr).toContain('WARNING: data block size 512 ignored: the superblock says 4096.');
  });
});

describe('--json', () => {
  it('format prints one document with params, tree and rootHash', async () => {
    const d = dir();
    writeFileSync(join(d, 'data.img'), DATA);
    const r = await runCaptured(['format', join(d, 'data.img'), join(d, 'hash.img'), `--salt=${SALT}`, `--uuid=${UUID}`, '--json']);
    expect(r.code).toBe(0);
    const doc = parseOneJson(r);
    expect(doc).toMatchObject({
      command: 'format',
      status: 'ok',
      exitCode: 0,
      params: { hashType: 1, algorithm: 'sha256', dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 300, salt: SALT, uuid: UUID, superblock: true, hashOffset: 0 },
      tree: {
        digestSize: 32,
        hashesPerBlock: 128,
        hashStartBlock: 1,
        hashBlocks: 4,
        hashDeviceSize: 20480,
        levels: [
          { level: 0, blocks: 3, startBlock: 2, offset: 8192 },
          { level: 1, blocks: 1, startBlock: 1, offset: 4096 },
        ],
      },
    });
    expect(doc.rootHash).toMatch(/^[0-9a-f]{64}$/);
    const check = await runCaptured(['verify', join(d, 'data.img'), join(d, 'hash.img'), doc.rootHash]);
    expect(check.code).toBe(0);
  });

  it('verify of an intact image: status ok, exitCode 0', async () => {
    const f = await fixture();
    const doc = parseOneJson(await runCaptured(['verify', f.data, f.hash, f.root, '--json']));
    expect(doc).toMatchObject({
      command: 'verify',
      status: 'ok',
      exitCode: 0,
      data: { blocks: 300, blockSize: 4096, corruptBlocks: 0, corrupt: [], unverifiedBlocks: 0, unverified: [] },
      rootHash: { expected: f.root, actual: f.root, matches: true },
      tree: { corruptBlocks: 0 },
      warnings: [],
    });
  });

  it('verify of damaged data and a damaged hash block: every range with first/last/count/offset/length', async () => {
    const f = await fixture();
    for (const b of [0, 1, 2, 299]) flipByte(f.data, b * 4096 + 9);
    flipByte(f.hash, 3 * 4096 + 40); // level-0 block 1 (hash block 3), digest of data block 129
    const r = await runCaptured(['verify', f.data, f.hash, f.root, '--json']);
    expect(r.code).toBe(2);
    const doc = parseOneJson(r);
    expect(doc.status).toBe('corrupt');
    expect(doc.data).toMatchObject({
      corruptBlocks: 4,
      corrupt: [
        { first: 0, last: 2, count: 3, offset: 0, length: 12288 },
        { first: 299, last: 299, count: 1, offset: 299 * 4096, length: 4096 },
      ],
      unverifiedBlocks: 128,
      unverified: [{ first: 128, last: 255, count: 128, offset: 128 * 4096, length: 128 * 4096 }],
    });
    expect(doc.tree.corruptBlocks).toBe(1);
    expect(doc.tree.levels).toEqual([
      {
        level: 0,
        blocks: 3,
        startBlock: 2,
        offset: 8192,
        corrupt: [{ first: 1, last: 1, count: 1, offset: 12288, length: 4096 }],
        unverified: [],
        spare: [],
      },
      { level: 1, blocks: 1, startBlock: 1, offset: 4096, corrupt: [], unverified: [], spare: [] },
    ]);
    expect(doc.rootHash).toEqual({ expected: f.root, actual: f.root, matches: true });
  });

  it('verify with a wrong root hash: status root-mismatch, exitCode 3', async () => {
    const f = await fixture();
    const doc = parseOneJson(await runCaptured(['verify', f.data, f.hash, otherRoot(f.root), '--json']));
    expect(doc).toMatchObject({ status: 'root-mismatch', exitCode: 3, rootHash: { expected: otherRoot(f.root), actual: f.root, matches: false } });
  });

  it('dump prints one document with params and tree', async () => {
    const f = await fixture();
    const r = await runCaptured(['dump', f.hash, '--json']);
    expect(r.code).toBe(0);
    expect(parseOneJson(r)).toMatchObject({
      command: 'dump',
      status: 'ok',
      exitCode: 0,
      hash: { path: f.hash },
      params: { algorithm: 'sha256', dataBlocks: 300, salt: SALT, uuid: UUID },
      tree: { hashBlocks: 4, hashDeviceSize: 20480 },
    });
  });

  it('an error prints one document with status error, the error code and the exit code', async () => {
    const f = await fixture();
    const missing = parseOneJson(await runCaptured(['verify', f.data, join(f.dir, 'nope'), f.root, '--json']));
    expect(missing).toMatchObject({ command: 'verify', status: 'error', exitCode: 4, error: { code: 'E_NO_FILE' } });
    expect(missing.error.message).toMatch(/nope does not exist/);
    // The error's data names what the message names, for a program to use without parsing text.
    expect(missing.error.data).toEqual({ path: join(f.dir, 'nope') });
    const badRoot = parseOneJson(await runCaptured(['verify', f.data, f.hash, '00', '--json']));
    expect(badRoot).toMatchObject({ status: 'error', exitCode: 1, error: { code: 'E_PARAM' } });
    const noData = parseOneJson(await runCaptured(['format', join(f.dir, 'nope'), join(f.dir, 'h2'), '--json']));
    expect(noData).toMatchObject({ command: 'format', status: 'error', exitCode: 4, error: { code: 'E_NO_FILE', data: { path: join(f.dir, 'nope') } } });
    const short = parseOneJson(await runCaptured(['format', f.data, join(f.dir, 'h3'), '--data-blocks=100000', '--json']));
    expect(short).toMatchObject({ status: 'error', exitCode: 4, error: { code: 'E_TRUNCATED', data: { expected: 100000 * 4096, actual: DATA.length } } });
    const overlap = parseOneJson(await runCaptured(['format', f.data, f.data, '--hash-offset=4096', '--json']));
    expect(overlap).toMatchObject({ command: 'format', status: 'error', exitCode: 1, error: { code: 'E_OVERLAP' } });
    const badSb = parseOneJson(await runCaptured(['dump', f.data, '--json']));
    expect(badSb).toMatchObject({ command: 'dump', status: 'error', exitCode: 4, error: { code: 'E_BAD_SUPERBLOCK' } });
  });

  it("an error's data gives the path, sizes and offset its message was written from", async () => {
    const f = await fixture();
    const noData = parseOneJson(await runCaptured(['verify', join(f.dir, 'nope.img'), f.hash, f.root, '--json']));
    expect(noData.error).toEqual({
      code: 'E_NO_FILE',
      message: `Device ${join(f.dir, 'nope.img')} does not exist or access denied.`,
      data: { path: join(f.dir, 'nope.img') },
    });
    truncateSync(f.hash, 3 * 4096);
    const shortHash = parseOneJson(await runCaptured(['verify', f.data, f.hash, f.root, '--json']));
    expect(shortHash).toMatchObject({ command: 'verify', status: 'error', exitCode: 4 });
    expect(shortHash.error).toEqual({
      code: 'E_TRUNCATED',
      message: 'Hash device is too small: 12288 bytes, but the tree needs 20480.',
      data: { path: f.hash, expected: 20480, actual: 12288 },
    });
    truncateSync(f.hash, 100);
    const noSb = parseOneJson(await runCaptured(['dump', f.hash, '--json']));
    expect(noSb.error).toMatchObject({ code: 'E_BAD_SUPERBLOCK', data: { path: f.hash, offset: 0, expected: 512, actual: 100 } });
    // A usage error comes from the option parser and has no data: the field is left out, not empty.
    const usage = parseOneJson(await runCaptured(['verify', f.data, f.hash, f.root, '--json', '--bogus']));
    expect(Object.keys(usage.error)).toEqual(['code', 'message']);
  });

  it('a usage error (bad option value, unknown option) still prints one document, exitCode 1', async () => {
    // README: "Every command prints exactly one JSON document on stdout, also on error."
    const f = await fixture();
    const badValue = await runCaptured(['format', f.data, join(f.dir, 'h2'), '--data-block-size=333', '--json']);
    expect(badValue.code).toBe(1);
    expect(parseOneJson(badValue)).toMatchObject({ command: 'format', status: 'error', exitCode: 1, error: { code: 'E_PARAM' } });
    const unknown = await runCaptured(['verify', f.data, f.hash, f.root, '--json', '--bogus']);
    expect(parseOneJson(unknown)).toMatchObject({ command: 'verify', status: 'error', exitCode: 1, error: { code: 'E_PARAM' } });
    expect(parseOneJson(unknown).error.message).toMatch(/unknown option '--bogus'/);
  });
});

describe(`same output as veritysetup${NEEDS_VERITYSETUP}`, () => {
  const formatArgs: { name: string; args: string[] }[] = [
    { name: 'defaults with salt and UUID', args: [`--salt=${SALT}`, `--uuid=${UUID}`] },
    { name: 'no superblock, no salt', args: ['--no-superblock', '--salt=-'] },
    { name: 'no superblock, upper-case hash name', args: ['--no-superblock', '-h', 'SHA256', '--salt=01'] },
    {
      name: 'sha1, format 0, 512/1024 blocks, hash offset 8192',
      args: ['-h', 'sha1', '--format=0', '--data-block-size=512', '--hash-block-size=1024', '--hash-offset=8192', '--salt=00ff', `--uuid=${UUID}`],
    },
    { name: 'upper-case salt and UUID', args: ['--salt=ABCDEF01', `--uuid=${UUID.toUpperCase()}`] },
    { name: 'sha512, 512-byte hash blocks, --data-blocks 100', args: ['-h', 'SHA512', '--hash-block-size=512', '--data-blocks=100', '--salt=', `--uuid=${UUID}`] },
    { name: 'data block size above the page size', args: ['--data-block-size=8192', `--salt=${SALT}`, `--uuid=${UUID}`] },
  ];

  it.skipIf(!hasVeritysetup).each(formatArgs)('format: $name: same stdout, stderr and hash file', async ({ args }) => {
    const d = dir();
    const data = join(d, 'data.img');
    writeFileSync(data, DATA);
    const ours = await runCaptured(['format', data, join(d, 'ours.hash'), ...args]);
    const theirs = veritysetup(['format', data, join(d, 'theirs.hash'), ...args]);
    expect(theirs.code, theirs.stderr).toBe(0);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout.replace(join(d, 'ours.hash'), '<HASH>')).toBe(theirs.stdout.replace(join(d, 'theirs.hash'), '<HASH>'));
    expect(ours.stderr).toBe(theirs.stderr);
    expect(sha256(join(d, 'ours.hash'))).toBe(sha256(join(d, 'theirs.hash')));
  });

  it.skipIf(!hasVeritysetup).each(formatArgs.filter((c) => !c.args.includes('--no-superblock')))(
    'dump: $name: same stdout for a file made by either tool',
    async ({ args }) => {
      const d = dir();
      const data = join(d, 'data.img');
      writeFileSync(data, DATA);
      const offset = args.find((a) => a.startsWith('--hash-offset='));
      const dumpArgs = offset ? [offset] : [];
      expect(veritysetup(['format', data, join(d, 'theirs.hash'), ...args]).code).toBe(0);
      expect((await runCaptured(['format', data, join(d, 'ours.hash'), ...args])).code).toBe(0);
      for (const file of ['theirs.hash', 'ours.hash']) {
        const path = join(d, file);
        const ours = await runCaptured(['dump', path, ...dumpArgs]);
        const theirs = veritysetup(['dump', path, ...dumpArgs]);
        expect(theirs.code).toBe(0);
        expect(ours).toEqual({ code: 0, stdout: theirs.stdout, stderr: '' });
      }
    },
  );

  it.skipIf(!hasVeritysetup)('a root hash file written by veritysetup is accepted by our verify', async () => {
    const d = dir();
    const data = join(d, 'data.img');
    writeFileSync(data, DATA);
    expect(veritysetup(['format', data, join(d, 'h'), `--root-hash-file=${join(d, 'rh')}`]).code).toBe(0);
    expect((await runCaptured(['verify', data, join(d, 'h'), '--root-hash-file', join(d, 'rh')])).code).toBe(0);
  });
});

describe('files format writes, and inputs left alone', () => {
  // Windows files have no POSIX mode bits (Node reports 0o666 for any writable file); who may read them there follows
  // the directory's access control list.
  it.skipIf(process.platform === 'win32')(
    `the hash file and the root hash file are created with mode 0600${process.platform === 'win32' ? ' [SKIPPED: POSIX modes; Windows has none]' : ''}`,
    async () => {
      const f = await fixture();
      expect(statSync(f.rootFile).mode & 0o777).toBe(0o600);
      expect(statSync(f.hash).mode & 0o777).toBe(0o600);
    },
  );

  it(`--root-hash-file: lower-case hex, no newline, accepted by our verify and by veritysetup${NEEDS_VERITYSETUP}`, async () => {
    const f = await fixture();
    expect(readFileSync(f.rootFile, 'latin1')).toMatch(/^[0-9a-f]{64}$/);
    const ours = await runCaptured(['verify', f.data, f.hash, '--root-hash-file', f.rootFile]);
    expect(ours.code, ours.stderr).toBe(0);
    // A trailing newline (as `echo` would add) is ignored, as in veritysetup; upper case is accepted.
    writeFileSync(f.rootFile, f.root.toUpperCase() + '\n');
    expect((await runCaptured(['verify', f.data, f.hash, '--root-hash-file', f.rootFile])).code).toBe(0);
    writeFileSync(f.rootFile, f.root);
    if (hasVeritysetup) expect(veritysetup(['verify', f.data, f.hash, `--root-hash-file=${f.rootFile}`]).code).toBe(0);
  });

  it('--root-hash-file wins over a root hash argument, as in veritysetup', async () => {
    const f = await fixture();
    expect((await runCaptured(['verify', f.data, f.hash, otherRoot(f.root), '--root-hash-file', f.rootFile])).code).toBe(0);
  });

  const failures: { name: string; data: () => Uint8Array; args: string[]; code: number; message: RegExp }[] = [
    { name: 'data smaller than one block', data: () => DATA.subarray(0, 1000), args: [], code: 4, message: /Data device is too small: 1000 bytes holds no whole 4096-byte block/ },
    { name: 'empty data file', data: () => new Uint8Array(0), args: [], code: 4, message: /Data device is too small: 0 bytes/ },
    { name: '--data-blocks beyond the data', data: () => DATA, args: ['--data-blocks=1000'], code: 4, message: /Data device is too small: 1228900 bytes, but 1000 blocks/ },
    { name: 'an invalid salt', data: () => DATA, args: ['--salt=xyz'], code: 1, message: /Invalid salt string/ },
    { name: 'an unknown hash', data: () => DATA, args: ['-h', 'whirlpool'], code: 1, message: /Hash algorithm whirlpool not supported/ },
    { name: '--root-hash-file in a missing directory', data: () => DATA, args: ['--root-hash-file', '<DIR>/no/such/dir/rh'], code: 4, message: /does not exist/ },
    { name: '--root-hash-file naming a directory', data: () => DATA, args: ['--root-hash-file', '<DIR>'], code: 4, message: /is a directory/ },
  ];
  it.each(failures)('format fails on $name and leaves no file behind (not even a temporary one)', async ({ data, args, code, message }) => {
    const d = dir();
    writeFileSync(join(d, 'data.img'), data());
    const before = snapshot(d);
    const r = await runCaptured(['format', join(d, 'data.img'), join(d, 'hash.img'), ...args.map((a) => a.replace('<DIR>', d))]);
    expectFailure(r, code, message);
    expect(r.stdout).toBe('');
    expect(existsSync(join(d, 'hash.img'))).toBe(false);
    expect(snapshot(d)).toEqual(before);
  });

  it('format onto an existing hash file leaves it unchanged when the data turns out too small', async () => {
    const f = await fixture();
    const before = snapshot(f.dir);
    expectFailure(await runCaptured(['format', f.data, f.hash, '--data-blocks=1000', `--salt=${SALT}`]), 4, /Data device is too small/);
    expect(snapshot(f.dir)).toEqual(before);
    expect((await runCaptured(['verify', f.data, f.hash, f.root])).code).toBe(0);
  });

  it('no command modifies its inputs: format, verify (clean, corrupt, wrong root, errors), dump', async () => {
    const f = await fixture();
    flipByte(f.data, 5 * 4096); // so that one verify below reports damage
    const inputs = () => ({ data: sha256(f.data), hash: sha256(f.hash), root: sha256(f.rootFile) });
    const before = inputs();
    const runs: string[][] = [
      ['verify', f.data, f.hash, f.root],
      ['verify', f.data, f.hash, '--root-hash-file', f.rootFile, '--json'],
      ['verify', f.data, f.hash, otherRoot(f.root)],
      ['verify', f.data, f.hash, '00'],
      ['verify', f.data, f.hash, f.root, '--no-superblock', '--salt=-'],
      ['dump', f.hash],
      ['dump', f.hash, '--json'],
      ['format', f.data, join(f.dir, 'other.hash'), '--salt=-'],
      ['format', f.data, join(f.dir, 'other.hash'), '--salt=-', '--json'],
      ['format', f.data, f.data, '--hash-offset=4096'],
    ];
    const codes: number[] = [];
    for (const argv of runs) {
      const r = await runCaptured(argv);
      expectNoStackTrace(r);
      codes.push(r.code);
      expect(inputs(), argv.join(' ')).toEqual(before);
    }
    expect(codes).toEqual([2, 2, 3, 1, 2, 0, 0, 0, 0, 1]);
  });
});

describe('messages that say what to fix', () => {
  it('an output in a directory that does not exist names the directory, not a temporary file', async () => {
    const f = await fixture();
    const target = join(f.dir, 'no-such-dir', 'h.img');
    const r = await runCaptured(['format', f.data, target]);
    expectFailure(r, 4, `Cannot create ${target}: the directory ${join(f.dir, 'no-such-dir')} does not exist.`);
    expect(r.stderr).not.toMatch(/\.tmp|ENOENT/);
  });

  it('a root hash file that starts with whitespace says so, not "odd number of hex digits"', async () => {
    const f = await fixture();
    const spaced = join(f.dir, 'spaced.roothash');
    writeFileSync(spaced, ` ${f.root}\n`);
    const r = await runCaptured(['verify', f.data, f.hash, '--root-hash-file', spaced]);
    expectFailure(r, 1, `Invalid root hash file ${spaced}: it must start with 64 hex digits, but begins with " ${f.root.slice(0, 63)}".`);
  });
});

describe('options scripts written for veritysetup use', () => {
  it('-v prints "Command successful." after a command that succeeded, and nothing more after one that failed', async () => {
    const f = await fixture();
    const ok = await runCaptured(['-v', 'verify', f.data, f.hash, f.root]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/\nCommand successful\.\n$/);
    const after = await runCaptured(['verify', '--verbose', f.data, f.hash, f.root]);
    expect(after.stdout).toMatch(/\nCommand successful\.\n$/);
    const wrong = await runCaptured(['-v', 'verify', f.data, f.hash, otherRoot(f.root)]);
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).not.toContain('Command successful.');
  });

  it('-? and --usage show the help; --version names the veritysetup release matched', async () => {
    for (const flag of ['-?', '--usage']) {
      const r = await runCaptured([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: verity /);
    }
    const v = await runCaptured(['--version']);
    expect(v.stdout).toMatch(/^verity \d+\.\d+\.\d+ \(compatible with veritysetup 2\.6\.1\)\n$/);
  });

  it('--debug adds the stack trace of an error, as VERITY_DEBUG does', async () => {
    const f = await fixture();
    const r = await runCaptured(['--debug', 'verify', f.data, join(f.dir, 'nope'), f.root]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^ {4}at /m);
  });
});

describe('the built CLI as a process', () => {
  it('real exit codes 0, 1, 2, 3 and 4, and never a stack trace on stderr', async () => {
    const f = await fixture();
    const cases: [string[], number][] = [
      [['format', f.data, join(f.dir, 'h2'), '--salt=-'], 0],
      [['verify', f.data, f.hash, f.root], 0],
      [['dump', f.hash], 0],
      [['--help'], 0],
      [['verify', f.data, f.hash, otherRoot(f.root)], 3],
      [['verify', f.data, join(f.dir, 'nope'), f.root], 4],
      [['verify', f.data, f.hash, '--root-hash-file', join(f.dir, 'nope')], 4],
      [['dump', f.data], 4],
      [['verify', f.data, f.hash, 'zz'], 1],
      [['format', f.data, join(f.dir, 'h3'), '--data-block-size=4k'], 1],
      [['bogus'], 1],
      [[], 1],
    ];
    for (const [argv, code] of cases) {
      const r = spawnBuiltCli(argv);
      expect(r.code, `verity ${argv.join(' ')}: ${r.stderr}`).toBe(code);
      expectNoStackTrace(r);
    }
    flipByte(f.data, 3 * 4096);
    const corrupt = spawnBuiltCli(['verify', f.data, f.hash, f.root]);
    expect(corrupt.code).toBe(2);
    expect(corrupt.stderr).toBe('Verification failed at position 12288.\nVerification of data area failed.\n');
  });

  it('stdout closed by its reader (| head): the exit status is still the command\'s, with no stack trace', async () => {
    const f = await fixture();
    flipByte(f.data, 3 * 4096);
    const env = { ...process.env };
    delete env.VERITY_DEBUG;
    const child = spawn(process.execPath, [BUILT_CLI, 'verify', f.data, f.hash, f.root, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    // Closing the read end before the CLI writes makes its first write fail with EPIPE, whatever the output's size.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|^ {4}at /m);
    expect(code).toBe(2);
  });

  it.skipIf(!existsSync('/dev/full'))(`a full disk under stdout: the command's exit status and one line on stderr${existsSync('/dev/full') ? '' : ' [SKIPPED: no /dev/full]'}`, async () => {
    const f = await fixture();
    const env = { ...process.env };
    delete env.VERITY_DEBUG;
    const full = openSync('/dev/full', 'w');
    try {
      const r = spawnSync(process.execPath, [BUILT_CLI, 'verify', f.data, f.hash, f.root, '--json'], { env, stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stderr).toBe('verity: cannot write the output: ENOSPC: no space left on device, write\n');
    } finally {
      closeSync(full);
    }
  });

  it('arguments that name no file (a 256-byte salt, a name too long for a path) beside a large file: the command runs', async () => {
    // The process looks at its arguments for a file of 16 MiB or more before parsing them, to start threads early
    // (src/cli/main.ts); an argument no file system accepts as a path must not stop it.
    const data = join(dir(), 'large.img');
    writeFileSync(data, makeData({ blocks: 17 * 256, blockSize: 4096, tailBytes: 0, fill: 'random', seed: 5 }));
    const salt = 'ab'.repeat(256);
    const formatted = spawnBuiltCli(['format', '--salt', salt, data, join(dir(), 'large.hash'), '--json']);
    expectNoStackTrace(formatted);
    expect(formatted.code).toBe(0);
    const json = parseOneJson(formatted);
    expect(json.engine).toMatch(/×\d/);
    const missing = spawnBuiltCli(['verify', data, 'x'.repeat(5000), String(json.rootHash)]);
    expectNoStackTrace(missing);
    expect(missing.code).toBe(4);
  });

  it('--json: the process exit code equals exitCode in the one document on stdout', async () => {
    const f = await fixture();
    const runs = [
      ['verify', f.data, f.hash, f.root, '--json'],
      ['verify', f.data, f.hash, otherRoot(f.root), '--json'],
      ['verify', f.data, join(f.dir, 'nope'), f.root, '--json'],
      ['dump', f.hash, '--json'],
      ['format', f.data, join(f.dir, 'h2'), '--json'],
      ['format', f.data, join(f.dir, 'h3'), '--hash-block-size=1048576', '--json'],
    ];
    const codes = runs.map((argv) => {
      const r = spawnBuiltCli(argv);
      expectNoStackTrace(r);
      parseOneJson(r);
      return r.code;
    });
    expect(codes).toEqual([0, 3, 4, 0, 0, 1]);
  });
});

describe('engines and threads', () => {
  it.each([
    [['--engine', 'node-crypto', '--threads', '1'], /^node-crypto$/],
    [['--engine', 'node-crypto', '--threads', '2'], /^node-crypto ×2$/],
    [['--engine', 'wasm-simd', '--threads', '2'], /^wasm-simd ×2$/],
    [['--engine', 'hash-wasm', '--threads', '2'], /^hash-wasm \(hash-wasm runs on one thread\)$/],
    [[], /^node-crypto \(auto: small input\)$/],
  ])('format and verify %j write the same hash device and report the engine used', async (args, engine) => {
    const f = await fixture();
    const out = join(f.dir, 'other.hash');
    const formatted = parseOneJson(await runCaptured(['format', f.data, out, `--salt=${SALT}`, `--uuid=${UUID}`, '--json', ...args]));
    expect(formatted.engine).toMatch(engine);
    expect(formatted.rootHash).toBe(f.root);
    expect(sha256(out)).toBe(sha256(f.hash));
    const verified = parseOneJson(await runCaptured(['verify', f.data, out, f.root, '--json', ...args]));
    expect([verified.status, verified.engine]).toEqual(['ok', expect.stringMatching(engine)]);
  });

  it('refuses an engine that does not support the hash, and a thread count of 0', async () => {
    const f = await fixture();
    expectFailure(
      await runCaptured(['format', f.data, join(f.dir, 'x.hash'), '--hash', 'sha1', '--engine', 'wasm-simd']),
      1,
      'Hash engine wasm-simd does not support sha1.',
    );
    expectFailure(await runCaptured(['format', f.data, join(f.dir, 'y.hash'), '--threads', '0']), 1, /--threads.*must be from 1 to 64/);
    expectFailure(await runCaptured(['format', f.data, join(f.dir, 'z.hash'), '--threads', '65']), 1, /--threads.*must be from 1 to 64/);
    expect(['x.hash', 'y.hash', 'z.hash'].some((n) => existsSync(join(f.dir, n)))).toBe(false);
  });
});
