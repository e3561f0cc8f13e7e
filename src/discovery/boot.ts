/**
 * Targets from the boot configuration: the boot entries of a disk image, their kernel command lines, and the
 * dm-verity targets those name (boot/cmdline.ts), resolved to the image's partitions (devices.ts). This is how the
 * system itself finds its verity devices, so when any boot entry names one, these targets are the image's targets
 * and the other discovery rules (targets.ts) are not used.
 *
 * Read so far: Boot Loader Specification entries (`/loader/entries/*.conf`, also under `/boot`) on every ext4
 * partition. A command line's root hash is a claim by the image, labelled with the entry it came from.
 */
import { fromHex } from '../binary/bytes.js';
import { readBlsEntries } from '../boot/bls.js';
import { type DeviceSpec, type VerityTargetSpec, verityTargetsFromCmdline } from '../boot/cmdline.js';
import { VerityError } from '../errors.js';
import { superblockParams } from '../format/options.js';
import { openExt4 } from '../fs/ext4.js';
import type { Volume } from '../fs/volume.js';
import { describePartition, partitionSource, type GptPartition } from '../image/gpt.js';
import type { ByteSource } from '../io/source.js';
import { planTree } from '../tree/plan.js';
import { type DeviceIdentity, resolveDevice } from './devices.js';
import { superblockAt } from './survey.js';
import type { VerityTarget } from './targets.js';

/** One boot entry and its kernel command line. */
export interface BootEntry {
  loader: 'bls';
  /** Where it was read, as `#2 "boot":/loader/entries/azl.conf`. */
  where: string;
  title: string;
  cmdline: string;
  /** The partition the entry is on (its kernel and initramfs paths are relative to it). */
  partition: GptPartition;
  initrds: string[];
}

export interface BootSearch {
  entries: BootEntry[];
  /** What was looked at. */
  searched: string[];
  /** Entries and keys that could not be read or resolved, one sentence each. */
  problems: string[];
}

const BLS_DIRS = ['/loader/entries', '/boot/loader/entries'];

/** The boot entries on the ext4 partitions of the image. */
export async function findBootEntries(disk: ByteSource, devices: readonly DeviceIdentity[]): Promise<BootSearch> {
  const out: BootSearch = { entries: [], searched: [], problems: [] };
  let volumes = 0;
  for (const device of devices) {
    if (device.filesystem?.type !== 'ext4') continue;
    const name = `#${device.partition.index} "${device.partition.name}"`;
    let volume: Volume;
    try {
      volume = await openExt4(partitionSource(disk, device.partition));
    } catch (e) {
      if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
      out.problems.push(`${name}: its ext4 filesystem cannot be read (${e.message})`);
      continue;
    }
    volumes++;
    for (const dir of BLS_DIRS) {
      const { entries, problems } = await readBlsEntries(volume, dir);
      out.problems.push(...problems.map((p) => `${name}: ${p}`));
      for (const e of entries) {
        out.entries.push({
          loader: 'bls',
          where: `${name}:${dir}/${e.fileName}`,
          title: e.title ?? e.id,
          cmdline: e.options,
          partition: device.partition,
          initrds: e.initrds,
        });
      }
    }
  }
  out.searched.push(`${volumes} ext4 filesystems for Boot Loader Specification entries (${BLS_DIRS.join(', ')}): ${out.entries.length} found`);
  return out;
}

/**
 * The targets the entries' command lines name, resolved to partitions, each once (entries that repeat a target add
 * their place to its `from`). Targets that cannot be resolved become problems.
 */
export async function bootTargets(
  disk: ByteSource,
  entries: readonly BootEntry[],
  devices: readonly DeviceIdentity[],
  problems: string[],
): Promise<VerityTarget[]> {
  const byKey = new Map<string, VerityTarget>();
  for (const entry of entries) {
    const verity = verityTargetsFromCmdline(entry.cmdline);
    problems.push(...verity.problems.map((p) => `${entry.where}: ${p}`));
    for (const spec of verity.targets) {
      const found = await resolveTarget(disk, entry, spec, devices);
      if ('problem' in found) {
        problems.push(`${entry.where}: ${spec.name}: ${found.problem}`);
        continue;
      }
      const t = found.target;
      const key = `${t.dataPartition!.index}:${t.hashPartition!.index}:${t.hashOffset}:${spec.name}:${'hex' in spec.rootHash ? spec.rootHash.hex : ''}`;
      const seen = byKey.get(key);
      if (seen) seen.claim!.from += `, ${entry.where}`;
      else byKey.set(key, t);
    }
  }
  return [...byKey.values()];
}

async function resolveTarget(
  disk: ByteSource,
  entry: BootEntry,
  spec: VerityTargetSpec,
  devices: readonly DeviceIdentity[],
): Promise<{ target: VerityTarget } | { problem: string }> {
  if (!('hex' in spec.rootHash) || !isDevice(spec.hash)) {
    return { problem: 'its hash tree or root hash is a file in the initramfs, which this version does not read yet' };
  }
  const data = resolveDevice(spec.data, devices);
  if ('problem' in data) return { problem: `data device: ${data.problem}` };
  const hashDevice = resolveDevice(spec.hash, devices);
  if ('problem' in hashDevice) return { problem: `hash device: ${hashDevice.problem}` };
  const hashOffset = spec.hashOffset ?? 0;
  const hash = partitionSource(disk, hashDevice.device.partition);
  const superblock = await superblockAt(hash, hashOffset);
  if (!superblock) {
    return { problem: `${spec.hash.raw} has no verity superblock at byte ${hashOffset}` };
  }
  const dataPartition = data.device.partition;
  const hashPartition = hashDevice.device.partition;
  return {
    target: {
      name: spec.name,
      via: 'boot-entry',
      data: partitionSource(disk, dataPartition),
      hash,
      dataPartition,
      hashPartition,
      hashOffset,
      tree: planTree(superblockParams(superblock, hashOffset)),
      claim: { bytes: fromHex(spec.rootHash.hex, 'root hash'), from: `the kernel command line of ${entry.where}` },
      description:
        `data ${describePartition(dataPartition)} (${spec.data.raw}); hash ${describePartition(hashPartition)} ` +
        `(${spec.hash.raw}${hashOffset > 0 ? `, superblock at byte ${hashOffset}` : ''}), ${spec.style} keys of "${entry.title}"`,
    },
  };
}

function isDevice(x: DeviceSpec | { initramfsPath: string }): x is DeviceSpec {
  return 'kind' in x;
}
