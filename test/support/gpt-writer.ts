/**
 * A GPT writer for synthetic disks, built from the declarations the reader parses with (GPT_HEADER, GPT_ENTRY, MBR).
 * What keeps it honest: the round-trip tests in test/image/gpt.test.ts, zlib's CRC-32 for the checksums, and the tests
 * on disks made by sgdisk, sfdisk and fdisk, which the reader must read as sfdisk does.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';
import { GPT_ENTRY, GPT_HEADER, sealGptHeader, serializeGptHeader, type GptHeaderValue } from '../../src/image/gpt.js';
import { protectiveMbr } from '../../src/image/mbr.js';

/** DPS and generic partition type GUIDs the tests use. */
export const ROOT_X86_64 = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';
export const ROOT_X86_64_VERITY = '2c7357ed-ebd2-46d9-aec1-23d437ec2bf5';
export const USR_ARM64 = 'b0e01050-ee5f-4390-949a-9101b17104e9';
export const USR_ARM64_VERITY = '6e11a4e7-fbca-4ded-b9e9-e1a512bb664e';
export const LINUX_GENERIC = '0fc63daf-8483-4772-8e79-3d69d8477de4';

// ---------------------------------------------------------------------------------------------------------------------

export const HF = GPT_HEADER.fields;
export const EF = GPT_ENTRY.fields;

export interface PartSpec {
  type: string;
  guid: string;
  first: number;
  last: number;
  name?: string;
  attributes?: bigint;
  slot?: number;
}

export interface DiskSpec {
  sectorSize: 512 | 4096;
  sectors: number;
  partitions: PartSpec[];
  entryCount?: number;
  entrySize?: number;
  diskGuid?: string;
}

/** Changes fields of the header at `lba` and re-seals its CRC, as a tool rewriting it would. */
export function setHeader(disk: Uint8Array, lba: number, sectorSize: number, changes: Partial<GptHeaderValue>): void {
  const at = lba * sectorSize;
  GPT_HEADER.put(disk, at, { ...GPT_HEADER.get(disk, at), ...changes });
  sealGptHeader(disk, at);
}

export function buildGpt(spec: DiskSpec): Uint8Array {
  const { sectorSize: ss, sectors } = spec;
  const count = spec.entryCount ?? 128;
  const size = spec.entrySize ?? 128;
  const disk = new Uint8Array(ss * sectors);
  const last = sectors - 1;
  const arraySectors = Math.ceil((count * size) / ss);
  disk.set(protectiveMbr(sectors), 0);
  const entries = new Uint8Array(count * size);
  spec.partitions.forEach((p, i) => {
    GPT_ENTRY.put(entries, (p.slot ?? i) * size, {
      partitionTypeGuid: p.type,
      uniquePartitionGuid: p.guid,
      startingLba: BigInt(p.first),
      endingLba: BigInt(p.last),
      attributes: p.attributes ?? 0n,
      partitionName: p.name ?? '',
    });
  });
  const header = (my: number, alternate: number, entryLba: number) => {
    disk.set(entries, entryLba * ss);
    const bytes = serializeGptHeader({
      signature: 'EFI PART',
      revision: 0x00010000,
      headerSize: 92,
      headerCrc32: 0,
      reserved: 0,
      myLba: BigInt(my),
      alternateLba: BigInt(alternate),
      firstUsableLba: BigInt(2 + arraySectors),
      lastUsableLba: BigInt(last - 1 - arraySectors),
      diskGuid: spec.diskGuid ?? '00112233-4455-6677-8899-aabbccddeeff',
      partitionEntryLba: BigInt(entryLba),
      numberOfPartitionEntries: count,
      sizeOfPartitionEntry: size,
      partitionEntryArrayCrc32: zlibCrc32(entries),
    });
    disk.set(bytes, my * ss);
  };
  header(1, last, 2);
  header(last, 1, last - arraySectors);
  return disk;
}

