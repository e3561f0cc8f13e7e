/**
 * The Block Allocation Table [MS-VHDX §2.5]: validated in one streaming pass when the image is opened, and kept as a
 * sparse map of the payload blocks that are in the file (FULLY_PRESENT). Every other state of a non-differencing
 * file reads as zeros [MS-VHDX §2.5.1.1; qemu block/vhdx.c `vhdx_co_readv`]. The rules in full: docs/disk-image-formats.md.
 *
 * Memory is bounded by the file, not by the claimed virtual size: the BAT is read in 1 MiB pieces, and only present
 * blocks are kept, which must fit in the file without overlapping, so there are at most fileSize / blockSize of them.
 */
import { VerityError } from '../../errors.js';
import type { ByteSource } from '../../io/source.js';
import { readRange } from './io.js';
import { BAT_ENTRY, BAT_ENTRY_SIZE, HEADER_SECTION_SIZE, MiB, PayloadState, SECTORS_PER_CHUNK } from './structures.js';

/** BAT bytes read per pass (a multiple of the entry size). */
const BAT_READ_SIZE = MiB;

export interface BatGeometry {
  virtualSize: number;
  blockSize: number;
  /** Payload blocks per chunk; a sector bitmap entry follows each chunk's payload entries. */
  chunkRatio: number;
  /** ceil(virtualSize / blockSize). */
  dataBlocks: number;
  /** Payload and sector bitmap entries: dataBlocks + floor((dataBlocks - 1) / chunkRatio) [MS-VHDX §2.5]. */
  entries: number;
}

/** Payload blocks by state, for `info`. */
export interface BlockCounts {
  fullyPresent: number;
  notPresent: number;
  undefined: number;
  zero: number;
  unmapped: number;
}

/** File areas no payload block may overlap [MS-VHDX §2.2.3.2; qemu `vhdx_region_check`]. */
export interface ReservedArea {
  start: number;
  end: number;
  what: string;
}

export function batGeometry(virtualSize: number, blockSize: number, logicalSectorSize: number): BatGeometry {
  // Block sizes are powers of two from 1 MiB to 256 MiB, so this is an integer ≥ 16.
  const chunkRatio = (SECTORS_PER_CHUNK * logicalSectorSize) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const entries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  return { virtualSize, blockSize, chunkRatio, dataBlocks, entries };
}

/** The present payload blocks, in virtual order: block index → file offset. */
export class BlockMap {
  constructor(
    /** Virtual block indexes, ascending. */
    readonly blocks: Float64Array,
    /** File offset of each block in `blocks`. */
    readonly offsets: Float64Array,
  ) {}

  /** Index into `blocks` of the first present block ≥ `block` (`blocks.length` if none). */
  firstAtOrAfter(block: number): number {
    let lo = 0;
    let hi = this.blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.blocks[mid]! < block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Reads and checks the BAT at `batOffset` of `src` (the file after log replay): states, offsets inside the file and
 * clear of the header section, log and regions, no two blocks overlapping. Sector bitmap entries are skipped: in a
 * non-differencing file they carry nothing, and qemu before 7.2.2 wrote garbage into them (qemu issue 727), so they
 * must be ignored rather than checked [MS-VHDX §2.5.1.2].
 */
export async function loadBat(
  src: ByteSource,
  batOffset: number,
  g: BatGeometry,
  reserved: readonly ReservedArea[],
): Promise<{ map: BlockMap; counts: BlockCounts }> {
  const counts: BlockCounts = { fullyPresent: 0, notPresent: 0, undefined: 0, zero: 0, unmapped: 0 };
  const blocks: number[] = [];
  const offsets: number[] = [];
  // Non-overlapping blocks that all lie in the file: any more than this and two must overlap.
  const maxPresent = Math.floor(src.size / g.blockSize) + 1;
  const totalBytes = g.entries * BAT_ENTRY_SIZE;

  for (let chunkStart = 0; chunkStart < totalBytes; chunkStart += BAT_READ_SIZE) {
    const length = Math.min(BAT_READ_SIZE, totalBytes - chunkStart);
    const bytes = await readRange(src, batOffset + chunkStart, length, 'BAT');
    const firstIndex = chunkStart / BAT_ENTRY_SIZE;
    for (let j = 0; j < length / BAT_ENTRY_SIZE; j++) {
      const index = firstIndex + j;
      // Entry index i holds a sector bitmap entry when (i + 1) is a multiple of chunkRatio + 1.
      if ((index + 1) % (g.chunkRatio + 1) === 0) continue;
      const block = index - Math.floor(index / (g.chunkRatio + 1));
      const { state, fileOffsetMB } = BAT_ENTRY.get(bytes, j * BAT_ENTRY_SIZE);
      const where = `BAT entry ${index} (payload block ${block})`;
      switch (state) {
        case PayloadState.NOT_PRESENT:
          counts.notPresent++;
          break;
        case PayloadState.UNDEFINED:
          counts.undefined++;
          break;
        case PayloadState.ZERO:
          counts.zero++;
          break;
        case PayloadState.UNMAPPED:
        case PayloadState.UNMAPPED_V095:
          counts.unmapped++;
          break;
        case PayloadState.FULLY_PRESENT: {
          // 2^33 MiB and more is 2^53 bytes and more: beyond any exact offset.
          if (fileOffsetMB >= 2 ** 33) throw bad(`${where} points to an offset beyond 8 PiB.`);
          const offset = fileOffsetMB * MiB;
          checkBlock(src, g, block, offset, where, reserved);
          if (blocks.length >= maxPresent) {
            throw bad(`${where}: more payload blocks are present than fit in the ${src.size}-byte file; blocks overlap.`);
          }
          blocks.push(block);
          offsets.push(offset);
          counts.fullyPresent++;
          break;
        }
        case PayloadState.PARTIALLY_PRESENT:
          // Valid only in a differencing file, which is refused before the BAT is read [MS-VHDX §2.5.1.1].
          throw bad(`${where} is PARTIALLY_PRESENT, a state valid only in a differencing disk.`);
        default:
          throw bad(`${where} has reserved state ${state}.`);
      }
    }
  }
  checkNoOverlap(offsets, g.blockSize);
  return { map: new BlockMap(Float64Array.from(blocks), Float64Array.from(offsets)), counts };
}

function checkBlock(
  src: ByteSource,
  g: BatGeometry,
  block: number,
  offset: number,
  where: string,
  reserved: readonly ReservedArea[],
): void {
  if (offset < HEADER_SECTION_SIZE) throw bad(`${where} points to offset ${offset}, inside the 1 MiB header section.`);
  // qemu accepts a last block that exists only in part ("QEMU created images with partial last blocks in the
  // past", `vhdx_check_bat_entries`): only the bytes the virtual disk uses must be in the file.
  const used = Math.min(g.blockSize, g.virtualSize - block * g.blockSize);
  if (offset + used > src.size) {
    throw new VerityError(
      'E_TRUNCATED',
      `VHDX ${where} lies at bytes ${offset}-${offset + used - 1}, but the file has only ${src.size} bytes: ` +
        'it is truncated.',
    );
  }
  for (const r of reserved) {
    if (offset < r.end && offset + g.blockSize > r.start) {
      throw bad(`${where} at offset ${offset} overlaps the ${r.what} (bytes ${r.start}-${r.end - 1}).`);
    }
  }
}

function checkNoOverlap(offsets: readonly number[], blockSize: number): void {
  const sorted = Float64Array.from(offsets).sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]! - sorted[i - 1]! < blockSize) {
      throw bad(`two payload blocks overlap: at offsets ${sorted[i - 1]} and ${sorted[i]} with ${blockSize}-byte blocks.`);
    }
  }
}

function bad(message: string): VerityError {
  return new VerityError('E_BAD_IMAGE', `VHDX ${message}`);
}
