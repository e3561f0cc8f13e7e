/**
 * From caller options to complete parameters, with veritysetup's defaults: random 32-byte salt and random UUID
 * unless given, every data block of the device unless `dataBlocks` is given.
 *
 * Each source of parameters has two forms: `formatParams`, `verifyParams` and `superblockParams` fill them in
 * without checking, for a caller that plans the tree next (tree/plan.ts: planTree checks them, once); the
 * `params…` functions also validate, for a caller that wants the parameters themselves.
 */
import { VerityError } from '../errors.js';
import { fromHex, randomBytes, randomUuid } from '../binary/bytes.js';
import { DEFAULTS, type VerityParams, validateParams } from './params.js';
import type { Superblock } from './superblock.js';

export interface TreeOptions {
  /** Hash algorithm name (default sha256). */
  algorithm?: string;
  /** 1 (default) or 0 (Chrome OS). */
  hashType?: 0 | 1;
  dataBlockSize?: number;
  hashBlockSize?: number;
  /** Data blocks to cover (default: all whole blocks of the data device). */
  dataBlocks?: number;
  /** Bytes, or hex text; "-" or "" for no salt. Default: 32 random bytes. */
  salt?: Uint8Array | string;
  /** Default: random. Ignored without a superblock. */
  uuid?: string;
  /** Write or read a superblock at `hashOffset` (default true). */
  superblock?: boolean;
  /** Byte offset on the hash device (default 0). */
  hashOffset?: number;
}

export function parseSalt(salt: Uint8Array | string): Uint8Array {
  if (typeof salt !== 'string') return salt;
  if (salt === '-' || salt === '') return new Uint8Array(0);
  return fromHex(salt, 'salt string');
}

/** Complete, validated parameters for a new tree over a data device of `dataSize` bytes. */
export function paramsForFormat(options: TreeOptions, dataSize: number): VerityParams {
  return validateParams(formatParams(options, dataSize));
}

/** `paramsForFormat` without the validation: for a caller that plans the tree next, which validates. */
export function formatParams(options: TreeOptions, dataSize: number): VerityParams {
  const dataBlockSize = options.dataBlockSize ?? DEFAULTS.dataBlockSize;
  const superblock = options.superblock ?? true;
  let dataBlocks = options.dataBlocks;
  if (dataBlocks === undefined) {
    dataBlocks = Math.floor(dataSize / dataBlockSize);
    if (dataBlocks < 1) {
      throw new VerityError(
        'E_TRUNCATED',
        `Data device is too small: ${dataSize} bytes holds no whole ${dataBlockSize}-byte block.`,
        { data: { expected: dataBlockSize, actual: dataSize } },
      );
    }
  }
  return {
    hashType: options.hashType ?? DEFAULTS.hashType,
    // Kept as typed, like the UUID: veritysetup's format output echoes `-h SHA512` unchanged; the superblock gets the
    // lower-cased name (superblockFromParams).
    algorithm: options.algorithm ?? DEFAULTS.algorithm,
    dataBlockSize,
    hashBlockSize: options.hashBlockSize ?? DEFAULTS.hashBlockSize,
    dataBlocks,
    salt: options.salt === undefined ? randomBytes(DEFAULTS.saltSize) : parseSalt(options.salt),
    // Kept as typed: veritysetup's format output echoes --uuid unchanged (upper case stays upper); dump, reading the
    // stored bytes back, prints lower case.
    uuid: superblock ? (options.uuid ?? randomUuid()) : null,
    superblock,
    hashOffset: options.hashOffset ?? 0,
  };
}

/**
 * Parameters for checking a tree without a superblock: everything must be repeated by the caller. A missing salt is
 * an error here; veritysetup silently uses a random one and then fails verification (cryptsetup src/veritysetup.c; docs/format.md).
 */
export function paramsWithoutSuperblock(options: TreeOptions, dataSize: number): VerityParams {
  return validateParams(verifyParams(options, dataSize));
}

/** `paramsWithoutSuperblock` without the validation (see `formatParams`). */
export function verifyParams(options: TreeOptions, dataSize: number): VerityParams {
  if (options.salt === undefined) {
    throw new VerityError('E_PARAM', 'Without a superblock the salt must be given (use "-" for none).', { data: { field: 'salt' } });
  }
  return formatParams({ ...options, superblock: false }, dataSize);
}

/** The parameters a superblock read at `hashOffset` describes, validated. */
export function paramsFromSuperblock(sb: Superblock, hashOffset: number): VerityParams {
  return validateParams(superblockParams(sb, hashOffset));
}

/** `paramsFromSuperblock` without the validation (see `formatParams`). */
export function superblockParams(sb: Superblock, hashOffset: number): VerityParams {
  return {
    hashType: sb.hashType,
    algorithm: sb.algorithm,
    dataBlockSize: sb.dataBlockSize,
    hashBlockSize: sb.hashBlockSize,
    dataBlocks: sb.dataBlocks,
    salt: sb.salt,
    uuid: sb.uuid,
    superblock: true,
    hashOffset,
  };
}

export function superblockFromParams(p: VerityParams): Superblock {
  if (p.uuid === null) throw new VerityError('E_INTERNAL', 'A superblock needs a UUID.');
  return {
    version: 1,
    hashType: p.hashType,
    uuid: p.uuid,
    // veritysetup lower-cases the name it stores (lib/verity/verity.c: VERITY_write_sb → _to_lower).
    algorithm: p.algorithm.toLowerCase(),
    dataBlockSize: p.dataBlockSize,
    hashBlockSize: p.hashBlockSize,
    dataBlocks: p.dataBlocks,
    salt: p.salt,
  };
}

/** Options the caller gave that a superblock overrides with a different value (veritysetup ignores them silently). */
export function ignoredOptions(options: TreeOptions, p: VerityParams): string[] {
  const out: string[] = [];
  const differs = (name: string, given: unknown, actual: unknown) => {
    if (given !== undefined && given !== actual) out.push(`${name} ${String(given)} ignored: the superblock says ${String(actual)}`);
  };
  differs('hash', options.algorithm?.toLowerCase(), p.algorithm.toLowerCase());
  differs('format', options.hashType, p.hashType);
  differs('data block size', options.dataBlockSize, p.dataBlockSize);
  differs('hash block size', options.hashBlockSize, p.hashBlockSize);
  differs('data blocks', options.dataBlocks, p.dataBlocks);
  return out;
}
