/**
 * The verity superblock, `struct verity_sb` of cryptsetup lib/verity/verity.c: 512 bytes, packed, little-endian.
 * The kernel never reads it (Documentation/admin-guide/device-mapper/verity.rst); it only carries the parameters for
 * userspace. Layout and read checks: VERITY_read_sb in the same file; docs/format.md.
 */
import { VerityError } from '../errors.js';
import { resolveAlgorithm } from './algorithms.js';
import { bytesEqual } from '../binary/bytes.js';
import { at, bytes, latin1, struct, u16le, u32le, u64leBig, uuid } from '../binary/struct.js';
import { MAX_SALT_SIZE, SUPERBLOCK_SIZE, checkBlockSize } from './params.js';

/** `signature[8]`: the bytes VERITY_read_sb compares first. */
export const SUPERBLOCK_SIGNATURE: Uint8Array = new Uint8Array([0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0]); // "verity\0\0"
/** The only `version` cryptsetup writes and accepts. */
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

/**
 * `struct verity_sb` field by field, with cryptsetup's field names. Bytes 82-87 and 344-511 are padding: ignored on
 * read, as VERITY_read_sb ignores them, and zero on write.
 */
export const VERITY_SUPERBLOCK = struct(
  'Verity superblock',
  {
    signature: at(0, bytes(8)), // signature[8] = "verity\0\0"
    version: at(8, u32le), // version
    hashType: at(12, u32le), // hash_type
    uuid: at(16, uuid), // uuid[16], textual byte order
    algorithm: at(32, latin1(32)), // algorithm[32], NUL-padded
    dataBlockSize: at(64, u32le), // data_block_size
    hashBlockSize: at(68, u32le), // hash_block_size
    dataBlocks: at(72, u64leBig), // data_blocks: checked against the block size below, not only against 2^53
    saltSize: at(80, u16le), // salt_size
    salt: at(88, bytes(256)), // salt[256]
  },
  { size: SUPERBLOCK_SIZE, code: 'E_BAD_SUPERBLOCK' },
);
const ALGORITHM_FIELD = VERITY_SUPERBLOCK.fields.algorithm.field.len;

/** The 512 bytes veritysetup writes for `sb`; E_PARAM for a salt over 256 bytes or an algorithm name over 31. */
export function serializeSuperblock(sb: Superblock): Uint8Array {
  if (sb.salt.length > MAX_SALT_SIZE) {
    throw new VerityError('E_PARAM', `Salt is ${sb.salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`);
  }
  const name = new TextEncoder().encode(sb.algorithm);
  // veritysetup copies with strncpy(…, 31): the name keeps at least one terminating NUL.
  if (name.length > ALGORITHM_FIELD - 1) {
    throw new VerityError('E_PARAM', `Hash algorithm name "${sb.algorithm}" is longer than 31 bytes.`);
  }
  return VERITY_SUPERBLOCK.serialize({
    signature: SUPERBLOCK_SIGNATURE,
    version: sb.version,
    hashType: sb.hashType,
    uuid: sb.uuid,
    algorithm: sb.algorithm,
    dataBlockSize: sb.dataBlockSize,
    hashBlockSize: sb.hashBlockSize,
    dataBlocks: BigInt(sb.dataBlocks),
    saltSize: sb.salt.length,
    salt: sb.salt,
  });
}

/**
 * Parses and validates like VERITY_read_sb, with a message naming the field and value at fault. Every value is
 * untrusted: nothing read here sizes an allocation before it has been range-checked.
 */
export function parseSuperblock(bytes: Uint8Array): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) {
    throw new VerityError('E_BAD_SUPERBLOCK', `Superblock needs ${SUPERBLOCK_SIZE} bytes; only ${bytes.length} available.`);
  }
  const sb = VERITY_SUPERBLOCK.get(bytes, 0);
  if (!bytesEqual(sb.signature, SUPERBLOCK_SIGNATURE)) {
    throw new VerityError('E_BAD_SUPERBLOCK', 'No VERITY signature detected (expected "verity\\0\\0" at the superblock offset).');
  }
  const { version, hashType, algorithm, dataBlockSize, hashBlockSize, saltSize } = sb;
  if (version !== SUPERBLOCK_VERSION) {
    throw new VerityError('E_BAD_SUPERBLOCK', `Unsupported VERITY version ${version}.`);
  }
  if (hashType > 1) throw new VerityError('E_BAD_SUPERBLOCK', `Unsupported VERITY hash type ${hashType}.`);

  try {
    resolveAlgorithm(algorithm);
  } catch (e) {
    throw new VerityError('E_BAD_SUPERBLOCK', (e as Error).message);
  }

  try {
    checkBlockSize(dataBlockSize, 'data');
    checkBlockSize(hashBlockSize, 'hash');
  } catch (e) {
    throw new VerityError('E_BAD_SUPERBLOCK', (e as Error).message);
  }

  const rawBlocks = sb.dataBlocks;
  const maxBlocks = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / dataBlockSize));
  if (rawBlocks < 1n || rawBlocks > maxBlocks) {
    throw new VerityError(
      'E_BAD_SUPERBLOCK',
      `VERITY header corrupted: data blocks ${rawBlocks} is outside 1..${maxBlocks} for ${dataBlockSize}-byte blocks.`,
    );
  }
  if (saltSize > MAX_SALT_SIZE) {
    throw new VerityError('E_BAD_SUPERBLOCK', `VERITY header corrupted: salt size ${saltSize} exceeds ${MAX_SALT_SIZE}.`);
  }
  return {
    version,
    hashType: hashType as 0 | 1,
    uuid: sb.uuid,
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks: Number(rawBlocks),
    salt: sb.salt.slice(0, saltSize),
  };
}
