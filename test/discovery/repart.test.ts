/**
 * Disks made by systemd-repart (an independent producer of Discoverable Partitions images with verity): one slot, and
 * A/B slots made from two definitions with their own match keys. `verify IMAGE` must pair each data partition with its
 * own hash partition by the UUIDs systemd derives from the root hash, and check each against the root hash repart
 * reports. systemd-repart needs root and loop devices; without them the tests skip and say so.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCaptured } from '../support/cli-harness.js';
import { makeSigner, opensslTool, seeded, type Signer } from '../support/os-images.js';
import { findTool } from '../support/tools.js';

const REPART = findTool('systemd-repart', '/usr/bin/systemd-repart', '/bin/systemd-repart');
const MKE2FS = findTool('mke2fs', '/usr/sbin/mke2fs', '/sbin/mke2fs');
const QEMU_IMG = findTool('qemu-img', '/usr/bin/qemu-img');
const why = [
  !REPART && 'systemd-repart',
  !MKE2FS && 'mke2fs',
  !QEMU_IMG && 'qemu-img',
  process.getuid?.() !== 0 && 'root (systemd-repart makes loop devices)',
  !existsSync('/dev/loop-control') && 'loop devices',
].filter(Boolean);
const SKIP = why.length === 0 ? '' : ` [SKIPPED: needs ${why.join(', ')}]`;

let work: string;

interface Made {
  raw: string;
  vhdx: string;
  /** Root hashes by the verity partition's 1-based index, as systemd-repart reported them. */
  roots: Map<number, string>;
}

/** A root filesystem image with `seed`-determined contents. */
function rootfs(name: string, seed: string): string {
  const tree = join(work, `${name}-tree`);
  mkdirSync(tree, { recursive: true });
  writeFileSync(join(tree, 'payload'), seeded(seed, 3 << 20));
  const image = join(work, `${name}.ext4`);
  const r = spawnSync(MKE2FS!, ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, image, '8M'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return image;
}

/** Runs systemd-repart on the definitions `defs` (file name → text) and converts the result to a VHDX too. */
function repart(name: string, defs: Record<string, string>, signer?: Signer): Made {
  const dir = join(work, `${name}-defs`);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(defs)) writeFileSync(join(dir, file), text);
  const raw = join(work, `${name}.raw`);
  const r = spawnSync(
    REPART!,
    [
      '--empty=create',
      '--size=auto',
      '--dry-run=no',
      `--definitions=${dir}`,
      '--seed=0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0',
      '--json=short',
      ...(signer ? [`--private-key=${signer.key}`, `--certificate=${signer.cert}`] : []),
      raw,
    ],
    { encoding: 'utf8' },
  );
  expect(r.status, r.stderr).toBe(0);
  const parts = JSON.parse(r.stdout) as Array<{ roothash: string | null }>;
  const roots = new Map<number, string>();
  parts.forEach((p, i) => p.roothash && roots.set(i + 1, p.roothash));
  const vhdx = join(work, `${name}.vhdx`);
  expect(spawnSync(QEMU_IMG!, ['convert', '-f', 'raw', '-O', 'vhdx', raw, vhdx]).status).toBe(0);
  return { raw, vhdx, roots };
}

const slot = (key: string, image: string, order: number, signed = false) => ({
  [`${order}0-root-${key}.conf`]: `[Partition]\nType=root\nLabel=root-${key}\nCopyBlocks=${image}\nVerity=data\nVerityMatchKey=${key}\n`,
  [`${order}1-verity-${key}.conf`]: `[Partition]\nType=root-verity\nLabel=verity-${key}\nVerity=hash\nVerityMatchKey=${key}\n`,
  ...(signed
    ? { [`${order}2-sig-${key}.conf`]: `[Partition]\nType=root-verity-sig\nLabel=sig-${key}\nVerity=signature\nVerityMatchKey=${key}\n` }
    : {}),
});

beforeAll(() => {
  if (!SKIP) work = mkdtempSync(join(tmpdir(), 'verity-repart-'));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(SKIP !== '')(`systemd-repart disks${SKIP}`, () => {
  it('one slot: the image alone is verified against the root hash systemd-repart reported, with its 512-byte blocks', async () => {
    const made = repart('one', slot('a', rootfs('one', 'repart-one'), 1));
    const [hashIndex, root] = [...made.roots][0]!;
    expect(hashIndex).toBe(2);
    for (const image of [made.raw, made.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.targets).toMatchObject([
        { via: 'dps', data: { path: `${image}::1` }, hash: { path: `${image}::2` }, rootHash: { expected: root, matches: true, authenticated: false } },
      ]);
      // systemd-repart 252 has no setting for the verity block size: 512 in a 512-byte-sector image.
      expect(j.targets[0].params).toMatchObject({ dataBlockSize: 512, hashBlockSize: 512 });
    }
  });

  it('A/B slots: each data partition is paired with its own hash partition, and damage in B is reported in B only', async () => {
    const made = repart('ab', { ...slot('a', rootfs('ab-a', 'repart-a'), 1), ...slot('b', rootfs('ab-b', 'repart-b'), 2) });
    expect([...made.roots.keys()]).toEqual([2, 4]);
    const disk = readFileSync(made.raw);
    // Flip a byte in block 100 of data partition 3 (root-b), at the offset inspect gives.
    const first = JSON.parse((await runCaptured(['verify', made.raw, '--json'])).stdout);
    expect(first.status).toBe('ok');
    const bySlot = new Map(first.targets.map((t: { data: { path: string }; hash: { path: string }; rootHash: { expected: string } }) => [t.data.path, t]));
    expect([...bySlot.keys()].sort()).toEqual([`${made.raw}::1`, `${made.raw}::3`]);
    // Both slots are the DPS root: the data partition's label tells them apart.
    expect(first.targets.map((t: { name: string }) => t.name).sort()).toEqual(['root x86-64 on "root-a"', 'root x86-64 on "root-b"']);
    for (const [data, hash] of [
      [1, 2],
      [3, 4],
    ]) {
      const t = bySlot.get(`${made.raw}::${data}`) as { hash: { path: string }; rootHash: { expected: string } };
      expect(t.hash.path).toBe(`${made.raw}::${hash}`);
      expect(t.rootHash.expected).toBe(made.roots.get(hash!));
    }
    const layers = JSON.parse((await runCaptured(['inspect', made.raw, '--json'])).stdout).partitions as Array<{ index: number; offset: number }>;
    disk[layers.find((p) => p.index === 3)!.offset + 100 * 512 + 3]! ^= 0x80;
    const damaged = join(work, 'ab-damaged.raw');
    writeFileSync(damaged, disk);
    const r = await runCaptured(['verify', damaged, '--json']);
    expect(r.code).toBe(2);
    const after = JSON.parse(r.stdout).targets as Array<{ data: { path: string; corrupt: Array<{ first: number }> }; status: string }>;
    expect(after.map((t) => [t.data.path.slice(damaged.length), t.status, t.data.corrupt.map((c) => c.first)]).sort()).toEqual([
      ['::1', 'ok', []],
      ['::3', 'corrupt', [100]],
    ]);
  });

  it.skipIf(!opensslTool)('A/B slots with signature partitions: each root hash is authenticated by the certificate repart signed with', async () => {
    const vendor = makeSigner(join(work, 'keys'), 'repart vendor');
    const other = makeSigner(join(work, 'keys'), 'not the vendor');
    const made = repart('signed', { ...slot('a', rootfs('s-a', 'repart-sa'), 1, true), ...slot('b', rootfs('s-b', 'repart-sb'), 2, true) }, vendor);
    for (const image of [made.raw, made.vhdx]) {
      const r = await runCaptured(['verify', image, '--trusted-cert', vendor.cert, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const targets = JSON.parse(r.stdout).targets as Array<{ name: string; rootHash: { expected: string; authenticated: boolean; signature: string } }>;
      expect(targets.map((t) => [t.name, t.rootHash.authenticated]).sort()).toEqual([
        ['root x86-64 on "root-a"', true],
        ['root x86-64 on "root-b"', true],
      ]);
      // Each slot's own signature partition: sig-a signs root-a's hash, sig-b root-b's.
      for (const t of targets) {
        const key = t.name.endsWith('"root-a"') ? 'a' : 'b';
        expect(t.rootHash.signature).toMatch(new RegExp(`^a signature in the DPS signature partition #\\d+ "sig-${key}": valid, signed by CN=repart vendor`));
        expect([...made.roots.values()]).toContain(t.rootHash.expected);
      }
    }
    const wrong = await runCaptured(['verify', made.raw, '--trusted-cert', other.cert, '--json']);
    expect(wrong.code).toBe(6);
  });
});
