import type { HashAlgorithm } from '../format/algorithms.js';
import { VerityError } from '../errors.js';
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

export function engineByName<T extends HashEngine>(engines: readonly T[], name: string): T {
  const found = engines.find((e) => e.name === name);
  if (!found) {
    throw new VerityError('E_PARAM', `Unknown hash engine "${name}". Available: ${engines.map((e) => e.name).join(', ')}.`);
  }
  return found;
}
