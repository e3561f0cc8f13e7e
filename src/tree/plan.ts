/**
 * A hash tree worked out once from its parameters: the parameters checked, the geometry (with the hash algorithm
 * resolved from its name) and how each block is salted. Building and verifying take a plan, so nothing below
 * derives these again from the parameters.
 */
import { computeGeometry, type TreeGeometry } from '../format/geometry.js';
import type { VerityParams } from '../format/params.js';
import { saltPlacementFor, type BlockHasherOptions } from '../hash/engine.js';

export interface TreePlan {
  readonly params: VerityParams;
  /** Levels, sizes and the resolved algorithm (`geometry.algorithm`). */
  readonly geometry: TreeGeometry;
  /** What every block hasher of the tree is created with: the algorithm, the salt and the salt's side. */
  readonly hashing: BlockHasherOptions;
}

/**
 * Checks `params` (E_PARAM for the first rule they break) and works out everything a pass needs from them. This is
 * the one place parameters are validated and the algorithm name resolved on the way to a pass.
 */
export function planTree(params: VerityParams): TreePlan {
  const geometry = computeGeometry(params);
  return {
    params,
    geometry,
    // Format 1 salts before each block, format 0 (Chrome OS) after (cryptsetup lib/verity/verity_hash.c: verify_hash_block).
    hashing: { algorithm: geometry.algorithm, salt: params.salt, saltPlacement: saltPlacementFor(params.hashType) },
  };
}

/** The plan for `tree`: itself when it is one. The exported passes also take bare parameters, as they always did. */
export function asTreePlan(tree: VerityParams | TreePlan): TreePlan {
  return 'geometry' in tree ? tree : planTree(tree);
}
