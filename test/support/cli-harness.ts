/**
 * Two ways to run the `verity` CLI from a test: in-process through `runCli` with captured stdout/stderr (fast, and
 * what most tests use), and as a real child process of the built `dist/cli/main.js` (to see true exit codes and
 * everything that reaches stderr). `npm test` builds `dist/` first; a bare `vitest run` uses whatever `dist/` holds.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { runCli } from '../../src/cli/program.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `runCli(argv)` in this process; stderr is not a TTY, so no progress display is drawn. */
export async function runCaptured(argv: readonly string[]): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: {
      write(text: string) {
        stdout += text;
        return true;
      },
    },
    stderr: {
      isTTY: false,
      write(text: string) {
        stderr += text;
        return true;
      },
    },
  });
  return { code, stdout, stderr };
}

export const BUILT_CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Spawns `node dist/cli/main.js argv…` with VERITY_DEBUG unset (it would add stack traces on purpose). */
export function spawnBuiltCli(argv: readonly string[]): CliRun {
  if (!existsSync(BUILT_CLI)) {
    throw new Error(`${BUILT_CLI} does not exist: build first ("npm run build"; "npm test" does it).`);
  }
  const env = { ...process.env };
  delete env.VERITY_DEBUG;
  const r = spawnSync(process.execPath, [BUILT_CLI, ...argv], { encoding: 'utf8', env, timeout: 60_000 });
  if (r.error) throw r.error;
  if (r.status === null) throw new Error(`verity ${argv.join(' ')} was killed by ${String(r.signal)}`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A line of a JavaScript stack trace, as Node prints them ("    at fn (file:line:col)"). */
const STACK_LINE = /^ {4}at /m;

/** The run ended with `code`, printed no stack trace, and (for errors) named the problem on stderr. */
export function expectFailure(run: CliRun, code: number, message: RegExp | string): void {
  expect(run.stderr, 'stderr').toMatch(typeof message === 'string' ? new RegExp(escapeRegExp(message)) : message);
  expect(run.stderr, 'no stack trace on stderr').not.toMatch(STACK_LINE);
  expect(run.code, `exit code; stderr: ${run.stderr}`).toBe(code);
}

export function expectNoStackTrace(run: CliRun): void {
  expect(run.stderr).not.toMatch(STACK_LINE);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
