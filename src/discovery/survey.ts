/**
 * What a disk or partition image holds for dm-verity: its GPT partitions, the verity superblocks at the start of each
 * partition or right after the filesystem in it, and the data/hash pairs these point to. `verity inspect` prints
 * it; `verify` with only an image and a root hash uses it to find the data and the tree.
 */
import { VerityError } from '../errors.js';
import { SUPERBLOCK_SIZE } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { findVerityPairs } from './dps-pairs.js';
import { FILESYSTEM_PROBE_BYTES, filesystemOf, type FilesystemType } from '../image/filesystems.js';
import { describePartition, partitionSource, readGpt, type GptPartition, type GptTable } from '../image/gpt.js';

export interface FoundSuperblock {
  /** 1-based partition index, or null for the whole image. */
  partition: number | null;
  /** The zip entry it starts, when an archive was inspected. */
  entry?: string;
  /** Byte offset inside that partition (or image, or entry). */
  offset: number;
  /** `start` of the partition, or `after-filesystem` (the hash tree appended to a filesystem, `--hash-offset`). */
  where: 'start' | 'after-filesystem';
  superblock: Superblock;
}

export interface FoundFilesystem {
  partition: number | null;
  type: FilesystemType;
  /** Bytes the filesystem says it occupies. */
  size: number;
}

export interface Survey {
  gpt: GptTable | null;
  filesystems: FoundFilesystem[];
  superblocks: FoundSuperblock[];
}

const HASH_ALIGN = 4096;

/** The size a filesystem at the start of `src` declares, from its superblock; null when none is recognised. */
export async function filesystemSize(src: ByteSource): Promise<Omit<FoundFilesystem, 'partition'> | null> {
  if (src.size < FILESYSTEM_PROBE_BYTES) return null;
  const head = new Uint8Array(FILESYSTEM_PROBE_BYTES);
  await readExactly(src, head, 0, 'Filesystem');
  return filesystemOf(head);
}

/** The verity superblock at `offset` of `src`, or null when there is none (or `src` is too short). */
export async function superblockAt(src: ByteSource, offset: number): Promise<Superblock | null> {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + SUPERBLOCK_SIZE > src.size) return null;
  const bytes = new Uint8Array(SUPERBLOCK_SIZE);
  await readExactly(src, bytes, offset, 'Image');
  try {
    return parseSuperblock(bytes);
  } catch (e) {
    if (e instanceof VerityError && e.code !== 'E_INTERNAL') return null;
    throw e;
  }
}

async function surveyVolume(src: ByteSource, partition: number | null, out: Survey): Promise<void> {
  const start = await superblockAt(src, 0);
  if (start) out.superblocks.push({ partition, offset: 0, where: 'start', superblock: start });
  const fs = start ? null : await filesystemSize(src);
  if (!fs) return;
  out.filesystems.push({ partition, ...fs });
  const offset = Math.ceil(fs.size / HASH_ALIGN) * HASH_ALIGN;
  const after = await superblockAt(src, offset);
  if (after) out.superblocks.push({ partition, offset, where: 'after-filesystem', superblock: after });
}

/** Surveys `disk`: a GPT disk partition by partition, or else one volume. */
export async function surveyImage(disk: ByteSource, isGpt: boolean): Promise<Survey> {
  const out: Survey = { gpt: null, filesystems: [], superblocks: [] };
  if (!isGpt) {
    await surveyVolume(disk, null, out);
    return out;
  }
  out.gpt = await readGpt(disk);
  for (const p of out.gpt.partitions) {
    if (p.offset + p.size > disk.size) continue;
    await surveyVolume(partitionSource(disk, p), p.index, out);
  }
  return out;
}

export interface ChosenPair {
  data: ByteSource;
  hash: ByteSource;
  hashOffset: number;
  /** One line saying what was chosen and why. */
  description: string;
}

/**
 * The data and hash areas of `disk` that the root hash belongs to, when the image says enough: DPS partition types
 * (paired by the root-hash-derived partition UUIDs when they match, else by type when only one pair exists), or a
 * verity superblock right after the filesystem in a partition or the whole image, or a partition starting with a
 * superblock whose data is the partition just before it. Throws E_NO_PAIR naming what was looked at otherwise.
 */
export async function choosePair(disk: ByteSource, isGpt: boolean, rootHash: Uint8Array): Promise<ChosenPair> {
  const survey = await surveyImage(disk, isGpt);
  const table = survey.gpt;
  const part = (index: number) => table!.partitions.find((p) => p.index === index)!;
  if (table) {
    let pairs = findVerityPairs(table, rootHash);
    if (pairs.length === 0) pairs = findVerityPairs(table);
    if (pairs.length === 1) {
      const p = pairs[0]!;
      return {
        data: partitionSource(disk, p.data),
        hash: partitionSource(disk, p.hash),
        hashOffset: 0,
        description:
          `data ${describePartition(p.data)}; hash ${describePartition(p.hash)} ` +
          `(DPS ${p.role} pair, matched by ${p.matchedBy === 'root-hash' ? 'the root-hash partition UUIDs' : 'type'})`,
      };
    }
    if (pairs.length > 1) {
      throw new VerityError(
        'E_NO_PAIR',
        `Several DPS verity pairs and none whose partition UUIDs match the root hash: ` +
          pairs.map((p) => `#${p.data.index}+#${p.hash.index}`).join(', ') + '. Name the data and hash partitions.',
      );
    }
  }
  const appended = survey.superblocks.filter((s) => s.where === 'after-filesystem');
  const leading = survey.superblocks.filter((s) => s.where === 'start' && s.partition !== null);
  const candidates: ChosenPair[] = [];
  for (const s of appended) {
    const volume = s.partition === null ? disk : partitionSource(disk, part(s.partition));
    const name = s.partition === null ? 'the image' : describePartition(part(s.partition));
    candidates.push({
      data: volume,
      hash: volume,
      hashOffset: s.offset,
      description: `data and hash in ${name}, superblock at byte ${s.offset} after the filesystem`,
    });
  }
  for (const s of leading) {
    const hashPart = part(s.partition!);
    const before = previousPartition(table!, hashPart);
    if (!before || before.size < s.superblock.dataBlocks * s.superblock.dataBlockSize) continue;
    candidates.push({
      data: partitionSource(disk, before),
      hash: partitionSource(disk, hashPart),
      hashOffset: 0,
      description: `data ${describePartition(before)}; hash ${describePartition(hashPart)} (superblock at its start)`,
    });
  }
  if (candidates.length === 1) return candidates[0]!;
  const seen = `${survey.superblocks.length} verity superblock(s)` + (table ? ` on ${table.partitions.length} partitions` : '');
  throw new VerityError(
    'E_NO_PAIR',
    candidates.length === 0
      ? `Cannot tell where the data and hash tree are: no DPS verity pair, and ${seen} with no data area to pair. ` +
          'Give the data and hash operands (see verity inspect).'
      : `Several data/hash pairs are possible: ${candidates.map((c) => c.description).join('; ')}. Give the data and hash operands.`,
  );
}

function previousPartition(table: GptTable, p: GptPartition): GptPartition | undefined {
  const sorted = [...table.partitions].sort((a, b) => a.offset - b.offset);
  const i = sorted.indexOf(p);
  return i > 0 ? sorted[i - 1] : undefined;
}
