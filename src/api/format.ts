/** `verity format`: builds the hash tree of a data operand into a hash file, as `veritysetup format` does. */
import { toHex } from '../binary/bytes.js';
import { fsBlockSize, openInPlace, createAtomic, writeFileAtomic } from '../files/files.js';
import type { TreeGeometry } from '../format/geometry.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import type { HashEngine } from '../hash/engine.js';
import { buildTree, formatImage, writeSuperblock, type BuildResult } from '../tree/build.js';
import type { PassOptions } from '../tree/progress.js';
import { withEngine } from './engine.js';
import { engineOptions, passOptions, type FormatOptions, type Sources } from './options.js';
import { planFormat, type FormatPlan } from './plan.js';

export interface FormatResult {
  params: VerityParams;
  sources: Pick<Sources, 'data'>;
  geometry: TreeGeometry;
  rootHash: Uint8Array;
  /** The hash engine and threads used. */
  engine: string;
}

/**
 * Builds the hash tree of `dataAddress` into `hashPath`. A new hash file is written beside its destination and
 * renamed into place when complete. An existing one (or the data file itself, with `hashOffset`) is updated in place
 * like veritysetup does, keeping its other bytes. Every input is checked before anything is written (plan.ts).
 */
export async function formatFiles(dataAddress: string, hashPath: string, options: FormatOptions = {}): Promise<FormatResult> {
  const plan = await planFormat(dataAddress, hashPath, options);
  try {
    const pass = passOptions(options);
    const result = await withEngine(plan.tree, engineOptions(options), (engine) =>
      plan.existing ? updateInPlace(plan, engine, pass) : writeNew(plan, engine, pass),
    );
    if (plan.rootHashFile !== undefined) await writeFileAtomic(plan.rootHashFile, toHex(result.rootHash));
    return { params: plan.tree.params, ...result, sources: plan.sources };
  } finally {
    await plan.close();
  }
}

/**
 * Rewrites the tree of an existing hash file or device. Its old superblock is cleared first and the new one written
 * last, so an interrupted run never leaves a superblock over an incomplete tree.
 */
async function updateInPlace(plan: FormatPlan, engine: HashEngine, pass: PassOptions): Promise<BuildResult> {
  const { tree, hashPath } = plan;
  const sink = await openInPlace(hashPath);
  try {
    if (tree.params.superblock) {
      // Durable before any tree block changes: after a crash the old superblock never describes a new tree.
      await sink.write(new Uint8Array(SUPERBLOCK_SIZE), tree.params.hashOffset);
      await sink.sync();
    }
    const built = await buildTree(tree, plan.data, sink, engine, pass);
    await sink.sync();
    if (tree.params.superblock) {
      await writeSuperblock(sink, tree.params, await fsBlockSize(hashPath));
      await sink.sync();
    }
    return built;
  } finally {
    await sink.close();
  }
}

/** Writes a new hash file beside its destination and renames it into place once complete. */
async function writeNew(plan: FormatPlan, engine: HashEngine, pass: PassOptions): Promise<BuildResult> {
  const out = await createAtomic(plan.hashPath);
  try {
    const deviceBlockSize = await fsBlockSize(plan.hashPath);
    const built = await formatImage(plan.tree, plan.data, out.sink, engine, { ...pass, deviceBlockSize });
    await out.commit();
    return built;
  } finally {
    await out.abort();
  }
}
