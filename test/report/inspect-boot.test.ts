/**
 * `verity inspect` on the OS disks of test/support/os-images.ts: the boot entries it found, their command lines with
 * the verity keys marked (`^` under them in plain text, ANSI bold and colour on a terminal), and the targets, which
 * must be the ones `verity verify IMAGE --json` checks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import type { InspectReport } from '../../src/report/inspect.js';
import { runCaptured } from '../support/cli-harness.js';
import { buildCustomizerDisk, buildMarinerDisk, buildOsGuardDisk, osImageTools, type MarinerDisk } from '../support/os-images.js';

const missing = osImageTools();
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}]`;
const UKI_MISSING = osImageTools({ uki: true });
const UKI_SKIP = UKI_MISSING.length === 0 ? '' : ` [SKIPPED: needs ${UKI_MISSING.join(', ')}]`;

let work: string;
let mariner: MarinerDisk;

beforeAll(() => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'verity-inspect-boot-'));
  mariner = buildMarinerDisk(join(work, 'eflow'));
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function inspectJson(image: string): Promise<InspectReport> {
  const r = await runCaptured(['inspect', image, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as InspectReport;
}

/** The targets `verify IMAGE --json` checked, reduced to what inspect reports of them. */
async function verifiedTargets(image: string) {
  const r = await runCaptured(['verify', image, '--json']);
  const j = JSON.parse(r.stdout);
  expect(j.targets.length, r.stdout).toBeGreaterThan(0);
  return j.targets.map((t: any) => ({
    name: t.name,
    via: t.via,
    description: t.description,
    data: t.data.path,
    hash: t.hash.path,
    hashOffset: t.hash.offset,
    // The root hash the image claims; without one, verify checks the tree against its own top block.
    rootHash: t.rootHash.from.startsWith('none in the image') ? null : t.rootHash.expected,
  }));
}

function inspectedTargets(report: InspectReport) {
  return report.targets!.map((t) => ({
    name: t.name,
    via: t.via,
    description: t.description,
    data: t.data.path,
    hash: t.hash.path,
    hashOffset: t.hashOffset,
    rootHash: t.rootHash?.hex ?? null,
  }));
}

/**
 * The words the plain-text report marks: every run of `^` on a line of only carets and spaces, read off the line
 * above it. Each run must cover exactly one whole word.
 */
function markedWords(text: string): string[] {
  const lines = text.split('\n');
  const marked: string[] = [];
  lines.forEach((line, i) => {
    if (i === 0 || !/^ *\^[ ^]*$/.test(line)) return;
    const above = lines[i - 1]!;
    for (const m of line.matchAll(/\^+/g)) {
      const start = m.index!;
      const end = start + m[0].length;
      expect(start === 0 || above[start - 1] === ' ', `a mark starts inside a word: ${above}`).toBe(true);
      expect(end === above.length || above[end] === ' ', `a mark ends inside a word: ${above}`).toBe(true);
      marked.push(above.slice(start, end));
    }
  });
  return marked;
}

describe.skipIf(SKIP !== '')(`inspect on a Mariner/EFLOW-style disk${SKIP}`, () => {
  it('lists one GRUB entry per slot, with its initramfs and the verity keys of its command line', async () => {
    const j = await inspectJson(mariner.raw);
    expect(j.bootEntries).toHaveLength(2);
    for (const [i, slot] of mariner.slots.entries()) {
      const boot = `#${slot.partitions.boot} "Boot${slot.name}"`;
      const e = j.bootEntries![i]!;
      expect(e).toMatchObject({
        loader: 'grub',
        where: `${boot}:/grub2/grub.cfg, menu entry "CBL-Mariner"`,
        title: 'CBL-Mariner',
        recovery: false,
        initrds: [`${boot}:/initrd.img-${mariner.kernelVersion}`],
      });
      expect(e.cmdline).toContain('selinux=1');
      expect(e.verityKeys).toEqual(
        expect.arrayContaining([
          `root=verityroot:PARTUUID=${slot.rootPartUuid}`,
          'rd.verityroot.hashtree=/verity-verity_root_fs.hashtree',
          'rd.verityroot.roothashfile=/verity-verity_root_fs.roothash',
          'rd.verityroot.devicename=verity-verity_root_fs',
        ]),
      );
      for (const other of ['selinux=1', 'security=selinux', 'console=ttyS0', 'rd.auto=1']) expect(e.verityKeys).not.toContain(other);
    }
  });

  it('reports the targets verify IMAGE checks: same names, devices and root hashes', async () => {
    for (const image of [mariner.raw, mariner.vhdx]) {
      const j = await inspectJson(image);
      expect(inspectedTargets(j)).toEqual(await verifiedTargets(image));
      expect(j.targets!.map((t) => t.rootHash!.hex)).toEqual(mariner.slots.map((s) => s.rootHash));
      expect(j.targets![0]).toMatchObject({
        data: { partition: 3, path: `${image}::3` },
        hash: { partition: null, file: `initramfs file /verity-verity_root_fs.hashtree in #2 "BootA":/initrd.img-${mariner.kernelVersion}` },
        hashOffset: 0,
        rootHash: { signature: null },
      });
      expect(j.unresolved).toEqual([]);
      expect(j.searched.join('\n')).toMatch(/GRUB configurations \(#1 "BootEFIA":\/boot\/grub2\/grub\.cfg, #4 "BootEFIB":\/boot\/grub2\/grub\.cfg\): 2 entries/);
    }
  });

  it('text: a block per entry, the verity keys marked with ^ and the other words not, then the targets', async () => {
    const r = await runCaptured(['inspect', mariner.raw]);
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout;
    expect(text).not.toMatch(/\x1b/);
    expect(text).toContain(`\n  [grub] "CBL-Mariner" in #2 "BootA":/grub2/grub.cfg\n    initrd #2 "BootA":/initrd.img-${mariner.kernelVersion}\n`);
    expect(text).toContain('\n  [grub] "CBL-Mariner" in #5 "BootB":/grub2/grub.cfg\n');
    // The command lines are wrapped at 100 columns, at word boundaries (none of these words is longer).
    const boot = text.slice(text.indexOf('\nBoot entries'), text.indexOf('\nTargets'));
    const cmdlineRows = boot.split('\n').filter((l) => l.startsWith('    ') && !l.startsWith('    initrd '));
    expect(cmdlineRows.length).toBeGreaterThan(4);
    for (const line of cmdlineRows) expect(line.length, line).toBeLessThanOrEqual(100);
    const marked = markedWords(text);
    const [a, b] = mariner.slots;
    for (const key of [`root=verityroot:PARTUUID=${a!.rootPartUuid}`, `root=verityroot:PARTUUID=${b!.rootPartUuid}`, 'rd.verityroot.hashtree=/verity-verity_root_fs.hashtree']) {
      expect(marked).toContain(key);
    }
    expect(text).toMatch(/ selinux=1 /);
    for (const other of ['selinux=1', 'security=selinux', 'console=ttyS0', 'lockdown=integrity']) expect(marked).not.toContain(other);
    expect(text).toContain('\nTargets (what `verity verify IMAGE` checks):\n');
    expect(text).toContain(`\n  verity-verity_root_fs on "RootFS A" (boot-entry): data ${mariner.raw}::3, hash initramfs file /verity-verity_root_fs.hashtree in #2 "BootA"`);
    expect(text).toContain(`root hash ${a!.rootHash} (claimed, not checked) from initramfs file /verity-verity_root_fs.roothash`);
  });

  it('on a terminal the keys are bold and coloured instead (no ^ lines); NO_COLOR turns that off', async () => {
    const onTerminal = async () => {
      let stdout = '';
      const code = await runCli(['inspect', mariner.raw], {
        stdout: { isTTY: true, write: (t: string) => (stdout += t) },
        stderr: { isTTY: false, write: () => true },
      });
      expect(code).toBe(0);
      return stdout;
    };
    vi.stubEnv('NO_COLOR', '');
    vi.stubEnv('TERM', 'xterm-256color');
    try {
      const coloured = await onTerminal();
      expect(markedWords(coloured)).toEqual([]);
      const key = `root=verityroot:PARTUUID=${mariner.slots[0]!.rootPartUuid}`;
      expect(coloured).toContain(`\x1b[1;33m${key}\x1b[0m`);
      expect(coloured).toMatch(/ selinux=1 /);
      expect(coloured).not.toMatch(/\x1b\[[0-9;]*m(?:selinux=1|console=ttyS0)/);
      vi.stubEnv('NO_COLOR', '1');
      const plain = await onTerminal();
      expect(plain).not.toMatch(/\x1b/);
      expect(markedWords(plain)).toContain(key);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('a volume that is no GPT disk has no boot entries or targets in its report', async () => {
    const j = await inspectJson(mariner.slots[0]!.rootfs);
    expect(j).toMatchObject({ bootEntries: null, targets: null, unresolved: [], searched: [], skipped: [] });
    expect((await runCaptured(['inspect', mariner.slots[0]!.rootfs])).stdout).not.toMatch(/Boot entries|Targets/);
  });
});

describe.skipIf(SKIP !== '')(`inspect on Azure Linux image-customizer disks${SKIP}`, () => {
  it('a BLS entry: the systemd keys marked, its target the one verify checks', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-bls'), { boot: 'bls', idType: 'partlabel' });
    const j = await inspectJson(azl.raw);
    expect(j.bootEntries).toEqual([
      {
        loader: 'bls',
        where: '#2 "boot":/loader/entries/azl-6.6.47.1-1.azl3.conf',
        title: 'Azure Linux',
        cmdline: azl.cmdline,
        recovery: false,
        initrds: ['#2 "boot":/initramfs-6.6.47.1-1.azl3.img'],
        verityKeys: [
          'rd.systemd.verity=1',
          `roothash=${azl.rootHash}`,
          'systemd.verity_root_data=PARTLABEL=root',
          'systemd.verity_root_hash=PARTLABEL=roothash',
          'systemd.verity_root_options=panic-on-corruption',
        ],
      },
    ]);
    expect(inspectedTargets(j)).toEqual(await verifiedTargets(azl.raw));
    expect(j.targets![0]).toMatchObject({ name: 'root', data: { partition: 3 }, hash: { partition: 4, file: null }, rootHash: { hex: azl.rootHash } });
    const text = (await runCaptured(['inspect', azl.raw])).stdout;
    expect(text).toContain('\n  [bls] "Azure Linux" in #2 "boot":/loader/entries/azl-6.6.47.1-1.azl3.conf\n');
    const marked = markedWords(text);
    expect(marked).toEqual(j.bootEntries![0]!.verityKeys);
    expect(text).toContain(' root=/dev/mapper/root ');
  });

  it('rd.systemd.verity=0 is marked and says why the targets come from the superblock instead; a recovery entry is listed, not used', async () => {
    const azl = buildCustomizerDisk(join(work, 'azl-off'), {
      cmdline: 'verity-off',
      extraGrub: (cmdline) =>
        ['menuentry "Azure Linux (recovery mode)" {', `\tlinux /vmlinuz-6.6.47.1-1.azl3 ${cmdline.replace('rd.systemd.verity=0', 'rd.systemd.verity=1')} single`, '}'].join(
          '\n',
        ),
    });
    const j = await inspectJson(azl.raw);
    expect(j.bootEntries!.map((e) => [e.title, e.recovery])).toEqual([
      ['Azure Linux', false],
      ['Azure Linux (recovery mode)', true],
    ]);
    expect(j.bootEntries![0]!.verityKeys).toEqual(['rd.systemd.verity=0']);
    expect(j.bootEntries![1]!.verityKeys).toContain(`roothash=${azl.rootHash}`);
    expect(j.skipped.join('\n')).toMatch(/rd\.systemd\.verity=0 turns systemd's verity generator off/);
    expect(inspectedTargets(j)).toEqual(await verifiedTargets(azl.raw));
    expect(j.targets).toMatchObject([{ via: 'superblock-partition', rootHash: null }]);
    const text = (await runCaptured(['inspect', azl.raw])).stdout;
    expect(markedWords(text)).toContain('rd.systemd.verity=0');
    expect(text).toContain('"Azure Linux (recovery mode)" in #2 "boot":/grub2/grub.cfg (a recovery entry: not a source of targets)');
    expect(text).toContain('no root hash declared: verify checks the tree against its own top block');
  });
});

describe.skipIf(UKI_SKIP !== '')(`inspect on an Azure Linux OS Guard-style disk${UKI_SKIP}`, () => {
  it('a UKI with its add-on: the usr keys marked, the target and its signature as verify finds them', async () => {
    const disk = buildOsGuardDisk(join(work, 'osguard'));
    const j = await inspectJson(disk.raw);
    expect(j.bootEntries).toHaveLength(1);
    expect(j.bootEntries![0]).toMatchObject({
      loader: 'uki',
      where: '#1 "esp":/EFI/Linux/azl.efi with add-on /EFI/Linux/azl.efi.extra.d/verity.addon.efi',
      initrds: [],
      verityKeys: [
        `usrhash=${disk.usrHash}`,
        expect.stringMatching(/^systemd\.verity_usr_data=UUID=/),
        expect.stringMatching(/^systemd\.verity_usr_hash=UUID=/),
        'systemd.verity_usr_options=root-hash-signature=/boot/usr.hash.sig',
      ],
    });
    expect(inspectedTargets(j)).toEqual(await verifiedTargets(disk.raw));
    expect(j.targets![0]!.rootHash).toEqual({
      hex: disk.usrHash,
      from: expect.stringContaining('verity.addon.efi'),
      signature: 'a signature in #2 "boot-a":/usr.hash.sig (/boot/usr.hash.sig on the running system)',
    });
    const text = (await runCaptured(['inspect', disk.raw])).stdout;
    expect(text).toContain('\n  [uki] "azl.efi" in #1 "esp":/EFI/Linux/azl.efi with add-on /EFI/Linux/azl.efi.extra.d/verity.addon.efi\n');
    expect(markedWords(text)).toEqual(j.bootEntries![0]!.verityKeys);
  });
});
