/**
 * `verity repair`: restores the damaged blocks a verify finds from FEC parity (tree/repairable.ts), either into new
 * files (`output`, and `hashOutput` when tree blocks were damaged) or in place. Nothing is written unless every
 * damaged block is restored and the data and tree with them verify against the root hash; a new output is verified
 * again from disk before it is renamed into place, and in-place writes are synced before success is reported.
 */
import { VerityError } from '../errors.js';
import { createAtomic, createScratch, openFileSource, openInPlace, type AtomicOutput } from '../files/files.js';
import type { FecGeometry, FecPlacement } from '../fec/geometry.js';
import type { VerityParams } from '../format/params.js';
import type { ByteSource } from '../io/source.js';
import type { RepairReport } from '../report/text.js';
import { RangeSet, type BlockRange } from '../tree/ranges.js';
import { assessRepair, MAX_RESTORED_BYTES, withBlocks, type FecAssessment } from '../tree/repairable.js';
import type { TreePlan } from '../tree/plan.js';
import { verifyTree, type VerifyResult } from '../tree/verify.js';
import type { HashEngine } from '../hash/engine.js';
import { withEngine } from './engine.js';
import { engineOptions, passOptions, type VerifyOptions } from './options.js';
import { planVerify, type FileExtent, type VerifyPlan } from './plan.js';

export interface RepairOptions extends VerifyOptions {
  /** Where to write the restored data (a new file, renamed into place when it verifies). */
  output?: string;
  /** Where to write the restored hash device, needed when tree blocks were damaged. */
  hashOutput?: string;
  /** Rewrite the damaged blocks of the inputs themselves (plain files or partitions of raw disks only). */
  inPlace?: boolean;
}

/**
 * What repair did (report/text.ts: RepairReport declares the fields the reports use): `clean`, nothing was damaged;
 * `repaired`, the outputs (or inputs) now verify; `unrepairable`, some damaged block cannot be restored (see
 * `assessment`); `root-mismatch`, the tree does not match the root hash, so nothing says which blocks are damaged.
 * Only `repaired` writes anything.
 */
export interface RepairOutcome extends RepairReport {
  engine: string;
  params: VerityParams;
  /** The parity read. */
  fec: { path: string; placement: FecPlacement; geometry: FecGeometry };
}

/** Restores `dataAddress` and `hashAddress` from the parity at `options.fecDevice`. */
export async function repairFiles(dataAddress: string, hashAddress: string, options: RepairOptions): Promise<RepairOutcome> {
  if (options.fecDevice === undefined) {
    throw new VerityError('E_PARAM', 'repair needs the parity: --fec-device.', { data: { field: 'fecDevice' } });
  }
  if (options.inPlace === true && (options.output !== undefined || options.hashOutput !== undefined)) {
    throw new VerityError('E_PARAM', '--in-place writes the inputs themselves: give it without --output and --hash-output.', { data: { field: 'inPlace' } });
  }
  if (options.inPlace !== true && options.output === undefined) {
    throw new VerityError('E_PARAM', 'repair writes its result to --output FILE (and --hash-output FILE for a damaged tree), or --in-place.', {
      data: { field: 'output' },
    });
  }
  const plan = await planVerify(dataAddress, hashAddress, options);
  try {
    const fec = plan.fec!;
    const pass = { ...passOptions(options), scratch: createScratch, paths: plan.paths };
    return await withEngine(plan.tree, engineOptions(options), async (engine) => {
      const result = await verifyTree(plan.tree, plan.data, plan.hash, plan.expectedRoot, engine, pass);
      const nothing = {
        inPlace: options.inPlace === true,
        rootHash: plan.expectedRoot,
        params: plan.tree.params,
        fec: { path: fec.path, placement: fec.placement, geometry: fec.geometry },
        repaired: { data: [], hash: [] },
        written: { data: null, hash: null },
      };
      if (result.status !== 'corrupt') return { ...nothing, status: result.status === 'ok' ? ('clean' as const) : ('root-mismatch' as const), assessment: null };
      const sources = { data: plan.data, hash: plan.hash, fec: fec.source };
      const { blocks, ...assessment } = await assessRepair(plan.tree, result, fec.geometry, sources, plan.expectedRoot, engine, pass);
      if (assessment.repairable === false) return { ...nothing, status: 'unrepairable' as const, assessment };
      refuseTooLarge(assessment);
      const repaired = { data: rangesOf(blocks.data), hash: rangesOf(blocks.hash) };
      const written = options.inPlace
        ? await writeInPlace(plan, blocks, dataAddress, hashAddress, engine)
        : await writeOutputs(plan, blocks, options, engine);
      return { ...nothing, status: 'repaired' as const, assessment, repaired, written };
    });
  } finally {
    await plan.close();
  }
}

function refuseTooLarge(a: FecAssessment): void {
  if (a.repairable !== null) return;
  throw new VerityError(
    'E_UNSUPPORTED',
    `More than ${MAX_RESTORED_BYTES >> 20} MiB of blocks would be restored; repair holds them in memory and does not go that far. Nothing was written.`,
    { data: { expected: MAX_RESTORED_BYTES } },
  );
}

function rangesOf(blocks: ReadonlyMap<number, Uint8Array>): BlockRange[] {
  const set = new RangeSet();
  for (const k of [...blocks.keys()].sort((a, b) => a - b)) set.add(k);
  return set.ranges();
}

/** Copies `source` with the restored blocks in place into a new file at `path`, verified before it is renamed. */
async function copyPatched(source: ByteSource, blockSize: number, blocks: ReadonlyMap<number, Uint8Array>, out: AtomicOutput): Promise<void> {
  const patched = withBlocks(source, blockSize, blocks);
  const chunk = new Uint8Array(16 << 20);
  for (let at = 0; at < source.size; ) {
    const n = await patched.read(chunk.subarray(0, Math.min(chunk.length, source.size - at)), at);
    if (n <= 0) throw new VerityError('E_TRUNCATED', `The input ended early at byte ${at} of ${source.size} while copying it.`);
    await out.sink.write(chunk.subarray(0, n), at);
    at += n;
  }
  await out.sink.sync();
}

async function writeOutputs(
  plan: VerifyPlan,
  blocks: { data: Map<number, Uint8Array>; hash: Map<number, Uint8Array> },
  options: RepairOptions,
  engine: HashEngine,
): Promise<{ data: string; hash: string | null }> {
  const { params } = plan.tree;
  if (blocks.hash.size > 0 && options.hashOutput === undefined) {
    throw new VerityError('E_PARAM', `${blocks.hash.size === 1 ? '1 hash-tree block is' : `${blocks.hash.size} hash-tree blocks are`} damaged: give --hash-output FILE for the restored hash device. Nothing was written.`, {
      data: { field: 'hashOutput' },
    });
  }
  const dataOut = await createAtomic(options.output!);
  let hashOut: AtomicOutput | null = null;
  try {
    await copyPatched(plan.data, params.dataBlockSize, blocks.data, dataOut);
    if (blocks.hash.size > 0) {
      hashOut = await createAtomic(options.hashOutput!);
      await copyPatched(plan.hash, params.hashBlockSize, blocks.hash, hashOut);
    }
    // What is on disk now, read back, must verify before anything takes a real name.
    const written = (s: AtomicOutput, size: number): ByteSource => ({ size, read: (d, p) => s.sink.read(d, p) });
    await reverify(plan.tree, written(dataOut, plan.data.size), hashOut ? written(hashOut, plan.hash.size) : plan.hash, plan.expectedRoot, engine);
    await dataOut.commit();
    await hashOut?.commit();
    return { data: options.output!, hash: hashOut ? options.hashOutput! : null };
  } finally {
    await dataOut.abort();
    await hashOut?.abort();
  }
}

async function reverify(tree: TreePlan, data: ByteSource, hash: ByteSource, root: Uint8Array, engine: HashEngine): Promise<void> {
  const again: VerifyResult = await verifyTree(tree, data, hash, root, engine, {});
  if (again.status !== 'ok') {
    throw new VerityError('E_INTERNAL', `The repaired output does not verify (${again.status}) although its restored blocks did; nothing was written.`);
  }
}

/** Writes the restored blocks into the inputs themselves, syncs, and verifies them read back from the files. */
async function writeInPlace(
  plan: VerifyPlan,
  blocks: { data: Map<number, Uint8Array>; hash: Map<number, Uint8Array> },
  dataAddress: string,
  hashAddress: string,
  engine: HashEngine,
): Promise<{ data: string | null; hash: string | null }> {
  const { params } = plan.tree;
  const targets: Array<[FileExtent | null, string, Map<number, Uint8Array>, number]> = [
    [plan.extents.data, dataAddress, blocks.data, params.dataBlockSize],
    [plan.extents.hash, hashAddress, blocks.hash, params.hashBlockSize],
  ];
  for (const [extent, address, map] of targets) {
    if (map.size > 0 && !extent) {
      throw new VerityError(
        'E_UNSUPPORTED',
        `${address} is not a plain file or a partition of a raw disk (a VHDX, VHD or zip, or stdin): repair it to --output instead. Nothing was written.`,
        { data: { path: address } },
      );
    }
  }
  for (const [extent, , map, blockSize] of targets) {
    if (map.size === 0 || !extent) continue;
    const sink = await openInPlace(extent.path);
    try {
      for (const k of [...map.keys()].sort((a, b) => a - b)) await sink.write(map.get(k)!, extent.offset + k * blockSize);
      await sink.sync();
    } finally {
      await sink.close();
    }
  }
  // Read back through fresh handles: the page cache holds what was written, and it must verify.
  const reopen = async (extent: FileExtent | null, fallback: ByteSource, size: number): Promise<ByteSource & { close?(): Promise<void> }> => {
    if (!extent) return fallback;
    const f = await openFileSource(extent.path);
    return { size, read: (d, p) => f.read(d, extent.offset + p), close: () => f.close() };
  };
  const data = await reopen(blocks.data.size > 0 ? plan.extents.data : null, plan.data, plan.data.size);
  const hash = await reopen(blocks.hash.size > 0 ? plan.extents.hash : null, plan.hash, plan.hash.size);
  try {
    const again = await verifyTree(plan.tree, data, hash, plan.expectedRoot, engine, {});
    if (again.status !== 'ok') {
      throw new VerityError('E_INTERNAL', `The repaired blocks were written but the inputs do not verify (${again.status}); run verify again.`);
    }
  } finally {
    await data.close?.();
    await hash.close?.();
  }
  return { data: blocks.data.size > 0 ? plan.extents.data!.path : null, hash: blocks.hash.size > 0 ? plan.extents.hash!.path : null };
}
