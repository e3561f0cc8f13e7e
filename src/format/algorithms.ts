import { VerityError } from '../errors.js';

/**
 * Hash algorithms we build and verify trees with, and their digest sizes. veritysetup accepts whatever its crypto
 * backend knows (cryptsetup lib/verity/verity_hash.c; docs/format.md); these five are what both the kernel and every engine here support.
 */
export const DIGEST_SIZES = {
  sha1: 20,
  sha224: 28,
  sha256: 32,
  sha384: 48,
  sha512: 64,
} as const;

export type HashAlgorithm = keyof typeof DIGEST_SIZES;

export const HASH_ALGORITHMS = Object.keys(DIGEST_SIZES) as HashAlgorithm[];

/**
 * Resolves a name case-insensitively. A superblock may hold `SHA256`: veritysetup keeps the case it read
 * (lib/verity/verity.c: VERITY_read_sb), so callers keep the original text for display and use this for hashing.
 */
export function resolveAlgorithm(name: string): HashAlgorithm {
  const lower = name.toLowerCase();
  if (Object.hasOwn(DIGEST_SIZES, lower)) return lower as HashAlgorithm;
  throw new VerityError(
    'E_PARAM',
    `Hash algorithm ${name} not supported. Supported: ${HASH_ALGORITHMS.join(', ')}.`,
    { data: { field: 'algorithm', actual: name } },
  );
}

export function digestSize(algorithm: HashAlgorithm): number {
  return DIGEST_SIZES[algorithm];
}
