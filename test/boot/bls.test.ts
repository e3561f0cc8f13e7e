/**
 * Boot Loader Specification type #1 entries and systemd-boot's order. Version comparison is checked against
 * `systemd-analyze compare-versions` (systemd's own strverscmp_improved) on the examples of the UAPI Version Format
 * Specification and on random version strings.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compareBootEntries, compareVersions, parseBlsEntry, readBlsEntries, type SortableEntry } from '../../src/boot/bls.js';
import { VerityError } from '../../src/errors.js';
import { MemoryVolume, volumeFromDir } from '../support/memory-volume.js';
import { Rng } from '../support/rng.js';
import { findTool } from '../support/tools.js';

const ANALYZE = findTool('systemd-analyze', '/usr/bin/systemd-analyze');
/** systemd-analyze compare-versions appeared in systemd 252. */
const canCompare = ANALYZE !== null && spawnSync(ANALYZE, ['compare-versions', '1', '2'], { encoding: 'utf8' }).stdout.includes('<');
const skipReason = canCompare ? '' : ' [SKIPPED: systemd-analyze compare-versions (systemd >= 252) not available]';

const sign = (n: number) => Math.sign(n) || 0;

/** systemd's answer for many pairs at once: one process per pair is slow, so a shell loop prints them all. */
function systemdCompare(pairs: Array<[string, string]>): number[] {
  const script = 'while IFS= read -r a && IFS= read -r b; do systemd-analyze compare-versions -- "$a" "$b" >/dev/null; echo $?; done';
  const input = pairs.map(([a, b]) => `${a}\n${b}\n`).join('');
  const r = spawnSync('sh', ['-c', script], { input, encoding: 'utf8', env: { ...process.env, PATH: `${ANALYZE!.replace(/\/[^/]*$/, '')}:${process.env.PATH}` } });
  // Exit status: 0 equal, 11 greater, 12 less (systemd-analyze(1)).
  return r.stdout.trim().split('\n').map((s) => ({ '0': 0, '11': 1, '12': -1 })[s] ?? Number.NaN);
}

describe('parseBlsEntry', () => {
  it('reads keys, repeated initrd and options lines, comments and quotes', () => {
    const e = parseBlsEntry(
      [
        '# a comment',
        'title   Fedora Linux (6.9.7) 40',
        'version 6.9.7-200.fc40.x86_64',
        'machine-id 5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70',
        'sort-key fedora',
        'linux /vmlinuz-6.9.7',
        'initrd /intel-ucode.img',
        'initrd /initramfs-6.9.7.img /extra.img',
        'options root=UUID=1 ro',
        '  options   quiet  ',
        'options "rhgb"',
        'architecture x64',
        'devicetree /dtb',
        'unknown-key whatever',
        'efi /EFI/Linux/x.efi',
        '',
      ].join('\r\n'),
      'fedora-6.9.7+3-1.conf',
    );
    expect(e).toEqual({
      id: 'fedora-6.9.7',
      fileName: 'fedora-6.9.7+3-1.conf',
      triesLeft: 3,
      triesDone: 1,
      title: 'Fedora Linux (6.9.7) 40',
      version: '6.9.7-200.fc40.x86_64',
      machineId: '5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70',
      sortKey: 'fedora',
      linux: '/vmlinuz-6.9.7',
      initrds: ['/intel-ucode.img', '/initramfs-6.9.7.img', '/extra.img'],
      options: 'root=UUID=1 ro quiet rhgb',
      architecture: 'x64',
      devicetree: '/dtb',
      efi: '/EFI/Linux/x.efi',
    });
    expect(parseBlsEntry('title x', 'a+5.conf')).toMatchObject({ id: 'a', triesLeft: 5, triesDone: 0 });
    expect(parseBlsEntry(new TextEncoder().encode('linux /k'), 'plain.conf')).toEqual({ id: 'plain', fileName: 'plain.conf', linux: '/k', initrds: [], options: '' });
  });
});

describe('compareVersions (UAPI Version Format Specification)', () => {
  const examples: Array<[string, string, number]> = [
    ['11', '9', 1], ['1.0', '1.0', 0], ['1.0~rc1', '1.0', -1], ['1.0', '1.0^post', -1], ['1.0-2', '1.0.1', -1],
    ['1.0-1', '1.0-2', -1], ['A', 'a', -1], ['a', 'b', -1], ['1.0a', '1.0', 1], ['0010', '10', 0], ['1..2', '1.2', -1],
    ['6.9.7-200.fc40.x86_64', '6.8.5-301.fc40.x86_64', 1], ['0-rescue-x', '6.8.5', -1], ['1_2', '1.2', 1], ['0B', 'rc', 1], ['0', 'r', 1], ['', '0', -1],
    ['', '~', 1], ['-', '-^a', 1], ['1-', '1', 1], ['1.0~rc1', '1.0~rc2', -1], ['a1', 'a', 1], ['1a', '1b', -1], ['1', 'a', 1],
  ];

  it('orders the examples', () => {
    for (const [a, b, want] of examples) {
      expect(sign(compareVersions(a, b)), `${a} vs ${b}`).toBe(want);
      expect(sign(compareVersions(b, a)), `${b} vs ${a}`).toBe(-want || 0);
    }
  });

  it.skipIf(!canCompare)(`agrees with systemd-analyze compare-versions on the examples and 150 random versions${skipReason}`, () => {
    const rng = new Rng(3);
    const pieces = ['0', '1', '9', '10', '007', 'a', 'B', 'rc', '.', '-', '~', '^', '_', '+', 'x86_64', 'fc40'];
    const random = () => Array.from({ length: rng.int(1, 6) }, () => rng.pick(pieces)).join('');
    const pairs: Array<[string, string]> = [
      ...examples.filter(([a, b]) => a !== '' && b !== '').map(([a, b]) => [a, b] as [string, string]),
      ...Array.from({ length: 150 }, () => [random(), random()] as [string, string]),
    ];
    const theirs = systemdCompare(pairs);
    pairs.forEach(([a, b], i) => expect(sign(compareVersions(a, b)), `${a} vs ${b}`).toBe(theirs[i]));
  });
});

describe('compareBootEntries (systemd-boot menu order)', () => {
  it('puts sort-keyed entries first, groups by sort key and machine id, newest version first, then ids newest first', () => {
    const entries: SortableEntry[] = [
      { id: 'old-style-5.1' },
      { id: 'old-style-5.10' },
      { id: 'b-6.1', sortKey: 'fedora', version: '6.1' },
      { id: 'c-6.10', sortKey: 'fedora', version: '6.10' },
      { id: 'd', sortKey: 'arch', version: '1' },
      { id: 'e', sortKey: 'fedora', version: '6.10', machineId: '0' },
      { id: 'exhausted', sortKey: 'arch', version: '9', triesLeft: 0 },
      { id: 'f-6.1', sortKey: 'fedora', version: '6.1', triesLeft: 1 },
      { id: 'f-6.1', sortKey: 'fedora', version: '6.1', triesLeft: 3 },
    ];
    const order = [...entries].sort(compareBootEntries).map((e) => `${e.id}${e.triesLeft !== undefined ? `+${e.triesLeft}` : ''}`);
    expect(order).toEqual(['d', 'c-6.10', 'f-6.1+3', 'f-6.1+1', 'b-6.1', 'e', 'old-style-5.10', 'old-style-5.1', 'exhausted+0']);
  });
});

describe('readBlsEntries', () => {
  it('lists the entries of a Fedora /boot newest first, as systemd-boot and blscfg show them', async () => {
    const vol = volumeFromDir(fileURLToPath(new URL('../fixtures/boot/fedora-bls/boot', import.meta.url)));
    const { entries, problems } = await readBlsEntries(vol);
    expect(problems).toEqual([]);
    expect(entries.map((e) => e.version)).toEqual(['6.9.7-200.fc40.x86_64', '6.8.5-301.fc40.x86_64', '0-rescue-5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70']);
    expect(entries[1]!.options).toBe('$kernelopts');
    expect(entries[0]!.initrds).toEqual(['/initramfs-6.9.7-200.fc40.x86_64.img']);
  });

  it('skips non-.conf files and directories, reports an entry too large, and gives nothing for no directory', async () => {
    const vol = new MemoryVolume({
      '/loader/entries/a.conf': 'title A\nlinux /a',
      '/loader/entries/README': 'not an entry',
      '/loader/entries/dir.conf/x': 'a directory named .conf',
      '/loader/entries/huge.conf': `title H\n${'#'.repeat(70_000)}`,
    });
    const r = await readBlsEntries(vol);
    expect(r.entries.map((e) => e.id)).toEqual(['a']);
    expect(r.problems).toEqual([expect.stringMatching(/huge\.conf: .*more than the 65536 read/)]);
    expect(await readBlsEntries(new MemoryVolume({}))).toEqual({ entries: [], problems: [] });
    expect((await readBlsEntries(vol, '/loader/entries/')).entries).toHaveLength(1);
  });

  it('reports a directory the filesystem cannot read', async () => {
    const broken = new MemoryVolume({ '/loader/entries/a.conf': 'title A' });
    broken.list = async () => {
      throw new VerityError('E_BAD_IMAGE', 'directory block 7 is corrupt.');
    };
    expect(await readBlsEntries(broken)).toEqual({ entries: [], problems: ['/loader/entries: directory block 7 is corrupt.'] });
  });
});
