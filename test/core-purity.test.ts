import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Every module reachable from `entry` through relative imports, with the bare specifiers each one imports. */
function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const visit = (file: string) => {
    if (graph.has(file)) return;
    const text = readFileSync(file, 'utf8');
    const specifiers = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]!);
    graph.set(file, specifiers.filter((s) => !s.startsWith('.')));
    for (const s of specifiers.filter((s) => s.startsWith('.'))) visit(join(dirname(file), s.replace(/\.js$/, '.ts')));
  };
  visit(join(SRC, entry));
  return graph;
}

describe('the environment-neutral core', () => {
  it('imports no node: module and no package but hash-wasm, anywhere in its import graph', () => {
    const graph = importGraph('core.ts');
    expect(graph.size).toBeGreaterThan(10);
    const foreign = [...graph].flatMap(([file, deps]) =>
      deps.filter((d) => d !== 'hash-wasm').map((d) => `${file.slice(SRC.length + 1)} imports ${d}`),
    );
    expect(foreign).toEqual([]);
  });

  it('is reached by the Node entry, which adds the node adapters', () => {
    const graph = importGraph('index.ts');
    expect([...graph.values()].flat()).toContain('node:fs');
    expect([...graph.keys()]).toContain(join(SRC, 'core.ts'));
  });
});
