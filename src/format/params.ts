import { VerityError } from '../errors.js';
import { digestSize, resolveAlgorithm, type HashAlgorithm } from './algorithms.js';
import { isPowerOfTwo, parseUuid } from '../binary/bytes.js';

/**
 * The page size veritysetup caps its I/O block at (lib/utils_device.c: device_block_size_fd). A caller that knows
 * the filesystem block size of the hash file passes the smaller of the two.
 */
export const DEFAULT_DEVICE_BLOCK_SIZE = 4096;

/** veritysetup's limits (lib/verity/verity.h: VERITY_BLOCK_SIZE_OK, VERITY_MAX_SALT_SIZE). */
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 524_288;
export const MAX_SALT_SIZE = 256;
export const SUPERBLOCK_SIZE = 512;

/** Defaults of veritysetup 2.6.1 (`veritysetup --help`). */
export const DEFAULTS = {
  algorithm: 'sha256',
  hashType: 1,
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  saltSize: 32,
} as const;

/** Everything that determines a hash tree and where it sits on the hash device. */
export interface VerityParams {
  /** 1 = normal (salt before each block), 0 = original Chrome OS (salt after each block). */
  hashType: 0 | 1;
  /** Hash name as given or as stored in the superblock (case kept, like veritysetup). */
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  /** Data blocks covered by the tree, at least 1. */
  dataBlocks: number;
  salt: Uint8Array;
  /** Textual UUID for the superblock (as typed, or lower case when read back); null without a superblock. */
  uuid: string | null;
  /** Whether a 512-byte superblock sits at `hashOffset` on the hash device. */
  superblock: boolean;
  /** Byte offset of the superblock (or of the hash area without one) on the hash device. */
  hashOffset: number;
}

/** A number for an error's data, as text when JSON cannot carry it (NaN, infinities). */
function jsonNumber(n: number): number | string {
  return Number.isFinite(n) ? n : String(n);
}

export function checkBlockSize(size: number, which: 'data' | 'hash'): void {
  if (!isPowerOfTwo(size) || size < MIN_BLOCK_SIZE || size > MAX_BLOCK_SIZE) {
    throw new VerityError(
      'E_PARAM',
      `Unsupported VERITY block size: ${which} block size ${size} is not a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}.`,
      { data: { field: `${which}BlockSize`, actual: jsonNumber(size) } },
    );
  }
}

/** Throws E_PARAM with a precise message for the first rule `p` breaks; returns `p` unchanged otherwise. */
export function validateParams(p: VerityParams): VerityParams {
  checkParams(p);
  return p;
}

/**
 * validateParams, returning the hash algorithm it resolved: the one place a pass resolves the name (computeGeometry
 * calls it and keeps the result in `TreeGeometry.algorithm`).
 */
export function checkParams(p: VerityParams): HashAlgorithm {
  if (p.hashType !== 0 && p.hashType !== 1) {
    throw new VerityError('E_PARAM', `Unsupported VERITY hash type ${String(p.hashType)}: must be 0 or 1.`, {
      data: { field: 'hashType', actual: String(p.hashType) },
    });
  }
  const algorithm = resolveAlgorithm(p.algorithm);
  checkBlockSize(p.dataBlockSize, 'data');
  checkBlockSize(p.hashBlockSize, 'hash');
  if (p.hashBlockSize < 2 * digestSize(algorithm)) {
    throw new VerityError(
      'E_PARAM',
      `Hash block size ${p.hashBlockSize} is too small for ${p.algorithm}: it must hold at least two ${digestSize(algorithm)}-byte digests.`,
      { data: { field: 'hashBlockSize', expected: 2 * digestSize(algorithm), actual: p.hashBlockSize } },
    );
  }
  if (p.salt.length > MAX_SALT_SIZE) {
    throw new VerityError('E_PARAM', `Salt is ${p.salt.length} bytes long; the maximum is ${MAX_SALT_SIZE}.`, {
      data: { field: 'salt', expected: MAX_SALT_SIZE, actual: p.salt.length },
    });
  }
  if (!Number.isSafeInteger(p.hashOffset) || p.hashOffset < 0 || p.hashOffset % SUPERBLOCK_SIZE !== 0) {
    throw new VerityError(
      'E_PARAM',
      `Unsupported VERITY hash offset ${p.hashOffset}: it must be a non-negative multiple of ${SUPERBLOCK_SIZE}.`,
      { data: { field: 'hashOffset', actual: jsonNumber(p.hashOffset) } },
    );
  }
  const maxBlocks = Math.floor(Number.MAX_SAFE_INTEGER / p.dataBlockSize);
  if (!Number.isSafeInteger(p.dataBlocks) || p.dataBlocks < 1 || p.dataBlocks > maxBlocks) {
    throw new VerityError(
      'E_PARAM',
      `Data blocks must be an integer from 1 to ${maxBlocks} for ${p.dataBlockSize}-byte blocks; got ${p.dataBlocks}.`,
      { data: { field: 'dataBlocks', actual: jsonNumber(p.dataBlocks) } },
    );
  }
  if (p.superblock && p.uuid !== null) parseUuid(p.uuid);
  return algorithm;
}
