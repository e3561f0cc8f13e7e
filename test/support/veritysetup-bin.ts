/**
 * The real `veritysetup` (2.6.1 on the reference machine), for cross-checks. Tests that need it use
 * `it.skipIf(!hasVeritysetup)`, and `SKIP_VERITYSETUP` says why in the test name.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Path of a runnable veritysetup: $VERITYSETUP if set (and only it), else /usr/sbin, /sbin, then PATH; null if none
 * answers `--version`. Also used by the benches (bench/support.ts).
 */
export function findVeritysetup(): string | null {
  const candidates = process.env.VERITYSETUP
    ? [process.env.VERITYSETUP]
    : ['/usr/sbin/veritysetup', '/sbin/veritysetup', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'veritysetup'))];
  for (const c of candidates) {
    if (c && existsSync(c) && spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0) return c;
  }
  return null;
}

export const VERITYSETUP = findVeritysetup();
export const hasVeritysetup = VERITYSETUP !== null;
/** Appended to the names of tests that need veritysetup, so a skip is visible with its reason. */
export const NEEDS_VERITYSETUP = hasVeritysetup ? '' : ' [SKIPPED: veritysetup not installed (set VERITYSETUP=/path)]';

export interface VeritysetupRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs veritysetup with LC_ALL=C. Throws if it is not installed (guard the test with skipIf). */
export function veritysetup(args: readonly string[]): VeritysetupRun {
  if (!VERITYSETUP) throw new Error('veritysetup is not installed');
  const r = spawnSync(VERITYSETUP, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, timeout: 120_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The N of veritysetup's "Verification failed at position N." line, or null when there is none. */
export function failedPosition(stderr: string): number | null {
  const m = /^Verification failed at position (\d+)\.$/m.exec(stderr);
  return m ? Number(m[1]) : null;
}
