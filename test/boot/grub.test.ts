/**
 * The grub.cfg interpreter. The parser is checked against grub-script-check (GRUB's own parser, package
 * grub-common): on the fixtures and on snippets, valid and not, both must find the same syntax error on the same line.
 * The interpreter is checked on the fixture trees of test/fixtures/boot (CBL-Mariner, Azure Linux image customizer,
 * Debian grub-mkconfig, Fedora blscfg), end to end down to the verity targets of each entry's command line, then
 * construct by construct (quoting and expansion, contexts, menus, conditions, search, load_env, includes), then on
 * hostile input, which must end in a bounded result with its problem, never a hang or a stack overflow.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { verityTargetsFromCmdline } from '../../src/boot/cmdline.js';
import { grubLoaderCmdline, interpretGrubConfig, parseGrubScript, tokenizeGrubScript, type BootEntry, type GrubHost, type GrubOptions, type GrubResult, type SearchKind } from '../../src/boot/grub.js';
import { serializeGrubEnv } from '../../src/boot/grubenv.js';
import type { Volume } from '../../src/fs/volume.js';
import { MemoryVolume, volumeFromDir, type MemoryTree } from '../support/memory-volume.js';
import { findTool } from '../support/tools.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/boot/', import.meta.url));
const SCRIPT_CHECK = findTool('grub-script-check', '/usr/bin/grub-script-check');
const skipReason = SCRIPT_CHECK ? '' : ' [SKIPPED: grub-script-check not installed (apt package grub-common)]';
const dir = mkdtempSync(join(tmpdir(), 'grub-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A host over named volumes; `search` finds a volume by uuid or label, or by a file on it. */
function hostOf(volumes: Record<string, Volume>): GrubHost & { searches: Array<[SearchKind, string]> } {
  const searches: Array<[SearchKind, string]> = [];
  return {
    searches,
    openVolume: (d) => volumes[d] ?? null,
    async search(kind, value) {
      searches.push([kind, value]);
      for (const [id, v] of Object.entries(volumes)) {
        if (kind === 'fs-uuid' && v.uuid.toLowerCase() === value.toLowerCase()) return id;
        if (kind === 'label' && v.label === value) return id;
        if (kind === 'file' && (await v.open(value)) !== null) return id;
      }
      return null;
    },
  };
}

/** Interprets /grub.cfg of a one-volume disk ("d", uuid "u-d", label "L"). */
async function run(files: MemoryTree, options: GrubOptions = {}, extra: Record<string, Volume> = {}): Promise<GrubResult> {
  const d = new MemoryVolume(files, { uuid: 'u-d', label: 'L' });
  return interpretGrubConfig({ device: 'd', path: '/grub.cfg' }, hostOf({ d, ...extra }), options);
}

const kernels = (r: GrubResult) => r.entries.map((e) => [e.title, e.kernel.path, e.args]);
const messages = (r: GrubResult) => r.problems.map((p) => p.message);

function fixtureFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.cfg') && !name.startsWith('linux-')) out.push(p);
    }
  };
  walk(FIXTURES);
  return out.sort();
}

/** grub-script-check's verdict: the line of the first syntax error, or null. */
function scriptCheck(text: string): number | null {
  const file = join(dir, 'snippet.cfg');
  writeFileSync(file, text);
  const r = spawnSync(SCRIPT_CHECK!, [file], { encoding: 'utf8' });
  const m = /Syntax error at line (\d+)/.exec(`${r.stdout}${r.stderr}`);
  return m ? Number(m[1]) : null;
}

describe(`the parser, against grub-script-check${skipReason}`, () => {
  const snippets = [
    'menuentry x { }', 'if true; then fi', 'echo a || b', 'echo a && b', 'echo [[ x', 'echo x ]]', 'echo "$"', 'echo ${a-b}',
    "echo 'abc", 'echo "abc', 'if true then echo; fi', 'echo a; ; echo b', '{ echo a; }', 'echo a }', 'while true; do echo; done',
    'for x in a b; do echo $x; done', 'for 1x in a; do echo; done', 'echo $"hi $x"', 'echo \\\nb', 'echo a\\', 'x=1',
    'if true; then echo; elif false; then echo; else echo; fi', 'echo a >b', 'echo a <b', 'echo a&', 'echo a | b', 'echo fi', 'fi', 'then',
    'echo ${1}${#}${?}', 'echo $@ ${@} $* $10', 'echo "a\nb"', 'echo {', 'echo x{y', 'case x in', '!', 'echo \\x41',
    'menuentry x { echo }', 'menuentry x {\necho\n}', 'echo a;', ';', 'echo a\n;', 'echo ;;', 'if true; then\n\n echo\n\nfi',
    'menuentry "a" --class x {\n\tif [ -f /x ]; then\n\t\tlinux /x\n\tfi\n}', 'submenu s {\n menuentry t { linux /k; }\n}',
    'if x; then if y; then echo; fi; fi', 'if x; then echo; else fi', 'while x; do done', 'until x; do echo; done',
    'function f { echo; }\nf', 'function f\n{ echo; }\nf', 'function { echo; }', 'function f { function g { echo; }; }\nf',
    "echo 'a\nb'", 'echo "a\\"b"', "echo a'b'\"c\"$d", 'echo # comment', 'echo a#b', '# only a comment\necho', 'for x in; do echo; done',
    'echo $', 'echo $$', 'echo ${', 'echo ${a', 'echo ${}', 'echo $"a', 'echo \\$x', 'set a="b c"; echo $a', 'menuentry x y z {\n}',
  ];

  it.skipIf(!SCRIPT_CHECK)('finds the same syntax errors on the same lines, on the fixtures and on snippets', () => {
    const cases: Array<[string, string]> = [...fixtureFiles().map((f) => [f, readFileSync(f, 'utf8')] as [string, string]), ...snippets.map((s) => [s, `${s}\n`] as [string, string])];
    for (const [name, text] of cases) {
      const ours = parseGrubScript(text).error;
      expect(ours?.line ?? null, `${name}: ${ours?.message ?? 'no error'}`).toBe(scriptCheck(text));
    }
  });
});

describe('the lexer', () => {
  it('splits words and tokens, keeping quoting apart from text', () => {
    const toks = tokenizeGrubScript(`set a="x $y"'z'\\ w;echo\t\${b} \\x41 # c\nfi`);
    expect(toks.map((t) => t.t)).toEqual(['word', 'word', ';', 'word', 'word', 'word', 'nl', 'word', 'eof']);
    const second = toks[1]!;
    expect(second.t === 'word' && second.word.parts).toEqual([
      { k: 'text', v: 'a=', quoted: false },
      { k: 'text', v: 'x ', quoted: true },
      { k: 'var', name: 'y', quoted: true },
      { k: 'text', v: '', quoted: true },
      { k: 'text', v: 'z', quoted: true },
      { k: 'text', v: ' w', quoted: false },
    ]);
    const fi = toks[7]!;
    expect(fi.t === 'word' && fi.word.plain).toBe('fi');
    const hex = toks[5]!;
    expect(hex.t === 'word' && hex.word.parts).toEqual([{ k: 'text', v: '\\x41', quoted: false }]);
  });

  it('ends in a bad token on an unterminated quote, with its line, keeping the tokens before', () => {
    const toks = tokenizeGrubScript("echo a\necho 'b\nc");
    // Reported on the last line, where GRUB finds it missing.
    expect(toks.at(-1)).toEqual({ t: 'bad', message: 'a single quote is not closed', line: 3 });
    expect(toks.filter((t) => t.t === 'word')).toHaveLength(3);
  });
});

describe('grubLoaderCmdline (grub-core/lib/cmdline.c)', () => {
  it('quotes arguments with spaces and escapes backslashes and quotes, keeping \\xHH', () => {
    expect(grubLoaderCmdline(['/k', 'a b', 'q"x', "it's", 'c\\d', '\\x41', 'rd.x=/var /etc'])).toBe(
      '/k "a b" q\\"x it\\\'s c\\\\d \\x41 "rd.x=/var /etc"',
    );
  });
});

describe('the fixtures', () => {
  it('CBL-Mariner: ESP grub.cfg, configfile on /boot, load_env of mariner.cfg, and the verity root of its entry', async () => {
    const esp = volumeFromDir(join(FIXTURES, 'mariner/esp'), { kind: 'fat', uuid: '4A3B-91C2' });
    const boot = volumeFromDir(join(FIXTURES, 'mariner/boot'), { uuid: 'd743c898-7925-4d15-8029-f29e9a1d709a' });
    boot.add('/mariner.cfg', { symlink: 'linux-5.15.158.2-1.cm2.cfg' });
    const host = hostOf({ esp, boot });
    const r = await interpretGrubConfig({ device: 'esp', path: '/boot/grub2/grub.cfg' }, host);
    expect(r.problems).toEqual([]);
    expect(r.assumptions).toEqual([]);
    expect(r.entries).toHaveLength(1);
    const e = r.entries[0]!;
    expect(e).toMatchObject({
      title: 'CBL-Mariner',
      menuPath: [],
      source: { device: 'boot', path: '/grub2/grub.cfg' },
      kernel: { device: 'boot', path: '/vmlinuz-5.15.158.2-1.cm2' },
      initrds: [{ device: 'boot', path: '/initrd.img-5.15.158.2-1.cm2' }],
      recovery: false,
      missing: [],
    });
    expect(e.cmdline).toBe(
      'BOOT_IMAGE=/vmlinuz-5.15.158.2-1.cm2 rd.verityroot.devicename=verity_root_fs rd.verityroot.hashtree=/verity-verity_root_fs.hashtree ' +
        'rd.verityroot.roothashfile=/verity-verity_root_fs.roothash rd.verityroot.verityerrorhandling=restart rd.verityroot.validateonboot=false ' +
        '"rd.verityroot.overlays=/var /etc/wireguard" rd.verityroot.overlaysize=20% rd.verityroot.overlays_debug_mount=/mnt/verity_overlay_debug_tmpfs ' +
        'rd.verityroot.fecdata=/verity-verity_root_fs.fec rd.verityroot.fecroots=2 security=selinux selinux=1 rd.auto=1 ' +
        'root=verityroot:PARTUUID=1633ca6b-fbc0-45b7-b188-ad81ff737263 init=/lib/systemd/systemd ro loglevel=3 no-vmw-sta crashkernel=256M ' +
        'lockdown=integrity sysctl.kernel.unprivileged_bpf_disabled=1 net.ifnames=0 console=ttyS0,115200n8',
    );
    expect(host.searches).toEqual([['fs-uuid', 'd743c898-7925-4d15-8029-f29e9a1d709a']]);
    const verity = verityTargetsFromCmdline(e.cmdline);
    expect(verity.problems).toEqual([]);
    expect(verity.targets).toEqual([
      expect.objectContaining({
        style: 'mariner',
        name: 'verity_root_fs',
        data: { kind: 'partuuid', value: '1633ca6b-fbc0-45b7-b188-ad81ff737263', raw: 'PARTUUID=1633ca6b-fbc0-45b7-b188-ad81ff737263' },
        hash: { initramfsPath: '/verity-verity_root_fs.hashtree' },
        rootHash: { initramfsPath: '/verity-verity_root_fs.roothash' },
        fec: { device: { initramfsPath: '/verity-verity_root_fs.fec' }, roots: 2 },
      }),
    ]);
  });

  it('CBL-Mariner with /boot on the root filesystem, without its initrd and without mariner.cfg', async () => {
    const cfg = readFileSync(join(FIXTURES, 'mariner/boot/grub2/grub.cfg'), 'utf8').replace('set bootprefix=\n', 'set bootprefix=/boot\n');
    const files: MemoryTree = {
      '/boot/grub2/grub.cfg': cfg,
      '/boot/linux-5.15.cfg': readFileSync(join(FIXTURES, 'mariner/boot/linux-5.15.158.2-1.cm2.cfg')),
      '/boot/mariner.cfg': { symlink: 'linux-5.15.cfg' },
      '/boot/vmlinuz-5.15.158.2-1.cm2': 'k',
    };
    const root = new MemoryVolume(files, { uuid: 'd743c898-7925-4d15-8029-f29e9a1d709a' });
    const r = await interpretGrubConfig({ device: 'root', path: '/boot/grub2/grub.cfg' }, hostOf({ root }));
    expect(r.problems).toEqual([]);
    expect(r.entries[0]).toMatchObject({ kernel: { path: '/boot/vmlinuz-5.15.158.2-1.cm2' }, initrds: [] });
    delete files['/boot/mariner.cfg'];
    const without = await interpretGrubConfig({ device: 'root', path: '/boot/grub2/grub.cfg' }, hostOf({ root: new MemoryVolume(files, { uuid: root.uuid }) }));
    expect(messages(without)).toEqual(['load_env: environment block (root)/boot/mariner.cfg does not exist']);
    // $mariner_linux is empty: the kernel path is the directory, which does not name a kernel file.
    expect(without.entries[0]!.kernel).toEqual({ device: 'root', path: '/boot' });
    expect(without.entries[0]!.missing).toEqual([]);
  });

  it('Azure Linux image customizer: grub2-mkconfig menu through the ESP stub, $kernelopts from grubenv, systemd verity with hash-offset', async () => {
    const esp = volumeFromDir(join(FIXTURES, 'azl-customizer/esp'), { kind: 'fat', uuid: '4A3B-91C2' });
    const boot = volumeFromDir(join(FIXTURES, 'azl-customizer/boot'), { uuid: 'f90dec03-2667-47c8-9f01-e85b253ae298' });
    const r = await interpretGrubConfig({ device: 'esp', path: '/EFI/BOOT/grub.cfg' }, hostOf({ esp, boot }));
    expect(r.problems).toEqual([]);
    expect(r.entries.map((e) => [e.title, e.id, e.recovery, e.kernel.device, e.kernel.path, e.initrds.map((i) => i.path)])).toEqual([
      ['Azure Linux', 'gnulinux-simple-d9a9d02e-078f-450c-94af-9007a9f3bba1', false, 'boot', '/vmlinuz-6.6.57.1-2.azl3', ['/initramfs-6.6.57.1-2.azl3.img']],
      ['Azure Linux, with Linux 6.6.57.1-2.azl3 (recovery mode)', 'gnulinux-6.6.57.1-2.azl3-recovery-d9a9d02e-078f-450c-94af-9007a9f3bba1', true, 'boot', '/vmlinuz-6.6.57.1-2.azl3', ['/initramfs-6.6.57.1-2.azl3.img']],
    ]);
    expect(r.entries[0]!.args.at(-1)).toBe('systemd.log_level=info');
    for (const e of r.entries) {
      const v = verityTargetsFromCmdline(e.cmdline);
      expect(v.problems).toEqual([]);
      expect(v.targets).toEqual([
        expect.objectContaining({
          style: 'systemd',
          name: 'root',
          data: { kind: 'partuuid', value: 'd9a9d02e-078f-450c-94af-9007a9f3bba1', raw: 'PARTUUID=d9a9d02e-078f-450c-94af-9007a9f3bba1' },
          hash: { kind: 'partlabel', value: 'root-hash', raw: 'PARTLABEL=root-hash' },
          rootHash: { hex: 'c2bca389b1d4562accee487aa39662ad51ba27e193e02fac383a980dab517f06' },
          hashOffset: 2147483648,
          errorBehaviour: 'panic',
        }),
      ]);
    }
  });

  it('Azure Linux with verity on /usr', async () => {
    const boot = volumeFromDir(join(FIXTURES, 'azl-usr/boot'), { uuid: 'f90dec03-2667-47c8-9f01-e85b253ae298' });
    const r = await interpretGrubConfig({ device: 'boot', path: '/grub2/grub.cfg' }, hostOf({ boot }));
    expect(r.problems).toEqual([]);
    const v = verityTargetsFromCmdline(r.entries[0]!.cmdline);
    expect(v.targets.map((t) => [t.name, t.data, t.hash, t.errorBehaviour])).toEqual([
      ['usr', { kind: 'partlabel', value: 'usr', raw: 'PARTLABEL=usr' }, { kind: 'partlabel', value: 'usr-hash', raw: 'PARTLABEL=usr-hash' }, 'restart'],
    ]);
  });

  it('Debian grub-mkconfig: functions, an undecidable loadfont, a submenu with a recovery entry, no entry for firmware setup', async () => {
    const root = volumeFromDir(join(FIXTURES, 'debian-mkconfig'), { uuid: 'b33166ed-588d-4ece-af2a-2100f9d2a061' });
    const r = await interpretGrubConfig({ device: 'root', path: '/boot/grub/grub.cfg' }, hostOf({ root }));
    expect(r.problems).toEqual([]);
    expect(r.entries.map((e) => [e.menuPath, e.title, e.recovery, e.id])).toEqual([
      [[], 'Debian GNU/Linux', false, 'gnulinux-simple-b33166ed-588d-4ece-af2a-2100f9d2a061'],
      [['Advanced options for Debian GNU/Linux'], 'Debian GNU/Linux, with Linux 6.1.0-28-amd64', false, 'gnulinux-6.1.0-28-amd64-advanced-b33166ed-588d-4ece-af2a-2100f9d2a061'],
      [['Advanced options for Debian GNU/Linux'], 'Debian GNU/Linux, with Linux 6.1.0-28-amd64 (recovery mode)', true, 'gnulinux-6.1.0-28-amd64-recovery-b33166ed-588d-4ece-af2a-2100f9d2a061'],
    ]);
    expect(r.entries[0]!.cmdline).toBe('BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=b33166ed-588d-4ece-af2a-2100f9d2a061 ro quiet');
    expect(r.entries[2]!.args).toEqual(['root=UUID=b33166ed-588d-4ece-af2a-2100f9d2a061', 'ro', 'single']);
    expect(r.assumptions.map((a) => [a.line, a.message])).toEqual([[67, expect.stringMatching(/^"loadfont \$font" cannot be decided here; took the then branch/)]]);
    expect(verityTargetsFromCmdline(r.entries[0]!.cmdline).targets).toEqual([]);
  });

  it('Fedora blscfg: an entry per BLS file, newest first, $kernelopts from grubenv expanded', async () => {
    const boot = volumeFromDir(join(FIXTURES, 'fedora-bls/boot'), { uuid: '9529aa47-78ff-4e47-969d-849e10ae4383' });
    const r = await interpretGrubConfig({ device: 'boot', path: '/grub2/grub.cfg' }, hostOf({ boot }));
    expect(r.problems).toEqual([]);
    expect(r.entries.map((e) => [e.title, e.kernel.path, e.recovery, e.source.path])).toEqual([
      ['Fedora Linux (6.9.7-200.fc40.x86_64) 40 (Forty)', '/vmlinuz-6.9.7-200.fc40.x86_64', false, '/loader/entries/5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70-6.9.7-200.fc40.x86_64.conf'],
      ['Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Forty)', '/vmlinuz-6.8.5-301.fc40.x86_64', false, '/loader/entries/5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70-6.8.5-301.fc40.x86_64.conf'],
      ['Fedora Linux (0-rescue-5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70) 40 (Forty)', '/vmlinuz-0-rescue-5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70', true, '/loader/entries/5c1ea4e1f0e94c5f8e1e6a4a1f5d0e70-0-rescue.conf'],
    ]);
    expect(r.entries[1]!.args).toEqual(['root=UUID=c1f9088a-a5b4-472d-92e0-367092096bc6', 'ro', 'crashkernel=auto', 'resume=UUID=c1f9088a-a5b4-472d-92e0-367092096bc6']);
    expect(r.entries[1]!.cmdline.startsWith('BOOT_IMAGE=(boot)/vmlinuz-6.8.5-301.fc40.x86_64 root=UUID=')).toBe(true);
    expect(r.entries.every((e) => e.missing.length === 0 && e.initrds.length === 1)).toBe(true);
  });
});

describe('expansion and quoting', () => {
  it('splits unquoted variables, keeps quoted ones whole, drops empty unquoted words, keeps ""', async () => {
    const r = await run({
      '/grub.cfg': 'set a="x  y"\nset b=\nmenuentry t { linux /k $a "$a" "" $b z$b "w$b" ${a}v \'$a\' \\$a }',
    });
    expect(kernels(r)).toEqual([['t', '/k', ['x', 'y', 'x  y', '', 'z', 'w', 'x', 'yv', '$a', '$a']]]);
    expect(r.entries[0]!.cmdline).toBe('BOOT_IMAGE=/k x y "x  y"  z w x yv $a $a');
  });

  it('evaluates an entry when booted: with the variables at the end of its file, its title and arguments as $1…', async () => {
    const r = await run({ '/grub.cfg': "menuentry 'T' x --class c y { linux /k $v $1 $2 $3 $# \"$@\" }\nset v=late" });
    expect(kernels(r)).toEqual([['T', '/k', ['late', 'T', 'x', 'y', '3', 'T', 'x', 'y']]]);
  });

  it('keeps each entry to itself: a variable one entry sets is not seen by the next', async () => {
    const r = await run({ '/grub.cfg': 'menuentry a { set v=1; linux /a $v }\nmenuentry b { linux /b $v }' });
    expect(kernels(r)).toEqual([['a', '/a', ['1']], ['b', '/b', []]]);
  });

  it('reads menuentry options: --id, --class, --unrestricted, --users, and a title after them', async () => {
    const r = await run({ '/grub.cfg': "menuentry --class a --unrestricted --users root 'Title' --id=the-id { linux /k }" });
    expect(r.entries[0]).toMatchObject({ title: 'Title', id: 'the-id' });
  });

  it('sets root without parentheses, resolves (device)/path and .., and refuses relative paths', async () => {
    const other = new MemoryVolume({ '/k': 'x' });
    const r = await run(
      { '/grub.cfg': 'menuentry a { set root=(o); linux /x/../k }\nmenuentry b { linux (o)/k; initrd ()/i --newc:name:/j }\nmenuentry c { linux k }' },
      {},
      { o: other },
    );
    expect(r.entries.map((e) => [e.title, e.kernel, e.initrds, e.missing])).toEqual([
      ['a', { device: 'o', path: '/k' }, [], []],
      ['b', { device: 'o', path: '/k' }, [{ device: 'd', path: '/i' }, { device: 'd', path: '/j' }], [{ device: 'd', path: '/i' }, { device: 'd', path: '/j' }]],
    ]);
    expect(messages(r)).toEqual(['linux: "k" is not an absolute file name']);
  });

  it('reports a linux outside any entry as an entry with no title, and an initrd before any linux', async () => {
    const r = await run({ '/grub.cfg': 'initrd /i\nlinux /k a\ninitrd /i\nboot' });
    expect(kernels(r)).toEqual([['', '/k', ['a']]]);
    expect(messages(r)).toEqual(['initrd before any linux: GRUB refuses it ("you need to load the kernel first")']);
  });
});

describe('contexts and menus', () => {
  it('configfile opens a context with the exported variables only, whose changes end with it', async () => {
    const r = await run({
      '/grub.cfg': 'set a=1\nset b=2\nexport b\nconfigfile /sub.cfg\nmenuentry outer { linux /o $a $b $c }',
      '/sub.cfg': 'set c=3\nset b=changed\nset seen=$config_file\nexport seen\nmenuentry inner { linux /i "$a" $b $c $config_file }\nmenuentry seen { linux /s $seen $config_directory }',
    });
    expect(kernels(r)).toEqual([
      // config_file names the file while it runs; entries run later, when it names the outer one again.
      ['inner', '/i', ['', 'changed', '3', '(d)/grub.cfg']],
      ['seen', '/s', ['/sub.cfg', '(d)']],
      ['outer', '/o', ['1', '2']],
    ]);
  });

  it('source runs in the current context and menu', async () => {
    const r = await run({ '/grub.cfg': 'source /s.cfg\nmenuentry b { linux /b $v }', '/s.cfg': 'set v=1\nmenuentry a { linux /a $v }' });
    expect(kernels(r)).toEqual([['a', '/a', ['1']], ['b', '/b', ['1']]]);
    expect(r.entries[0]!.source).toEqual({ device: 'd', path: '/s.cfg' });
  });

  it('a submenu sees the exported variables only, and its entries carry its title', async () => {
    const r = await run({ '/grub.cfg': 'set x=1\nset y=2\nexport y\nsubmenu S { menuentry E { linux /k $x $y } }' });
    expect(r.entries.map((e) => [e.menuPath, e.title, e.args])).toEqual([[['S'], 'E', ['2']]]);
  });

  it('an entry running configfile lists the entries of that file under its title', async () => {
    const r = await run({ '/grub.cfg': 'menuentry Other { configfile /o.cfg }', '/o.cfg': 'menuentry Inner { linux /k }' });
    expect(r.entries.map((e) => [e.menuPath, e.title])).toEqual([[['Other'], 'Inner']]);
  });

  it('load_env: a file, the default $prefix/grubenv, a whitelist, and the problems of bad blocks', async () => {
    const env = serializeGrubEnv({ a: '1', b: '2', root: '(o)' });
    const r = await run({
      '/grub.cfg': 'load_env -f /e b\nmenuentry one { linux /k $a $b }\nload_env\nmenuentry two { linux /k $a $b $root }\nload_env --file=(d)/missing\nload_env -f (d)/bad\nload_env -f (d)/broken',
      '/grubenv': env,
      '/e': env,
      '/bad': 'a=1\n',
      '/broken': '# GRUB Environment Block\nx=1',
    });
    // Entries run at the end of the file, after every load_env: $root came from the block.
    expect(r.entries.map((e) => [e.title, e.args])).toEqual([['one', ['1', '2']], ['two', ['1', '2', 'o']]]);
    expect(r.entries[0]!.kernel.device).toBe('o');
    expect(messages(r)).toEqual([
      'load_env: environment block (d)/missing does not exist',
      'load_env (d)/bad: Not a GRUB environment block: it does not start with "# GRUB Environment Block".',
      'load_env (d)/broken: the block ends in an unfinished line, which GRUB ignores',
    ]);
  });
});

describe('conditions', () => {
  const cond = async (test: string, files: MemoryTree = {}) => {
    const r = await run({ ...files, '/grub.cfg': `set e=\nset s=abc\nset n=5\nif ${test}; then menuentry yes { linux /y }; else menuentry no { linux /n }; fi` });
    return { answer: r.entries.map((x) => x.title).join(','), r };
  };

  it('evaluates [ ] and test: strings, integers, files, !, -a, -o and parentheses', async () => {
    const files: MemoryTree = { '/f': 'data', '/empty': '', '/dir/x': 'y' };
    const table: Array<[string, string]> = [
      ['[ -f /f ]', 'yes'], ['[ -f /dir ]', 'no'], ['[ -d /dir ]', 'yes'], ['[ -e /dir ]', 'yes'], ['[ -e /nope ]', 'no'],
      ['[ -s /f ]', 'yes'], ['[ -s /empty ]', 'no'], ['[ -f /empty ]', 'yes'], ['[ -n "$e" ]', 'no'], ['[ -z "$e" ]', 'yes'],
      ['[ -n $e ]', 'yes'], ['[ "$s" = abc ]', 'yes'], ['[ "$s" == abd ]', 'no'], ['[ "$s" != abd ]', 'yes'], ['[ x$e = x ]', 'yes'],
      ['[ $n -gt 4 ]', 'yes'], ['[ $n -lt 4 ]', 'no'], ['[ $n -eq 5 -a $s = abc ]', 'yes'], ['[ $n -eq 6 -o $s = abc ]', 'yes'],
      ['[ ! -f /f ]', 'no'], ['[ ! ( -f /nope -o -f /f ) ]', 'no'], ['[ "$s" ]', 'yes'], ['[ "$e" ]', 'no'], ['[ ]', 'no'],
      ['[ a "<" b ]', 'yes'], ['[ b "<=" a ]', 'no'], ['[ 1.10 -pgt 1.9 ]', 'yes'], ['test -f /f', 'yes'], ['! test -f /f', 'no'], ['true', 'yes'], ['false', 'no'],
      ['[ -f (d)/f ]', 'yes'], ['[ -f relative ]', 'no'],
    ];
    for (const [test, want] of table) expect((await cond(test, files)).answer, test).toBe(want);
  });

  it('reports "[" without "]" as false', async () => {
    const { answer, r } = await cond('[ -f /f');
    expect(answer).toBe('no');
    expect(messages(r)).toEqual(['"[" without a closing "]"']);
  });

  it('takes the branch with more entries when a condition cannot be decided (then on a tie), and records it', async () => {
    const more = await run({ '/grub.cfg': 'if loadfont x; then menuentry a { linux /a }; else menuentry b { linux /b }; menuentry c { linux /c }; fi' });
    expect(kernels(more).map((k) => k[0])).toEqual(['b', 'c']);
    expect(more.assumptions).toEqual([
      { file: { device: 'd', path: '/grub.cfg' }, line: 1, message: '"loadfont x" cannot be decided here; took the else branch (1 entries from "then", 2 from the other)' },
    ]);
    const tie = await run({ '/grub.cfg': 'if keystatus --shift; then set v=1; else set v=2; fi\nmenuentry a { linux /a $v }' });
    expect(kernels(tie)).toEqual([['a', '/a', ['1']]]);
    // A file test on a device the host cannot open is undecidable too; inside an entry, the entry records it.
    const inEntry = await run({ '/grub.cfg': 'menuentry a { if [ -f (gone)/x ]; then linux /a; fi }' });
    expect(kernels(inEntry)).toEqual([['a', '/a', []]]);
    expect(inEntry.entries[0]!.assumptions).toEqual([expect.stringMatching(/^\/grub\.cfg:1: "\[ -f \(gone\)\/x \]" cannot be decided here; took the then branch/)]);
  });

  it('runs elif chains, functions (with return and $1), for loops, eval, and break', async () => {
    const r = await run({
      '/grub.cfg': [
        'function pick { if [ "$1" = b ]; then return 0; fi; return 1 }',
        'for x in a b c; do if pick $x; then set chosen=$x; break; fi; done',
        'if [ $chosen = a ]; then set v=A; elif [ $chosen = b ]; then set v=B; else set v=C; fi',
        'eval "set w=\\$v\\$v"',
        'menuentry e { linux /k $chosen $v $w }',
      ].join('\n'),
    });
    expect(messages(r)).toEqual([]);
    expect(kernels(r)).toEqual([['e', '/k', ['b', 'B', 'BB']]]);
  });
});

describe('search', () => {
  it('reads its options as GRUB does and sets the variable to the device found', async () => {
    const other = new MemoryVolume({ '/marker': 'm', '/k': 'k' }, { uuid: 'ABCD-1234', label: 'ESP' });
    const cases: Array<[string, string]> = [
      ['search -n -u abcd-1234 -s', 'root=o'],
      ['search --no-floppy --fs-uuid --set=root ABCD-1234', 'root=o'],
      ['search --set root --label ESP', 'root=o'],
      ['search -s dev -l ESP', 'dev=o'],
      ['search -s -u ABCD-1234', 'root=o'],
      ['search --fs-uuid --set=dev --hint-efi=hd0,gpt1 --hint hd0,gpt2 ABCD-1234', 'dev=o'],
      ['search -f /marker --set=dev', 'dev=o'],
      ['search.fs_uuid ABCD-1234 dev', 'dev=o'],
      ['search.fs_label ESP', 'dev='],
      ['search.file /marker dev', 'dev=o'],
      ['search_fs_uuid ABCD-1234 dev', 'dev=o'],
      ['search -u nothing -s dev', 'dev='],
    ];
    for (const [command, want] of cases) {
      const r = await run({ '/grub.cfg': `set dev=\n${command}\nmenuentry e { linux /k root=$root dev=$dev }` }, {}, { o: other });
      const args = r.entries[0]!.args;
      const [name] = want.split('=');
      expect(args.find((a) => a.startsWith(`${name}=`)), command).toBe(want);
    }
  });

  it('reports what it cannot run', async () => {
    const r = await run({ '/grub.cfg': 'search -s root\nsearch -u\nsearch --bogus x\nsearch -u missing\nsearch -f' });
    expect(messages(r)).toEqual([
      'search: no search type (--fs-uuid, --label or --file)',
      'search: nothing to search for',
      'search: unknown argument "--bogus"',
      'search: no device with fs-uuid "missing"',
      'search: nothing to search for',
    ]);
  });
});

describe('hostile configurations end in a bounded result with a problem', () => {
  const timed = async (files: MemoryTree, options: GrubOptions = {}) => {
    const started = performance.now();
    const r = await run(files, options);
    return { r, ms: performance.now() - started };
  };

  it('configfile or source of itself, a cycle of two files, and a chain deeper than 8', async () => {
    const self = await run({ '/grub.cfg': 'configfile /grub.cfg\nmenuentry a { linux /a }' });
    expect(kernels(self).map((k) => k[0])).toEqual(['a']);
    expect(messages(self)).toEqual(['(d)/grub.cfg includes itself (through configfile); not read again']);
    const cycle = await run({ '/grub.cfg': 'source /a.cfg', '/a.cfg': 'source /b.cfg\nmenuentry a { linux /a }', '/b.cfg': 'source /a.cfg\nmenuentry b { linux /b }' });
    expect(kernels(cycle).map((k) => k[0])).toEqual(['b', 'a']);
    expect(messages(cycle)).toEqual(['(d)/a.cfg includes itself (through source); not read again']);
    const chain: MemoryTree = { '/grub.cfg': 'configfile /c0.cfg' };
    for (let i = 0; i < 20; i++) chain[`/c${i}.cfg`] = `menuentry e${i} { linux /k }\nconfigfile /c${i + 1}.cfg`;
    const deep = await run(chain);
    expect(deep.entries.map((e) => e.title)).toEqual(['e7', 'e6', 'e5', 'e4', 'e3', 'e2', 'e1', 'e0']);
    expect(messages(deep)).toEqual(['(d)/c8.cfg: configuration files nested more than 8 deep; not read']);
    const entryLoop = await run({ '/grub.cfg': 'menuentry a { configfile /grub.cfg }' });
    expect(messages(entryLoop)).toEqual(['(d)/grub.cfg includes itself (through configfile); not read again']);
  });

  it('an unterminated quote ends the file there; the statements before it stand', async () => {
    const r = await run({ '/grub.cfg': 'menuentry a { linux /a }\nset x="unterminated\nmenuentry b { linux /b }\n' });
    expect(kernels(r).map((k) => k[0])).toEqual(['a']);
    expect(r.problems).toEqual([{ file: { device: 'd', path: '/grub.cfg' }, line: 3, message: 'syntax error: a double quote is not closed; GRUB stops reading the file there' }]);
  });

  it('a file over the size limit is not read; too many tokens is a syntax error', async () => {
    const big = await run({ '/grub.cfg': 'configfile /big.cfg', '/big.cfg': `${'#'.repeat(1 << 20)}\n` });
    expect(messages(big)).toEqual([expect.stringMatching(/^configuration file \(d\)\/big\.cfg cannot be read: .*more than the 1048576 read/)]);
    const { r, ms } = await timed({ '/grub.cfg': `menuentry a { linux /a }\n${'x '.repeat(300_000)}` });
    expect(messages(r)).toEqual(['syntax error: more than 200000 tokens; GRUB stops reading the file there']);
    expect(kernels(r)).toEqual([['a', '/a', []]]);
    expect(ms).toBeLessThan(10_000);
  });

  it('deep nesting is a syntax error, not a stack overflow', async () => {
    for (const text of ['menuentry x { '.repeat(5000), 'if true; then '.repeat(5000), `${'function f { '.repeat(3000)}`, `[ ${'! '.repeat(5000)}x ]`]) {
      const { r } = await timed({ '/grub.cfg': text });
      expect(r.problems.length, text.slice(0, 30)).toBe(1);
      expect(r.problems[0]!.message).toMatch(/nested more than|syntax error/);
    }
  });

  it('recursion, endless loops and runaway work stop at their bounds', async () => {
    const recursion = await run({ '/grub.cfg': 'function f { f }\nf\nmenuentry a { linux /a }' });
    expect(kernels(recursion).map((k) => k[0])).toEqual(['a']);
    expect(messages(recursion)).toEqual(['function "f" is called more than 16 deep; not called']);
    const forever = await run({ '/grub.cfg': 'while true; do set x=1; done\nuntil false; do set y=1; done\nwhile loadfont z; do set z=1; done' });
    expect(messages(forever)).toEqual(['the while loop stops after 1024 iterations', 'the until loop stops after 1024 iterations']);
    expect(forever.assumptions.map((a) => a.message)).toEqual(['the while condition cannot be decided here; the loop body is not run']);
    const words = Array.from({ length: 2000 }, (_, i) => i).join(' ');
    const work = await run({ '/grub.cfg': `for a in ${words}; do for b in ${words}; do set x=1; done; done\nmenuentry a { linux /a }` }, { limits: { maxSteps: 50_000 } });
    expect(messages(work)).toEqual(['the loop over 2000 words stops after 1024', 'the configuration runs more than 50000 commands; interpretation stopped there']);
    // 3^16 calls within the depth bound: the command budget ends it.
    const started = performance.now();
    const fork = await run({ '/grub.cfg': 'function f { f; f; f }\nf' });
    expect(messages(fork)).toEqual(['function "f" is called more than 16 deep; not called', 'the configuration runs more than 200000 commands; interpretation stopped there']);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('work that is not commands counts too: doubling a value, re-reading a large file, copying a large state', async () => {
    const started = performance.now();
    const doubling = await run({ '/grub.cfg': `set a=x\nfor i in ${'i '.repeat(100)}; do set a=$a$a; done\nmenuentry e { linux /k }` });
    expect(messages(doubling)).toEqual(['an argument grows past 1048576 characters; interpretation stopped there']);
    const rereading = await run({
      '/grub.cfg': `for i in ${'i '.repeat(1000)}; do for j in ${'j '.repeat(1000)}; do source /big.cfg; done; done`,
      '/big.cfg': `${'# padding\n'.repeat(90_000)}set x=1\n`,
    });
    expect(messages(rereading)).toEqual(['the configuration runs more than 200000 commands; interpretation stopped there']);
    const vars = Array.from({ length: 1000 }, (_, i) => `v${i}`).join(' ');
    const copying = await run({
      '/grub.cfg': `for v in ${vars}; do set $v=1; done\nfor i in ${vars}; do for j in ${vars}; do if loadfont; then set x=1; fi; done; done`,
    });
    expect(messages(copying)).toEqual(['the configuration runs more than 200000 commands; interpretation stopped there']);
    expect(copying.assumptions).toHaveLength(1);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('lists at most maxEntries entries', async () => {
    const r = await run({ '/grub.cfg': `for i in ${'x '.repeat(50)}; do menuentry e$i { linux /k }; done` }, { limits: { maxEntries: 10 } });
    expect(r.entries).toHaveLength(10);
    expect(messages(r)).toEqual(['more than 10 boot entries; the rest are not listed']);
  });

  it('a missing first file, or a device the host cannot open, is a problem', async () => {
    const none = await interpretGrubConfig({ device: 'x', path: '/grub.cfg' }, hostOf({}));
    expect(none).toEqual({ entries: [], problems: [{ file: { device: 'x', path: '/grub.cfg' }, line: null, message: 'device "x" of the configuration is not available' }], assumptions: [] });
    const absent = await run({});
    expect(messages(absent)).toEqual(['configuration file (d)/grub.cfg does not exist']);
  });
});

describe('entries', () => {
  it('marks recovery entries by title or by argument', async () => {
    const r = await run({
      '/grub.cfg': ['a', 'b (recovery mode)', 'c', 'd', 'Rescue'].map((t, i) => `menuentry '${t}' { linux /k ${['', '', 'single', 'systemd.unit=rescue.target', ''][i]} }`).join('\n'),
    });
    expect(r.entries.map((e: BootEntry) => e.recovery)).toEqual([false, true, true, true, true]);
  });
});
