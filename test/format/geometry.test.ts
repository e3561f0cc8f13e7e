import { describe, expect, it } from 'vitest';
import { computeGeometry, hashStartBlock, type VerityParams } from '../../src/core.js';

const base: VerityParams = {
  hashType: 1,
  algorithm: 'sha256',
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  dataBlocks: 2048,
  salt: new Uint8Array(32),
  uuid: 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033',
  superblock: true,
  hashOffset: 0,
};

// Examples A and B are the worked examples of docs/format.md §9.
describe('tree geometry (cryptsetup lib/verity/verity_hash.c: hash_levels)', () => {
  it('lays out Example A: superblock block 0, L1 at 1, L0 at 2-17', () => {
    const g = computeGeometry(base);
    expect(g.hashesPerBlock).toBe(128);
    expect(g.levels.map((l) => [l.blocks, l.startBlock])).toEqual([[16, 2], [1, 1]]);
    expect(g.hashBlocks).toBe(17);
    expect(g.hashDeviceSize).toBe(73728);
  });

  it('lays out Example B (512-byte blocks): four levels, top level first', () => {
    const g = computeGeometry({ ...base, dataBlockSize: 512, hashBlockSize: 512, dataBlocks: 16384 });
    expect(g.hashesPerBlock).toBe(16);
    expect(g.levels.map((l) => [l.blocks, l.startBlock])).toEqual([[1024, 70], [64, 6], [4, 2], [1, 1]]);
    expect(g.hashDeviceSize).toBe(560128);
  });

  it('has no levels for a single data block (the root is its digest)', () => {
    const g = computeGeometry({ ...base, dataBlocks: 1 });
    expect(g.levels).toEqual([]);
    expect(g.hashBlocks).toBe(0);
  });

  it.each([
    [2, [1]],
    [128, [1]],
    [129, [2, 1]],
    [16384, [128, 1]],
    [16385, [129, 2, 1]],
  ])('sizes the levels of %i sha256/4096 data blocks as %j', (n, sizes) => {
    expect(computeGeometry({ ...base, dataBlocks: n }).levels.map((l) => l.blocks)).toEqual(sizes);
  });

  it('uses a power of two of hashes per block and pads format-1 slots to a power of two', () => {
    const sha1v1 = computeGeometry({ ...base, algorithm: 'sha1' });
    expect([sha1v1.hashesPerBlock, sha1v1.slotSize]).toEqual([128, 32]);
    const sha1v0 = computeGeometry({ ...base, algorithm: 'sha1', hashType: 0 });
    expect([sha1v0.hashesPerBlock, sha1v0.slotSize]).toEqual([128, 20]);
    const sha512 = computeGeometry({ ...base, algorithm: 'sha512', hashBlockSize: 512 });
    expect(sha512.hashesPerBlock).toBe(8);
  });

  it.each([
    [4096, 0, true, 1],
    [512, 0, true, 1],
    [4096, 0, false, 0],
    [4096, 512, true, 1],
    [4096, 12800, true, 4],
    [4096, 8388608, true, 2049],
    [512, 8388608, true, 16385],
    [4096, 512, false, 0],
  ])('starts the hash area (hbs %i, offset %i, superblock %s) at block %i', (hbs, offset, sb, start) => {
    expect(hashStartBlock({ hashBlockSize: hbs, hashOffset: offset, superblock: sb })).toBe(start);
  });

  it('is exact for offsets beyond 2^32 and 2^40 bytes', () => {
    const g = computeGeometry({ ...base, dataBlocks: 2 ** 32, hashOffset: 2 ** 44 });
    expect(g.hashStartBlock).toBe(2 ** 44 / 4096 + 1);
    const l0 = g.levels[0]!;
    expect(l0.blocks).toBe(2 ** 25);
    expect(g.hashDeviceSize).toBe((g.hashStartBlock + g.hashBlocks) * 4096);
    expect(Number.isSafeInteger(g.hashDeviceSize)).toBe(true);
  });

  it.each([
    [{ dataBlockSize: 333 }, /data block size 333/],
    [{ hashBlockSize: 256 }, /hash block size 256/],
    [{ hashBlockSize: 1048576 }, /hash block size 1048576/],
    [{ algorithm: 'sha512', hashBlockSize: 64 }, /hash block size 64/],
    [{ hashOffset: 100 }, /hash offset 100/],
    [{ hashOffset: -512 }, /hash offset -512/],
    [{ dataBlocks: 0 }, /Data blocks must be/],
    [{ dataBlocks: 2 ** 53 }, /Data blocks must be/],
    [{ salt: new Uint8Array(257) }, /257 bytes long; the maximum is 256/],
    [{ algorithm: 'md5' }, /Hash algorithm md5 not supported/],
    [{ hashType: 2 as 0 }, /hash type 2/],
    [{ uuid: 'not-a-uuid' }, /Invalid UUID/],
  ])('rejects %j', (change, message) => {
    expect(() => computeGeometry({ ...base, ...change })).toThrow(message);
  });
});
