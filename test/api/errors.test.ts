/**
 * The structured data of the library's errors: every error about an input names it (`data.path`, the address as
 * given), size mismatches carry `expected` and `actual`, positions carry `offset`, parameters their `field`. The
 * message is written from the same values, so both are pinned together.
 */
import { spawnSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dumpFile, formatFiles, verifyFiles, VerityError } from '../../src/index.js';
import { makeData } from '../support/data.js';
import { findTool } from '../support/tools.js';
import { tempDirPerTest } from '../support/tree-damage.js';

const SALT = 'e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d';
const UUID = 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033';
const BLOCKS = 300; // sha256, 4096-byte blocks: the tree ends at 20480 bytes (superblock block, top block, 3 level-0 blocks)
const DATA = makeData({ blocks: BLOCKS, blockSize: 4096, tailBytes: 0, fill: 'mixed', seed: 7 });
const ZIP = findTool('zip', '/usr/bin/zip');

const dir = tempDirPerTest('verity-errors-');

async function image(): Promise<{ data: string; hash: string; root: string }> {
  const d = dir();
  const img = { data: join(d, 'data.img'), hash: join(d, 'hash.img'), root: '' };
  writeFileSync(img.data, DATA);
  const r = await formatFiles(img.data, img.hash, { salt: SALT, uuid: UUID, engine: 'node-crypto', threads: 1 });
  img.root = Buffer.from(r.rootHash).toString('hex');
  return img;
}

/** The error `run` rejects with, checked to be a VerityError. */
async function failure(run: () => Promise<unknown>): Promise<VerityError> {
  const e = await run().then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(VerityError);
  return e as VerityError;
}

const verify = (data: string, hash: string, rootHash: string) =>
  verifyFiles(data, hash, { rootHash, engine: 'node-crypto', threads: 1 });

describe('error data', () => {
  it('a missing data file: E_NO_FILE with its path', async () => {
    const img = await image();
    const missing = join(dir(), 'nope.img');
    const e = await failure(() => verify(missing, img.hash, img.root));
    expect(e.toJSON()).toEqual({ code: 'E_NO_FILE', message: `Device ${missing} does not exist or access denied.`, data: { path: missing } });
  });

  it('a hash file truncated inside the tree: E_TRUNCATED with its path and both sizes', async () => {
    const img = await image();
    truncateSync(img.hash, 3 * 4096);
    const e = await failure(() => verify(img.data, img.hash, img.root));
    expect(e.code).toBe('E_TRUNCATED');
    expect(e.message).toBe('Hash device is too small: 12288 bytes, but the tree needs 20480.');
    expect(e.data).toEqual({ path: img.hash, expected: 20480, actual: 12288 });
  });

  it('a data file shorter than the superblock says: E_TRUNCATED with its path and both sizes', async () => {
    const img = await image();
    truncateSync(img.data, (BLOCKS - 1) * 4096);
    const e = await failure(() => verify(img.data, img.hash, img.root));
    expect(e.code).toBe('E_TRUNCATED');
    expect(e.data).toEqual({ path: img.data, expected: BLOCKS * 4096, actual: (BLOCKS - 1) * 4096 });
  });

  it('a data file smaller than one block: E_TRUNCATED with its path, the block size and its size', async () => {
    const d = dir();
    writeFileSync(join(d, 'tiny.img'), DATA.subarray(0, 1000));
    const e = await failure(() => formatFiles(join(d, 'tiny.img'), join(d, 'hash.img')));
    expect(e.code).toBe('E_TRUNCATED');
    expect(e.message).toBe('Data device is too small: 1000 bytes holds no whole 4096-byte block.');
    expect(e.data).toEqual({ path: join(d, 'tiny.img'), expected: 4096, actual: 1000 });
  });

  it('no superblock where one is expected: the path, its offset, and for a short device both sizes', async () => {
    const img = await image();
    const noMagic = await failure(() => dumpFile(img.data, { hashOffset: 4096 }));
    expect(noMagic.code).toBe('E_BAD_SUPERBLOCK');
    expect(noMagic.data).toEqual({ path: img.data, offset: 4096 });
    truncateSync(img.hash, 100);
    const short = await failure(() => dumpFile(img.hash));
    expect(short.code).toBe('E_BAD_SUPERBLOCK');
    expect(short.message).toMatch(/it is 100 bytes, too short for a superblock at offset 0\.$/);
    expect(short.data).toEqual({ path: img.hash, offset: 0, expected: 512, actual: 100 });
  });

  it('a root hash of the wrong length: E_PARAM naming the parameter, with both lengths', async () => {
    const img = await image();
    const e = await failure(() => verify(img.data, img.hash, img.root.slice(0, 62)));
    expect(e.code).toBe('E_PARAM');
    expect(e.data).toEqual({ field: 'rootHash', expected: 32, actual: 31 });
  });

  it('a parameter out of range names its field and value', async () => {
    const d = dir();
    writeFileSync(join(d, 'data.img'), DATA);
    const e = await failure(() => formatFiles(join(d, 'data.img'), join(d, 'hash.img'), { algorithm: 'md5' }));
    expect(e.code).toBe('E_PARAM');
    expect(e.data).toEqual({ field: 'algorithm', actual: 'md5' });
  });

  it('data and hash areas that overlap: E_OVERLAP naming the hash operand', async () => {
    const img = await image();
    const e = await failure(() => formatFiles(img.data, img.data, { hashOffset: 4096 }));
    expect(e.code).toBe('E_OVERLAP');
    expect(e.data).toEqual({ path: img.data });
  });

  it.skipIf(!ZIP)(`a zip entry that is not there: E_NO_ENTRY with the whole address${ZIP ? '' : ' [SKIPPED: needs zip]'}`, async () => {
    const img = await image();
    const zip = join(dir(), 'image.zip');
    expect(spawnSync(ZIP!, ['-q', '-0', '-j', zip, img.data, img.hash]).status).toBe(0);
    const e = await failure(() => verify(`${zip}::nope.img`, `${zip}::hash.img`, img.root));
    expect(e.code).toBe('E_NO_ENTRY');
    expect(e.data).toEqual({ path: `${zip}::nope.img` });
    // The same archive with the right names verifies.
    expect((await verify(`${zip}::data.img`, `${zip}::hash.img`, img.root)).status).toBe('ok');
  });
});
