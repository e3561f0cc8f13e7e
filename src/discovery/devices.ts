/**
 * Which partition of a disk image a device spec from a kernel command line or a boot loader names (`PARTUUID=`,
 * `PARTLABEL=`, `UUID=`, `LABEL=` and their /dev/disk/by-* links; boot/cmdline.ts parses them). On a running system
 * udev answers this from blkid; here every partition is identified once from the image: its GPT entry, the
 * filesystem at its start, and a verity superblock there.
 *
 * `UUID=` is a filesystem UUID or, for a hash device, the UUID in the verity superblock: blkid reports both as the
 * device's UUID, and Azure Linux's image customizer names hash partitions that way. GPT and filesystem UUIDs compare
 * without regard to case (blkid prints lower case, users type either); labels compare exactly.
 */
import type { DeviceSpec } from '../boot/cmdline.js';
import { VerityError } from '../errors.js';
import { openFat } from '../fs/fat.js';
import { EXT4_MAGIC, EXT4_SUPERBLOCK, EROFS_MAGIC, EROFS_SUPERBLOCK, FILESYSTEM_PROBE_BYTES, FS_SUPERBLOCK_OFFSET } from '../image/filesystems.js';
import { describePartition, partitionSource, type GptPartition, type GptTable } from '../image/gpt.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { superblockAt } from './survey.js';

/** What a partition is known by. */
export interface DeviceIdentity {
  partition: GptPartition;
  /**
   * The filesystem at its start, with its UUID and label as blkid gives them (a FAT volume id as `ABCD-EF01`); null
   * when none is recognised.
   */
  filesystem: { type: 'ext4' | 'erofs' | 'vfat'; uuid: string; label: string } | null;
  /** The UUID in the verity superblock at its start, or null. */
  verityUuid: string | null;
}

/** Identifies every partition of `table` on `disk` (two small reads each). */
export async function identifyPartitions(disk: ByteSource, table: GptTable): Promise<DeviceIdentity[]> {
  const out: DeviceIdentity[] = [];
  for (const partition of table.partitions) {
    if (partition.offset + partition.size > disk.size) continue;
    const source = partitionSource(disk, partition);
    const superblock = await superblockAt(source, 0);
    out.push({ partition, filesystem: superblock ? null : await filesystemIdentity(source), verityUuid: superblock?.uuid ?? null });
  }
  return out;
}

async function filesystemIdentity(source: ByteSource): Promise<DeviceIdentity['filesystem']> {
  if (source.size < FILESYSTEM_PROBE_BYTES) return null;
  const head = new Uint8Array(FILESYSTEM_PROBE_BYTES);
  await readExactly(source, head, 0, 'Partition');
  const ext4 = EXT4_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
  if (ext4.magic === EXT4_MAGIC) return { type: 'ext4', uuid: ext4.uuid, label: trimLabel(new TextDecoder().decode(ext4.volumeName)) };
  const erofs = EROFS_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
  if (erofs.magic === EROFS_MAGIC) {
    return { type: 'erofs', uuid: erofs.uuid, label: trimLabel(new TextDecoder('latin1').decode(erofs.volumeName)) };
  }
  // FAT has no magic number: a boot sector whose parameters hold together, and a root directory that reads, is one.
  try {
    const fat = await openFat(source);
    return { type: 'vfat', uuid: fat.uuid, label: fat.label };
  } catch (e) {
    if (e instanceof VerityError && e.code !== 'E_INTERNAL') return null;
    throw e;
  }
}

/** A fixed-size label field: up to its first NUL. */
function trimLabel(text: string): string {
  const nul = text.indexOf('\0');
  return nul < 0 ? text : text.slice(0, nul);
}

/** The partition `spec` names, or why none does (no match, several, or a spec an image cannot answer). */
export function resolveDevice(spec: DeviceSpec, devices: readonly DeviceIdentity[]): { device: DeviceIdentity } | { problem: string } {
  const same = (a: string | null | undefined, b: string) => a !== null && a !== undefined && a.toLowerCase() === b.toLowerCase();
  let found: DeviceIdentity[];
  switch (spec.kind) {
    case 'partuuid':
      found = devices.filter((d) => same(d.partition.partitionGuid, spec.value));
      break;
    case 'partlabel':
      found = devices.filter((d) => d.partition.name === spec.value);
      break;
    case 'uuid':
      found = devices.filter((d) => same(d.filesystem?.uuid, spec.value) || same(d.verityUuid, spec.value));
      break;
    case 'label':
      found = devices.filter((d) => d.filesystem?.label === spec.value);
      break;
    case 'path':
      return { problem: `${spec.raw} names a device of the running system, which an image does not have` };
  }
  if (found.length === 1) return { device: found[0]! };
  if (found.length === 0) return { problem: `no partition matches ${spec.raw}` };
  return { problem: `${spec.raw} matches ${found.length} partitions (${found.map((d) => describePartition(d.partition)).join('; ')})` };
}

