/**
 * External reference tools (sgdisk, qemu-img, zip, bzip2, …) that tests cross-check against. Tests that need one
 * skip with its name in the test title when it is absent.
 */
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Path of `name`: the first of `preferred` that exists, else the first on PATH; null when absent. */
export function findTool(name: string, ...preferred: string[]): string | null {
  const candidates = [...preferred, ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, name))];
  return candidates.find((c) => c && existsSync(c)) ?? null;
}
