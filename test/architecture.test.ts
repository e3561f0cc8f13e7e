/**
 * The shape of src/: the core (no node:* module, no package but the portable ones in CORE_PACKAGES) and its layers. The Node fence is also a
 * lint rule (biome.json: noNodejsModules); this test checks the whole import graph, including what lint cannot see:
 * that no module imports from a layer above its own.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/**
 * Each top-level folder (or root file) of src/ and its layer. A module may import from its own layer's folder and
 * from lower layers. Folders of one layer do not import each other.
 */
const LAYERS: Record<string, number> = {
  'errors.ts': 0,
  binary: 0,
  format: 1,
  io: 1,
  hash: 2,
  fs: 2,
  // Root-hash signatures (CMS over DER) and trusted certificates, with Web Crypto.
  trust: 2,
  // Forward error correction: GF(2^8), the Reed–Solomon encoder and the FEC layout over byte sources.
  fec: 2,
  // Above fs: filesystems.ts probes volumes with the ext4 superblock the ext4 reader declares.
  image: 3,
  tree: 3,
  boot: 3,
  discovery: 4,
  report: 5,
  'core.ts': 6,
  // The Node side.
  files: 7,
  threads: 7,
  containers: 8,
  api: 9,
  cli: 10,
  'index.ts': 11,
};
/** Packages the core may use: pure JavaScript or WebAssembly, for browsers too (hashing; gzip, zstd, xz for initramfs images). */
const CORE_PACKAGES = new Set(['hash-wasm', 'pako', 'fzstd', 'xz-decompress']);
const NODE_SIDE = new Set(['files', 'threads', 'containers', 'api', 'cli', 'index.ts']);

function allModules(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? allModules(path) : name.endsWith('.ts') ? [path] : [];
  });
}

function specifiersOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms), ...text.matchAll(/import\('([^']+)'\)/g)].map(
    (m) => m[1]!,
  );
}

/** Every module reachable from `entry` through relative imports, with the bare specifiers each one imports. */
function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const visit = (file: string) => {
    if (graph.has(file)) return;
    const specifiers = specifiersOf(file);
    graph.set(file, specifiers.filter((s) => !s.startsWith('.')));
    for (const s of specifiers.filter((s) => s.startsWith('.'))) visit(join(dirname(file), s.replace(/\.js$/, '.ts')));
  };
  visit(join(SRC, entry));
  return graph;
}

const unitOf = (file: string) => relative(SRC, file).split('/')[0]!;

describe('the environment-neutral core', () => {
  it('imports no node: module and no package but the portable ones (hash-wasm, pako, fzstd, xz-decompress), anywhere in its import graph', () => {
    const graph = importGraph('core.ts');
    expect(graph.size).toBeGreaterThan(10);
    const foreign = [...graph].flatMap(([file, deps]) =>
      deps.filter((d) => !CORE_PACKAGES.has(d)).map((d) => `${relative(SRC, file)} imports ${d}`),
    );
    expect(foreign).toEqual([]);
  });

  it('reaches no Node-side folder', () => {
    const reached = [...importGraph('core.ts').keys()].map(unitOf).filter((u) => NODE_SIDE.has(u));
    expect(reached).toEqual([]);
  });

  it('is reached by the Node entry, which adds the node adapters', () => {
    const graph = importGraph('index.ts');
    expect([...graph.values()].flat()).toContain('node:fs');
    expect([...graph.keys()]).toContain(join(SRC, 'core.ts'));
  });
});

describe('layers', () => {
  const modules = allModules(SRC);

  it('every folder of src/ has a layer', () => {
    expect(modules.map(unitOf).filter((u) => !(u in LAYERS))).toEqual([]);
  });

  it('no module imports from a layer above its own, nor from a sibling folder of its layer', () => {
    const upward: string[] = [];
    for (const file of modules) {
      const from = unitOf(file);
      for (const s of specifiersOf(file).filter((x) => x.startsWith('.'))) {
        const to = unitOf(join(dirname(file), s));
        if (to === from) continue;
        if (LAYERS[to]! >= LAYERS[from]!) upward.push(`${relative(SRC, file)} imports ${s} (${from} → ${to})`);
      }
    }
    expect(upward).toEqual([]);
  });
});
