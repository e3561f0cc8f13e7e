/**
 * The report of `verify IMAGE`: every target found in a disk image, each with its own verification and the
 * provenance of its root hash; as text (`renderImageVerify`) and as a JSON document (`imageVerifyJson`).
 */
import { toHex } from '../binary/bytes.js';
import type { VerityParams } from '../format/params.js';
import type { UnresolvedTarget } from '../discovery/targets.js';
import type { VerifyResult, VerifyStatus } from '../tree/verify.js';
import { SCHEMA_VERSION, verifyJson } from './json.js';
import type { DamagedFiles } from './owners.js';
import { renderVerify, type FecReport } from './text.js';
import type { FecAssessment } from '../tree/repairable.js';

/** Where a target's expected root hash came from. */
export interface RootHashSource {
  /** "given by the user", where in the image it was found, or that the tree was checked against itself. */
  from: string;
  /**
   * True for a root hash the user gave, or one whose signature verified under a certificate the user trusts: one the
   * image declares about itself proves nothing.
   */
  authenticated: boolean;
  /** The signature the image has for it, and what checking it gave (or that it was not checked). */
  signature?: string;
}

/** One verified target. */
export interface TargetOutcome extends VerifyResult {
  name: string;
  /** The discovery rule that found it. */
  via: 'boot-entry' | 'dps' | 'after-filesystem' | 'superblock-partition';
  /** Data and hash and why they pair. */
  description: string;
  /** Addresses a user can pass back to `verity verify` as explicit operands. */
  dataAddress: string;
  hashAddress: string;
  hashOffset: number;
  rootHash: RootHashSource;
  params: VerityParams;
  engine: string;
  /** Options that the superblock overrode. */
  warnings: string[];
  /** What the damaged data blocks hold when the data is ext4 (report/owners.ts); null otherwise or when none is damaged. */
  files: DamagedFiles | null;
  /** The FEC parity the image names for this target and what it can repair (absent when it names none). */
  fec?: (FecReport & { assessment: FecAssessment | null }) | null;
}

export type ImageStatus = VerifyStatus | 'no-verity' | 'unresolved' | 'unauthenticated';

export interface ImageOutcome {
  /**
   * The worst of the targets' (`unresolved` when any declared target cannot be checked, then `root-mismatch`, then
   * `corrupt`, then `unauthenticated` when certificates were given and a root hash is not signed by one, then `ok`),
   * or `no-verity` when the image declares none.
   */
  status: ImageStatus;
  image: { address: string; layers: string[] };
  targets: TargetOutcome[];
  /** What discovery looked at. */
  searched: string[];
  /** Candidate pairs left out, each with its reason. */
  skipped: string[];
  /** Targets the boot configuration declares that cannot be checked. */
  unresolved: UnresolvedTarget[];
  /** Why nothing was verified although targets exist (a root hash that none of several targets declares). */
  note: string | null;
}

function label(t: TargetOutcome): string {
  const root = toHex(t.expectedRoot);
  const { from, authenticated, signature } = t.rootHash;
  if (authenticated) return signature ? `root hash ${root} from ${from}; authenticated: ${signature}` : `root hash ${root} (${from})`;
  return `root hash ${root} from ${from}; NOT AUTHENTICATED: the image vouches for itself${signature ? `; signature: ${signature}` : ''}`;
}

function unresolvedLines(r: ImageOutcome): string[] {
  return r.unresolved.map((u) => `Target ${u.name} CANNOT BE CHECKED: ${u.reason} (declared by ${u.from}).`);
}

/** The text report: one block per target, then what was searched when nothing was found. */
export function renderImageVerify(r: ImageOutcome): string {
  const lines: string[] = [];
  const n = r.targets.length;
  if (r.targets.length === 0 && r.unresolved.length > 0) {
    lines.push(`${r.image.address}: the boot configuration declares dm-verity targets, and none can be checked.`);
    for (const u of unresolvedLines(r)) lines.push('', u);
    for (const s of r.skipped) lines.push('', `Left out: ${s}.`);
    return lines.join('\n') + '\n';
  }
  if (r.status === 'no-verity') {
    lines.push(`No dm-verity target found in ${r.image.address}. Searched:`);
    for (const s of r.searched) lines.push(`  ${s}`);
    for (const s of r.skipped) lines.push(`  left out: ${s}`);
    return lines.join('\n') + '\n';
  }
  if (r.note !== null) return `${r.note}\n`;
  const u = r.unresolved.length;
  lines.push(`${r.image.address}: ${n} dm-verity target${n === 1 ? '' : 's'}${u > 0 ? `, and ${u} more that cannot be checked` : ''}.`);
  for (const t of r.targets) {
    lines.push('', `Target ${t.name}: data ${t.dataAddress}, hash ${t.hashAddress}${t.hashOffset > 0 ? ` at byte ${t.hashOffset}` : ''}`);
    lines.push(`  ${t.description}`);
    lines.push(`  ${label(t)}`);
    for (const w of t.warnings) lines.push(`  warning: ${w}`);
    lines.push(...renderVerify(t, t.params).trimEnd().split('\n').map((l) => `  ${l}`));
  }
  for (const line of unresolvedLines(r)) lines.push('', line);
  for (const s of r.skipped) lines.push('', `Left out: ${s}.`);
  return lines.join('\n') + '\n';
}

/**
 * The JSON document: the image, then each target as the document of a verify with explicit operands (its own
 * `status` and `exitCode`), plus its name, discovery rule and root hash provenance. `exitFor` maps a status to the
 * CLI's exit code.
 */
export function imageVerifyJson(r: ImageOutcome, exitCode: number, exitFor: (s: VerifyStatus) => number) {
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'verify',
    status: r.status,
    exitCode,
    image: { path: r.image.address, layers: r.image.layers },
    targets: r.targets.map((t) => {
      const { schemaVersion: _v, command: _c, ...doc } = verifyJson(t.dataAddress, t.hashAddress, t, exitFor(t.status));
      return {
        name: t.name,
        via: t.via,
        description: t.description,
        ...doc,
        hash: { ...doc.hash, offset: t.hashOffset },
        rootHash: {
          ...doc.rootHash,
          from: t.rootHash.from,
          authenticated: t.rootHash.authenticated,
          signature: t.rootHash.signature ?? null,
        },
      };
    }),
    unresolved: r.unresolved,
    searched: r.searched,
    skipped: r.skipped,
    note: r.note,
  };
}
