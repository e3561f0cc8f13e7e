/**
 * The OS disks of test/support/os-images.ts (Mariner/EFLOW, Azure Linux image customizer, OS Guard), checked first
 * with the producers' own tools and explicit operands (each Mariner slot's tree and root hash taken out of its
 * initramfs with cpio, as the dracut module would), then with the image as the only operand: the targets come from
 * the boot configuration, as the booting system finds them.
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

  it('has no verity superblock or DPS type on the disk itself: only the boot configuration leads to the trees', async () => {
    const r = await runCaptured(['inspect', disk.raw]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('No verity superblock found.');
  });

  it('the image alone: each slot from its own grub.cfg and initramfs, the root hash file as a claim, damage only in B', async () => {
    const zip = join(work, 'eflow.zip');
    spawnSync('zip', ['-q', '-6', '-j', zip, disk.vhdx]);
    for (const image of [disk.raw, disk.vhdx, `${zip}::eflow.vhdx`]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(2);
      const j = JSON.parse(r.stdout);
      expect(j.status).toBe('corrupt');
      expect(j.targets).toHaveLength(2);
      for (const [i, slot] of disk.slots.entries()) {
        const t = j.targets[i];
        const boot = `#${slot.partitions.boot} "Boot${slot.name}"`;
        expect(t).toMatchObject({
          name: `verity-verity_root_fs on "RootFS ${slot.name}"`,
          via: 'boot-entry',
          status: slot.name === 'A' ? 'ok' : 'corrupt',
          data: { path: `${image}::${slot.partitions.root}` },
          hash: { path: `initramfs file /verity-verity_root_fs.hashtree in ${boot}:/initrd.img-${disk.kernelVersion}` },
          rootHash: {
            expected: slot.rootHash,
            matches: true,
            authenticated: false,
            from:
              `initramfs file /verity-verity_root_fs.roothash in ${boot}:/initrd.img-${disk.kernelVersion}, named by the ` +
              `kernel command line of ${boot}:/grub2/grub.cfg, menu entry "CBL-Mariner"`,
          },
        });
        expect(t.data.corrupt.map((c: { first: number }) => c.first)).toEqual(slot.name === 'A' ? [] : [100, 2000]);
        // The FEC file the initramfs carries (rd.verityroot.fecdata, made by veritysetup with 2 roots) can restore B.
        if (image.includes('.zip::')) expect(t.warnings.join('\n')).toMatch(/FEC .*verity_root_fs\.fec.* not used: the data is read as a stream/);
        else {
          expect(t.fec).toMatchObject({
            path: `initramfs file /verity-verity_root_fs.fec in ${boot}:/initrd.img-${disk.kernelVersion}`,
            roots: 2,
            repairable: true,
            damagedBlocks: { data: slot.name === 'A' ? 0 : 2, hash: 0 },
          });
        }
      }
      // Block 2000 of B lies in the 3 MiB program the builder wrote (test/report/owners.test.ts checks the names
      // against debugfs).
      if (image.includes('.zip::')) expect(j.targets[1].data.filesystem.error).toMatch(/read as a stream/);
      else expect(j.targets[1].data.files.map((f: { path: string }) => f.path)).toContain('/usr/bin/app');
    }
    const text = await runCaptured(['verify', disk.vhdx]);
    expect(text.stdout).toContain('NOT AUTHENTICATED: the image vouches for itself');
    expect(text.stdout).toContain('block 2000 at data bytes 8192000-8196095');
    expect(text.stdout).toContain('2 roots): all 2 damaged blocks can be restored by erasure decoding');
  });

  it("a root hash given by the user picks the slot that declares it, authenticated; one no slot declares is exit 3", async () => {
    const [a] = disk.slots;
    const r = await runCaptured(['verify', disk.vhdx, a!.rootHash, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.targets.map((t: { name: string }) => t.name)).toEqual(['verity-verity_root_fs on "RootFS A"']);
    expect(j.targets[0].rootHash).toMatchObject({ authenticated: true, from: 'given by the user' });
    const none = await runCaptured(['verify', disk.raw, 'ef'.repeat(32), '--json']);
    expect(none.code).toBe(3);
    expect(JSON.parse(none.stdout).note).toMatch(/declares no target with root hash (ef)+/);
  });

  it('a wrong root hash file in slot B: B is a root mismatch (exit 3), A still verifies', async () => {
    const wrong = buildMarinerDisk(join(work, 'eflow-wrong'), { bootConfig: { B: 'wrong-root-hash-file' } });
    for (const image of [wrong.raw, wrong.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(3);
      const j = JSON.parse(r.stdout);
      expect(j.targets.map((t: { status: string }) => t.status)).toEqual(['ok', 'root-mismatch']);
      expect(j.targets[1].rootHash).toMatchObject({ expected: 'ab'.repeat(32), actual: wrong.slots[1]!.rootHash });
    }
  });

  it('verity switched off in both slots: exit 5, naming the GRUB configurations searched', async () => {
    const off = buildMarinerDisk(join(work, 'eflow-off'), { bootConfig: { A: 'verity-off', B: 'verity-off' } });
    for (const image of [off.raw, off.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(5);
      const j = JSON.parse(r.stdout);
      expect(j.status).toBe('no-verity');
      expect(j.searched[0]).toContain('GRUB configurations (#1 "BootEFIA":/boot/grub2/grub.cfg, #4 "BootEFIB":/boot/grub2/grub.cfg): 2 entries');
    }
  });

  it("a truncated initramfs in slot B: B cannot be checked, exit 4, and A is still verified", async () => {
    const cut = buildMarinerDisk(join(work, 'eflow-cut'), { bootConfig: { B: 'truncated-initramfs' } });
    for (const image of [cut.raw, cut.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(4);
      const j = JSON.parse(r.stdout);
      expect(j.status).toBe('unresolved');
      expect(j.targets.map((t: { status: string; data: { path: string } }) => [t.status, t.data.path])).toEqual([['ok', `${image}::3`]]);
      expect(j.unresolved).toEqual([
        {
          name: 'verity-verity_root_fs',
          from: '#5 "BootB":/grub2/grub.cfg, menu entry "CBL-Mariner"',
          reason: expect.stringMatching(/^its initramfs #5 "BootB":\/initrd\.img-\S+ cannot be read: .*cut short/),
        },
      ]);
    }
    const text = await runCaptured(['verify', cut.raw]);
    expect(text.stdout).toMatch(/Target verity-verity_root_fs CANNOT BE CHECKED: its initramfs #5 "BootB"/);
  });
});

describe.skipIf(SKIP !== '')(`Azure Linux image-customizer disks${SKIP}`, () => {
  it('the grub.cfg command line names the pair by PARTLABEL: its root hash is the claim, the damage is named', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-partlabel'), { idType: 'partlabel', damage: [700] });
    expect(azl.cmdline).toContain(`roothash=${azl.rootHash} systemd.verity_root_data=PARTLABEL=root systemd.verity_root_hash=PARTLABEL=roothash`);
    for (const image of [azl.raw, azl.vhdx]) {
      const r = await runCaptured(['verify', image, '--json']);
      expect(r.code, r.stderr).toBe(2);
      const [target] = JSON.parse(r.stdout).targets;
      expect(target).toMatchObject({
        via: 'boot-entry',
        data: { path: `${image}::3` },
        hash: { path: `${image}::4` },
        rootHash: { expected: azl.rootHash, authenticated: false, from: 'the kernel command line of #2 "boot":/grub2/grub.cfg, menu entry "Azure Linux"' },
      });
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

  it('a recovery entry with another root hash is not a target; an entry naming a partition the disk lacks is unresolved (exit 4)', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-extra'), {
      idType: 'partlabel',
      extraGrub: (cmdline) =>
        [
          'menuentry "Azure Linux (recovery mode)" {',
          `\tlinux /vmlinuz-6.6.47.1-1.azl3 ${cmdline.replace(/roothash=[0-9a-f]+/, `roothash=${'ee'.repeat(32)}`)} single`,
          '}',
          'submenu "Advanced" {',
          '\tmenuentry "Azure Linux, other disk" {',
          `\t\tlinux /vmlinuz-6.6.47.1-1.azl3 ${cmdline.replace('PARTLABEL=root ', 'PARTLABEL=no-such-part ')}`,
          '\t}',
          '}',
        ].join('\n'),
    });
    const r = await runCaptured(['verify', azl.raw, '--json']);
    expect(r.code, r.stderr).toBe(4);
    const j = JSON.parse(r.stdout);
    expect(j.status).toBe('unresolved');
    expect(j.targets.map((t: { status: string; rootHash: { expected: string } }) => [t.status, t.rootHash.expected])).toEqual([['ok', azl.rootHash]]);
    expect(j.unresolved).toEqual([
      {
        name: 'root',
        from: '#2 "boot":/grub2/grub.cfg, menu entry "Advanced > Azure Linux, other disk"',
        reason: 'data device: no partition matches PARTLABEL=no-such-part',
      },
    ]);
    expect(JSON.stringify(j)).not.toContain('ee'.repeat(32));
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
  it('usr verity with its command line in a UKI add-on, devices named by filesystem and superblock UUIDs', async () => {
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
        name: 'usr',
        via: 'boot-entry',
        data: { path: `${image}::${disk.partitions.usr}` },
        hash: { path: `${image}::${disk.partitions.usrHash}` },
        rootHash: {
          expected: disk.usrHash,
          authenticated: false,
          from: 'the kernel command line of #1 "esp":/EFI/Linux/azl.efi with add-on /EFI/Linux/azl.efi.extra.d/verity.addon.efi',
          // The signature path is on the running system's /boot: the partition `pre.verity.mount=` names.
          signature: `a signature in #${disk.partitions.boot} "boot-a":/usr.hash.sig (/boot/usr.hash.sig on the running system) (not checked)`,
        },
      });
      expect(target.data.corrupt.map((c: { first: number }) => c.first)).toEqual([33]);
    }
  });
});
