/**
 * Pairing policy for Discoverable Partitions: which data partition goes with which hash partition, following
 * systemd's rules (UAPI Discoverable Partitions Specification; systemd src/shared/dissect-image.c).
 */
import { formatUuid, fromHex } from '../binary/bytes.js';
import { VerityError } from '../errors.js';
import { dpsTypeByName, type DpsArchitecture } from '../image/dps.js';
import { GPT_ATTRIBUTE, type GptPartition, type GptTable } from '../image/gpt.js';

export interface VerityPair {
  /** `root` or `usr`. */
  role: 'root' | 'usr';
  architecture: DpsArchitecture;
  /** The data partition and the one holding its superblock and hash tree. */
  data: GptPartition;
  hash: GptPartition;
  /** The partition of the signed root hash (`…-verity-sig`), when exactly one of this role and architecture exists. */
  signature: GptPartition | null;
  /** Every signature partition of its role and architecture (A/B disks have one per slot: their JSON tells them apart). */
  signatures: GptPartition[];
  /** `root-hash` when the partition GUIDs are the ones the root hash gives them (docs/disk-image-formats.md, "Discoverable Partitions"), `type` otherwise. */
  matchedBy: 'type' | 'root-hash';
}

/**
 * Data and hash partitions that belong together by DPS type (`root-x86-64` with `root-x86-64-verity`, `usr-arm64`
 * with `usr-arm64-verity`, …), skipping partitions flagged no-auto as systemd does (src/shared/dissect-image.c).
 *
 * With a root hash, only partitions whose GUIDs it gives are paired, as systemd does (UAPI Discoverable Partitions Specification, "Partition UUIDs"; systemd src/shared/dissect-image.c): the
 * data partition's GUID is the first 16 bytes of the root hash and the hash partition's the last 16, both as the
 * textual UUID of those bytes in order. Without one, every data partition is paired with every hash partition of the
 * same role and architecture: usually one pair, and several only on A/B disks, where the root hash decides.
 */
export function findVerityPairs(table: GptTable, rootHash?: Uint8Array | string): VerityPair[] {
  let dataGuid: string | null = null;
  let hashGuid: string | null = null;
  if (rootHash !== undefined) {
    const bytes = typeof rootHash === 'string' ? fromHex(rootHash, 'root hash') : rootHash;
    // systemd refuses root hashes shorter than a UUID; for digests under 32 bytes the two halves overlap.
    // formatUuid prints the bytes in order: the sd_id128 text, with no GUID byte swapping.
    if (bytes.length < 16) {
      throw new VerityError(
        'E_PARAM',
        `Invalid root hash: ${bytes.length} bytes, but the partition UUIDs need at least 16.`,
      );
    }
    dataGuid = formatUuid(bytes.subarray(0, 16));
    hashGuid = formatUuid(bytes.subarray(bytes.length - 16));
  }
  const usable = table.partitions.filter((p) => (p.attributes & GPT_ATTRIBUTE.noAuto) === 0n);
  const ofType = (name: string) => usable.filter((p) => p.dpsType === name);

  const pairs: VerityPair[] = [];
  for (const role of ['root', 'usr'] as const) {
    for (const architecture of ['x86-64', 'arm64'] as const) {
      const dataType = dpsNameFor(role, architecture, '');
      let data = ofType(dataType);
      let hash = ofType(dpsNameFor(role, architecture, '-verity'));
      if (dataGuid !== null) {
        data = data.filter((p) => p.partitionGuid === dataGuid);
        hash = hash.filter((p) => p.partitionGuid === hashGuid);
      }
      const signatures = ofType(dpsNameFor(role, architecture, '-verity-sig'));
      for (const d of data) {
        for (const h of hash) {
          pairs.push({
            role,
            architecture,
            data: d,
            hash: h,
            signature: signatures.length === 1 ? signatures[0]! : null,
            signatures,
            matchedBy: dataGuid !== null ? 'root-hash' : 'type',
          });
        }
      }
    }
  }
  return pairs;
}

function dpsNameFor(role: 'root' | 'usr', architecture: DpsArchitecture, suffix: string): string {
  const name = `${role}-${architecture}${suffix}`;
  if (!dpsTypeByName(name)) throw new VerityError('E_INTERNAL', `No DPS type named ${name}.`);
  return name;
}
