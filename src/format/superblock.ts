/**
 * The verity superblock, `struct verity_sb` of cryptsetup lib/verity/verity.c: 512 bytes, packed, little-endian.
 * The kernel never reads it (Documentation/admin-guide/device-mapper/verity.rst); it only carries the parameters for
 * userspace. Layout and read checks: veritysetup-format.md §1.1.
 */
import { VerityError } from '../errors.js';
import { resolveAlgorithm } from './algorithms.js';
import { formatUuid, parseUuid, viewOf } from '../binary/bytes.js';
import { MAX_SALT_SIZE, SUPERBLOCK_SIZE, checkBlockSize } from './params.js';

export const SUPERBLOCK_SIGNATURE = new Uint8Array([0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0]); // "verity\0\0"
export const SUPERBLOCK_VERSION = 1;

export interface Superblock {
  version: number;
  hashType: 0 | 1;
  /** Lower-case textual UUID; the 16 bytes are stored in textual order (no GUID byte swapping). */
  uuid: string;
  /** As stored; veritysetup writes it lower-cased but keeps the case of what it reads. */
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  salt: Uint8Array;
}

/** Field offsets, declared once for both directions. */
const F = {
  signature: 0, // 8 bytes
  version: 8, // u32
  hashType: 12, // u32
  uuid: 16, // 16 bytes
  algorithm: 32, // 32 bytes, NUL-padded ASCII
  dataBlockSize: 64, // u32
  hashBlockSize: 68, // u32
  dataBlocks: 72, // u64
  saltSize: 80, // u16
  salt: 88, // 256 bytes
} as const;
const ALGORITHM_FIELD = 32;

export function serializeSuperblock(sb: Superblock): Uint8Array {
  if (sb.salt.length > MAX_SALT_SIZE) {
    throw new VerityError('E_PARAM', `Salt is ${sb.salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`);
  }
  const name = new TextEncoder().encode(sb.algorithm);
  // veritysetup copies with strncpy(…, 31): the name keeps at least one terminating NUL.
  if (name.length > ALGORITHM_FIELD - 1) {
    throw new VerityError('E_PARAM', `Hash algorithm name "${sb.algorithm}" is longer than 31 bytes.`);
  }
  const out = new Uint8Array(SUPERBLOCK_SIZE);
  const v = viewOf(out);
  out.set(SUPERBLOCK_SIGNATURE, F.signature);
  v.setUint32(F.version, sb.version, true);
  v.setUint32(F.hashType, sb.hashType, true);
  out.set(parseUuid(sb.uuid), F.uuid);
  out.set(name, F.algorithm);
  v.setUint32(F.dataBlockSize, sb.dataBlockSize, true);
  v.setUint32(F.hashBlockSize, sb.hashBlockSize, true);
  v.setBigUint64(F.dataBlocks, BigInt(sb.dataBlocks), true);
  v.setUint16(F.saltSize, sb.salt.length, true);
  out.set(sb.salt, F.salt);
  return out;
}

/**
 * Parses and validates like VERITY_read_sb, with a message naming the field and value at fault. Every value is
 * untrusted: nothing read here sizes an allocation before it has been range-checked.
 */
export function parseSuperblock(bytes: Uint8Array): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) {
    throw new VerityError('E_BAD_SUPERBLOCK', `Superblock needs ${SUPERBLOCK_SIZE} bytes; only ${bytes.length} available.`);
  }
  const v = viewOf(bytes);
  for (let i = 0; i < SUPERBLOCK_SIGNATURE.length; i++) {
    if (bytes[F.signature + i] !== SUPERBLOCK_SIGNATURE[i]) {
      throw new VerityError('E_BAD_SUPERBLOCK', 'No VERITY signature detected (expected "verity\\0\\0" at the superblock offset).');
    }
  }
  const version = v.getUint32(F.version, true);
  if (version !== SUPERBLOCK_VERSION) {
    throw new VerityError('E_BAD_SUPERBLOCK', `Unsupported VERITY version ${version}.`);
  }
  const hashType = v.getUint32(F.hashType, true);
  if (hashType > 1) throw new VerityError('E_BAD_SUPERBLOCK', `Unsupported VERITY hash type ${hashType}.`);

  const nameBytes = bytes.subarray(F.algorithm, F.algorithm + ALGORITHM_FIELD);
  const nul = nameBytes.indexOf(0);
  const algorithm = new TextDecoder('latin1').decode(nul < 0 ? nameBytes : nameBytes.subarray(0, nul));
  try {
    resolveAlgorithm(algorithm);
  } catch (e) {
    throw new VerityError('E_BAD_SUPERBLOCK', (e as Error).message);
  }

  const dataBlockSize = v.getUint32(F.dataBlockSize, true);
  const hashBlockSize = v.getUint32(F.hashBlockSize, true);
  try {
    checkBlockSize(dataBlockSize, 'data');
    checkBlockSize(hashBlockSize, 'hash');
  } catch (e) {
    throw new VerityError('E_BAD_SUPERBLOCK', (e as Error).message);
  }

  const rawBlocks = v.getBigUint64(F.dataBlocks, true);
  const maxBlocks = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / dataBlockSize));
  if (rawBlocks < 1n || rawBlocks > maxBlocks) {
    throw new VerityError(
      'E_BAD_SUPERBLOCK',
      `VERITY header corrupted: data blocks ${rawBlocks} is outside 1..${maxBlocks} for ${dataBlockSize}-byte blocks.`,
    );
  }
  const saltSize = v.getUint16(F.saltSize, true);
  if (saltSize > MAX_SALT_SIZE) {
    throw new VerityError('E_BAD_SUPERBLOCK', `VERITY header corrupted: salt size ${saltSize} exceeds ${MAX_SALT_SIZE}.`);
  }
  return {
    version,
    hashType: hashType as 0 | 1,
    uuid: formatUuid(bytes.slice(F.uuid, F.uuid + 16)),
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks: Number(rawBlocks),
    salt: bytes.slice(F.salt, F.salt + saltSize),
  };
}
