/** `verity verify`: checks a data operand against its hash tree and reports every damaged block. */
import { createScratch } from '../files/files.js';
import type { VerityParams } from '../format/params.js';
import { damagedFiles, type DamagedFiles } from '../report/owners.js';
import type { FecGeometry, FecPlacement } from '../fec/geometry.js';
import { assessRepair, nothingToRepair, type FecAssessment } from '../tree/repairable.js';
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
  /**
   * With `fecDevice`: the parity used, and whether it can restore the damage (tree/repairable.ts). The assessment is
   * null when the tree does not match the root hash: then nothing says which blocks are wrong.
   */
  fec: { path: string; placement: FecPlacement; geometry: FecGeometry; assessment: FecAssessment | null } | null;
}

/**
 * Verifies the data at `dataAddress` against the tree at `hashAddress` (containers/operand.ts explains addresses).
 * A whole image without a hash operand is `verifyImage`'s (verify-image.ts).
 */
export async function verifyFiles(dataAddress: string, hashAddress: string, options: VerifyOptions): Promise<VerifyOutcome> {
  const plan = await planVerify(dataAddress, hashAddress, options);
  try {
    const pass = {
      ...passOptions(options),
      // Large intermediate data of a streamed input goes to temporary files, not memory.
      scratch: createScratch,
      paths: plan.paths,
    };
    const { result, assessment, engine } = await withEngine(plan.tree, engineOptions(options), async (engine) => {
      const result = await verifyTree(plan.tree, plan.data, plan.hash, plan.expectedRoot, engine, pass);
      const fec = plan.fec;
      if (!fec || result.status === 'root-mismatch') return { result, assessment: null };
      if (result.status === 'ok') {
        return { result, assessment: nothingToRepair(fec.geometry.roots) };
      }
      const sources = { data: plan.data, hash: plan.hash, fec: fec.source };
      const { blocks: _restored, ...assessment } = await assessRepair(plan.tree, result, fec.geometry, sources, plan.expectedRoot, engine, pass);
      return { result, assessment };
    });
    const files = await damagedFiles(plan.data, plan.tree.params.dataBlockSize, result.data.corrupt, result.data.unverified);
    const fec = plan.fec && { path: plan.fec.path, placement: plan.fec.placement, geometry: plan.fec.geometry, assessment };
    return { ...result, engine, params: plan.tree.params, warnings: plan.warnings, sources: plan.sources, files, fec };
  } finally {
    await plan.close();
  }
}
