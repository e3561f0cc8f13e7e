/** The shape of test/golden/vectors.json, written by scripts/gen-golden.ts and read by test/format/golden.test.ts. */
import type { DataSpec } from '../support/data.js';

export const GOLDEN_HASHES = ['sha1', 'sha224', 'sha256', 'sha384', 'sha512'] as const;
export type GoldenHash = (typeof GOLDEN_HASHES)[number];

export interface CaseOptions {
  hash: GoldenHash;
  format: 0 | 1;
  dataBlockSize: number;
  hashBlockSize: number;
  /** Hex as passed to --salt=, "-" for no salt, "" for an empty --salt=. */
  salt: string;
  /** As passed to --uuid=, or null when none was passed (--no-superblock). */
  uuid: string | null;
  noSuperblock: boolean;
  hashOffset: number;
  dataBlocks: number | null;
  /** Data and hash in one file, the tree at hashOffset. */
  sameFile: boolean;
}

export interface CaseSpec {
  name: string;
  data: DataSpec;
  options: CaseOptions;
}

export interface GoldenCase extends CaseSpec {
  /** veritysetup's arguments with <DATA> and <HASH> for the paths. */
  args: string[];
  rootHash: string;
  /** The whole hash file after format (the whole combined file when sameFile). */
  hashImage: { size: number; sha256: string };
  /** veritysetup's stdout, with <HASH> for the hash path. */
  stdout: string;
}

export interface GoldenFile {
  generator: string;
  veritysetup: string;
  cases: GoldenCase[];
}
