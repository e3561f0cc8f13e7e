/**
 * The package as npm publishes it: the license it declares is the one it ships, public types need no @types
 * package at run time, the Node range is the one tested, and only modules that run on import are marked as such.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

function declarations(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? declarations(join(dir, e.name)) : e.name.endsWith('.d.ts') ? [join(dir, e.name)] : [],
  );
}

describe('package.json', () => {
  it('ships the MIT license it declares', () => {
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
    expect(pkg.files).toContain('LICENSE');
  });

  it('keeps @types packages out of dependencies unless the emitted declarations import them', () => {
    const dts = declarations(join(ROOT, 'dist')).map((f) => readFileSync(f, 'utf8')).join('\n');
    for (const name of Object.keys(pkg.dependencies)) {
      if (!name.startsWith('@types/')) continue;
      expect(dts, `${name} is a dependency, so some .d.ts should need it`).toMatch(new RegExp(`from '${name.slice(7)}'`));
    }
  });

  it('asks for the Node versions that can require() this ESM package (20.19+)', () => {
    expect(pkg.engines.node).toBe('>=20.19');
  });

  it('marks as side effects exactly the built modules that run on import (the CLI and the hash worker)', () => {
    expect(pkg.sideEffects).toEqual(['./dist/cli/main.js', './dist/threads/hash-worker.js']);
    for (const file of pkg.sideEffects) expect(existsSync(join(ROOT, file)), file).toBe(true);
  });
});
