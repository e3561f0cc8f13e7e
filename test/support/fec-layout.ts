/** The files of a FEC golden case (test/golden/types.ts: FecLayout), shared by scripts/gen-golden.ts and the tests. */
import { join } from 'node:path';
import type { FecLayout } from '../golden/types.js';

export interface FecPaths {
  data: string;
  hash: string;
  fec: string;
}

/** The three paths of a layout in `dir`: the same path where the layout shares a file. */
export function fecPaths(layout: FecLayout, dir: string): FecPaths {
  const data = join(dir, 'data.img');
  const hash = layout === 'one-device' ? data : join(dir, 'hash.img');
  const fec = layout === 'separate' ? join(dir, 'fec.img') : layout === 'data-device' ? data : hash;
  return { data, hash, fec };
}
