/** `verity verify`: checks a data operand against its hash tree and reports every damaged block. */
import { createScratch } from '../files/files.js';
import type { VerityParams } from '../format/params.js';
import { damagedFiles, type DamagedFiles } from '../report/owners.js';
import { verifyTree, type VerifyResult } from '../tree/verify.js';
import { withEngine } from './engine.js';
import { engineOptions, passOptions, type Sources, type VerifyOptions } from './options.js';
import { planVerify } from './plan.js';

export interface VerifyOutcome extends VerifyResult {
  params: VerityParams;
  sources: Sources;
  /** The hash engine and threads used. */
  engine: string;
  /** Options that a superblock overrode. */
  warnings: string[];
  /** What the damaged data blocks hold when the data is ext4 (report/owners.ts); null otherwise or when none is damaged. */
  files: DamagedFiles | null;
}

/**
 * Verifies the data at `dataAddress` against the tree at `hashAddress` (containers/operand.ts explains addresses).
 * A whole image without a hash operand is `verifyImage`'s (verify-image.ts).
 */
export async function verifyFiles(dataAddress: string, hashAddress: string, options: VerifyOptions): Promise<VerifyOutcome> {
  const plan = await planVerify(dataAddress, hashAddress, options);
  try {
    const result = await withEngine(plan.tree, engineOptions(options), (engine) =>
      verifyTree(plan.tree, plan.data, plan.hash, plan.expectedRoot, engine, {
        ...passOptions(options),
        // Large intermediate data of a streamed input goes to temporary files, not memory.
        scratch: createScratch,
        paths: plan.paths,
      }),
    );
    const files = await damagedFiles(plan.data, plan.tree.params.dataBlockSize, result.data.corrupt, result.data.unverified);
    return { ...result, params: plan.tree.params, warnings: plan.warnings, sources: plan.sources, files };
  } finally {
    await plan.close();
  }
}
