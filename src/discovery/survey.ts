/**
 * What a disk or partition image holds for dm-verity: its GPT partitions, the verity superblocks at the start of each
 * partition or right after the filesystem in it. `verity inspect` prints it; targets.ts turns it into the targets
 * `verify IMAGE` checks.
 */
import { VerityError } from '../errors.js';
import { SUPERBLOCK_SIZE } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { FILESYSTEM_PROBE_BYTES, filesystemOf, type FilesystemType } from '../image/filesystems.js';
import { partitionSource, readGpt, type GptTable } from '../image/gpt.js';

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
