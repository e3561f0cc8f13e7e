/**
 * Level 0 for data whose bytes come from a front-to-back source (a deflated zip entry, stdin), in one pass over
 * that source.
 *
 * A disk image in such a stream stores its blocks in allocation order, not disk order ([MS-VHDX] §2.5: payload
 * blocks sit wherever the BAT points), so the data cannot be read in block order. Level-0 digests do not depend on
 * each other: each data block is hashed when its bytes go by and its digest is written to its slot in a level-0
 * store (the hash file itself when formatting, a scratch file or buffer when verifying). The levels above are then built from the finished store as usual
 * (`chainFromLevel0`). Bytes of other areas on the same stream (a hash partition on the same disk) are copied out
 * in the same pass.
 */
import type { BlockHasher } from '../hash/engine.js';
import { readBlocks } from '../io/block-reader.js';
import { sliceSource } from '../io/slice.js';
import { readExactly, type ByteSink, type ByteSource, type SequentialMap } from '../io/source.js';
import { VerityError } from '../errors.js';
import { LevelChain, type LevelSink } from './level-chain.js';
import type { TreePlan } from './plan.js';
import type { PassOptions } from './progress.js';

/** An area of a source to copy out while the pass goes by: `length` bytes from its start, into `sink`. */
export interface Capture {
  source: ByteSource;
  length: number;
  sink: ByteSink;
}

/** Partially received data blocks held at once (a block split between two image blocks far apart in the stream). */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;

interface Job {
  from: number;
  at: number;
  length: number;
  /** Pieces end on multiples of this, in `at` coordinates (the data block size, so blocks arrive whole). */
  align: number;
  map: SequentialMap;
  take(at: number, bytes: Uint8Array): Promise<void>;
}

export async function level0InOriginOrder(
  plan: TreePlan,
  data: ByteSource & { sequential: SequentialMap },
  hasher: BlockHasher,
  store: ByteSink,
  storeOffset: number,
  captures: readonly Capture[],
  options: PassOptions & { allocate?: (bytes: number) => Uint8Array; chunkBytes?: number } = {},
): Promise<void> {
  const { params, geometry } = plan;
  const { hashesPerBlock: hpb, slotSize: slot, digestSize: D, levels } = geometry;
  const dbs = params.dataBlockSize;
  const hbs = params.hashBlockSize;
  const n = params.dataBlocks;
  const level0 = levels[0];
  if (!level0) throw new VerityError('E_INTERNAL', 'A tree without levels has no level 0 to fill.');
  const origin = data.sequential.origin;

  // Every slot starts as the digest of a zero block: blocks no run covers (unallocated in a disk image) are zeros.
  const zeroDigest = new Uint8Array(D);
  await hasher.hashBlocks(new Uint8Array(dbs), dbs, 1, zeroDigest, 0, D);
  const perWrite = Math.max(1, Math.floor((1 << 20) / hbs));
  const template = new Uint8Array(Math.min(perWrite, level0.blocks) * hbs);
  for (let b = 0; b < template.length / hbs; b++) {
    for (let j = 0; j < hpb; j++) template.set(zeroDigest, b * hbs + j * slot);
  }
  for (let b = 0; b < level0.blocks; b += perWrite) {
    const count = Math.min(perWrite, level0.blocks - b);
    await store.write(template.subarray(0, count * hbs), storeOffset + b * hbs);
  }
  const lastChildren = n - (level0.blocks - 1) * hpb;
  if (lastChildren < hpb) {
    const tail = (level0.blocks - 1) * hbs + lastChildren * slot;
    await store.write(new Uint8Array(level0.blocks * hbs - tail), storeOffset + tail);
  }

  const chunk = Math.max(dbs, Math.floor((options.chunkBytes ?? 1 << 20) / dbs) * dbs);
  const staging = options.allocate?.(chunk) ?? new Uint8Array(chunk);
  const digests = new Uint8Array((chunk / dbs) * slot);
  const uniform = slot * hpb === hbs;

  /** Hashes `count` whole blocks from data block `first` and writes their digests to their slots. */
  const digestRun = async (first: number, bytes: Uint8Array, count: number) => {
    const out = count * slot <= digests.length ? digests : new Uint8Array(count * slot);
    await hasher.hashBlocks(bytes, dbs, count, out, 0, slot);
    let i = first;
    while (i < first + count) {
      const block = Math.floor(i / hpb);
      const end = uniform ? first + count : Math.min(first + count, (block + 1) * hpb);
      const position = storeOffset + block * hbs + (i % hpb) * slot;
      await store.write(out.subarray((i - first) * slot, (end - first) * slot), position);
      i = end;
    }
  };

  // Blocks whose bytes arrive in pieces; hashed when complete, or at the end with zeros for what never came.
  const pending = new Map<number, { bytes: Uint8Array; filled: number }>();
  const partial = async (block: number, offset: number, bytes: Uint8Array) => {
    let entry = pending.get(block);
    if (!entry) {
      if ((pending.size + 1) * dbs > MAX_PENDING_BYTES) {
        throw new VerityError(
          'E_UNSUPPORTED',
          `More than ${pending.size} data blocks are split between image blocks far apart in the stream; ` +
            'extract the image or store it uncompressed.',
        );
      }
      entry = { bytes: new Uint8Array(dbs), filled: 0 };
      pending.set(block, entry);
    }
    entry.bytes.set(bytes, offset);
    entry.filled += bytes.length;
    if (entry.filled === dbs) {
      pending.delete(block);
      await digestRun(block, entry.bytes, 1);
    }
  };

  const dataBytes = n * dbs;
  let dataDone = 0;
  const jobs: Job[] = data.sequential.runs(0, dataBytes).map((r) => ({
    ...r,
    align: dbs,
    map: data.sequential,
    async take(at, bytes) {
      let pos = at;
      let off = 0;
      if (pos % dbs !== 0) {
        const block = Math.floor(pos / dbs);
        const take = Math.min(bytes.length, (block + 1) * dbs - pos);
        await partial(block, pos - block * dbs, bytes.subarray(0, take));
        off += take;
        pos += take;
      }
      const whole = Math.floor((bytes.length - off) / dbs);
      if (whole > 0) await digestRun(pos / dbs, bytes.subarray(off, off + whole * dbs), whole);
      off += whole * dbs;
      pos += whole * dbs;
      if (off < bytes.length) await partial(pos / dbs, 0, bytes.subarray(off));
      dataDone += bytes.length;
      options.onProgress?.({ bytesDone: dataDone, bytesTotal: mapped });
    },
  }));
  const mapped = jobs.reduce((sum, j) => sum + j.length, 0);
  for (const c of captures) jobs.push(...(await captureJobs(c, origin)));
  await visitInOriginOrder(origin, jobs, staging, options.signal);
  for (const [block, entry] of [...pending].sort((a, b) => a[0] - b[0])) await digestRun(block, entry.bytes, 1);
}

/** The levels above level 0, built from a finished level-0 store; returns the root digest. */
export async function chainFromLevel0(
  plan: TreePlan,
  store: ByteSource,
  storeOffset: number,
  hasher: BlockHasher,
  sink: LevelSink,
): Promise<Uint8Array> {
  const { params, geometry } = plan;
  const level0 = geometry.levels[0]!;
  const hpb = geometry.hashesPerBlock;
  const chain = new LevelChain(plan, hasher, sink);
  const blocks = sliceSource(store, storeOffset, level0.blocks * params.hashBlockSize);
  for await (const c of readBlocks(blocks, params.hashBlockSize, level0.blocks, 'Level-0 store')) {
    const covered = Math.min(params.dataBlocks, (c.first + c.count) * hpb) - c.first * hpb;
    await chain.addLevel0(c.bytes, c.count, covered);
  }
  return chain.finish();
}

/** Copies a capture on its own, reading its stream front to back. */
export async function copyInOriginOrder(capture: Capture): Promise<void> {
  const origin = capture.source.sequential?.origin;
  if (!origin) throw new VerityError('E_INTERNAL', 'Only a streamed source is copied in stream order.');
  const staging = new Uint8Array(Math.max(1, Math.min(capture.length, 1 << 20)));
  await visitInOriginOrder(origin, await captureJobs(capture, origin), staging);
}

/** The runs of a capture as jobs that write into its sink, which is first given its full length (it reads as zeros where no run writes). */
async function captureJobs(c: Capture, origin: ByteSource): Promise<Job[]> {
  const map = c.source.sequential;
  if (!map || map.origin !== origin) throw new VerityError('E_INTERNAL', 'A capture must come from the same stream.');
  if (c.length > 0) await c.sink.write(new Uint8Array(1), c.length - 1);
  return map.runs(0, c.length).map((r) => ({ ...r, align: 1, map, take: (at, bytes) => c.sink.write(bytes, at) }));
}

/** Reads every job's bytes from `origin` in origin order, in pieces of at most `staging.length`, and hands them over. */
async function visitInOriginOrder(origin: ByteSource, jobs: Job[], staging: Uint8Array, signal?: AbortSignal): Promise<void> {
  const chunk = staging.length;
  jobs.sort((a, b) => a.from - b.from);
  for (const job of jobs) {
    let k = 0;
    while (k < job.length) {
      signal?.throwIfAborted();
      const aligned = Math.floor((job.at + k + chunk) / job.align) * job.align - job.at;
      const end = Math.min(job.length, aligned > k ? aligned : k + chunk);
      const bytes = staging.subarray(0, end - k);
      await readExactly(origin, bytes, job.from + k, 'Stream');
      job.map.patch?.(bytes, job.from + k);
      await job.take(job.at + k, bytes);
      k = end;
    }
  }
}
