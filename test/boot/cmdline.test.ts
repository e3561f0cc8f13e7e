/**
 * The kernel command line: words split as the kernel's next_arg splits them, device specs, and the verity targets of
 * both styles (systemd-veritysetup-generator's keys, the Mariner dracut module's). The PARTUUIDs systemd derives from
 * a root hash are checked against a real GPT: the fuzz seed disk, whose partitions sgdisk was told to name after the
 * two halves of the root hash of its hash tree (test/fixtures/fuzz/README.md).
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { cmdlineValues, parseDeviceSpec, tokenizeCmdline, verityTargetsFromCmdline, type VerityTargetSpec } from '../../src/boot/cmdline.js';
import { readGpt } from '../../src/image/gpt.js';
import { bytesSource } from '../../src/io/source.js';

const words = (s: string) => tokenizeCmdline(s).map((a) => [a.key, a.value]);
const ROOT_HASH = 'c2bca389b1d4562accee487aa39662ad51ba27e193e02fac383a980dab517f06';

describe('tokenizeCmdline, as the kernel splits words', () => {
  it('splits at runs of white space and takes key=value at the first "="', () => {
    expect(words('  ro  quiet\troot=/dev/sda1 \n a=b=c  ')).toEqual([
      ['ro', null],
      ['quiet', null],
      ['root', '/dev/sda1'],
      ['a', 'b=c'],
    ]);
    expect(words('')).toEqual([]);
    expect(words(' \t\n ')).toEqual([]);
  });

  it('drops the quotes the kernel drops: a quoted word, a quoted value, a closing quote', () => {
    expect(words('"rd.verityroot.overlays=/var /etc" x')).toEqual([['rd.verityroot.overlays', '/var /etc'], ['x', null]]);
    expect(words('a="b c" d')).toEqual([['a', 'b c'], ['d', null]]);
    expect(words('"just words" x')).toEqual([['just words', null], ['x', null]]);
    // Quotes in mid-word protect white space but stay.
    expect(words('a"b c"d=e')).toEqual([['a"b c"d', 'e']]);
    expect(words('k=v"w x"')).toEqual([['k', 'v"w x"']]);
    // An unclosed quote runs to the end of the line.
    expect(words('a="b c')).toEqual([['a', 'b c']]);
    expect(words('a=" x')).toEqual([['a', ' x']]);
    expect(words('a="')).toEqual([['a', '']]);
    expect(words('"')).toEqual([['', null]]);
  });

  it('ignores an "=" at the start of a word, as the kernel does, and takes a later one', () => {
    expect(words('=x =a=b')).toEqual([['=x', null], ['=a', 'b']]);
  });

  it('keeps backslashes and the raw word', () => {
    const [a] = tokenizeCmdline('x=a\\"b');
    expect(a).toEqual({ raw: 'x=a\\"b', key: 'x', value: 'a\\"b' });
    expect(cmdlineValues(tokenizeCmdline('a=1 b a=2'), 'a')).toEqual(['1', '2']);
    expect(cmdlineValues(tokenizeCmdline('a=1 b a=2'), 'b')).toEqual(['']);
  });
});

describe('parseDeviceSpec', () => {
  it('reads tags and /dev/disk/by-* links, unescaping udev names', () => {
    expect(parseDeviceSpec('PARTUUID=ABC')).toEqual({ kind: 'partuuid', value: 'ABC', raw: 'PARTUUID=ABC' });
    expect(parseDeviceSpec('PARTLABEL=root-hash')).toMatchObject({ kind: 'partlabel', value: 'root-hash' });
    expect(parseDeviceSpec('UUID=4A3B-91C2')).toMatchObject({ kind: 'uuid', value: '4A3B-91C2' });
    expect(parseDeviceSpec('LABEL=rootfs')).toMatchObject({ kind: 'label', value: 'rootfs' });
    expect(parseDeviceSpec('/dev/disk/by-partlabel/root\\x2dhash\\x20x')).toMatchObject({ kind: 'partlabel', value: 'root-hash x' });
    expect(parseDeviceSpec('/dev/disk/by-partuuid/d9a9d02e-078f-450c-94af-9007a9f3bba1')).toMatchObject({ kind: 'partuuid' });
    expect(parseDeviceSpec('/dev/disk/by-uuid/x')).toMatchObject({ kind: 'uuid', value: 'x' });
    expect(parseDeviceSpec('/dev/disk/by-label/x')).toMatchObject({ kind: 'label', value: 'x' });
    expect(parseDeviceSpec('/dev/sda2')).toEqual({ kind: 'path', value: '/dev/sda2', raw: '/dev/sda2' });
    // Tags are upper case only (fstab's rule).
    expect(parseDeviceSpec('partuuid=x')).toMatchObject({ kind: 'path' });
  });
});

describe('systemd-style verity keys (systemd-veritysetup-generator)', () => {
  it('reads roothash= with data, hash and options, as the Azure Linux image customizer writes them', () => {
    const r = verityTargetsFromCmdline(
      `root=/dev/mapper/root rd.systemd.verity=1 roothash=${ROOT_HASH.toUpperCase()} systemd.verity_root_data=PARTUUID=d9a9d02e-078f-450c-94af-9007a9f3bba1 ` +
        'systemd.verity_root_hash=PARTLABEL=root-hash systemd.verity_root_options=panic-on-corruption,hash-offset=2147483648',
    );
    expect(r.problems).toEqual([]);
    expect(r.targets).toEqual<VerityTargetSpec[]>([
      {
        style: 'systemd',
        name: 'root',
        data: { kind: 'partuuid', value: 'd9a9d02e-078f-450c-94af-9007a9f3bba1', raw: 'PARTUUID=d9a9d02e-078f-450c-94af-9007a9f3bba1' },
        hash: { kind: 'partlabel', value: 'root-hash', raw: 'PARTLABEL=root-hash' },
        rootHash: { hex: ROOT_HASH },
        hashOffset: 2147483648,
        errorBehaviour: 'panic',
        options: ['panic-on-corruption', 'hash-offset=2147483648'],
        keys: ['roothash', 'systemd.verity_root_data', 'systemd.verity_root_hash', 'systemd.verity_root_options'],
      },
    ]);
  });

  it('reads usrhash= and its keys the same way', () => {
    const r = verityTargetsFromCmdline(
      'usrhash=03c0d78280dd8952d7c8ff52e6aa1408e7cbd2b16b8de07988f025ec5b6e075d systemd.verity_usr_data=/dev/disk/by-partlabel/usr ' +
        'systemd.verity_usr_hash=/dev/disk/by-partlabel/usr-hash systemd.verity_usr_options=restart-on-corruption,ignore-zero-blocks',
    );
    expect(r.problems).toEqual([]);
    expect(r.targets).toHaveLength(1);
    expect(r.targets[0]).toMatchObject({
      name: 'usr',
      data: { kind: 'partlabel', value: 'usr' },
      hash: { kind: 'partlabel', value: 'usr-hash' },
      errorBehaviour: 'restart',
      options: ['restart-on-corruption', 'ignore-zero-blocks'],
    });
  });

  it('derives the PARTUUIDs from the root hash without data/hash keys: the same ones sgdisk gave the seed disk', async () => {
    const fixtures = new URL('../fixtures/fuzz/', import.meta.url);
    const rootHash = readFileSync(new URL('roothash', fixtures), 'latin1').trim();
    const disk = new Uint8Array(gunzipSync(readFileSync(new URL('disk.raw.gz', fixtures))));
    const gpt = await readGpt(bytesSource(disk));
    const r = verityTargetsFromCmdline(`roothash=${rootHash}`);
    expect(r.problems).toEqual([]);
    const t = r.targets[0]!;
    expect(t.data).toMatchObject({ kind: 'partuuid', derivedFromRootHash: 'first-128-bits' });
    expect(t.hash).toMatchObject({ kind: 'partuuid', derivedFromRootHash: 'last-128-bits' });
    expect(gpt.partitions.map((p) => p.partitionGuid)).toEqual([(t.data as { value: string }).value, (t.hash as { value: string }).value]);
  });

  it('derives only the device not given; the hash device from the last 128 bits of a longer hash', () => {
    const sha512 = 'ab'.repeat(16) + '00'.repeat(32) + 'cd'.repeat(16);
    const r = verityTargetsFromCmdline(`roothash=${sha512} systemd.verity_root_data=/dev/vda2`);
    expect(r.targets[0]!.data).toEqual({ kind: 'path', value: '/dev/vda2', raw: '/dev/vda2' });
    expect(r.targets[0]!.hash).toMatchObject({ value: 'cdcdcdcd-cdcd-cdcd-cdcd-cdcdcdcdcdcd' });
    expect(verityTargetsFromCmdline(`roothash=${ROOT_HASH} systemd.verity_root_hash=PARTLABEL=h`).targets[0]!.data).toMatchObject({
      value: 'c2bca389-b1d4-562a-ccee-487aa39662ad',
    });
  });

  it('reports a root hash that is not hex, too short to derive devices, or keys without a hash', () => {
    expect(verityTargetsFromCmdline('roothash=xyz').problems).toEqual(['roothash="xyz" is not an even number of hex digits: no root verity device.']);
    expect(verityTargetsFromCmdline('roothash=abc').targets).toEqual([]);
    expect(verityTargetsFromCmdline('roothash=').targets).toEqual([]);
    expect(verityTargetsFromCmdline('roothash=abcd').problems[0]).toMatch(/shorter than 128 bits/);
    expect(verityTargetsFromCmdline('roothash=abcd systemd.verity_root_data=a systemd.verity_root_hash=b').targets).toHaveLength(1);
    expect(verityTargetsFromCmdline('systemd.verity_usr_data=PARTLABEL=usr').problems[0]).toMatch(/without usrhash=/);
  });

  it('parses the options list: signature, FEC, and what it refuses', () => {
    const t = verityTargetsFromCmdline(
      `roothash=${ROOT_HASH} systemd.verity_root_options=root-hash-signature=/run/sig.p7s,fec-device=PARTLABEL=fec,fec-roots=24,fec-offset=8192,ignore-corruption,check-at-most-once`,
    ).targets[0]!;
    expect(t.signature).toEqual({ path: '/run/sig.p7s' });
    expect(t.fec).toEqual({ device: { kind: 'partlabel', value: 'fec', raw: 'PARTLABEL=fec' }, roots: 24, offset: 8192 });
    expect(t.errorBehaviour).toBe('ignore');
    expect(t.options).toContain('check-at-most-once');
    expect(verityTargetsFromCmdline(`roothash=${ROOT_HASH} systemd.verity_root_options=root-hash-signature=base64:MIIB`).targets[0]!.signature).toEqual({ base64: 'MIIB' });
    const bad = verityTargetsFromCmdline(`roothash=${ROOT_HASH} systemd.verity_root_options=hash-offset=100,fec-roots=x,root-hash-signature=rel`);
    expect(bad.problems).toEqual([
      'systemd.verity_root_options: hash-offset=100 is not a multiple of 512.',
      'systemd.verity_root_options: fec-roots="x" is not a decimal number; ignored.',
      'systemd.verity_root_options: root-hash-signature="rel" is neither "base64:…" nor an absolute path.',
    ]);
    expect(bad.targets[0]!.hashOffset).toBe(100);
  });

  it('is disabled by systemd.verity=0 or rd.systemd.verity=0, the last of either deciding', () => {
    const line = `roothash=${ROOT_HASH}`;
    for (const off of ['systemd.verity=0', 'rd.systemd.verity=no', 'rd.systemd.verity=1 systemd.verity=off']) {
      const r = verityTargetsFromCmdline(`${off} ${line}`);
      expect(r.targets, off).toEqual([]);
      expect(r.systemdDisabledBy).toBe(off.split(' ').at(-1));
      expect(r.problems[0]).toMatch(/turns systemd's verity generator off/);
    }
    expect(verityTargetsFromCmdline(`systemd.verity=0 rd.systemd.verity=yes ${line}`).targets).toHaveLength(1);
    expect(verityTargetsFromCmdline(`systemd.verity ${line}`).targets).toHaveLength(1);
    expect(verityTargetsFromCmdline(`systemd.verity=maybe ${line}`).problems).toEqual(['systemd.verity=maybe: not a boolean; ignored.']);
  });

  it('takes the last of a repeated key and says so', () => {
    const r = verityTargetsFromCmdline(`roothash=${'00'.repeat(32)} roothash=${ROOT_HASH}`);
    expect(r.targets[0]!.rootHash).toEqual({ hex: ROOT_HASH });
    expect(r.problems[0]).toMatch(/roothash is given 2 times/);
  });
});

describe('Mariner-style verity keys (dracut module 20verity-mount)', () => {
  const base =
    'root=verityroot:PARTUUID=1633ca6b-fbc0-45b7-b188-ad81ff737263 rd.verityroot.devicename=verity_root_fs ' +
    'rd.verityroot.hashtree=/verity-verity_root_fs.hashtree rd.verityroot.roothashfile=/verity-verity_root_fs.roothash';

  it('reads the hash tree and root hash files of the initramfs, FEC, signature and error handling', () => {
    const r = verityTargetsFromCmdline(
      `${base} rd.verityroot.fecdata=/verity-verity_root_fs.fec rd.verityroot.fecroots=2 rd.verityroot.roothashsig=/verity.p7 ` +
        'rd.verityroot.verityerrorhandling=restart rd.verityroot.validateonboot=false "rd.verityroot.overlays=/var /etc"',
    );
    expect(r.problems).toEqual([]);
    expect(r.targets).toEqual<VerityTargetSpec[]>([
      {
        style: 'mariner',
        name: 'verity_root_fs',
        data: { kind: 'partuuid', value: '1633ca6b-fbc0-45b7-b188-ad81ff737263', raw: 'PARTUUID=1633ca6b-fbc0-45b7-b188-ad81ff737263' },
        hash: { initramfsPath: '/verity-verity_root_fs.hashtree' },
        rootHash: { initramfsPath: '/verity-verity_root_fs.roothash' },
        fec: { device: { initramfsPath: '/verity-verity_root_fs.fec' }, roots: 2 },
        signature: { initramfsPath: '/verity.p7' },
        errorBehaviour: 'restart',
        options: ['--fec-device=/verity-verity_root_fs.fec', '--fec-roots=2', '--root-hash-signature=/verity.p7', '--restart-on-corruption'],
        keys: [
          'root', 'rd.verityroot.devicename', 'rd.verityroot.hashtree', 'rd.verityroot.roothashfile', 'rd.verityroot.roothashsig',
          'rd.verityroot.fecdata', 'rd.verityroot.fecroots', 'rd.verityroot.verityerrorhandling', 'rd.verityroot.validateonboot',
        ],
      },
    ]);
  });

  it('takes devices for a hash tree given as a device, an inline root hash, and the default device name', () => {
    const r = verityTargetsFromCmdline(
      `root=verityroot:/dev/sda3 rd.verityroot.hashtree=PARTLABEL=hash rd.verityroot.roothash=${ROOT_HASH} rd.verityroot.fecdata=/dev/sda5 rd.verityroot.fecroots=2`,
    );
    expect(r.problems).toEqual([]);
    expect(r.targets[0]).toMatchObject({
      name: 'verity_root',
      data: { kind: 'path', value: '/dev/sda3' },
      hash: { kind: 'partlabel', value: 'hash' },
      rootHash: { hex: ROOT_HASH },
      fec: { device: { kind: 'path', value: '/dev/sda5' }, roots: 2 },
    });
  });

  it('reports what would stop the boot, with no target', () => {
    const cases: Array<[string, RegExp]> = [
      ['root=verityroot:PARTUUID=x rd.verityroot.roothash=00', /hashtree= is missing/],
      ['root=verityroot:PARTUUID=x rd.verityroot.hashtree=/h', /neither rd.verityroot.roothash= nor/],
      [`${base} rd.verityroot.roothash=${ROOT_HASH}`, /both rd.verityroot.roothash= and rd.verityroot.roothashfile=/],
      [`${base} rd.verityroot.fecdata=/f`, /must be given together/],
      [`${base} rd.verityroot.verityerrorhandling=explode`, /not ignore, restart or panic/],
      [`${base} rd.verityroot.validateonboot=yes`, /not true or false/],
      ['root=verityroot: rd.verityroot.hashtree=/h rd.verityroot.roothash=00', /no device after/],
      ['root=verityroot:PARTUUID=x rd.verityroot.hashtree=/h rd.verityroot.roothash=0g', /not an even number of hex digits/],
      ['root=verityroot:PARTUUID=x rd.verityroot.hashtree=/h rd.verityroot.roothashfile=PARTLABEL=x', /names a device, not a file/],
    ];
    for (const [line, message] of cases) {
      const r = verityTargetsFromCmdline(line);
      expect(r.targets, line).toEqual([]);
      expect(r.problems.join(' '), line).toMatch(message);
    }
  });

  it('ignores the keys without root=verityroot:, and lists both styles when a line has both', () => {
    expect(verityTargetsFromCmdline('root=/dev/sda1 rd.verityroot.hashtree=/h').targets).toEqual([]);
    const both = verityTargetsFromCmdline(`${base} roothash=${ROOT_HASH}`);
    expect(both.targets.map((t) => t.style)).toEqual(['systemd', 'mariner']);
  });

  it('bounds its work: a megabyte of words and quotes is split in linear time', () => {
    const started = performance.now();
    const huge = `${'"a b '.repeat(100_000)} ${'x=y '.repeat(100_000)}`;
    const r = verityTargetsFromCmdline(huge);
    expect(r.targets).toEqual([]);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
