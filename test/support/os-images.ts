/**
 * OS disk images laid out the way their distributions build them, made at test time with the real producers
 * (veritysetup, mke2fs -d, mkfs.vfat + mtools, cpio + gzip, grub-editenv, sgdisk, qemu-img), scaled down:
 *
 * - `buildMarinerDisk`: CBL-Mariner's read-only verity root as EFLOW ships it (microsoft/azurelinux 2.0,
 *   toolkit/tools/imagegen/diskutils/verity.go and installutils.go): per slot an ESP with a stub grub.cfg that
 *   searches the boot partition by filesystem UUID, a boot partition (ext4) with grub2/grub.cfg from the Mariner
 *   template, a GRUB environment block linux-<ver>.cfg with mariner.cfg a symlink to it, and an initramfs holding the
 *   hash tree, the root hash file and the FEC file of that slot's root filesystem; generic partition types and names
 *   after the EFLOW documentation (BootEFIA, BootA, RootFS A, …, Log, Data).
 *
 * Salts, UUIDs, labels and file contents are fixed; the producers' timestamps are not, so root hashes differ between
 * builds: tests take them from what the builder returns. Tests that use these need the tools: `osImageTools()` lists
 * the missing ones for a visible skip.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findTool } from './tools.js';
import { VERITYSETUP } from './veritysetup-bin.js';

const TOOLS = {
  mke2fs: findTool('mke2fs', '/usr/sbin/mke2fs', '/sbin/mke2fs'),
  sgdisk: findTool('sgdisk', '/usr/sbin/sgdisk', '/sbin/sgdisk'),
  'mkfs.vfat': findTool('mkfs.vfat', '/usr/sbin/mkfs.vfat', '/sbin/mkfs.vfat'),
  mcopy: findTool('mcopy', '/usr/bin/mcopy'),
  mmd: findTool('mmd', '/usr/bin/mmd'),
  cpio: findTool('cpio', '/usr/bin/cpio', '/bin/cpio'),
  gzip: findTool('gzip', '/usr/bin/gzip', '/bin/gzip'),
  'grub-editenv': findTool('grub-editenv', '/usr/bin/grub-editenv'),
  'qemu-img': findTool('qemu-img', '/usr/bin/qemu-img'),
  veritysetup: VERITYSETUP,
};

const OPENSSL = findTool('openssl', '/usr/bin/openssl');

/** The openssl tool, or null: the builders sign root hashes with it when asked to. */
export const opensslTool = OPENSSL;

/** A signer: a key and its self-signed certificate (PEM), made by openssl. */
export interface Signer {
  key: string;
  cert: string;
}

function openssl(args: string[]): void {
  if (!OPENSSL) throw new Error('openssl is needed to sign a root hash');
  const r = spawnSync(OPENSSL, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

/** A new RSA-2048 key and self-signed certificate `CN=<name>` in `dir`. */
export function makeSigner(dir: string, name: string): Signer {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '3650', '-subj', `/CN=${name}`]);
  return { key, cert };
}

/**
 * The detached PKCS#7 signature of a root hash as the kernel checks it (the hex string, no newline), made as systemd's
 * and veritysetup's documentation show: `openssl smime -sign -nocerts -noattr -binary`.
 */
export function signRootHash(rootHashHex: string, signer: Signer, out: string): void {
  const text = `${out}.txt`;
  writeFileSync(text, rootHashHex);
  openssl(['smime', '-sign', '-nocerts', '-noattr', '-binary', '-in', text, '-inkey', signer.key, '-signer', signer.cert, '-outform', 'der', '-out', out]);
  rmSync(text);
}

/** What the UKI builder needs on top (Debian systemd-boot-efi's stub, binutils' objcopy). */
const UKI_TOOLS = {
  objcopy: findTool('objcopy', '/usr/bin/objcopy'),
  stub: findTool('linuxx64.efi.stub', '/usr/lib/systemd/boot/efi/linuxx64.efi.stub'),
};

/** The tools these builders need that are missing (empty when all are there). */
export function osImageTools(options: { uki?: boolean } = {}): string[] {
  return Object.entries({ ...TOOLS, ...(options.uki ? UKI_TOOLS : {}) })
    .filter(([, path]) => !path)
    .map(([name]) => name);
}

function run(tool: keyof typeof TOOLS, args: string[], options: { cwd?: string; input?: Uint8Array } = {}): string {
  const r = spawnSync(TOOLS[tool]!, args, { ...options, env: { ...process.env, LC_ALL: 'C', MTOOLS_SKIP_CHECK: '1' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return r.stdout.toString();
}

/** Deterministic bytes: SHA-256 in counter mode over `seed`. */
export function seeded(seed: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0, at = 0; at < length; i++, at += 32) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    out.set(block.subarray(0, Math.min(32, length - at)), at);
  }
  return out;
}

/** A deterministic UUID (version 4 layout) from `seed`. */
export function seededUuid(seed: string): string {
  const b = createHash('sha256').update(`uuid:${seed}`).digest();
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** An ext4 image of `mib` MiB holding the tree at `dir`, with a fixed UUID and label. */
function ext4(path: string, dir: string, mib: number, uuid: string, label: string): void {
  rmSync(path, { force: true });
  // A fixed hash seed and creation time keep the image byte-identical across builds.
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-U', uuid, '-L', label, '-E', `hash_seed=${uuid}`, '-d', dir, path, `${mib}M`]);
}

/** A FAT image of `mib` MiB with `files` (path → text), a fixed volume id and label. */
function fat(path: string, mib: number, volumeId: string, label: string, files: Record<string, string>, scratch: string): void {
  rmSync(path, { force: true });
  run('mkfs.vfat', ['-C', '-i', volumeId, '-n', label, path, String(mib * 1024)]);
  const made = new Set<string>();
  for (const [name, text] of Object.entries(files)) {
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!made.has(d)) run('mmd', ['-i', path, `::/${d}`]);
      made.add(d);
    }
    const local = join(scratch, 'fat-file');
    writeFileSync(local, text);
    run('mcopy', ['-i', path, local, `::/${name}`]);
  }
}

/** A GRUB environment block file holding `vars`, written by grub-editenv. */
function grubEnv(path: string, vars: Record<string, string>): void {
  rmSync(path, { force: true });
  run('grub-editenv', [path, 'create']);
  run('grub-editenv', [path, 'set', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)]);
}

/** A gzip'd newc cpio of the files in `dir` (names relative, as the Mariner imager writes them). */
function initramfs(path: string, dir: string, names: string[]): void {
  const archive = spawnSync(TOOLS.cpio!, ['-o', '-H', 'newc', '--quiet'], { cwd: dir, input: Buffer.from(names.join('\n') + '\n') });
  if (archive.status !== 0) throw new Error(`cpio failed: ${archive.stderr.toString()}`);
  const gz = spawnSync(TOOLS.gzip!, ['-n', '-9'], { input: archive.stdout });
  if (gz.status !== 0) throw new Error('gzip failed');
  writeFileSync(path, gz.stdout);
}

interface Piece {
  name: string;
  mib: number;
  /** An sgdisk type code (8300, EF00) or a type GUID. */
  type: string;
  guid: string;
  /** The partition's contents, written at its start. */
  file: string;
}

/** A GPT disk `<base>.raw` of `pieces` in order (1 MiB aligned, sgdisk), and its dynamic VHDX `<base>.vhdx`. */
function assemble(dir: string, base: string, pieces: Piece[], diskGuid: string): { raw: string; vhdx: string } {
  const raw = join(dir, `${base}.raw`);
  rmSync(raw, { force: true });
  writeFileSync(raw, new Uint8Array(0));
  truncateSync(raw, (2 + pieces.reduce((n, p) => n + p.mib, 0)) * MIB);
  const args = ['-a', '2048', '-U', diskGuid];
  const starts: number[] = [];
  let start = 2048;
  pieces.forEach((p, i) => {
    args.push('-n', `${i + 1}:${start}:+${p.mib}M`, '-t', `${i + 1}:${p.type}`, '-u', `${i + 1}:${p.guid}`, '-c', `${i + 1}:${p.name}`);
    starts.push(start);
    start += (p.mib * MIB) / 512;
  });
  run('sgdisk', [...args, raw]);
  const disk = readFileSync(raw);
  pieces.forEach((p, i) => disk.set(readFileSync(p.file), starts[i]! * 512));
  writeFileSync(raw, disk);
  const vhdx = join(dir, `${base}.vhdx`);
  rmSync(vhdx, { force: true });
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic', raw, vhdx]);
  return { raw, vhdx };
}

export interface MarinerSlot {
  name: 'A' | 'B';
  /** The root filesystem image (ext4) and its verity tree, root hash and FEC file. */
  rootfs: string;
  rootHash: string;
  hashtree: string;
  fec: string;
  rootPartUuid: string;
  bootFsUuid: string;
  /** 1-based partition indices in the disk. */
  partitions: { esp: number; boot: number; root: number };
}

export interface MarinerOptions {
  /** What to do to one slot's boot configuration. */
  bootConfig?: Partial<Record<'A' | 'B', 'verity-off' | 'wrong-root-hash-file' | 'truncated-initramfs'>>;
  /** Data blocks of the root filesystem to damage after the tree was made, per slot. */
  damage?: Partial<Record<'A' | 'B', number[]>>;
  /** FEC roots (veritysetup --fec-roots); 0 for none. Default 2, the Mariner imager's. */
  fecRoots?: number;
  /** Sign each slot's root hash: `<mapped>.p7` in the initramfs and `rd.verityroot.roothashsig=` (installutils.go). */
  sign?: Signer;
}

export interface MarinerDisk {
  raw: string;
  vhdx: string;
  slots: MarinerSlot[];
  kernelVersion: string;
}

const MIB = 1 << 20;
const KERNEL = '5.15.0.cm2';

/**
 * A Mariner/EFLOW-style disk in `dir` (raw and dynamic VHDX): slots A and B, each ESP (FAT, 2 MiB), boot (ext4,
 * 8 MiB) and root filesystem (ext4, 16 MiB), then Log and Data.
 */
export function buildMarinerDisk(dir: string, options: MarinerOptions = {}): MarinerDisk {
  mkdirSync(dir, { recursive: true });
  const fecRoots = options.fecRoots ?? 2;
  const layout: Piece[] = [];
  const slots: MarinerSlot[] = [];
  for (const name of ['A', 'B'] as const) {
    const s = join(dir, `slot-${name}`);
    rmSync(s, { recursive: true, force: true });
    mkdirSync(join(s, 'root/etc'), { recursive: true });
    mkdirSync(join(s, 'root/usr/bin'), { recursive: true });
    writeFileSync(join(s, 'root/etc/os-release'), `NAME="CBL-Mariner"\nVERSION="2.0 slot ${name}"\n`);
    writeFileSync(join(s, 'root/usr/bin/app'), seeded(`app-${name}`, 3 * MIB + 123));
    writeFileSync(join(s, 'root/etc/motd'), `slot ${name}\n`);
    const rootfs = join(s, 'rootfs.ext4');
    ext4(rootfs, join(s, 'root'), 16, seededUuid(`rootfs-${name}`), `rootfs${name}`);

    // The imager's veritysetup call (verity.go): superblock, sha256, a 32-byte salt, FEC in a separate file.
    const initrd = join(s, 'initrd');
    mkdirSync(initrd, { recursive: true });
    const mapped = 'verity-verity_root_fs';
    const hashtree = join(initrd, `${mapped}.hashtree`);
    const fec = join(initrd, `${mapped}.fec`);
    const salt = createHash('sha256').update(`salt-${name}`).digest('hex');
    const fecArgs = fecRoots > 0 ? [`--fec-device=${fec}`, `--fec-roots=${fecRoots}`] : [];
    rmSync(hashtree, { force: true });
    rmSync(fec, { force: true });
    const out = run('veritysetup', [...fecArgs, '--salt', salt, '--uuid', seededUuid(`verity-${name}`), '--hash', 'sha256', 'format', rootfs, hashtree]);
    const rootHash = /Root hash:\s+([0-9a-f]+)/.exec(out)![1]!;
    // The root hash file: bare hex, no newline (WriteString in verity.go).
    const wrongRoot = options.bootConfig?.[name] === 'wrong-root-hash-file';
    writeFileSync(join(initrd, `${mapped}.roothash`), wrongRoot ? 'ab'.repeat(32) : rootHash);
    mkdirSync(join(initrd, 'usr/lib'), { recursive: true });
    writeFileSync(join(initrd, 'init'), '#!/bin/sh\nexec /sbin/init\n');
    const members = ['init', 'usr', 'usr/lib', `${mapped}.hashtree`, `${mapped}.roothash`, ...(fecRoots > 0 ? [`${mapped}.fec`] : [])];
    if (options.sign) {
      signRootHash(rootHash, options.sign, join(initrd, `${mapped}.p7`));
      members.push(`${mapped}.p7`);
    }

    // Damage after the tree was made: the tree and root hash describe the intended data.
    for (const block of options.damage?.[name] ?? []) {
      const bytes = readFileSync(rootfs);
      bytes[block * 4096 + 17]! ^= 0x5a;
      writeFileSync(rootfs, bytes);
    }

    const rootPartUuid = seededUuid(`part-root-${name}`);
    const bootFsUuid = seededUuid(`bootfs-${name}`);
    const boot = join(s, 'boot');
    mkdirSync(join(boot, 'grub2'), { recursive: true });
    const initrdName = `initrd.img-${KERNEL}`;
    initramfs(join(boot, initrdName), initrd, members);
    if (options.bootConfig?.[name] === 'truncated-initramfs') {
      truncateSync(join(boot, initrdName), Math.floor(statSync(join(boot, initrdName)).size / 2));
    }
    writeFileSync(join(boot, `vmlinuz-${KERNEL}`), seeded(`kernel-${name}`, 64 * 1024));
    grubEnv(join(boot, `linux-${KERNEL}.cfg`), {
      mariner_linux: `vmlinuz-${KERNEL}`,
      mariner_initrd: initrdName,
      mariner_cmdline: 'rd.auto=1 console=ttyS0',
    });
    symlinkSync(`linux-${KERNEL}.cfg`, join(boot, 'mariner.cfg'));
    const verityArgs =
      options.bootConfig?.[name] === 'verity-off'
        ? ''
        : `rd.verityroot.devicename=${mapped} rd.verityroot.hashtree=/${mapped}.hashtree ` +
          `rd.verityroot.roothashfile=/${mapped}.roothash rd.verityroot.verityerrorhandling=restart ` +
          `rd.verityroot.validateonboot=false rd.verityroot.overlays="/var/lib /etc" rd.verityroot.overlaysize=20% ` +
          `rd.verityroot.overlays_debug_mount= ` +
          (fecRoots > 0 ? `rd.verityroot.fecdata=/${mapped}.fec rd.verityroot.fecroots=${fecRoots} ` : '') +
          (options.sign ? `rd.verityroot.roothashsig=/${mapped}.p7 ` : '');
    const rootDevice = options.bootConfig?.[name] === 'verity-off' ? `PARTUUID=${rootPartUuid}` : `verityroot:PARTUUID=${rootPartUuid}`;
    // The Mariner grub.cfg template (azurelinux 2.0 toolkit/resources/assets/grub2/grub.cfg), placeholders filled as
    // installutils.go does.
    writeFileSync(
      join(boot, 'grub2/grub.cfg'),
      [
        'set timeout=0',
        'set bootprefix=',
        '# If a custom mariner.cfg is present, load it',
        'load_env -f $bootprefix/mariner.cfg',
        'if [ -f  $bootprefix/systemd.cfg ]; then',
        '\tload_env -f $bootprefix/systemd.cfg',
        'else',
        '\tset systemd_cmdline=net.ifnames=0',
        'fi',
        `set rootdevice=${rootDevice}`,
        '',
        'menuentry "CBL-Mariner" {',
        `\tlinux $bootprefix/$mariner_linux  ${verityArgs}security=selinux selinux=1 rd.auto=1 root=$rootdevice $mariner_cmdline lockdown=integrity sysctl.kernel.unprivileged_bpf_disabled=1 $systemd_cmdline`,
        '\tif [ -f $bootprefix/$mariner_initrd ]; then',
        '\t\tinitrd $bootprefix/$mariner_initrd',
        '\tfi',
        '}',
        '',
      ].join('\n'),
    );
    const bootImage = join(s, 'boot.ext4');
    ext4(bootImage, boot, 8, bootFsUuid, `boot${name}`);

    // The ESP's stub (azurelinux 2.0 toolkit/resources/assets/efi/grub/grub.cfg): find the boot partition by UUID.
    const esp = join(s, 'esp.fat');
    fat(esp, 2, name === 'A' ? '1a2b3c4d' : '5e6f7a8b', `EFI${name}`, {
      'boot/grub2/grub.cfg': `search -n -u ${bootFsUuid} -s\nset bootprefix=\nconfigfile $bootprefix/grub2/grub.cfg\n`,
      'EFI/BOOT/bootx64.efi': 'not a real loader',
    }, s);

    const base = layout.length;
    layout.push({ name: `BootEFI${name}`, mib: 2, type: 'EF00', guid: seededUuid(`part-BootEFI${name}`), file: esp });
    layout.push({ name: `Boot${name}`, mib: 8, type: '8300', guid: seededUuid(`part-Boot${name}`), file: bootImage });
    layout.push({ name: `RootFS ${name}`, mib: 16, type: '8300', guid: rootPartUuid, file: rootfs });
    slots.push({
      name,
      rootfs,
      rootHash,
      hashtree,
      fec,
      rootPartUuid,
      bootFsUuid,
      partitions: { esp: base + 1, boot: base + 2, root: base + 3 },
    });
  }
  const log = join(dir, 'log.ext4');
  const data = join(dir, 'data.ext4');
  mkdirSync(join(dir, 'empty'), { recursive: true });
  ext4(log, join(dir, 'empty'), 4, seededUuid('log'), 'log');
  ext4(data, join(dir, 'empty'), 4, seededUuid('data'), 'data');
  layout.push({ name: 'Log', mib: 4, type: '8300', guid: seededUuid('part-Log'), file: log });
  layout.push({ name: 'Data', mib: 4, type: '8300', guid: seededUuid('part-Data'), file: data });

  const { raw, vhdx } = assemble(dir, 'eflow', layout, seededUuid('disk'));
  return { raw, vhdx, slots, kernelVersion: KERNEL };
}

export interface CustomizerOptions {
  /** How the command line names the data and hash devices (the customizer's `…MountIdType`). Default partuuid. */
  idType?: 'partuuid' | 'partlabel' | 'uuid';
  /** The hash tree after the filesystem in the data partition (`dataDeviceId == hashDeviceId`). */
  inline?: boolean;
  /** Where the command line lives. Default grub (boot partition grub2/grub.cfg). */
  boot?: 'grub' | 'bls';
  /** Data blocks of the root filesystem to damage after the tree was made. */
  damage?: number[];
  /** A command line with another root hash than the tree's, or with `rd.systemd.verity=0`. */
  cmdline?: 'wrong-root-hash' | 'verity-off';
  /** More of grub.cfg after the main menu entry, given the main entry's command line. */
  extraGrub?: (cmdline: string) => string;
}

export interface CustomizerDisk {
  raw: string;
  vhdx: string;
  rootHash: string;
  cmdline: string;
  partitions: { esp: number; boot: number; root: number; hash: number | null };
}

/**
 * An Azure Linux image-customizer disk (azure-linux-image-tools customizeverity.go; azurelinux 2.0
 * imagecustomizerlib): linux-generic partitions esp, boot, root and roothash; the hash partition shrunk to the
 * tree (`veritysetup format` with its defaults, superblock kept) or the tree inline after the filesystem with
 * `--hash-offset`; the systemd verity keys on the kernel command line in the boot partition's grub2/grub.cfg or in a
 * BLS entry. The hash device is named by PARTUUID, PARTLABEL or UUID (the verity superblock's UUID).
 */
export function buildCustomizerDisk(dir: string, options: CustomizerOptions = {}): CustomizerDisk {
  mkdirSync(dir, { recursive: true });
  const idType = options.idType ?? 'partuuid';
  const tree = join(dir, 'root');
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(tree, 'etc'), { recursive: true });
  writeFileSync(join(tree, 'etc/os-release'), 'NAME="Microsoft Azure Linux"\nVERSION="3.0"\n');
  writeFileSync(join(tree, 'etc/big'), seeded('azl-big', 2 * MIB + 77));
  const rootfs = join(dir, 'rootfs.ext4');
  const rootFsUuid = seededUuid('azl-rootfs');
  // Inline: a 12 MiB filesystem at the start of a 16 MiB partition, the tree right after it.
  const dataBytes = 12 * MIB;
  if (options.inline) {
    rmSync(rootfs, { force: true });
    writeFileSync(rootfs, new Uint8Array(0));
    truncateSync(rootfs, 16 * MIB);
    run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-U', rootFsUuid, '-L', 'rootfs', '-d', tree, rootfs, '12M']);
  } else {
    ext4(rootfs, tree, 12, rootFsUuid, 'rootfs');
  }
  const verityUuid = seededUuid('azl-verity');
  const salt = createHash('sha256').update('azl-salt').digest('hex');
  const hashFile = join(dir, 'roothash.img');
  rmSync(hashFile, { force: true });
  let out: string;
  if (options.inline) {
    out = run('veritysetup', ['format', rootfs, rootfs, '--salt', salt, '--uuid', verityUuid, `--data-blocks=${dataBytes / 4096}`, `--hash-offset=${dataBytes}`]);
  } else {
    out = run('veritysetup', ['format', rootfs, hashFile, '--salt', salt, '--uuid', verityUuid]);
  }
  const rootHash = /Root hash:\s+([0-9a-f]+)/.exec(out)![1]!;
  for (const block of options.damage ?? []) {
    const bytes = readFileSync(rootfs);
    bytes[block * 4096 + 9]! ^= 0xa5;
    writeFileSync(rootfs, bytes);
  }

  const parts = {
    esp: seededUuid('azl-part-esp'),
    boot: seededUuid('azl-part-boot'),
    root: seededUuid('azl-part-root'),
    hash: seededUuid('azl-part-roothash'),
  };
  const spec = (which: 'root' | 'hash') =>
    idType === 'partuuid'
      ? `PARTUUID=${which === 'root' ? parts.root : parts.hash}`
      : idType === 'partlabel'
        ? `PARTLABEL=${which === 'root' ? 'root' : 'roothash'}`
        : `UUID=${which === 'root' ? rootFsUuid : verityUuid}`;
  const hashSpec = options.inline ? spec('root') : spec('hash');
  const verityOptions = ['panic-on-corruption', ...(options.inline ? [`hash-offset=${dataBytes}`] : [])].join(',');
  const claimed = options.cmdline === 'wrong-root-hash' ? 'cd'.repeat(32) : rootHash;
  const switchedOn = options.cmdline === 'verity-off' ? 0 : 1;
  const cmdline =
    `console=ttyS0 rd.systemd.verity=${switchedOn} roothash=${claimed} systemd.verity_root_data=${spec('root')} ` +
    `systemd.verity_root_hash=${hashSpec} systemd.verity_root_options=${verityOptions} root=/dev/mapper/root rd.auto=1`;

  const boot = join(dir, 'boot');
  rmSync(boot, { recursive: true, force: true });
  mkdirSync(join(boot, 'grub2'), { recursive: true });
  writeFileSync(join(boot, 'vmlinuz-6.6.47.1-1.azl3'), seeded('azl-kernel', 32 * 1024));
  writeFileSync(join(boot, 'initramfs-6.6.47.1-1.azl3.img'), seeded('azl-initrd', 32 * 1024));
  if ((options.boot ?? 'grub') === 'grub') {
    writeFileSync(
      join(boot, 'grub2/grub.cfg'),
      [
        'set timeout=0',
        'set rootdevice=/dev/mapper/root',
        'menuentry "Azure Linux" {',
        `\tlinux /vmlinuz-6.6.47.1-1.azl3 ${cmdline}`,
        '\tinitrd /initramfs-6.6.47.1-1.azl3.img',
        '}',
        options.extraGrub?.(cmdline) ?? '',
        '',
      ].join('\n'),
    );
  } else {
    mkdirSync(join(boot, 'loader/entries'), { recursive: true });
    writeFileSync(
      join(boot, 'loader/entries/azl-6.6.47.1-1.azl3.conf'),
      `title Azure Linux\nversion 6.6.47.1-1.azl3\nlinux /vmlinuz-6.6.47.1-1.azl3\ninitrd /initramfs-6.6.47.1-1.azl3.img\noptions ${cmdline}\n`,
    );
  }
  const bootFsUuid = seededUuid('azl-bootfs');
  const bootImage = join(dir, 'boot.ext4');
  ext4(bootImage, boot, 8, bootFsUuid, 'boot');
  const esp = join(dir, 'esp.fat');
  fat(esp, 2, 'a1b2c3d4', 'ESP', { 'boot/grub2/grub.cfg': `search -n -u ${bootFsUuid} -s\nconfigfile ($root)/grub2/grub.cfg\n` }, dir);

  // The customizer shrinks the hash partition to the tree; partitions are whole MiB here.
  const hashMib = options.inline ? 0 : Math.ceil(statSync(hashFile).size / MIB);
  const layout: Piece[] = [
    { name: 'esp', mib: 2, type: 'EF00', guid: parts.esp, file: esp },
    { name: 'boot', mib: 8, type: '8300', guid: parts.boot, file: bootImage },
    { name: 'root', mib: options.inline ? 16 : 12, type: '8300', guid: parts.root, file: rootfs },
    ...(options.inline ? [] : [{ name: 'roothash', mib: hashMib, type: '8300', guid: parts.hash, file: hashFile }]),
  ];
  const { raw, vhdx } = assemble(dir, 'azl', layout, seededUuid('azl-disk'));
  return { raw, vhdx, rootHash, cmdline, partitions: { esp: 1, boot: 2, root: 3, hash: options.inline ? null : 4 } };
}

export interface OsGuardDisk {
  raw: string;
  vhdx: string;
  usrHash: string;
  cmdline: string;
  partitions: { esp: number; boot: number; usr: number; usrHash: number; root: number };
}

/** A PE image: systemd's EFI stub with a `.cmdline` section of `text` (and NUL padding, as ukify leaves it). */
function uki(path: string, text: string, scratch: string): void {
  const section = join(scratch, 'cmdline.txt');
  writeFileSync(section, `${text}\0\0\0`);
  rmSync(path, { force: true });
  const r = spawnSync(UKI_TOOLS.objcopy!, ['--add-section', `.cmdline=${section}`, '--change-section-vma', '.cmdline=0x30000', UKI_TOOLS.stub!, path]);
  if (r.status !== 0) throw new Error(`objcopy failed: ${r.stderr.toString()}`);
}

/**
 * An Azure Linux 3.0 "OS Guard"-style disk (azurelinux 3.0 toolkit/imageconfigs/templates/osguard-base.yaml and
 * files/osguard/repart.d): esp, boot-a (ext4), usr-a (linux-generic ext4), usr-hash-a (the DPS usr-verity type, so
 * DPS pairing finds no data partition of type usr), root-a (DPS root). The command line is in a UKI addon,
 * `EFI/Linux/azl.efi.extra.d/verity.addon.efi`, naming the usr devices by filesystem UUID and verity superblock UUID.
 */
export function buildOsGuardDisk(dir: string, options: { damage?: number[]; sign?: Signer } = {}): OsGuardDisk {
  mkdirSync(dir, { recursive: true });
  const tree = join(dir, 'usr');
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(tree, 'bin'), { recursive: true });
  writeFileSync(join(tree, 'bin/tool'), seeded('osguard-usr', 2 * MIB + 5));
  const usr = join(dir, 'usr.ext4');
  const usrFsUuid = seededUuid('osguard-usr-fs');
  ext4(usr, tree, 8, usrFsUuid, 'usr-a');
  const verityUuid = seededUuid('osguard-verity');
  const hash = join(dir, 'usr-hash.img');
  rmSync(hash, { force: true });
  const out = run('veritysetup', ['format', usr, hash, '--uuid', verityUuid, '--salt', createHash('sha256').update('osguard').digest('hex')]);
  const usrHash = /Root hash:\s+([0-9a-f]+)/.exec(out)![1]!;
  for (const block of options.damage ?? []) {
    const bytes = readFileSync(usr);
    bytes[block * 4096 + 1]! ^= 0x11;
    writeFileSync(usr, bytes);
  }
  const bootFsUuid = seededUuid('osguard-boot-fs');
  const cmdline =
    `usrhash=${usrHash} systemd.verity_usr_data=UUID=${usrFsUuid} systemd.verity_usr_hash=UUID=${verityUuid} ` +
    `systemd.verity_usr_options=root-hash-signature=/boot/usr.hash.sig pre.verity.mount=${bootFsUuid}`;
  const efi = join(dir, 'efi');
  mkdirSync(efi, { recursive: true });
  uki(join(efi, 'azl.efi'), 'console=ttyS0 rd.auto=1', dir);
  uki(join(efi, 'verity.addon.efi'), cmdline, dir);
  const esp = join(dir, 'esp.fat');
  rmSync(esp, { force: true });
  run('mkfs.vfat', ['-C', '-i', '0a0b0c0d', '-n', 'ESP', esp, String(8 * 1024)]);
  for (const d of ['EFI', 'EFI/Linux', 'EFI/Linux/azl.efi.extra.d']) run('mmd', ['-i', esp, `::/${d}`]);
  run('mcopy', ['-i', esp, join(efi, 'azl.efi'), '::/EFI/Linux/azl.efi']);
  run('mcopy', ['-i', esp, join(efi, 'verity.addon.efi'), '::/EFI/Linux/azl.efi.extra.d/verity.addon.efi']);
  const boot = join(dir, 'boot');
  rmSync(boot, { recursive: true, force: true });
  mkdirSync(boot, { recursive: true });
  if (options.sign) signRootHash(usrHash, options.sign, join(boot, 'usr.hash.sig'));
  else writeFileSync(join(boot, 'usr.hash.sig'), seeded('not a real signature', 600));
  const bootImage = join(dir, 'boot.ext4');
  ext4(bootImage, boot, 4, bootFsUuid, 'boot-a');
  const rootImage = join(dir, 'root.ext4');
  mkdirSync(join(dir, 'root-tree/etc'), { recursive: true });
  ext4(rootImage, join(dir, 'root-tree'), 4, seededUuid('osguard-root-fs'), 'root-a');

  const layout: Piece[] = [
    { name: 'esp', mib: 8, type: 'EF00', file: esp },
    { name: 'boot-a', mib: 4, type: '8300', file: bootImage },
    { name: 'usr-a', mib: 8, type: '8300', file: usr },
    { name: 'usr-hash-a', mib: Math.ceil(statSync(hash).size / MIB), type: '77ff5f63-e7b6-4633-acf4-1565b864c0e6', file: hash },
    { name: 'root-a', mib: 4, type: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709', file: rootImage },
  ].map((p) => ({ ...p, guid: seededUuid(`osguard-${p.name}`) }));
  const { raw, vhdx } = assemble(dir, 'osguard', layout, seededUuid('osguard-disk'));
  return { raw, vhdx, usrHash, cmdline, partitions: { esp: 1, boot: 2, usr: 3, usrHash: 4, root: 5 } };
}
