/**
 * Targets from the boot configuration: the boot entries of a disk image, their kernel command lines, and the
 * dm-verity targets those name (boot/cmdline.ts), resolved to the image's partitions (devices.ts) or to files of the
 * entry's initramfs. This is how the system itself finds its verity devices, so when any boot entry names one, these
 * targets are the image's targets and the other discovery rules (targets.ts) are a fallback only.
 *
 * Boot entries come from every ext4 and FAT partition:
 * - GRUB configurations (boot/grub.ts interprets them; nothing is executed), started where firmware or a distribution
 *   puts them: the ESP's stub (`/EFI/<vendor>/grub.cfg`, `/boot/grub2/grub.cfg` as Mariner's ESP has it), then any
 *   `grub2/grub.cfg` or `grub/grub.cfg` not already reached through a `configfile`;
 * - Boot Loader Specification entries (`/loader/entries/*.conf`, also under `/boot`);
 * - unified kernel images (`/EFI/Linux/*.efi` with their add-ons, boot/uki.ts).
 *
 * A root hash read this way is a claim by the image, labelled with the entry and file it came from.
 */
import { fromHex, toHex } from '../binary/bytes.js';
import { readBlsEntries } from '../boot/bls.js';
import {
  cmdlineValues,
  type DeviceSpec,
  type InitramfsFile,
  tokenizeCmdline,
  type VerityTargetSpec,
  verityTargetsFromCmdline,
} from '../boot/cmdline.js';
import { normaliseCpioName } from '../boot/cpio.js';
import { type BootFile, type GrubHost, interpretGrubConfig, type SearchKind } from '../boot/grub.js';
import { readInitramfs } from '../boot/initramfs.js';
import { readUkis } from '../boot/uki.js';
import { VerityError } from '../errors.js';
import { DEFAULT_ROOTS } from '../fec/rs.js';
import { superblockParams } from '../format/options.js';
import { openExt4 } from '../fs/ext4.js';
import { openFat } from '../fs/fat.js';
import type { Volume } from '../fs/volume.js';
import { describePartition, partitionSource, type GptPartition } from '../image/gpt.js';
import { bytesSource, type ByteSource } from '../io/source.js';
import { planTree } from '../tree/plan.js';
import { type DeviceIdentity, resolveDevice } from './devices.js';
import { superblockAt } from './survey.js';
import type { RootHashClaim, TargetFec, UnresolvedTarget, VerityTarget } from './targets.js';

/** A file on a partition of the image. */
export interface PartitionFile {
  partition: GptPartition;
  path: string;
}

/** One boot entry and its kernel command line. */
export interface BootEntry {
  loader: 'grub' | 'bls' | 'uki';
  /** Where it is defined: `#2 "BootA":/grub2/grub.cfg, menu entry "CBL-Mariner"`, a BLS file, a UKI and its add-ons. */
  where: string;
  title: string;
  cmdline: string;
  /** The initramfs files it loads, in order (later ones are unpacked over earlier ones). */
  initrds: PartitionFile[];
  /** A GRUB recovery or rescue entry: listed, but not a source of targets. */
  recovery: boolean;
  /** The partition it was read from (its boot partition: paths on the running system's /boot are looked up there). */
  partition: GptPartition;
}

export interface BootSearch {
  entries: BootEntry[];
  /** What was looked at. */
  searched: string[];
  /** Entries and files that could not be read or resolved, one sentence each. */
  problems: string[];
}

const BLS_DIRS = ['/loader/entries', '/boot/loader/entries'];
/** Where GRUB's configuration is, on an ESP (after `/EFI/<vendor>/`) and on a boot or root partition. */
const GRUB_FILES = ['/boot/grub2/grub.cfg', '/boot/grub/grub.cfg', '/grub2/grub.cfg', '/grub/grub.cfg'];
/** Vendor directories of `/EFI` looked into for a grub.cfg. */
const MAX_EFI_VENDORS = 64;

/** `#2 "BootA":/grub2/grub.cfg` */
export function placeOf(file: PartitionFile): string {
  return `#${file.partition.index} "${file.partition.name}":${file.path}`;
}

/**
 * The filesystems of the image's partitions, opened on demand, once; also GRUB's view of them: partition N of the
 * disk is GRUB's device `hd0,gptN`.
 */
class DiskVolumes implements GrubHost {
  private readonly opened = new Map<number, Promise<Volume | null>>();
  readonly problems: string[] = [];

  constructor(
    private readonly disk: ByteSource,
    readonly devices: readonly DeviceIdentity[],
  ) {}

  /** The partitions with a filesystem this module reads, FAT (ESPs) first: firmware starts there. */
  get readable(): DeviceIdentity[] {
    const rank = (d: DeviceIdentity) => (d.filesystem?.type === 'vfat' ? 0 : 1);
    return this.devices.filter((d) => d.filesystem?.type === 'vfat' || d.filesystem?.type === 'ext4').sort((a, b) => rank(a) - rank(b));
  }

  deviceName(partition: GptPartition): string {
    return `hd0,gpt${partition.index}`;
  }

  deviceOf(name: string): DeviceIdentity | null {
    const m = /^hd0,(?:gpt)?(\d+)$/.exec(name);
    return m ? (this.devices.find((d) => d.partition.index === Number(m[1])) ?? null) : null;
  }

  volume(device: DeviceIdentity): Promise<Volume | null> {
    const index = device.partition.index;
    let v = this.opened.get(index);
    if (!v) {
      v = this.open(device);
      this.opened.set(index, v);
    }
    return v;
  }

  private async open(device: DeviceIdentity): Promise<Volume | null> {
    const source = partitionSource(this.disk, device.partition);
    try {
      if (device.filesystem?.type === 'ext4') return await openExt4(source);
      if (device.filesystem?.type === 'vfat') return await openFat(source);
      return null;
    } catch (e) {
      if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
      this.problems.push(`${describePartition(device.partition)}: its ${device.filesystem?.type} filesystem cannot be read (${e.message})`);
      return null;
    }
  }

  async openVolume(name: string): Promise<Volume | null> {
    const device = this.deviceOf(name);
    return device ? this.volume(device) : null;
  }

  async search(kind: SearchKind, value: string): Promise<string | null> {
    for (const d of this.readable) {
      const fs = d.filesystem!;
      const hit =
        kind === 'fs-uuid'
          ? fs.uuid.toLowerCase() === value.toLowerCase()
          : kind === 'label'
            ? fs.label === value
            : (await (await this.volume(d))?.open(value)) != null;
      if (hit) return this.deviceName(d.partition);
    }
    return null;
  }

  /** `file` of GRUB's device `file.device`, or null when it is not a partition of this disk. */
  fileOf(file: BootFile): PartitionFile | null {
    const device = this.deviceOf(file.device);
    return device ? { partition: device.partition, path: file.path } : null;
  }
}

/** The boot entries of the image: GRUB menus, BLS entries and UKIs on its ext4 and FAT partitions. */
export async function findBootEntries(disk: ByteSource, devices: readonly DeviceIdentity[]): Promise<BootSearch> {
  const volumes = new DiskVolumes(disk, devices);
  const out: BootSearch = { entries: [], searched: [], problems: volumes.problems };
  const seen = new Set<string>();
  const add = (e: BootEntry) => {
    const key = `${e.loader}\n${e.where}\n${e.cmdline}\n${e.initrds.map(placeOf).join('\n')}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.entries.push(e);
  };
  const readable = volumes.readable;
  const counts = { grub: 0, bls: 0, uki: 0, opened: 0 };
  const grubStarts: string[] = [];
  // Configuration files that defined entries already listed: a grub.cfg reached through the ESP's `configfile` is
  // not interpreted again on its own.
  const grubSources = new Set<string>();
  for (const device of readable) {
    const volume = await volumes.volume(device);
    if (!volume) continue;
    counts.opened++;
    const part = device.partition;
    const name = `#${part.index} "${part.name}"`;

    for (const path of await grubCandidates(volume)) {
      const start: BootFile = { device: volumes.deviceName(part), path };
      if (grubSources.has(`${start.device}:${path}`)) continue;
      grubStarts.push(`${name}:${path}`);
      const result = await interpretGrubConfig(start, volumes);
      for (const p of result.problems) {
        const at = p.file ? volumes.fileOf(p.file) : null;
        out.problems.push(`${at ? placeOf(at) : name}${p.line !== null ? ` line ${p.line}` : ''}: ${p.message}`);
      }
      for (const e of result.entries) {
        grubSources.add(`${e.source.device}:${e.source.path}`);
        const source = volumes.fileOf(e.source);
        const initrds: PartitionFile[] = [];
        for (const f of e.initrds) {
          const file = volumes.fileOf(f);
          if (file) initrds.push(file);
          else out.problems.push(`${e.title}: initrd (${f.device})${f.path} is not on a partition of this disk`);
        }
        counts.grub++;
        add({
          loader: 'grub',
          where: `${source ? placeOf(source) : `(${e.source.device})${e.source.path}`}${e.title ? `, menu entry "${[...e.menuPath, e.title].join(' > ')}"` : ''}`,
          title: e.title,
          cmdline: e.cmdline,
          initrds,
          recovery: e.recovery,
          partition: source?.partition ?? part,
        });
      }
    }

    for (const dir of BLS_DIRS) {
      const { entries, problems } = await readBlsEntries(volume, dir);
      out.problems.push(...problems.map((p) => `${name}: ${p}`));
      for (const e of entries) {
        counts.bls++;
        add({
          loader: 'bls',
          where: placeOf({ partition: part, path: `${dir}/${e.fileName}` }),
          title: e.title ?? e.id,
          cmdline: e.options,
          initrds: e.initrds.map((path) => ({ partition: part, path })),
          recovery: false,
          partition: part,
        });
      }
    }

    if ((await volume.list('/EFI/Linux')) !== null) {
      const { entries, problems } = await readUkis(volume);
      out.problems.push(...problems.map((p) => `${name}: ${p}`));
      for (const e of entries) {
        counts.uki++;
        const addons = e.addons.filter((a) => a.cmdline !== null).map((a) => a.path);
        add({
          loader: 'uki',
          where: `${placeOf({ partition: part, path: e.path })}${addons.length > 0 ? ` with add-on${addons.length > 1 ? 's' : ''} ${addons.join(', ')}` : ''}`,
          title: e.title,
          cmdline: e.cmdline,
          // The UKI's own .initrd section is not read: the verity keys it needs are on its command line.
          initrds: [],
          recovery: false,
          partition: part,
        });
      }
    }
  }
  out.searched.push(
    `${counts.opened} filesystems (ext4 and FAT) for boot entries: ` +
      `GRUB configurations (${grubStarts.length > 0 ? grubStarts.join(', ') : 'none'}): ${counts.grub} entries; ` +
      `Boot Loader Specification entries (${BLS_DIRS.join(', ')}): ${counts.bls}; unified kernel images (/EFI/Linux): ${counts.uki}`,
  );
  return out;
}

/** The GRUB configurations of a volume, in the order firmware would reach them. */
async function grubCandidates(volume: Volume): Promise<string[]> {
  const paths: string[] = [];
  const vendors = (await volume.list('/EFI')) ?? [];
  for (const v of vendors.filter((e) => e.kind === 'directory').slice(0, MAX_EFI_VENDORS)) paths.push(`/EFI/${v.name}/grub.cfg`);
  paths.push(...GRUB_FILES);
  const found: string[] = [];
  for (const p of paths) if ((await volume.open(p)) !== null) found.push(p);
  return found;
}

/**
 * The targets the entries' command lines name, resolved to partitions or initramfs files, each once (entries that
 * repeat a target add their place to its `from`). A target that cannot be resolved is `unresolved`: the image says it
 * is protected, and it cannot be checked. Recovery entries are not used.
 */
export async function bootTargets(
  disk: ByteSource,
  entries: readonly BootEntry[],
  devices: readonly DeviceIdentity[],
  problems: string[],
): Promise<{ targets: VerityTarget[]; unresolved: UnresolvedTarget[] }> {
  const byKey = new Map<string, VerityTarget>();
  const unresolved = new Map<string, UnresolvedTarget>();
  for (const entry of entries) {
    if (entry.recovery) continue;
    const verity = verityTargetsFromCmdline(entry.cmdline);
    problems.push(...verity.problems.map((p) => `${entry.where}: ${p}`));
    for (const spec of verity.targets) {
      let found: VerityTarget | { problem: string };
      try {
        found = await resolveTarget(disk, entry, spec, devices);
      } catch (e) {
        if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
        found = { problem: e.message };
      }
      if ('problem' in found) {
        const key = `${spec.name}\n${found.problem}`;
        const seen = unresolved.get(key);
        if (seen) seen.from += `, ${entry.where}`;
        else unresolved.set(key, { name: spec.name, from: entry.where, reason: found.problem });
        continue;
      }
      const key = [found.dataPartition?.index, found.hashPartition?.index, found.hashFile, found.hashOffset, spec.name, toHex(found.claim!.bytes)].join(':');
      const seen = byKey.get(key);
      if (seen) seen.claim!.from += `; also ${entry.where}`;
      else byKey.set(key, found);
    }
  }
  return { targets: [...byKey.values()], unresolved: [...unresolved.values()] };
}

/** Mount points under which the running system sees its boot partition. */
const BOOT_MOUNTS = ['/boot/efi/', '/boot/', '/efi/'];
const MAX_SIGNATURE_BYTES = 64 * 1024;

/**
 * The signature a target names for its root hash, read from the image: a file of the initramfs, inline base64, or a
 * path on the running system, looked for on the entry's own partition (mounted at /boot, /efi or /boot/efi there).
 */
async function signatureOf(
  disk: ByteSource,
  devices: readonly DeviceIdentity[],
  entry: BootEntry,
  sig: NonNullable<VerityTargetSpec['signature']>,
  fileOf: (f: InitramfsFile) => { bytes: Uint8Array; initrd: PartitionFile } | null,
  describeFile: (f: InitramfsFile, initrd: PartitionFile) => string,
): Promise<Pick<RootHashClaim, 'signature' | 'signatureBytes'>> {
  if (isInitramfsFile(sig)) {
    const file = fileOf(sig);
    return file
      ? { signature: `a signature in ${describeFile(sig, file.initrd)}`, signatureBytes: file.bytes }
      : { signature: `a signature ${sig.initramfsPath} that is not in the initramfs` };
  }
  if ('base64' in sig) {
    try {
      return { signature: 'an inline signature (base64 on the command line)', signatureBytes: fromBase64(sig.base64) };
    } catch {
      return { signature: 'an inline signature that is not valid base64' };
    }
  }
  // The partition mounted there: the one `pre.verity.mount=` names (Azure Linux mounts /boot before verity), else
  // the entry's own.
  const partitions: GptPartition[] = [];
  for (const uuid of cmdlineValues(tokenizeCmdline(entry.cmdline), 'pre.verity.mount')) {
    const found = resolveDevice({ kind: 'uuid', value: uuid, raw: `UUID=${uuid}` }, devices);
    if ('device' in found) partitions.push(found.device.partition);
  }
  partitions.push(entry.partition);
  const mount = BOOT_MOUNTS.find((m) => sig.path.startsWith(m));
  for (const partition of mount ? partitions : []) {
    const path = sig.path.slice(mount!.length - 1);
    const volume = await volumeAt(disk, partition).catch((e: unknown) => {
      if (e instanceof VerityError && e.code !== 'E_INTERNAL') return null;
      throw e;
    });
    const bytes = await volume?.readFile(path, MAX_SIGNATURE_BYTES).catch((e: unknown) => {
      if (e instanceof VerityError && e.code !== 'E_INTERNAL') return null;
      throw e;
    });
    if (bytes) return { signature: `a signature in ${placeOf({ partition, path })} (${sig.path} on the running system)`, signatureBytes: bytes };
  }
  return { signature: `a signature at ${sig.path} on the running system, not found in the image` };
}

function fromBase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function isInitramfsFile(x: object | null | undefined): x is InitramfsFile {
  return x != null && 'initramfsPath' in x;
}

/** The initramfs files a target names (hash tree, root hash, signature), read from the entry's initrds. */
async function initramfsFiles(entry: BootEntry, disk: ByteSource, paths: string[]): Promise<Map<string, { bytes: Uint8Array; initrd: PartitionFile }>> {
  const found = new Map<string, { bytes: Uint8Array; initrd: PartitionFile }>();
  if (paths.length === 0) return found;
  if (entry.initrds.length === 0) throw new VerityError('E_NO_FILE', `the entry loads no initramfs, and ${paths.join(', ')} would be in it`);
  const wanted = new Set(paths.map(normaliseCpioName));
  // The kernel unpacks the initrds in order into one tree: a later file replaces an earlier one of the same name.
  for (const initrd of entry.initrds) {
    const volume = await volumeAt(disk, initrd.partition);
    const source = volume ? await volume.open(initrd.path) : null;
    if (!source) throw new VerityError('E_NO_FILE', `its initramfs ${placeOf(initrd)} does not exist`);
    let files: Map<string, Uint8Array>;
    try {
      files = (await readInitramfs(source, { wanted: (n) => wanted.has(n) })).files;
    } catch (e) {
      if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
      throw new VerityError(e.code, `its initramfs ${placeOf(initrd)} cannot be read: ${e.message}`, { data: e.data });
    }
    for (const [name, bytes] of files) found.set(name, { bytes, initrd });
  }
  return found;
}

async function volumeAt(disk: ByteSource, partition: GptPartition): Promise<Volume | null> {
  const source = partitionSource(disk, partition);
  try {
    return await openExt4(source);
  } catch (e) {
    if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
    return await openFat(source);
  }
}

async function resolveTarget(
  disk: ByteSource,
  entry: BootEntry,
  spec: VerityTargetSpec,
  devices: readonly DeviceIdentity[],
): Promise<VerityTarget | { problem: string }> {
  const cmdline = `the kernel command line of ${entry.where}`;
  const data = resolveDevice(spec.data, devices);
  if ('problem' in data) return { problem: `data device: ${data.problem}` };

  const inInitramfs = [spec.hash, spec.rootHash, spec.signature, spec.fec?.device].filter(isInitramfsFile).map((f) => f.initramfsPath);
  const files = await initramfsFiles(entry, disk, inInitramfs);
  const fileOf = (f: InitramfsFile) => files.get(normaliseCpioName(f.initramfsPath)) ?? null;
  const describeFile = (f: InitramfsFile, initrd: PartitionFile) => `initramfs file ${f.initramfsPath} in ${placeOf(initrd)}`;
  const missing = (f: InitramfsFile, what: string) =>
    ({ problem: `its ${what} ${f.initramfsPath} is not in its initramfs (${entry.initrds.map(placeOf).join(', ')})` }) as const;

  let hash: ByteSource;
  let hashPartition: GptPartition | null = null;
  let hashFile: string | null = null;
  let hashText: string;
  const hashOffset = spec.hashOffset ?? 0;
  if (isInitramfsFile(spec.hash)) {
    const file = fileOf(spec.hash);
    if (!file) return missing(spec.hash, 'hash tree');
    hash = bytesSource(file.bytes);
    hashFile = describeFile(spec.hash, file.initrd);
    hashText = hashFile;
  } else {
    const hashDevice = resolveDevice(spec.hash, devices);
    if ('problem' in hashDevice) return { problem: `hash device: ${hashDevice.problem}` };
    hashPartition = hashDevice.device.partition;
    hash = partitionSource(disk, hashPartition);
    hashText = `${describePartition(hashPartition)} (${spec.hash.raw}${hashOffset > 0 ? `, superblock at byte ${hashOffset}` : ''})`;
  }
  const superblock = await superblockAt(hash, hashOffset);
  if (!superblock) return { problem: `${hashFile ?? (spec.hash as DeviceSpec).raw} has no verity superblock at byte ${hashOffset}` };

  let claim: RootHashClaim;
  if (isInitramfsFile(spec.rootHash)) {
    const file = fileOf(spec.rootHash);
    if (!file) return missing(spec.rootHash, 'root hash file');
    const text = new TextDecoder('latin1').decode(file.bytes).trim();
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(text)) {
      return { problem: `its root hash file ${spec.rootHash.initramfsPath} does not hold a hex root hash (${JSON.stringify(text.slice(0, 80))})` };
    }
    claim = { bytes: fromHex(text, 'root hash'), from: `${describeFile(spec.rootHash, file.initrd)}, named by ${cmdline}` };
  } else {
    claim = { bytes: fromHex(spec.rootHash.hex, 'root hash'), from: cmdline };
  }
  if (spec.signature) Object.assign(claim, await signatureOf(disk, devices, entry, spec.signature, fileOf, describeFile));

  // FEC is optional: parity that cannot be found only means no repair assessment, said in the description.
  let fec: TargetFec | undefined;
  let fecText = '';
  if (spec.fec?.device) {
    const roots = spec.fec.roots ?? DEFAULT_ROOTS;
    const offset = spec.fec.offset ?? 0;
    if (isInitramfsFile(spec.fec.device)) {
      const file = fileOf(spec.fec.device);
      if (file) {
        fec = { source: bytesSource(file.bytes), where: describeFile(spec.fec.device, file.initrd), roots, offset, onHashDevice: false };
        fecText = `; FEC ${spec.fec.device.initramfsPath} with ${roots} roots`;
      } else fecText = `; FEC ${spec.fec.device.initramfsPath} not in its initramfs (not used)`;
    } else {
      const device = resolveDevice(spec.fec.device, devices);
      if ('problem' in device) fecText = `; FEC device ${spec.fec.device.raw}: ${device.problem} (not used)`;
      else {
        const partition = device.device.partition;
        const onHashDevice = hashPartition !== null && partition.index === hashPartition.index;
        fec = { source: partitionSource(disk, partition), where: describePartition(partition), roots, offset, onHashDevice };
        fecText = `; FEC ${describePartition(partition)} with ${roots} roots`;
      }
    }
  } else if (spec.fec) fecText = `; FEC with ${spec.fec.roots ?? '?'} roots but no FEC device (not used)`;

  const dataPartition = data.device.partition;
  return {
    ...(fec && { fec }),
    name: spec.name,
    via: 'boot-entry',
    data: partitionSource(disk, dataPartition),
    hash,
    dataPartition,
    hashPartition,
    hashFile,
    hashOffset,
    tree: planTree(superblockParams(superblock, hashOffset)),
    claim,
    description:
      `data ${describePartition(dataPartition)} (${spec.data.raw}); hash ${hashText}, ${spec.style} keys of "${entry.title}"` + fecText,
  };
}
