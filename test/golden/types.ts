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

/**
 * Where the FEC parity goes in a FEC case: a file of its own; the hash file after the tree; one file for data, tree
 * and parity; the data file after the data (the hash file separate).
 */
export type FecLayout = 'separate' | 'hash-device' | 'one-device' | 'data-device';

export interface FecCaseOptions extends CaseOptions {
  fecRoots: number;
  /** As passed to --fec-offset= (passed only when not 0). */
  fecOffset: number;
  layout: FecLayout;
  /**
   * Bytes already in the hash file before format (`makeData` of `{ blocks: 0, blockSize: 1, tailBytes: bytes,
   * fill: 'random', seed }`), or null for a new hash file. veritysetup keeps the bytes it does not write, and FEC
   * covers a separate hash file to its end.
   */
  hashPrefill: { bytes: number; seed: number } | null;
}

export interface FecCaseSpec {
  name: string;
  data: DataSpec;
  options: FecCaseOptions;
}

export interface FecGoldenCase extends FecCaseSpec {
  /** veritysetup's arguments with <DATA>, <HASH> and <FEC> for the paths (the same placeholder for the same file). */
  args: string[];
  rootHash: string;
  /** The whole hash file after format (the whole combined file in the one-device layout). */
  hashImage: { size: number; sha256: string };
  /** The whole FEC file after format, when it is a file of its own (null when it is the hash or the data file). */
  fecImage: { size: number; sha256: string } | null;
  /** The whole data file after format in the data-device layout (which puts the parity in it), else null. */
  dataImage: { size: number; sha256: string } | null;
  /** veritysetup's stdout, with <HASH> for the hash path. */
  stdout: string;
}

export interface FecGoldenFile {
  generator: string;
  veritysetup: string;
  cases: FecGoldenCase[];
}
