/** Running a pass of a planned tree with the hash engine the options ask for. */
import type { HashEngine } from '../hash/engine.js';
import { openEngine, type EngineOptions } from '../threads/engines.js';
import type { TreePlan } from '../tree/plan.js';

/**
 * Runs `pass` with the engine `options` ask for, opened for the plan's algorithm and sized for its data (threads
 * are not worth starting for a small image), and releases its threads afterwards. Returns the pass's result with the
 * engine's description.
 */
export async function withEngine<T>(
  tree: TreePlan,
  options: EngineOptions,
  pass: (engine: HashEngine) => Promise<T>,
): Promise<T & { engine: string }> {
  const { params, geometry } = tree;
  const opened = await openEngine(geometry.algorithm, params.dataBlocks * params.dataBlockSize, options);
  try {
    return { ...(await pass(opened.engine)), engine: opened.description };
  } finally {
    await opened.close();
  }
}
