/**
 * The master boot record of sector 0, read only to recognise a GPT disk by its protective MBR
 * [UEFI spec 2.10 §5.2.1 "Legacy MBR", §5.2.3 "Protective MBR"].
 */
import { array, at, bytes, struct, u16le, u32le, u8, type StructValue } from '../binary/struct.js';

/** One of the four partition records [UEFI spec 2.10 Table 5.2]. */
export const MBR_PARTITION_RECORD = struct('MBR partition record', {
  bootIndicator: at(0, u8), // BootIndicator
  startingChs: at(1, bytes(3)), // StartingCHS
  osType: at(4, u8), // OSType: 0xEE marks a GPT protective partition
  endingChs: at(5, bytes(3)), // EndingCHS
  startingLba: at(8, u32le), // StartingLBA
  sizeInLba: at(12, u32le), // SizeInLBA
});

/** The legacy MBR structure [UEFI spec 2.10 Table 5.1]; 512 bytes whatever the sector size. */
export const MBR = struct(
  'MBR',
  {
    bootCode: at(0, bytes(440)), // BootCode
    uniqueMbrDiskSignature: at(440, u32le), // UniqueMBRDiskSignature
    unknown: at(444, u16le), // Unknown
    partitionRecords: at(446, array(MBR_PARTITION_RECORD, 4)), // PartitionRecord[4]
    signature: at(510, u16le), // Signature: 0xAA55 (bytes 55 AA)
  },
  { size: 512 },
);

/** An MBR as MBR reads it, every field as stored. */
export type Mbr = StructValue<typeof MBR.fields>;
/** Signature as a little-endian u16: the bytes 55 AA at offset 510. */
export const MBR_SIGNATURE = 0xaa55;
/** The OSType of a GPT protective partition record [UEFI spec 2.10 Table 5.4]. */
export const GPT_PROTECTIVE_TYPE = 0xee;

/**
 * `protective` when the MBR has a 0xEE record and nothing else, `hybrid` when it lists other partitions too, null when
 * it is no protective MBR (no 55 AA, or no 0xEE record). The 0xEE record may sit in any of the four slots: the
 * kernel's is_pmbr_valid() accepts each.
 */
export function classifyMbr(sector: Uint8Array): 'protective' | 'hybrid' | null {
  if (sector.length < MBR.len) return null;
  const mbr = MBR.get(sector, 0);
  if (mbr.signature !== MBR_SIGNATURE) return null;
  const types = mbr.partitionRecords.map((r) => r.osType);
  if (!types.includes(GPT_PROTECTIVE_TYPE)) return null;
  return types.every((t) => t === 0 || t === GPT_PROTECTIVE_TYPE) ? 'protective' : 'hybrid';
}

/** A protective MBR for a disk of `sectors` sectors: one 0xEE record from LBA 1 over the rest, capped at 2^32 - 1. */
export function protectiveMbr(sectors: number): Uint8Array {
  const empty = { bootIndicator: 0, startingChs: new Uint8Array(3), osType: 0, endingChs: new Uint8Array(3), startingLba: 0, sizeInLba: 0 };
  return MBR.serialize({
    bootCode: new Uint8Array(0),
    uniqueMbrDiskSignature: 0,
    unknown: 0,
    partitionRecords: [
      {
        bootIndicator: 0,
        startingChs: new Uint8Array([0x00, 0x02, 0x00]),
        osType: GPT_PROTECTIVE_TYPE,
        endingChs: new Uint8Array([0xff, 0xff, 0xff]),
        startingLba: 1,
        sizeInLba: Math.min(sectors - 1, 0xffffffff),
      },
      empty,
      empty,
      empty,
    ],
    signature: MBR_SIGNATURE,
  });
}
