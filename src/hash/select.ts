/** Engines are used only after their known-answer test (self-test.ts), which runs once per engine and algorithm. */
import type { HashAlgorithm } from '../format/algorithms.js';
import type { HashEngine } from './engine.js';
import { selfTest } from './self-test.js';

const tested = new WeakMap<HashEngine, Set<HashAlgorithm>>();

/** Returns `engine` after it has passed the known-answer test for `algorithm` (once per engine and algorithm). */
export async function checkedEngine(engine: HashEngine, algorithm: HashAlgorithm): Promise<HashEngine> {
  let done = tested.get(engine);
  if (!done) tested.set(engine, (done = new Set()));
  if (!done.has(algorithm)) {
    await selfTest(engine, algorithm);
    done.add(algorithm);
  }
  return engine;
}
