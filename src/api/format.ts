/** `verity format`: builds the hash tree of a data operand into a hash file, as `veritysetup format` does. */
import { toHex } from '../binary/bytes.js';
import { VerityError } from '../errors.js';
import { encodeFec, type FecGroupEncoder } from '../fec/encode.js';
import { readSpans } from '../threads/file-reads.js';
import type { FecGeometry, FecPlacement } from '../fec/geometry.js';
import { fsBlockSize, openInPlace, createAtomic, writeFileAtomic, type AtomicOutput, type FileSink } from '../files/files.js';
import type { TreeGeometry } from '../format/geometry.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import type { HashEngine } from '../hash/engine.js';
import type { ReadWriteSink } from '../io/source.js';
import { createFecPool, type FecPool } from '../threads/fec-pool.js';
import { MAX_THREADS } from '../threads/limits.js';
import { buildTree, writeSuperblock, type BuildResult } from '../tree/build.js';
import type { PassOptions } from '../tree/progress.js';
import { withEngine } from './engine.js';
import { engineOptions, passOptions, type FormatOptions, type Sources } from './options.js';
import { planFormat, type FecPlan, type FormatPlan } from './plan.js';

export interface FormatResult {
  params: VerityParams;
  sources: Pick<Sources, 'data'>;
  geometry: TreeGeometry;
  rootHash: Uint8Array;
  /** The hash engine and threads used. */
  engine: string;
  /** The FEC parity written, with `fecDevice`. */
  fec?: FecResult;
}

/** The FEC parity a format wrote: where, and what it covers (the kernel's fec_blocks, fec_start, fec_roots). */
export interface FecResult {
  path: string;
  placement: FecPlacement;
  geometry: FecGeometry;
}

/**
 * Builds the hash tree of `dataAddress` into `hashPath`, and with `fecDevice` the FEC parity. A new hash or FEC file
 * is written beside its destination and renamed into place when complete. An existing one (or the data file itself,
 * with `hashOffset` or `fecOffset`) is updated in place like veritysetup does, keeping its other bytes. Every input
 * is checked before anything is written (plan.ts). The order is veritysetup's (lib/setup.c: _crypt_format_verity):
 * the tree, then the parity (which covers the tree as written), then the superblock (which it does not cover).
 */
export async function formatFiles(dataAddress: string, hashPath: string, options: FormatOptions = {}): Promise<FormatResult> {
  const plan = await planFormat(dataAddress, hashPath, options);
  try {
    const pass = passOptions(options);
    const result = await withEngine(plan.tree, engineOptions(options), (engine) =>
      plan.existing ? updateInPlace(plan, engine, pass, options.threads) : writeNew(plan, engine, pass, options.threads),
    );
    if (plan.rootHashFile !== undefined) await writeFileAtomic(plan.rootHashFile, toHex(result.rootHash));
    return {
      params: plan.tree.params,
      ...result,
      sources: plan.sources,
      ...(plan.fec && { fec: { path: plan.fec.path, placement: plan.fec.placement, geometry: plan.fec.geometry } }),
    };
  } finally {
    await plan.close();
  }
}

/**
 * Rewrites the tree of an existing hash file or device. Its old superblock is cleared first and the new one written
 * last, so an interrupted run never leaves a superblock over an incomplete tree (or over parity not yet written).
 */
async function updateInPlace(plan: FormatPlan, engine: HashEngine, pass: PassOptions, threads: number | undefined): Promise<BuildResult> {
  const { tree, hashPath } = plan;
  const sink = await openInPlace(hashPath);
  let fecOut: FecOutput | null = null;
  try {
    fecOut = await openFecOutput(plan.fec);
    if (tree.params.superblock) {
      // Durable before any tree block changes: after a crash the old superblock never describes a new tree.
      await sink.write(new Uint8Array(SUPERBLOCK_SIZE), tree.params.hashOffset);
      await sink.sync();
    }
    const built = await buildTree(tree, plan.data, sink, engine, treePass(plan, pass));
    await writeFec(plan, sink, fecOut, pass, threads);
    await sink.sync();
    await fecOut?.finish();
    if (tree.params.superblock) {
      await writeSuperblock(sink, tree.params, await fsBlockSize(hashPath));
      await sink.sync();
    }
    return built;
  } finally {
    await fecOut?.abort();
    await sink.close();
  }
}

/** Writes a new hash file beside its destination and renames it into place once complete. */
async function writeNew(plan: FormatPlan, engine: HashEngine, pass: PassOptions, threads: number | undefined): Promise<BuildResult> {
  const out = await createAtomic(plan.hashPath);
  let fecOut: FecOutput | null = null;
  try {
    fecOut = await openFecOutput(plan.fec);
    const deviceBlockSize = await fsBlockSize(plan.hashPath);
    const built = await buildTree(plan.tree, plan.data, out.sink, engine, treePass(plan, pass));
    await writeFec(plan, out.sink, fecOut, pass, threads);
    if (plan.tree.params.superblock) await writeSuperblock(out.sink, plan.tree.params, deviceBlockSize);
    await fecOut?.finish();
    await out.commit();
    return built;
  } finally {
    await fecOut?.abort();
    await out.abort();
  }
}

/** The tree pass's progress, as the first part of a run that also encodes FEC parity. */
function treePass(plan: FormatPlan, pass: PassOptions): PassOptions {
  const { onProgress } = pass;
  if (!plan.fec || !onProgress) return pass;
  const fecBytes = plan.fec.geometry.coveredBlocks * plan.fec.geometry.blockSize;
  return { ...pass, onProgress: (p) => onProgress({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal + fecBytes }) };
}

/** Where parity goes when it is not on the hash device: a file of its own (new or in place) or the data file. */
interface FecOutput {
  sink: ReadWriteSink;
  /** Makes the parity durable (and a new file appear at its path). */
  finish(): Promise<void>;
  /** Releases the file; removes a new one not finished. Safe after finish. */
  abort(): Promise<void>;
}

async function openFecOutput(fec: FecPlan | null): Promise<FecOutput | null> {
  if (!fec || fec.placement === 'hash-device') return null;
  if (fec.existing) {
    const sink: FileSink = await openInPlace(fec.path);
    let open = true;
    const close = async () => {
      if (open) {
        open = false;
        await sink.close();
      }
    };
    return {
      sink,
      finish: async () => {
        await sink.sync();
        await close();
      },
      abort: close,
    };
  }
  const out: AtomicOutput = await createAtomic(fec.path);
  return { sink: out.sink, finish: () => out.commit(), abort: () => out.abort() };
}

/**
 * Encodes the parity over the data and the hash device as the tree left it (`hash`, read back through its sink), into
 * the hash device itself or `fecOut`, with the WebAssembly SIMD encoder: on this thread by default, on `threads`
 * worker threads when more than one is asked for (falling back to this thread where threads cannot start). The parity
 * is the same either way.
 *
 * Why one thread by default: the encoder (5–8 GB/s per core for 2 roots) is faster than the reads that feed it, which
 * stay on this thread's I/O (fec-pool.ts), so on the 2-core machine of docs/performance.md ("FEC") worker threads only
 * add their start-up and compete with the reads for the cores: 256 MiB formatted in ~1.4 s with one, ~1.7–2.9 s with
 * two. More cores, roots 24 (6–10× the encoding work) or a faster read path may change that; `--threads` decides.
 */
async function writeFec(plan: FormatPlan, hash: ReadWriteSink, fecOut: FecOutput | null, pass: PassOptions, threads: number | undefined): Promise<void> {
  const { fec, data, tree } = plan;
  if (!fec) return;
  const dataBytes = tree.params.dataBlocks * tree.params.dataBlockSize;
  const { onProgress, signal } = pass;
  const { geometry } = fec;
  const count = Math.min(MAX_THREADS, threads ?? 1);
  let pool: FecPool | undefined;
  let groups: FecGroupEncoder | undefined;
  try {
    if (count > 1) {
      pool = createFecPool({ threads: count });
      groups = await pool.groupEncoder(geometry.roots, geometry.blockSize).catch((e: unknown) => {
        // Threads cannot start here (no worker_threads, no WebAssembly SIMD): this thread encodes instead.
        if (e instanceof VerityError && e.code === 'E_UNSUPPORTED') return undefined;
        throw e;
      });
    }
    await encodeFec(
      geometry,
      // The sink reads short past its end: bytes there (a gap before the FEC area) read as zeros.
      { data, hash },
      fecOut?.sink ?? hash,
      {
        ...(groups && { groups }),
        readSpans,
        ...(signal && { signal }),
        ...(onProgress && {
          onProgress: (p) => onProgress({ bytesDone: dataBytes + p.bytesDone, bytesTotal: dataBytes + p.bytesTotal }),
        }),
      },
    );
  } finally {
    await pool?.close();
  }
}
