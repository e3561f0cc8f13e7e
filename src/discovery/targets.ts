/**
 * The dm-verity targets of a disk image: every data/hash pair the image itself says enough about to verify, with
 * where its root hash would come from. Sources, most specific first:
 *
 * - the boot configuration (boot.ts): the targets the kernel command lines of its boot entries set up, with their
 *   root hashes. When it names any that can be checked, it is the only source: it is what the system itself does.
 * - Discoverable Partitions pairs (`root-x86-64` with `root-x86-64-verity`, …). A hash partition is paired with the
 *   data partition whose UUID the root hash of its stored tree gives, as systemd does (UAPI Discoverable Partitions
 *   Specification, "Partition UUIDs"); that root hash is then the image's claim. Without such a match, a hash
 *   partition with exactly one data partition of its type is paired by type, and its tree is checked against itself.
 * - a verity superblock right after the filesystem in a partition or the whole image (`--hash-offset`);
 * - a partition starting with a verity superblock whose data is the partition just before it.
 *
 * Nothing here is trusted: a root hash the image declares is a claim, labelled with where it was found. A target
 * without one is checked for consistency only (tree/verify.ts: verifyTree with no expected root).
 */
import { bytesEqual, fromHex, toHex } from '../binary/bytes.js';
import { VerityError } from '../errors.js';
import { superblockParams } from '../format/options.js';
import type { Superblock } from '../format/superblock.js';
import type { HashEngine } from '../hash/engine.js';
import { describePartition, partitionSource, type GptPartition, type GptTable } from '../image/gpt.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { MAX_VERITY_SIG_PARTITION, parseVeritySigPartition, type VeritySigPartition } from '../trust/verity-sig.js';
import { planTree, type TreePlan } from '../tree/plan.js';
import { storedRoot } from '../tree/verify.js';
import { bootTargets, findBootEntries, type BootEntry } from './boot.js';
import { identifyPartitions } from './devices.js';
import { findVerityPairs } from './dps-pairs.js';
import { superblockAt, surveyImage, type Survey } from './survey.js';

/** A root hash the image declares for a target, and where. */
export interface RootHashClaim {
  bytes: Uint8Array;
  /** Where it was found, e.g. "the UUIDs of partitions #1 and #2 (systemd's convention)". */
  from: string;
  /** A signature of the root hash the image names, said readably (where it is, or that it is missing). */
  signature?: string;
  /** Its bytes (a DER PKCS#7 signature of the root hash in hex), when it was found. */
  signatureBytes?: Uint8Array;
}

/** A target the boot configuration declares that cannot be checked: its devices or files are missing or unreadable. */
export interface UnresolvedTarget {
  name: string;
  /** The boot entries that declare it. */
  from: string;
  reason: string;
}

export interface VerityTarget {
  /** A short name: the DPS role and architecture, or the partition the data is in. */
  name: string;
  via: 'boot-entry' | 'dps' | 'after-filesystem' | 'superblock-partition';
  data: ByteSource;
  hash: ByteSource;
  /** The partitions holding them (null: the whole image, or for the hash, a file). */
  dataPartition: GptPartition | null;
  hashPartition: GptPartition | null;
  /** A hash tree read from a file inside the image (an initramfs), said readably; null when it is a partition. */
  hashFile: string | null;
  /** Where the superblock is in `hash`. */
  hashOffset: number;
  /** The tree its superblock describes. */
  tree: TreePlan;
  /** The root hash the image declares for it, or null when it declares none. */
  claim: RootHashClaim | null;
  /** One line: data and hash and why they pair. */
  description: string;
  /**
   * FEC parity the boot configuration names for it (Mariner's `rd.verityroot.fecdata`, systemd's `fec-device=`),
   * when it was found; verify then says whether damage can be repaired.
   */
  fec?: TargetFec;
}

export interface TargetFec {
  source: ByteSource;
  /** Where it is, said readably. */
  where: string;
  roots: number;
  offset: number;
  /** Whether it lies on the hash device itself (then the covered hash area ends at `offset`). */
  onHashDevice: boolean;
}

export interface TargetSearch {
  targets: VerityTarget[];
  /** What was looked at, for a report that found nothing (or less than expected). */
  searched: string[];
  /** Pairs that could not be settled, each with its reason. */
  skipped: string[];
  /** Targets the boot configuration declares that cannot be checked. */
  unresolved: UnresolvedTarget[];
  /** The boot entries read (recovery ones included), for a report of why these targets: none without a GPT. */
  bootEntries: BootEntry[];
}

/**
 * Every target of `disk` (a whole disk image, or one volume when `isGpt` is false). `engine` hashes one tree block
 * per DPS hash partition, to pair it by the UUIDs its root hash gives; `hint`, a root hash the user gave, pairs by
 * UUID a hash partition whose own tree does not.
 */
export async function findTargets(disk: ByteSource, isGpt: boolean, engine: HashEngine, hint?: Uint8Array): Promise<TargetSearch> {
  const out = await search(disk, isGpt, engine, hint);
  // A/B images set up the same device (or DPS role) in each slot: the data partition tells the slots apart.
  const shared = out.targets.filter((t) => t.dataPartition && out.targets.some((o) => o !== t && o.name === t.name));
  for (const t of shared) t.name = `${t.name} on "${t.dataPartition!.name}"`;
  return out;
}

async function search(disk: ByteSource, isGpt: boolean, engine: HashEngine, hint?: Uint8Array): Promise<TargetSearch> {
  const survey = await surveyImage(disk, isGpt);
  const out: TargetSearch = { targets: [], searched: [], skipped: [], unresolved: [], bootEntries: [] };
  const table = survey.gpt;
  if (table) {
    // The boot configuration first: what the system itself sets up. The other rules only when it names nothing
    // that can be checked (what it names and cannot be checked stays in the report).
    const devices = await identifyPartitions(disk, table);
    const boot = await findBootEntries(disk, devices);
    out.bootEntries = boot.entries;
    out.searched.push(...boot.searched);
    const { targets, unresolved } = await bootTargets(disk, boot.entries, devices, boot.problems);
    out.targets.push(...targets);
    out.unresolved.push(...unresolved);
    out.skipped.push(...boot.problems);
    if (out.targets.length > 0) return out;
  }
  out.searched.push(...searched(survey));
  const inDps = new Set<number>();
  if (table) await dpsTargets(disk, table, engine, hint, out, inDps);
  const part = (index: number) => table!.partitions.find((p) => p.index === index)!;
  for (const s of survey.superblocks) {
    if (s.partition !== null && inDps.has(s.partition)) continue;
    const tree = planOf(s.superblock, s.offset);
    if (s.where === 'after-filesystem') {
      const p = s.partition === null ? null : part(s.partition);
      const volume = p ? partitionSource(disk, p) : disk;
      const name = p ? describePartition(p) : 'the image';
      out.targets.push({
        name: p ? `#${p.index} "${p.name}"` : 'image',
        via: 'after-filesystem',
        data: volume,
        hash: volume,
        dataPartition: p,
        hashPartition: p,
        hashFile: null,
        hashOffset: s.offset,
        tree,
        claim: null,
        description: `data and hash in ${name}, superblock at byte ${s.offset} after the filesystem`,
      });
    } else if (s.partition !== null) {
      const hashPart = part(s.partition);
      const before = previousPartition(table!, hashPart);
      const needed = s.superblock.dataBlocks * s.superblock.dataBlockSize;
      if (!before || before.size < needed) {
        out.skipped.push(
          `${describePartition(hashPart)} starts with a verity superblock for ${needed} bytes of data, ` +
            (before ? `but the partition before it holds ${before.size}` : 'and no partition comes before it'),
        );
        continue;
      }
      out.targets.push({
        name: `#${before.index} "${before.name}"`,
        via: 'superblock-partition',
        data: partitionSource(disk, before),
        hash: partitionSource(disk, hashPart),
        dataPartition: before,
        hashPartition: hashPart,
        hashFile: null,
        hashOffset: 0,
        tree,
        claim: null,
        description: `data ${describePartition(before)}; hash ${describePartition(hashPart)} (superblock at its start)`,
      });
    }
  }
  return out;
}

/**
 * The DPS pairs: each hash partition with the data partition its stored root hash names (systemd's rule), else with
 * the only data partition of its type. `inDps` collects the partitions used, so the other rules skip them.
 */
async function dpsTargets(
  disk: ByteSource,
  table: GptTable,
  engine: HashEngine,
  hint: Uint8Array | undefined,
  out: TargetSearch,
  inDps: Set<number>,
): Promise<void> {
  const byHash = new Map<number, ReturnType<typeof findVerityPairs>>();
  for (const pair of findVerityPairs(table)) {
    const list = byHash.get(pair.hash.index) ?? [];
    list.push(pair);
    byHash.set(pair.hash.index, list);
  }
  for (const [, candidates] of byHash) {
    const hashPart = candidates[0]!.hash;
    inDps.add(hashPart.index);
    const hash = partitionSource(disk, hashPart);
    const superblock = await superblockAt(hash, 0);
    if (!superblock) {
      out.skipped.push(`${describePartition(hashPart)} has a DPS verity type but no verity superblock`);
      continue;
    }
    const tree = planOf(superblock, 0);
    let root: Uint8Array | null = null;
    try {
      root = await storedRoot(tree, hash, engine);
    } catch (e) {
      // A hash partition too short for its tree: verifying it reports that; pairing falls back to the type.
      if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
    }
    // The stored tree's root first; else the root hash the user gave, which still pairs a tree whose top block is
    // damaged (verifying it then says so).
    let byUuid = pairedBy(table, hashPart, root);
    if (byUuid.length !== 1 && hint) {
      byUuid = pairedBy(table, hashPart, hint);
      if (byUuid.length === 1) root = hint;
    }
    const chosen = byUuid.length === 1 ? byUuid[0]! : candidates.length === 1 ? candidates[0]! : null;
    if (!chosen) {
      out.skipped.push(
        `${describePartition(hashPart)}: its root hash names no partition by UUID, and ${candidates.length} data ` +
          `partitions of its type could go with it (${candidates.map((c) => `#${c.data.index}`).join(', ')})`,
      );
      continue;
    }
    inDps.add(chosen.data.index);
    const claimed = byUuid.length === 1;
    const signed = await signatureFor(disk, chosen.signatures, claimed ? root : null, out);
    out.targets.push({
      name: `${chosen.role} ${chosen.architecture}`,
      via: 'dps',
      data: partitionSource(disk, chosen.data),
      hash,
      dataPartition: chosen.data,
      hashPartition: hashPart,
      hashFile: null,
      hashOffset: 0,
      tree,
      claim: claimed
        ? { bytes: root!, from: `the UUIDs of partitions #${chosen.data.index} and #${hashPart.index} (systemd's convention)`, ...signed.evidence }
        : signed.root
          ? { bytes: signed.root, from: `the DPS signature partition ${signed.where}`, ...signed.evidence }
          : null,
      description:
        `data ${describePartition(chosen.data)}; hash ${describePartition(hashPart)} ` +
        `(DPS ${chosen.role} pair, matched by ${claimed ? 'the root-hash partition UUIDs' : 'type'})`,
    });
  }
}

/**
 * The DPS signature partition (`…-verity-sig`, systemd-repart's `Verity=signature`) that signs `root`: its JSON names
 * the root hash it signs. Without a root hash from the UUIDs, the only signature partition of the role gives one.
 */
async function signatureFor(
  disk: ByteSource,
  partitions: readonly GptPartition[],
  root: Uint8Array | null,
  out: TargetSearch,
): Promise<{ evidence?: Pick<RootHashClaim, 'signature' | 'signatureBytes'>; root?: Uint8Array; where?: string }> {
  const read: Array<{ partition: GptPartition; sig: VeritySigPartition }> = [];
  for (const p of partitions) {
    try {
      if (p.size > MAX_VERITY_SIG_PARTITION) throw new VerityError('E_BAD_IMAGE', `it is larger than ${MAX_VERITY_SIG_PARTITION} bytes`);
      const bytes = new Uint8Array(p.size);
      await readExactly(partitionSource(disk, p), bytes, 0, 'Signature partition');
      read.push({ partition: p, sig: parseVeritySigPartition(bytes) });
    } catch (e) {
      if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
      out.skipped.push(`${describePartition(p)}: its verity signature cannot be read (${e.message})`);
    }
  }
  const hex = root ? toHex(root) : null;
  const match = hex ? read.find((r) => r.sig.rootHash === hex) : read.length === 1 ? read[0] : undefined;
  if (!match) return {};
  const where = `#${match.partition.index} "${match.partition.name}"`;
  return {
    evidence: { signature: `a signature in the DPS signature partition ${where}`, signatureBytes: match.sig.signature },
    root: fromHex(match.sig.rootHash, 'root hash'),
    where,
  };
}

/** The DPS pairs of `hashPart` whose partition UUIDs `root` gives. */
function pairedBy(table: GptTable, hashPart: GptPartition, root: Uint8Array | null): ReturnType<typeof findVerityPairs> {
  return root && root.length >= 16 ? findVerityPairs(table, root).filter((p) => p.hash === hashPart) : [];
}

function planOf(superblock: Superblock, hashOffset: number): TreePlan {
  return planTree(superblockParams(superblock, hashOffset));
}

function previousPartition(table: GptTable, p: GptPartition): GptPartition | undefined {
  const sorted = [...table.partitions].sort((a, b) => a.offset - b.offset);
  const i = sorted.indexOf(p);
  return i > 0 ? sorted[i - 1] : undefined;
}

function searched(survey: Survey): string[] {
  const lines: string[] = [];
  if (survey.gpt) lines.push(`a GPT with ${survey.gpt.partitions.length} partitions (DPS verity types: ${dpsCount(survey.gpt)})`);
  else lines.push('no partition table: the image as one volume');
  lines.push(`${survey.filesystems.length} filesystems (${survey.filesystems.map((f) => f.type).join(', ') || 'none'}), each for a superblock after it`);
  lines.push(`${survey.superblocks.length} verity superblocks at the start of a partition or after a filesystem`);
  return lines;
}

function dpsCount(table: GptTable): number {
  return table.partitions.filter((p) => p.dpsType?.endsWith('-verity')).length;
}

/** The targets among `targets` whose claimed root hash is `root`. */
export function targetsClaiming(targets: readonly VerityTarget[], root: Uint8Array): VerityTarget[] {
  return targets.filter((t) => t.claim !== null && bytesEqual(t.claim.bytes, root));
}
