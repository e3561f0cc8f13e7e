import { describe, expect, it } from 'vitest';
import { fromHex } from '../../src/binary/bytes.js';
import { findVerityPairs } from '../../src/discovery/dps-pairs.js';
import { GPT_ATTRIBUTE, readGpt } from '../../src/image/gpt.js';
import { bytesSource } from '../../src/io/source.js';
import { buildGpt, ROOT_X86_64, ROOT_X86_64_VERITY, USR_ARM64, USR_ARM64_VERITY, type PartSpec } from '../support/gpt-writer.js';

describe('findVerityPairs', () => {
  const rootHash = '0123456789abcdeffedcba9876543210a1b2c3d4e5f60718293a4b5c6d7e8f90';
  const build = (partitions: PartSpec[]) => readGpt(bytesSource(buildGpt({ sectorSize: 512, sectors: 16384, partitions })));
  const p = (type: string, guid: string, first: number, name = '', attributes = 0n): PartSpec => ({ type, guid, first, last: first + 99, name, attributes });

  it('pairs by DPS type, and with a root hash by the partition UUIDs it gives (UAPI DPS spec)', async () => {
    const t = await build([
      p(ROOT_X86_64, '01234567-89ab-cdef-fedc-ba9876543210', 2048, 'A'),
      p(ROOT_X86_64_VERITY, 'a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90', 3000, 'A-verity'),
      p(ROOT_X86_64, '99999999-89ab-cdef-fedc-ba9876543210', 4000, 'B'),
      p(ROOT_X86_64_VERITY, '99999999-e5f6-0718-293a-4b5c6d7e8f90', 5000, 'B-verity'),
      p(USR_ARM64, 'b0000000-0000-4000-8000-000000000001', 6000),
      p(USR_ARM64_VERITY, 'b0000000-0000-4000-8000-000000000002', 7000),
      p('6db69de6-29f4-4758-a7a5-962190f00ce3', 'b0000000-0000-4000-8000-000000000003', 7500), // root-arm64-verity-sig: no pair
      p(ROOT_X86_64, 'c0000000-0000-4000-8000-000000000001', 8000, 'no-auto', GPT_ATTRIBUTE.noAuto),
    ]);
    const byType = findVerityPairs(t);
    expect(byType.map((x) => [x.role, x.architecture, x.data.name, x.hash.name, x.matchedBy])).toEqual([
      ['root', 'x86-64', 'A', 'A-verity', 'type'],
      ['root', 'x86-64', 'A', 'B-verity', 'type'],
      ['root', 'x86-64', 'B', 'A-verity', 'type'],
      ['root', 'x86-64', 'B', 'B-verity', 'type'],
      ['usr', 'arm64', '', '', 'type'],
    ]);
    for (const hash of [rootHash, fromHex(rootHash, 'root hash')]) {
      const exact = findVerityPairs(t, hash);
      expect(exact).toHaveLength(1);
      expect(exact[0]).toMatchObject({ role: 'root', architecture: 'x86-64', data: { index: 1 }, hash: { index: 2 }, signature: null, matchedBy: 'root-hash' });
    }
    expect(findVerityPairs(t, 'ff'.repeat(32))).toEqual([]);
    expect(() => findVerityPairs(t, 'abcd')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('reports the signature partition of the pair when there is exactly one', async () => {
    const t = await build([
      p(ROOT_X86_64, '01234567-89ab-cdef-fedc-ba9876543210', 2048),
      p(ROOT_X86_64_VERITY, 'a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90', 3000),
      p('41092b05-9fc8-4523-994f-2def0408b176', 'd0000000-0000-4000-8000-000000000001', 4000, 'sig'),
    ]);
    expect(findVerityPairs(t)[0]!.signature?.name).toBe('sig');
  });
});
