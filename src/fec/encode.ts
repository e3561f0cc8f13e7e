/**
 * Writing dm-verity FEC parity from the covered area (geometry.ts), streaming with bounded memory.
 *
 * I/O pattern. Round n needs the rsn blocks n, n + rounds, n + 2·rounds, … spread over the whole covered area.
 * veritysetup (lib/verity/verity_fec.c: FEC_process_inputs) reads them one block at a time for every round:
 * `coveredBlocks` reads of B bytes with a seek before each. Here consecutive rounds are taken in groups of G: the
 * blocks of rounds n0 … n0+G−1 at symbol i are the contiguous run i·rounds + n0 … i·rounds + n0 + G − 1, so a group
 * is rsn contiguous reads of G blocks into a buffer of rsn rows of G × B bytes. Every covered block is read exactly
 * once, the whole area once in total, in ceil(rounds / G) · rsn reads; memory is a few group buffers (the next groups
 * are read while one is encoded: two on the calling thread, more for a worker pool), each about `groupBytes`,
 * whatever the image size. The parity is written front to back, one write per group.
 */
import { VerityError } from '../errors.js';
import type { ByteSink, ByteSource, FileSpan } from '../io/source.js';
import { readExactly, readOrZeros } from '../io/source.js';
import type { FecGeometry } from './geometry.js';
import type { RsEncoder } from './rs.js';
import { createFastRsEncoder } from './rs-simd.js';

/** The covered area's two inputs. */
export interface FecInputs {
  /** The data device: covered blocks 0 … dataBlocks − 1. */
  data: ByteSource;
  /**
   * The hash device as the tree left it (a source, or the sink the tree was written to): covered blocks from its hash
   * start block. Bytes past its end read as zeros (a gap between the tree and a FEC area further on the same device,
   * not yet written).
   */
  hash: Pick<ByteSource, 'read'>;
}

/** Progress and cancellation, as the tree passes take them (tree/progress.ts). */
export interface FecPassOptions {
  onProgress?: (progress: { bytesDone: number; bytesTotal: number }) => void;
  signal?: AbortSignal;
}

/**
 * Encodes whole groups of rounds: on the calling thread (groupEncoder, from an RsEncoder) or on worker threads
 * (threads/fec-pool.ts). A group of `count` rounds lies in `messages` with round g's symbol i at `i · stride + g · B`,
 * and its parity goes to `parity` from 0, round after round: `count · B · roots` bytes, the FEC area's order.
 */
export interface FecGroupEncoder {
  /** Groups in flight at once (read, encoded or written), each with a message and a parity buffer. */
  readonly slots: number;
  /** Buffers the encoder reads and writes without a copy (RsEncoder.buffers); each call replaces the last ones. */
  buffers(sizes: readonly number[]): Uint8Array[];
  encodeGroup(messages: Uint8Array, parity: Uint8Array, count: number, stride: number): void | Promise<void>;
}

export interface FecEncodeOptions extends FecPassOptions {
  /**
   * The encoder of the calling thread (default: createFastRsEncoder, the WebAssembly SIMD one where it runs). Its
   * roots and block size must be the geometry's.
   */
  encoder?: RsEncoder;
  /** Groups encoded elsewhere (a worker pool), instead of `encoder`. */
  groups?: FecGroupEncoder;
  /** About how many bytes of blocks one group of rounds reads (default 16 MiB; at least one round). */
  groupBytes?: number;
  /**
   * Reads file spans at once (threads/file-reads.ts on Node), for the data when it lies in a file
   * (ByteSource.fileSpans): a group's rsn short reads then cost a copy each rather than a round trip through the
   * runtime's I/O threads, which took most of a format with FEC (docs/performance.md, "FEC").
   */
  readSpans?: (spans: readonly FileSpan[], dst: Uint8Array) => void;
}

/** Default size of one group of rounds: 16 rounds of 253 blocks of 4 KiB. */
export const DEFAULT_GROUP_BYTES = 16 << 20;

/**
 * Bytes between the rows of a group past its blocks. Rows a multiple of 4 KiB apart start in the same cache sets, and
 * a step of the encoder reads one line from each of the rsn rows; a line more spreads them over the sets.
 */
export const ROW_PAD = 64;

/**
 * Reads of one group in flight at once: enough to keep Node's I/O threads busy; rsn at once measured no faster, and
 * only queues more work behind them.
 */
const READS_IN_FLIGHT = 4;

/** The calling thread's encoder as a group encoder: two slots (one group read while the other is encoded). */
export function groupEncoder(encoder: RsEncoder): FecGroupEncoder {
  const B = encoder.blockSize;
  const step = B * encoder.roots;
  return {
    slots: 2,
    buffers: (sizes) => encoder.buffers?.(sizes) ?? sizes.map((n) => new Uint8Array(n)),
    encodeGroup(messages, parity, count, stride) {
      for (let g = 0; g < count; g++) encoder.encodeRound(messages, parity.subarray(g * step, (g + 1) * step), { offset: g * B, stride });
    },
  };
}

/** Rounds per group for `groupBytes` (at least one, at most all). */
export function roundsPerGroup(geometry: FecGeometry, groupBytes = DEFAULT_GROUP_BYTES): number {
  return Math.max(1, Math.min(geometry.rounds, Math.floor(groupBytes / (geometry.rsn * geometry.blockSize))));
}

/**
 * Encodes the parity of the covered area of `inputs` and writes it to `sink` from `geometry.fecOffset`, front to back
 * (`geometry.parityBytes` bytes). Reads each covered block once (see the I/O pattern above). Memory: `slots` groups,
 * each rsn rows of (rounds per group · B + ROW_PAD) bytes and its parity, whatever the image size.
 */
export async function encodeFec(
  geometry: FecGeometry,
  inputs: FecInputs,
  sink: ByteSink,
  options: FecEncodeOptions = {},
): Promise<void> {
  const { rounds, rsn, roots, blockSize: B, coveredBlocks } = geometry;
  let groups = options.groups;
  if (!groups) {
    const encoder = options.encoder ?? createFastRsEncoder(roots, B);
    if (encoder.roots !== roots || encoder.blockSize !== B) {
      throw new VerityError('E_INTERNAL', `FEC encoder for ${encoder.roots} roots and ${encoder.blockSize}-byte blocks given for ${roots} and ${B}.`);
    }
    groups = groupEncoder(encoder);
  }
  const perGroup = roundsPerGroup(geometry, options.groupBytes);
  const stride = perGroup * B + ROW_PAD;
  const groupCount = Math.ceil(rounds / perGroup);
  const slots = Math.max(1, Math.min(groups.slots, groupCount));
  const buffers = groups.buffers([...Array<number>(slots).fill(rsn * stride), ...Array<number>(slots).fill(perGroup * B * roots)]);
  const bytesTotal = coveredBlocks * B;
  let roundsDone = 0;

  // Group n: read into its slot, encoded, then written once group n − 1's parity is: the FEC area is written front
  // to back. A slot is reused only when its group is written.
  const runGroup = async (group: number, slot: number, previous: Promise<void>): Promise<void> => {
    const first = group * perGroup;
    const count = Math.min(perGroup, rounds - first);
    const messages = buffers[slot]!;
    const parity = buffers[slots + slot]!;
    await readGroup(geometry, inputs, first, perGroup, stride, messages, options.readSpans);
    options.signal?.throwIfAborted();
    await groups.encodeGroup(messages, parity, count, stride);
    await previous;
    await sink.write(parity.subarray(0, count * B * roots), geometry.fecOffset + first * B * roots);
    roundsDone += count;
    options.onProgress?.({ bytesDone: Math.min(bytesTotal, Math.round((bytesTotal * roundsDone) / rounds)), bytesTotal });
  };

  const running: Promise<void>[] = [];
  let last: Promise<void> = Promise.resolve();
  try {
    for (let group = 0; group < groupCount; group++) {
      options.signal?.throwIfAborted();
      const slot = group % slots;
      if (running[slot]) await running[slot];
      last = runGroup(group, slot, last);
      // Marks a failure as handled while later groups start; it still throws where it is awaited.
      last.catch(() => {});
      running[slot] = last;
    }
    await last;
  } finally {
    // Never return while a read or an encoder can still touch a buffer.
    await Promise.allSettled(running);
  }
}

/**
 * Reads the blocks of rounds `first` … `first + count − 1` into `buf`: symbol i of round first + g at
 * `i · stride + g · B`. Blocks past the covered area are zeros.
 */
async function readGroup(
  g: FecGeometry,
  inputs: FecInputs,
  first: number,
  count: number,
  stride: number,
  buf: Uint8Array,
  readSpans: FecEncodeOptions['readSpans'],
): Promise<Uint8Array> {
  const B = g.blockSize;
  const n = Math.min(count, g.rounds - first);
  let next = 0;
  const chain = async (): Promise<void> => {
    while (next < g.rsn) {
      const i = next++;
      const dst = buf.subarray(i * stride, i * stride + count * B);
      const start = i * g.rounds + first;
      const covered = Math.max(0, Math.min(n, g.coveredBlocks - start));
      dst.fill(0, covered * B);
      if (covered > 0) await readCovered(g, inputs, start, covered, dst, readSpans);
    }
  };
  await Promise.all(Array.from({ length: READS_IN_FLIGHT }, chain));
  return buf;
}

/** Reads `count` covered blocks from block `start` into `dst`, splitting the run where the data device ends. */
async function readCovered(
  g: FecGeometry,
  inputs: FecInputs,
  start: number,
  count: number,
  dst: Uint8Array,
  readSpans: FecEncodeOptions['readSpans'],
): Promise<void> {
  const B = g.blockSize;
  let k = start;
  let at = 0;
  if (k < g.dataBlocks) {
    const n = Math.min(count, g.dataBlocks - k);
    const spans = readSpans && inputs.data.fileSpans?.(k * B, n * B);
    if (spans) readSpans!(spans, dst.subarray(0, n * B));
    else await readExactly(inputs.data, dst.subarray(0, n * B), k * B, 'Data device');
    k += n;
    at = n * B;
  }
  if (k < start + count) {
    const position = (k - g.dataBlocks + g.hashStartBlock) * B;
    await readOrZeros(inputs.hash, dst.subarray(at, count * B), position);
  }
}
