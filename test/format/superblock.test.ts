import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSuperblock, serializeSuperblock, SUPERBLOCK_SIZE, toHex, type Superblock } from '../../src/core.js';
import { VERITY_SUPERBLOCK } from '../../src/format/superblock.js';
import { tempDirPerTest } from '../support/tree-damage.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

/** Damage goes through the declared offsets; EXAMPLE_A_HEX pins those offsets to the bytes veritysetup writes. */
const F = VERITY_SUPERBLOCK.fields;

/** A superblock as veritysetup 2.6.1 writes it (omitted bytes are zero). */
const EXAMPLE_A_HEX =
  '7665726974790000' + '01000000' + '01000000' + 'a60c98d2ae9b4865bfcbb4e3ace11033' +
  '7368613235360000000000000000000000000000000000000000000000000000' +
  '00100000' + '00100000' + '0008000000000000' + '2000' + '000000000000' +
  'e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d';

const exampleA: Superblock = {
  version: 1,
  hashType: 1,
  uuid: 'a60c98d2-ae9b-4865-bfcb-b4e3ace11033',
  algorithm: 'sha256',
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  dataBlocks: 2048,
  salt: Uint8Array.from(Buffer.from('e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d', 'hex')),
};

function withField(base: Uint8Array, offset: number, bytes: number[]): Uint8Array {
  const copy = base.slice();
  copy.set(bytes, offset);
  return copy;
}

describe('superblock', () => {
  it('serialises Example A to the bytes veritysetup writes, zero-padded to 512', () => {
    const bytes = serializeSuperblock(exampleA);
    expect(bytes.length).toBe(SUPERBLOCK_SIZE);
    expect(toHex(bytes.subarray(0, EXAMPLE_A_HEX.length / 2))).toBe(EXAMPLE_A_HEX);
    expect(bytes.subarray(EXAMPLE_A_HEX.length / 2).every((b) => b === 0)).toBe(true);
  });

  it('round-trips every field, for both formats, empty and 256-byte salts and a 2^40-block count', () => {
    for (const sb of [
      exampleA,
      { ...exampleA, hashType: 0 as const, salt: new Uint8Array(0), algorithm: 'sha1' },
      { ...exampleA, salt: new Uint8Array(256).fill(0xee), dataBlocks: 2 ** 40, dataBlockSize: 512, hashBlockSize: 65536 },
    ]) {
      const bytes = serializeSuperblock(sb);
      expect(parseSuperblock(bytes)).toEqual(sb);
      expect(serializeSuperblock(parseSuperblock(bytes))).toEqual(bytes);
    }
  });

  describe('serialising what was parsed gives back the bytes veritysetup wrote', () => {
    const dir = tempDirPerTest('superblock-rt-');

    it('Example A', () => {
      const written = new Uint8Array(SUPERBLOCK_SIZE);
      written.set(Buffer.from(EXAMPLE_A_HEX, 'hex'));
      expect(serializeSuperblock(parseSuperblock(written))).toEqual(written);
    });

    it.skipIf(!hasVeritysetup)(`superblocks written by veritysetup format: both formats, no salt and a 256-byte salt${NEEDS_VERITYSETUP}`, () => {
      const data = join(dir(), 'data');
      const hash = join(dir(), 'hash');
      writeFileSync(data, new Uint8Array(64 * 1024));
      for (const options of [
        ['--hash=sha1', '--format=0', '--salt=-', '--data-block-size=512', '--hash-block-size=1024'],
        ['--hash=sha512', '--format=1', `--salt=${'ab'.repeat(256)}`, '--uuid=01234567-89ab-cdef-0123-456789abcdef'],
        ['--hash=sha256', '--format=1', '--data-blocks=3', '--data-block-size=16384', '--hash-block-size=512'],
      ]) {
        writeFileSync(hash, new Uint8Array(0));
        const run = veritysetup(['format', data, hash, ...options]);
        expect(run.code, run.stderr).toBe(0);
        const written = new Uint8Array(readFileSync(hash).subarray(0, SUPERBLOCK_SIZE));
        expect(serializeSuperblock(parseSuperblock(written))).toEqual(written);
      }
    });
  });

  it('keeps the case of a stored algorithm name, as veritysetup does on read', () => {
    const bytes = serializeSuperblock({ ...exampleA, algorithm: 'SHA256' });
    expect(parseSuperblock(bytes).algorithm).toBe('SHA256');
  });

  it('stores the UUID in textual byte order and reads it back in lower case', () => {
    const bytes = serializeSuperblock({ ...exampleA, uuid: 'A60C98D2-AE9B-4865-BFCB-B4E3ACE11033' });
    expect(toHex(bytes.subarray(16, 32))).toBe('a60c98d2ae9b4865bfcbb4e3ace11033');
    expect(parseSuperblock(bytes).uuid).toBe('a60c98d2-ae9b-4865-bfcb-b4e3ace11033');
  });

  it('ignores padding bytes, like veritysetup', () => {
    const bytes = withField(withField(serializeSuperblock(exampleA), 82, [7]), 400, [7]);
    expect(parseSuperblock(bytes)).toEqual(exampleA);
  });

  const good = serializeSuperblock(exampleA);
  it.each([
    ['a wrong signature', withField(good, F.signature.offset, [0x56]), /No VERITY signature/],
    ['version 2', withField(good, F.version.offset, [2]), /Unsupported VERITY version 2/],
    ['hash type 2', withField(good, F.hashType.offset, [2]), /Unsupported VERITY hash type 2/],
    ['an unknown algorithm', withField(good, F.algorithm.offset, [...Buffer.from('md5\0\0\0')]), /Hash algorithm md5 not supported/],
    ['a data block size of 333', withField(good, F.dataBlockSize.offset, [0x4d, 0x01, 0, 0]), /data block size 333/],
    ['a hash block size of 1 MiB', withField(good, F.hashBlockSize.offset, [0, 0, 0x10, 0]), /hash block size 1048576/],
    ['zero data blocks', withField(good, F.dataBlocks.offset, [0, 0, 0, 0, 0, 0, 0, 0]), /data blocks 0/],
    ['2^64-1 data blocks', withField(good, F.dataBlocks.offset, [255, 255, 255, 255, 255, 255, 255, 255]), /data blocks 18446744073709551615/],
    ['a salt size of 257', withField(good, F.saltSize.offset, [1, 1]), /salt size 257 exceeds 256/],
    ['fewer than 512 bytes', good.subarray(0, 511), /needs 512 bytes/],
  ])('rejects %s with E_BAD_SUPERBLOCK and a precise message', (_what, bytes, message) => {
    expect(() => parseSuperblock(bytes)).toThrow(message);
    try {
      parseSuperblock(bytes);
    } catch (e) {
      expect((e as { code: string }).code).toBe('E_BAD_SUPERBLOCK');
    }
  });

  it('refuses to serialise a salt over 256 bytes or an algorithm name over 31 bytes', () => {
    expect(() => serializeSuperblock({ ...exampleA, salt: new Uint8Array(257) })).toThrow(/maximum is 256/);
    expect(() => serializeSuperblock({ ...exampleA, algorithm: 'x'.repeat(32) })).toThrow(/longer than 31/);
  });
});
