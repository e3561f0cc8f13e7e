/**
 * UKIs on an ESP: real ones made with objcopy from systemd's EFI stub (Debian package systemd-boot-efi), with
 * add-ons made the same way, and multi-profile or damaged ones from test/fixtures/boot/pe-writer.ts. The command line
 * is the UKI's, then the global add-ons', then the UKI's own add-ons', each set in name order, as systemd-stub builds
 * it; the verity keys on it are then read like any other command line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verityTargetsFromCmdline } from '../../src/boot/cmdline.js';
import { mangleCmdline, parseOsRelease, readUkis } from '../../src/boot/uki.js';
import { VerityError } from '../../src/errors.js';
import { buildPe } from '../fixtures/boot/pe-writer.js';
import { MemoryVolume } from '../support/memory-volume.js';
import { findTool } from '../support/tools.js';

const OBJCOPY = findTool('objcopy', '/usr/bin/objcopy');
const STUB = ['/usr/lib/systemd/boot/efi/linuxx64.efi.stub', '/lib/systemd/boot/efi/linuxx64.efi.stub'].find((p) => existsSync(p)) ?? null;
const skipReason =
  OBJCOPY && STUB ? '' : ` [SKIPPED: ${[!OBJCOPY && 'objcopy (binutils)', !STUB && 'linuxx64.efi.stub (systemd-boot-efi)'].filter(Boolean).join(', ')} not installed]`;
const dir = mkdtempSync(join(tmpdir(), 'uki-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ROOT_HASH = '5a2d581eeb6339d0382c8241290ab5e6108c4614c9c90752dfc072aa77fa8411';
let serial = 0;

/** A PE image made from systemd's stub with the given sections added, as ukify and the UKI how-tos do with objcopy. */
function stubWith(sections: Record<string, string | Uint8Array>): Uint8Array {
  const args: string[] = [];
  let vma = 0x30000;
  for (const [name, data] of Object.entries(sections)) {
    const file = join(dir, `s${serial++}`);
    writeFileSync(file, data);
    args.push('--add-section', `${name}=${file}`, '--change-section-vma', `${name}=0x${vma.toString(16)}`);
    vma += 0x10000;
  }
  const out = join(dir, `o${serial++}.efi`);
  const r = spawnSync(OBJCOPY!, [...args, STUB!, out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`objcopy failed: ${r.stderr}`);
  return new Uint8Array(readFileSync(out));
}

describe('mangleCmdline and parseOsRelease', () => {
  it('cuts at the first NUL, turns control characters into spaces, trims spaces', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(mangleCmdline(enc('  ro quiet\0\0garbage'))).toBe('ro quiet');
    expect(mangleCmdline(enc('a\nb\tc\r\n  '))).toBe('a b c');
    expect(mangleCmdline(enc(''))).toBe('');
  });

  it('reads os-release values, quoted or not', () => {
    expect(parseOsRelease('# c\nID=fedora\nPRETTY_NAME="Fedora \\"40\\""\nNAME=\'x y\'\nbad line\nVERSION_ID=40 \n')).toEqual({
      ID: 'fedora',
      PRETTY_NAME: 'Fedora "40"',
      NAME: 'x y',
      VERSION_ID: '40',
    });
  });
});

describe(`UKIs made with objcopy from systemd's stub${skipReason}`, () => {
  it.skipIf(!OBJCOPY || !STUB)('give title, cmdline with global then own add-ons in name order, and the verity keys on it', async () => {
    const uki = stubWith({
      '.osrel': 'ID=azurelinux\nVERSION_ID=3.0\nPRETTY_NAME="Azure Linux 3.0"\n',
      '.uname': '6.6.57.1-2.azl3\n',
      '.cmdline': `root=/dev/mapper/root roothash=${ROOT_HASH} ro\n\0\0`,
    });
    const esp = new MemoryVolume({
      '/EFI/Linux/azl.efi': uki,
      '/EFI/Linux/azl.efi.extra.d/20-debug.addon.efi': stubWith({ '.cmdline': 'systemd.log_level=debug\0' }),
      '/EFI/Linux/azl.efi.extra.d/10-console.addon.efi': stubWith({ '.cmdline': ' console=ttyS0 ' }),
      '/EFI/Linux/azl.efi.extra.d/ignored.efi': stubWith({ '.cmdline': 'not an add-on' }),
      '/EFI/Linux/azl.efi.extra.d/my.cred': 'a credential',
      '/loader/addons/verity.addon.efi': stubWith({ '.cmdline': 'systemd.verity_root_options=panic-on-corruption' }),
      '/EFI/Linux/.hidden.efi': 'skipped: hidden',
    });
    const { entries, problems } = await readUkis(esp);
    expect(problems).toEqual([]);
    expect(entries).toHaveLength(1);
    const e = entries[0]!;
    expect(e).toMatchObject({
      path: '/EFI/Linux/azl.efi',
      id: 'azl',
      title: 'Azure Linux 3.0',
      sortKey: 'azurelinux',
      version: '3.0',
      uname: '6.6.57.1-2.azl3',
      profile: null,
      ukiCmdline: `root=/dev/mapper/root roothash=${ROOT_HASH} ro`,
    });
    expect(e.addons.map((a) => a.path)).toEqual([
      '/loader/addons/verity.addon.efi',
      '/EFI/Linux/azl.efi.extra.d/10-console.addon.efi',
      '/EFI/Linux/azl.efi.extra.d/20-debug.addon.efi',
    ]);
    expect(e.cmdline).toBe(
      `root=/dev/mapper/root roothash=${ROOT_HASH} ro systemd.verity_root_options=panic-on-corruption console=ttyS0 systemd.log_level=debug`,
    );
    expect(e.sections).toEqual(expect.arrayContaining(['.text', '.sbat', '.osrel', '.uname', '.cmdline']));
    const verity = verityTargetsFromCmdline(e.cmdline);
    expect(verity.problems).toEqual([]);
    expect(verity.targets[0]).toMatchObject({
      style: 'systemd',
      name: 'root',
      data: { kind: 'partuuid', value: '5a2d581e-eb63-39d0-382c-8241290ab5e6', derivedFromRootHash: 'first-128-bits' },
      hash: { kind: 'partuuid', value: '108c4614-c9c9-0752-dfc0-72aa77fa8411', derivedFromRootHash: 'last-128-bits' },
      errorBehaviour: 'panic',
    });
  });

  it.skipIf(!OBJCOPY || !STUB)('sorts several UKIs as systemd-boot does, newest version first', async () => {
    const make = (v: string) => stubWith({ '.osrel': `ID=os\nVERSION_ID=${v}\n`, '.cmdline': `v=${v}` });
    const esp = new MemoryVolume({
      '/EFI/Linux/os-1.9.efi': make('1.9'),
      '/EFI/Linux/os-1.10.efi': make('1.10'),
      '/EFI/Linux/os-1.2+0-3.efi': make('1.2'),
      '/EFI/Linux/plain.efi': stubWith({ '.cmdline': 'no osrel' }),
    });
    const { entries } = await readUkis(esp);
    expect(entries.map((e) => [e.id, e.title])).toEqual([
      ['os-1.10', 'os'],
      ['os-1.9', 'os'],
      ['plain', 'plain.efi'],
      ['os-1.2', 'os'],
    ]);
  });
});

describe('UKIs from pe-writer', () => {
  it('gives one entry per profile of a multi-profile UKI, each with its own command line', async () => {
    const uki = buildPe([
      { name: '.osrel', data: 'ID=x\nPRETTY_NAME="X OS"\n' },
      { name: '.cmdline', data: 'base' },
      { name: '.linux', data: new Uint8Array(64) },
      { name: '.profile', data: 'ID=default\n' },
      { name: '.profile', data: 'ID=rescue\nTITLE=Rescue shell\n' },
      { name: '.cmdline', data: 'base systemd.unit=rescue.target' },
    ]);
    const { entries } = await readUkis(new MemoryVolume({ '/EFI/Linux/x.efi': uki }));
    expect(entries.map((e) => [e.title, e.profile, e.cmdline])).toEqual([
      ['X OS', { index: 0, id: 'default' }, 'base'],
      ['X OS (Rescue shell)', { index: 1, id: 'rescue', title: 'Rescue shell' }, 'base systemd.unit=rescue.target'],
    ]);
  });

  it('reports a UKI without .cmdline, and damaged UKIs and add-ons, and lists the rest', async () => {
    const good = buildPe([{ name: '.cmdline', data: 'ok' }]);
    const damaged = good.slice();
    new DataView(damaged.buffer).setUint16(0x80 + 6, 0xffff, true);
    const esp = new MemoryVolume({
      '/EFI/Linux/a-good.efi': good,
      '/EFI/Linux/a-good.efi.extra.d/bad.addon.efi': damaged,
      '/EFI/Linux/b-damaged.efi': damaged,
      '/EFI/Linux/c-not-pe.efi': 'text',
      '/EFI/Linux/d-no-cmdline.efi': buildPe([{ name: '.osrel', data: 'ID=d\n' }]),
      '/EFI/Linux/subdir.efi/x': 'a directory named .efi',
    });
    const { entries, problems } = await readUkis(esp);
    expect(entries.map((e) => [e.path, e.cmdline, e.ukiCmdline])).toEqual([
      ['/EFI/Linux/d-no-cmdline.efi', '', null],
      ['/EFI/Linux/a-good.efi', 'ok', 'ok'],
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/^\/EFI\/Linux\/a-good\.efi\.extra\.d\/bad\.addon\.efi: .*declares 65535 sections.* The add-on is left out\.$/),
      expect.stringMatching(/^\/EFI\/Linux\/b-damaged\.efi: .*declares 65535 sections/),
      expect.stringMatching(/^\/EFI\/Linux\/c-not-pe\.efi: .*too small for a PE image/),
      '/EFI/Linux/d-no-cmdline.efi has no .cmdline: the kernel gets the boot loader\'s options, which are not known here.',
    ]);
  });

  it('gives nothing for an ESP without /EFI/Linux, and reads only the section headers and text sections of a large UKI', async () => {
    expect(await readUkis(new MemoryVolume({}))).toEqual({ entries: [], problems: [] });
    const big = buildPe([{ name: '.cmdline', data: 'x' }, { name: '.linux', data: new Uint8Array(8 << 20) }]);
    const vol = new MemoryVolume({ '/EFI/Linux/big.efi': big });
    const { entries } = await readUkis(vol);
    expect(entries[0]!.cmdline).toBe('x');
    // The kernel section is never read: only open() is used, not readFile().
    expect(vol.reads.filter((p) => p === '/EFI/Linux/big.efi')).toEqual(['/EFI/Linux/big.efi']);
  });

  it('reports directories the filesystem cannot read, and lists the UKIs it can', async () => {
    const esp = new MemoryVolume({ '/EFI/Linux/a.efi': buildPe([{ name: '.cmdline', data: 'a' }]), '/loader/addons/x.addon.efi': 'x' });
    const list = esp.list.bind(esp);
    esp.list = async (path) => {
      if (path !== '/EFI/Linux') throw new VerityError('E_BAD_IMAGE', `${path} is corrupt.`);
      return list(path);
    };
    const { entries, problems } = await readUkis(esp);
    expect(entries.map((e) => e.cmdline)).toEqual(['a']);
    expect(problems).toEqual(['/loader/addons: /loader/addons is corrupt.', '/EFI/Linux/a.efi.extra.d: /EFI/Linux/a.efi.extra.d is corrupt.']);
  });

  it('refuses a .cmdline larger than 64 KiB as a problem', async () => {
    const esp = new MemoryVolume({ '/EFI/Linux/huge.efi': buildPe([{ name: '.cmdline', data: 'x', virtualSize: 1 << 20 }]) });
    const { entries, problems } = await readUkis(esp);
    expect(entries).toEqual([]);
    expect(problems).toEqual([expect.stringMatching(/huge\.efi: PE section ".cmdline" is 1048576 bytes; at most 65536 are read\./)]);
  });
});
