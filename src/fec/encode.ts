/**
 * Writing dm-verity FEC parity from the covered area (geometry.ts), streaming with bounded memory.
 *
 * I/O pattern. Round n needs the rsn blocks n, n + rounds, n + 2·rounds, … spread over the whole covered area.
 * veritysetup (lib/verity/verity_fec.c: FEC_process_inputs) reads them one block at a time for every round:
 * `coveredBlocks` reads of B bytes with a seek before each. Here consecutive rounds are taken in groups of G: the
 * blocks of rounds n0 … n0+G−1 at symbol i are the contiguous run i·rounds + n0 … i·rounds + n0 + G − 1, so a group
 * is rsn contiguous reads of G blocks into a rsn × G × B buffer. Every covered block is read exactly once, the whole
 * area once in total, in ceil(rounds / G) · rsn reads; memory is two group buffers (the next group is read while the
 * current one is encoded), about 2 × `groupBytes`, whatever the image size. The parity is written front to back, one
 * write per group.
 */
import { VerityError } from '../errors.js';
import type { ByteSink, ByteSource } from '../io/source.js';
import { readExactly, readOrZeros } from '../io/source.js';
import type { FecGeometry } from './geometry.js';
import { createRsEncoder, type RsEncoder } from './rs.js';

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

export interface FecEncodeOptions extends FecPassOptions {
  /** The encoder to use (default: the scalar one of rs.ts). Its roots and block size must be the geometry's. */
  encoder?: RsEncoder;
  /** About how many bytes of blocks one group of rounds reads (default 16 MiB; at least one round). */
  groupBytes?: number;
}

/** Default size of one group of rounds: 16 rounds of 253 blocks of 4 KiB. */
export const DEFAULT_GROUP_BYTES = 16 << 20;

/**
 * Encodes the parity of the covered area of `inputs` and writes it to `sink` from `geometry.fecOffset`, front to back
 * (`geometry.parityBytes` bytes). Reads each covered block once (see the I/O pattern above).
 */
export async function encodeFec(
  geometry: FecGeometry,
  inputs: FecInputs,
  sink: ByteSink,
  options: FecEncodeOptions = {},
): Promise<void> {
  const { rounds, rsn, roots, blockSize: B, coveredBlocks } = geometry;
  const encoder = options.encoder ?? createRsEncoder(roots, B);
  if (encoder.roots !== roots || encoder.blockSize !== B) {
    throw new VerityError('E_INTERNAL', `FEC encoder for ${encoder.roots} roots and ${encoder.blockSize}-byte blocks given for ${roots} and ${B}.`);
  }
  const perGroup = Math.max(1, Math.min(rounds, Math.floor((options.groupBytes ?? DEFAULT_GROUP_BYTES) / (rsn * B))));
  const groups = Math.ceil(rounds / perGroup);
  const buffers = [new Uint8Array(rsn * perGroup * B), new Uint8Array(rsn * perGroup * B)];
  const parity = new Uint8Array(perGroup * B * roots);
  const bytesTotal = coveredBlocks * B;

  const read = (group: number): Promise<Uint8Array> => readGroup(geometry, inputs, group * perGroup, perGroup, buffers[group & 1]!);
  let next: Promise<Uint8Array> | undefined = read(0);
  try {
    for (let group = 0; group < groups; group++) {
      options.signal?.throwIfAborted();
      const buf = await next!;
      next = group + 1 < groups ? read(group + 1) : undefined;
      // Marks a failed read-ahead as handled while this group is encoded; it still throws when awaited.
      next?.catch(() => {});
      const first = group * perGroup;
      const count = Math.min(perGroup, rounds - first);
      for (let g = 0; g < count; g++) {
        encoder.encodeRound(buf, parity.subarray(g * B * roots, (g + 1) * B * roots), { offset: g * B, stride: perGroup * B });
      }
      await sink.write(parity.subarray(0, count * B * roots), geometry.fecOffset + first * B * roots);
      options.onProgress?.({ bytesDone: Math.min(bytesTotal, Math.round((bytesTotal * (first + count)) / rounds)), bytesTotal });
    }
  } finally {
    // Never return while a read can still land in a buffer.
    await next?.catch(() => {});
  }
}

/**
 * Reads the blocks of rounds `first` … `first + count − 1` into `buf`: symbol i of round first + g at
 * `(i · count + g) · B`. Blocks past the covered area are zeros.
 */
async function readGroup(g: FecGeometry, inputs: FecInputs, first: number, count: number, buf: Uint8Array): Promise<Uint8Array> {
  const B = g.blockSize;
  const n = Math.min(count, g.rounds - first);
  const reads: Promise<void>[] = [];
  for (let i = 0; i < g.rsn; i++) {
    const dst = buf.subarray(i * count * B, (i + 1) * count * B);
    const start = i * g.rounds + first;
    const covered = Math.max(0, Math.min(n, g.coveredBlocks - start));
    dst.fill(0, covered * B);
    if (covered > 0) reads.push(readCovered(g, inputs, start, covered, dst));
  }
  await Promise.all(reads);
  return buf;
}

/** Reads `count` covered blocks from block `start` into `dst`, splitting the run where the data device ends. */
async function readCovered(g: FecGeometry, inputs: FecInputs, start: number, count: number, dst: Uint8Array): Promise<void> {
  const B = g.blockSize;
  let k = start;
  let at = 0;
  if (k < g.dataBlocks) {
    const n = Math.min(count, g.dataBlocks - k);
    await readExactly(inputs.data, dst.subarray(0, n * B), k * B, 'Data device');
    k += n;
    at = n * B;
  }
  if (k < start + count) {
    const position = (k - g.dataBlocks + g.hashStartBlock) * B;
    await readOrZeros(inputs.hash, dst.subarray(at, count * B), position);
  }
}
