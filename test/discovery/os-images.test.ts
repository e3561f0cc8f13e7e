/**
 * The Mariner/EFLOW-style disks of test/support/os-images.ts, checked with the producers' own tools and with explicit
 * operands: the layout the boot-configuration discovery will have to find (issue #12) is the one the distribution
 * builds. Each slot's tree and root hash are taken out of its initramfs with cpio, as the dracut module would.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCaptured } from '../support/cli-harness.js';
import { buildCustomizerDisk, buildMarinerDisk, buildOsGuardDisk, osImageTools, type MarinerDisk } from '../support/os-images.js';
import { findTool } from '../support/tools.js';

const missing = osImageTools();
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}]`;
const SGDISK = findTool('sgdisk', '/usr/sbin/sgdisk');
const DEBUGFS = findTool('debugfs', '/usr/sbin/debugfs', '/sbin/debugfs');
const CPIO = findTool('cpio', '/usr/bin/cpio');

let work: string;
let disk: MarinerDisk;

beforeAll(() => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'verity-os-images-'));
  disk = buildMarinerDisk(join(work, 'eflow'), { damage: { B: [100, 2000] } });
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The files of a slot's initramfs, extracted by cpio from the boot partition's copy. */
function extractInitramfs(slot: 'A' | 'B'): string {
  const out = join(work, `initrd-${slot}`);
  mkdirSync(out, { recursive: true });
  const image = readFileSync(join(work, 'eflow', `slot-${slot}`, 'boot', `initrd.img-${disk.kernelVersion}`));
  const r = spawnSync(CPIO!, ['-i', '-d', '--quiet'], { cwd: out, input: gunzipSync(image) });
  expect(r.status, r.stderr?.toString()).toBe(0);
  return out;
}

describe.skipIf(SKIP !== '')(`a Mariner/EFLOW-style disk${SKIP}`, () => {
  it('has the EFLOW partition names, generic types and the root partition UUIDs the command lines name', () => {
    const table = spawnSync(SGDISK!, ['-p', disk.raw], { encoding: 'utf8' }).stdout;
    const rows = [...table.matchAll(/^\s+(\d+)\s+\d+\s+\d+\s+\S+ \S+\s+(\w+)\s+(.+)$/gm)].map((m) => [Number(m[1]), m[2], m[3]!.trim()]);
    expect(rows).toEqual([
      [1, 'EF00', 'BootEFIA'],
      [2, '8300', 'BootA'],
      [3, '8300', 'RootFS A'],
      [4, 'EF00', 'BootEFIB'],
      [5, '8300', 'BootB'],
      [6, '8300', 'RootFS B'],
      [7, '8300', 'Log'],
      [8, '8300', 'Data'],
    ]);
    for (const slot of disk.slots) {
      const info = spawnSync(SGDISK!, ['-i', String(slot.partitions.root), disk.raw], { encoding: 'utf8' }).stdout;
      expect(info.toLowerCase()).toContain(`partition unique guid: ${slot.rootPartUuid}`);
      const cfg = readFileSync(join(work, 'eflow', `slot-${slot.name}`, 'boot', 'grub2', 'grub.cfg'), 'utf8');
      expect(cfg).toContain(`set rootdevice=verityroot:PARTUUID=${slot.rootPartUuid}`);
    }
  });

  it.skipIf(!DEBUGFS)('keeps mariner.cfg as a symlink to the GRUB environment block on the boot partition', () => {
    const boot = join(work, 'eflow', 'slot-A', 'boot.ext4');
    const stat = spawnSync(DEBUGFS!, ['-R', 'stat /mariner.cfg', boot], { encoding: 'utf8' }).stdout;
    expect(stat).toMatch(/Type: symlink/);
    expect(stat).toContain(`Fast link dest: "linux-${disk.kernelVersion}.cfg"`);
  });

  it('verifies each RootFS against the tree and root hash file in its own initramfs; slot B has the damage', async () => {
    for (const slot of disk.slots) {
      const files = extractInitramfs(slot.name);
      const root = readFileSync(join(files, 'verity-verity_root_fs.roothash'), 'latin1');
      expect(root).toBe(slot.rootHash);
      for (const image of [disk.raw, disk.vhdx]) {
        const r = await runCaptured(['verify', `${image}::${slot.partitions.root}`, join(files, 'verity-verity_root_fs.hashtree'), root, '--json']);
        expect(r.code, r.stderr).toBe(slot.name === 'A' ? 0 : 2);
        const corrupt = JSON.parse(r.stdout).data.corrupt.map((c: { first: number }) => c.first);
        expect(corrupt).toEqual(slot.name === 'A' ? [] : [100, 2000]);
      }
    }
  });

  it('has no verity superblock or DPS type anywhere on the disk itself: the image alone is no-verity today', async () => {
    // Everything is in the initramfs: only the boot configuration leads to it (issue #12).
    const r = await runCaptured(['verify', disk.vhdx, '--json']);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout).searched).toContain('a GPT with 8 partitions (DPS verity types: 0)');
  });
});

describe.skipIf(SKIP !== '')(`Azure Linux image-customizer disks${SKIP}`, () => {
  it('a hash partition after the data partition: the image alone finds it and checks it against itself', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-partlabel'), { idType: 'partlabel', damage: [700] });
    expect(azl.cmdline).toContain(`roothash=${azl.rootHash} systemd.verity_root_data=PARTLABEL=root systemd.verity_root_hash=PARTLABEL=roothash`);
    for (const image of [azl.raw, azl.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(2);
      const [target] = JSON.parse(r.stdout).targets;
      expect(target).toMatchObject({ via: 'superblock-partition', rootHash: { expected: azl.rootHash, authenticated: false } });
      expect(target.data.corrupt.map((c: { first: number }) => c.first)).toEqual([700]);
      // With the command line's root hash given, the same target, authenticated.
      const given = await runCaptured(['verify', image, azl.rootHash, '--json']);
      expect(JSON.parse(given.stdout).targets[0].rootHash).toMatchObject({ authenticated: true, matches: true });
    }
  });

  it('a BLS entry\'s command line names the target: its root hash is the claim, damage is named, a wrong one is exit 3', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-bls'), { boot: 'bls', idType: 'partlabel', damage: [5] });
    const r = await runCaptured(['verify', azl.vhdx, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const [target] = JSON.parse(r.stdout).targets;
    expect(target).toMatchObject({
      name: 'root',
      via: 'boot-entry',
      data: { path: `${azl.vhdx}::3` },
      hash: { path: `${azl.vhdx}::4` },
      rootHash: {
        expected: azl.rootHash,
        from: 'the kernel command line of #2 "boot":/loader/entries/azl-6.6.47.1-1.azl3.conf',
        authenticated: false,
      },
    });
    expect(target.data.corrupt.map((c: { first: number }) => c.first)).toEqual([5]);
    const wrong = buildCustomizerDisk(join(work, 'azl-bls-wrong'), { boot: 'bls', cmdline: 'wrong-root-hash' });
    const w = await runCaptured(['verify', wrong.raw, '--json']);
    expect(w.code, w.stderr).toBe(3);
    expect(JSON.parse(w.stdout).targets[0]).toMatchObject({ status: 'root-mismatch', rootHash: { expected: 'cd'.repeat(32), actual: wrong.rootHash } });
  });

  it('verity switched off on the command line: no boot target, the other rules find the hash partition', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-bls-off'), { boot: 'bls', cmdline: 'verity-off' });
    const r = await runCaptured(['verify', azl.raw, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.targets).toMatchObject([{ via: 'superblock-partition', rootHash: { expected: azl.rootHash, authenticated: false } }]);
    expect(j.skipped.join('\n')).toMatch(/rd\.systemd\.verity=0 turns systemd's verity generator off/);
  });

  it('an inline tree after the filesystem (hash-offset in the options), named by filesystem UUID', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-inline'), { inline: true, idType: 'uuid', boot: 'bls' });
    expect(azl.cmdline).toContain(`systemd.verity_root_options=panic-on-corruption,hash-offset=${12 << 20}`);
    const r = await runCaptured(['verify', azl.vhdx, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).targets).toMatchObject([
      { via: 'boot-entry', data: { path: `${azl.vhdx}::3` }, hash: { path: `${azl.vhdx}::3`, offset: 12 << 20 }, rootHash: { expected: azl.rootHash } },
    ]);
  });
});

const UKI_MISSING = osImageTools({ uki: true });
const UKI_SKIP = UKI_MISSING.length === 0 ? '' : ` [SKIPPED: needs ${UKI_MISSING.join(', ')}]`;
const OBJDUMP = findTool('objdump', '/usr/bin/objdump');

describe.skipIf(UKI_SKIP !== '')(`an Azure Linux OS Guard-style disk${UKI_SKIP}`, () => {
  it('usr verity with its command line in a UKI addon: the hash partition is found after usr-a and checked against itself', async () => {
    const disk = buildOsGuardDisk(join(work, 'osguard'), { damage: [33] });
    // The addon's .cmdline section, as binutils reads it, carries the usr keys.
    if (OBJDUMP) {
      const addon = join(work, 'osguard', 'efi', 'verity.addon.efi');
      const dump = spawnSync(OBJDUMP, ['-s', '-j', '.cmdline', addon], { encoding: 'utf8' }).stdout;
      expect(dump).toMatch(/usrhash=/);
    }
    for (const image of [disk.raw, disk.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(2);
      const [target] = JSON.parse(r.stdout).targets;
      expect(target).toMatchObject({
        via: 'superblock-partition',
        data: { path: `${image}::${disk.partitions.usr}` },
        hash: { path: `${image}::${disk.partitions.usrHash}` },
        rootHash: { expected: disk.usrHash, authenticated: false },
      });
      expect(target.data.corrupt.map((c: { first: number }) => c.first)).toEqual([33]);
    }
  });
});
