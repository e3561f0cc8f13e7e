/**
 * findTargets (src/discovery/targets.ts) and verifyImage (src/api/verify-image.ts) on disks assembled from trees that
 * veritysetup made: A/B DPS slots paired by the partition UUIDs their root hashes give, slots whose UUIDs say nothing,
 * and a generic partition that starts with a superblock. The root hashes are veritysetup's, never ours.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatUuid, fromHex, toHex } from '../../src/binary/bytes.js';
import { verifyImage } from '../../src/api/verify-image.js';
import { findTargets } from '../../src/discovery/targets.js';
import { bytesSource } from '../../src/io/source.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { buildGpt, LINUX_GENERIC, ROOT_X86_64, ROOT_X86_64_VERITY, type PartSpec } from '../support/gpt-writer.js';
import { hasVeritysetup, NEEDS_VERITYSETUP, veritysetup } from '../support/veritysetup-bin.js';

const SECTOR = 512;
const DATA_SECTORS = 2048; // 1 MiB of data per slot
const HASH_SECTORS = 64;
let work: string;

interface Slot {
  data: Uint8Array;
  hash: Uint8Array;
  root: string;
}

/** A data area and veritysetup's tree over it. */
function slot(name: string): Slot {
  const data = randomBytes(DATA_SECTORS * SECTOR);
  writeFileSync(join(work, `${name}.data`), data);
  const r = veritysetup(['format', join(work, `${name}.data`), join(work, `${name}.hash`)]);
  expect(r.code, r.stderr).toBe(0);
  return { data, hash: readFileSync(join(work, `${name}.hash`)), root: /Root hash:\s+([0-9a-f]+)/.exec(r.stdout)![1]! };
}

const halves = (root: string) => [formatUuid(fromHex(root, 'root').subarray(0, 16)), formatUuid(fromHex(root, 'root').subarray(16))];

/** A GPT disk with `parts`, each given its bytes. */
function disk(parts: Array<PartSpec & { bytes: Uint8Array }>): Uint8Array {
  const sectors = Math.max(...parts.map((p) => p.last)) + 64;
  const image = buildGpt({ sectorSize: SECTOR, sectors, partitions: parts });
  for (const p of parts) image.set(p.bytes, p.first * SECTOR);
  return image;
}

function part(type: string, guid: string, first: number, sectors: number, name: string, bytes: Uint8Array) {
  return { type, guid, first, last: first + sectors - 1, name, bytes };
}

let a: Slot;
let b: Slot;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'verity-targets-'));
  if (!hasVeritysetup) return;
  a = slot('a');
  b = slot('b');
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Slots A and B, data then hash, hash partitions listed in the other order to show pairing is not by position. */
function abDisk(uuidsFromRoots: boolean): Uint8Array {
  const [aData, aHash] = uuidsFromRoots ? halves(a.root) : ['0a000000-0000-4000-8000-000000000001', '0a000000-0000-4000-8000-000000000002'];
  const [bData, bHash] = uuidsFromRoots ? halves(b.root) : ['0b000000-0000-4000-8000-000000000001', '0b000000-0000-4000-8000-000000000002'];
  return disk([
    part(ROOT_X86_64, aData!, 2048, DATA_SECTORS, 'root-a', a.data),
    part(ROOT_X86_64, bData!, 4096, DATA_SECTORS, 'root-b', b.data),
    part(ROOT_X86_64_VERITY, bHash!, 6144, HASH_SECTORS, 'verity-b', b.hash),
    part(ROOT_X86_64_VERITY, aHash!, 6208, HASH_SECTORS, 'verity-a', a.hash),
  ]);
}

describe.skipIf(!hasVeritysetup)(`findTargets${NEEDS_VERITYSETUP}`, () => {
  it('pairs A/B DPS slots by the partition UUIDs their stored root hashes give, and claims those root hashes', async () => {
    const search = await findTargets(bytesSource(abDisk(true)), true, nodeCryptoEngine);
    const found = search.targets.map((t) => [t.via, t.dataPartition!.name, t.hashPartition!.name, t.claim && toHex(t.claim.bytes)]);
    expect(found.sort()).toEqual([
      ['dps', 'root-a', 'verity-a', a.root],
      ['dps', 'root-b', 'verity-b', b.root],
    ]);
    expect(search.skipped).toEqual([]);
  });

  it('leaves out A/B DPS slots whose UUIDs do not encode a root hash, saying why; a given root hash still pairs its slot', async () => {
    const image = bytesSource(abDisk(false));
    const search = await findTargets(image, true, nodeCryptoEngine);
    expect(search.targets).toEqual([]);
    expect(search.skipped).toHaveLength(2);
    expect(search.skipped[0]).toMatch(/its root hash names no partition by UUID, and 2 data partitions of its type could go with it/);
    // A one-slot disk whose UUIDs say nothing pairs by type, with no claim.
    const single = disk([
      part(ROOT_X86_64, '0a000000-0000-4000-8000-000000000001', 2048, DATA_SECTORS, 'root-a', a.data),
      part(ROOT_X86_64_VERITY, '0a000000-0000-4000-8000-000000000002', 4096, HASH_SECTORS, 'verity-a', a.hash),
    ]);
    const one = await findTargets(bytesSource(single), true, nodeCryptoEngine);
    expect(one.targets.map((t) => [t.via, t.claim, t.description.endsWith('matched by type)')])).toEqual([['dps', null, true]]);
  });

  it('pairs a generic partition that starts with a superblock with the data partition before it, with no claim', async () => {
    const image = disk([
      part(LINUX_GENERIC, '0c000000-0000-4000-8000-000000000001', 2048, DATA_SECTORS, 'rootfs', a.data),
      part(LINUX_GENERIC, '0c000000-0000-4000-8000-000000000002', 4096, HASH_SECTORS, 'roothash', a.hash),
    ]);
    const search = await findTargets(bytesSource(image), true, nodeCryptoEngine);
    expect(search.targets.map((t) => [t.via, t.name, t.hashPartition!.name, t.claim])).toEqual([
      ['superblock-partition', '#1 "rootfs"', 'roothash', null],
    ]);
  });
});

describe.skipIf(!hasVeritysetup)(`verifyImage${NEEDS_VERITYSETUP}`, () => {
  const options = { engine: 'node-crypto', threads: 1 } as const;

  it('verifies both slots of an A/B disk against their claimed root hashes; damage in slot B is slot B\'s alone', async () => {
    const image = abDisk(true);
    image[4096 * SECTOR + 7 * 4096 + 100]! ^= 0xff; // data block 7 of root-b
    const path = join(work, 'ab.img');
    writeFileSync(path, image);
    const r = await verifyImage(path, options);
    expect(r.status).toBe('corrupt');
    const bySlot = Object.fromEntries(r.targets.map((t) => [t.dataAddress, t]));
    expect(bySlot[`${path}::1`]).toMatchObject({ status: 'ok', rootHash: { authenticated: false } });
    expect(toHex(bySlot[`${path}::1`]!.expectedRoot)).toBe(a.root);
    expect(bySlot[`${path}::2`]).toMatchObject({ status: 'corrupt', hashAddress: `${path}::3` });
    expect(bySlot[`${path}::2`]!.data.corrupt).toEqual([{ first: 7, count: 1 }]);
    // The root hash of slot A given: only slot A is verified, and it is authenticated.
    const given = await verifyImage(path, { ...options, rootHash: a.root });
    expect(given.targets.map((t) => [t.dataAddress, t.status, t.rootHash.authenticated])).toEqual([[`${path}::1`, 'ok', true]]);
    // A root hash no slot declares: nothing matches, exit 3's status, and the note lists the targets.
    const none = await verifyImage(path, { ...options, rootHash: 'ab'.repeat(32) });
    expect(none.status).toBe('root-mismatch');
    expect(none.note).toMatch(/declares no target with root hash abab.*root x86-64.*root x86-64/);
  });

  it('checks a target without a declared root hash against its own top block: damage is found, and the root is computed', async () => {
    const image = disk([
      part(LINUX_GENERIC, '0c000000-0000-4000-8000-000000000001', 2048, DATA_SECTORS, 'rootfs', a.data),
      part(LINUX_GENERIC, '0c000000-0000-4000-8000-000000000002', 4096, HASH_SECTORS, 'roothash', a.hash),
    ]);
    const path = join(work, 'generic.img');
    writeFileSync(path, image);
    const clean = await verifyImage(path, options);
    expect(clean.targets).toHaveLength(1);
    expect(clean.targets[0]).toMatchObject({ status: 'ok', rootHash: { authenticated: false, from: expect.stringMatching(/^none in the image/) } });
    // The root computed from the stored tree is veritysetup's.
    expect(toHex(clean.targets[0]!.expectedRoot)).toBe(a.root);
    image[2048 * SECTOR + 100 * 4096]! ^= 1;
    writeFileSync(path, image);
    const bad = await verifyImage(path, options);
    expect(bad.status).toBe('corrupt');
    expect(bad.targets[0]!.data.corrupt).toEqual([{ first: 100, count: 1 }]);
  });
});
