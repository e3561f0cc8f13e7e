/**
 * What FEC covers and how large its parity is, against the numbers veritysetup 2.6.1 printed and wrote
 * (cryptsetup lib/verity/verity_fec.c; docs/fec.md, "What is covered" and "Interleaving"), and the parameter checks.
 */
import { describe, expect, it } from 'vitest';
import { blockOfSymbol, checkFecParams, computeFecGeometry, coveredBlockAt, parityOffset, type FecGeometryInput } from '../../src/fec/geometry.js';

/** Example A's geometry: 2048 data blocks of 4096 bytes, superblock at 0, the tree in hash blocks 1..17. */
const exampleA: FecGeometryInput = {
  roots: 2,
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  dataBlocks: 2048,
  hashStartBlock: 1,
  fecOffset: 0,
  onHashDevice: false,
  hashDeviceSize: 18 * 4096,
};

describe('the covered area', () => {
  it('is the data and the separate hash image from its hash start block to its end: 2048 + 17 = 2065 blocks', () => {
    const g = computeFecGeometry(exampleA);
    expect(g).toMatchObject({ coveredBlocks: 2065, dataBlocks: 2048, hashStartBlock: 1, hashBlocks: 17, rsn: 253, rounds: 9 });
  });

  it('reproduces the parity sizes veritysetup wrote and printed for roots 2, 3, 8, 16 and 24', () => {
    const table = [
      [2, 73728, 18],
      [3, 110592, 27],
      [8, 294912, 72],
      [16, 589824, 144],
      [24, 884736, 216],
    ] as const;
    for (const [roots, bytes, blocks] of table) {
      const g = computeFecGeometry({ ...exampleA, roots });
      expect({ rounds: g.rounds, parityBytes: g.parityBytes, parityBlocks: g.parityBlocks }).toEqual({ rounds: 9, parityBytes: bytes, parityBlocks: blocks });
    }
  });

  it('covers 1 GiB of 4096-byte data as 264209 blocks in 1045 rounds, 2090 parity blocks', () => {
    const g = computeFecGeometry({ ...exampleA, dataBlocks: 262144, hashDeviceSize: 2066 * 4096 });
    expect(g).toMatchObject({ coveredBlocks: 264209, rounds: 1045, parityBytes: 8_560_640, parityBlocks: 2090 });
  });

  it('ends at the FEC offset when the parity is on the hash device (one device: 500 + (1000 − 501) = 999 blocks)', () => {
    const g = computeFecGeometry({
      roots: 2,
      dataBlockSize: 512,
      hashBlockSize: 512,
      dataBlocks: 500,
      hashStartBlock: 501,
      fecOffset: 1000 * 512,
      onHashDevice: true,
      hashDeviceSize: 123, // not used on the hash device
    });
    expect(g).toMatchObject({ coveredBlocks: 999, hashBlocks: 499, fecStartBlock: 1000, rounds: 4 });
  });

  it('includes whole blocks after the tree in a separate hash image, and not a partial last block', () => {
    expect(computeFecGeometry({ ...exampleA, hashDeviceSize: 18 * 4096 + 3 * 4096 + 4095 }).coveredBlocks).toBe(2065 + 3);
  });

  it('never includes the superblock: the hash device is covered from its hash start block', () => {
    const g = computeFecGeometry({ ...exampleA, hashStartBlock: 4, hashDeviceSize: 21 * 4096 });
    expect(g.hashBlocks).toBe(17);
    expect(coveredBlockAt(g, 2048)).toEqual({ device: 'hash', block: 4 });
    expect(coveredBlockAt(g, 2047)).toEqual({ device: 'data', block: 2047 });
    expect(coveredBlockAt(g, 2065)).toBeNull();
  });

  it('is the data alone when the parity sits at offset 0 of the hash device, or the hash device is still empty (veritysetup: "if (blocks)")', () => {
    expect(computeFecGeometry({ ...exampleA, onHashDevice: true, fecOffset: 0 }).coveredBlocks).toBe(2048);
    expect(computeFecGeometry({ ...exampleA, dataBlocks: 1, hashDeviceSize: 0 }).coveredBlocks).toBe(1);
  });

  it('covers no hash block when the hash device ends before its hash area (one data block and a short hash file)', () => {
    // veritysetup 2.6.1 fails there ("Failed to read RS block 0"): its unsigned E − hash start wraps.
    const g = computeFecGeometry({ ...exampleA, dataBlocks: 1, hashStartBlock: 5, hashDeviceSize: 4 * 4096 + 100 });
    expect(g).toMatchObject({ coveredBlocks: 1, hashBlocks: 0, rounds: 1 });
  });
});

describe('the interleaving (docs/fec.md, "Interleaving")', () => {
  it('puts byte 100 of blocks 3, 12, 21, … in codeword (3, 100), whose parity is at 24776', () => {
    const g = computeFecGeometry(exampleA);
    expect([0, 1, 2, 252].map((i) => blockOfSymbol(g, 3, i))).toEqual([3, 12, 21, 2271]);
    expect(parityOffset(g, 3, 100)).toBe(24776);
    expect(parityOffset(g, 0, 0)).toBe(0);
    expect(parityOffset(g, 8, 4095, 1)).toBe(g.parityBytes - 1);
  });

  it('deals every covered block to exactly one (round, symbol)', () => {
    const g = computeFecGeometry({ ...exampleA, roots: 24, dataBlocks: 1000, hashDeviceSize: 9 * 4096 });
    const seen = new Set<number>();
    for (let n = 0; n < g.rounds; n++) for (let i = 0; i < g.rsn; i++) seen.add(blockOfSymbol(g, n, i));
    expect(seen.size).toBe(g.rounds * g.rsn);
    for (let k = 0; k < g.coveredBlocks; k++) expect(seen.has(k)).toBe(true);
  });
});

describe('parameter checks', () => {
  const ok = { roots: 2, dataBlockSize: 4096, hashBlockSize: 4096, fecOffset: 8192 };
  it.each([
    ['roots 1', { roots: 1 }, /Invalid number of parity bytes.*1 is not an integer from 2 to 24/],
    ['roots 25', { roots: 25 }, /Invalid number of parity bytes/],
    ['different block sizes', { hashBlockSize: 512 }, /Block sizes must match for FEC: the data block size is 4096 and the hash block size 512/],
    ['an offset that is not a whole block', { fecOffset: 512 }, /Unsupported VERITY FEC offset 512: it must be a non-negative multiple of the 4096-byte block size/],
    ['a negative offset', { fecOffset: -4096 }, /Unsupported VERITY FEC offset/],
  ])('refuse %s (E_PARAM)', (_name, change, message) => {
    expect(() => checkFecParams({ ...ok, ...change })).toThrow(message);
    expect(() => checkFecParams({ ...ok, ...change })).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('accept roots 2 to 24 and any whole-block offset', () => {
    for (let roots = 2; roots <= 24; roots++) expect(() => checkFecParams({ ...ok, roots })).not.toThrow();
    expect(() => checkFecParams({ ...ok, fecOffset: 0 })).not.toThrow();
  });
});
