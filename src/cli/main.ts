#!/usr/bin/env node
/** The only place that touches process exit state. */
import { rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { pendingInPlace, pendingTemporaries } from '../files/files.js';
import { MAX_THREADS, MIN_BYTES_FOR_THREADS } from '../threads/limits.js';
import { prestartThreads } from '../threads/thread-set.js';
import { EXIT } from './exit-codes.js';

/**
 * The hash threads a command will likely start: the available cores (or --threads) for the commands that hash, when
 * one of the arguments names a file of at least 16 MiB (the part before `::` of an address); else none. A guess from
 * the arguments alone, before they are parsed: threads started for nothing cost a little CPU, and no waiting.
 */
function likelyThreads(args: readonly string[]): number {
  const at = args.findIndex((a) => !a.startsWith('-'));
  if (!['format', 'verify', 'repair'].includes(args[at] ?? '')) return 0;
  const large = args.slice(at + 1).some((a) => {
    if (a.startsWith('-')) return false;
    try {
      return statSync(a.split('::')[0]!).size >= MIN_BYTES_FOR_THREADS;
    } catch {
      // Not a file (a salt, a root hash, a name too long for a path): the command itself says what is wrong.
      return false;
    }
  });
  if (!large) return 0;
  const flag = args.findIndex((a) => a === '--threads' || a.startsWith('--threads='));
  if (flag < 0) return availableParallelism();
  const n = Number(args[flag]!.includes('=') ? args[flag]!.slice('--threads='.length) : args[flag + 1]);
  return Number.isSafeInteger(n) && n <= MAX_THREADS ? n : 0;
}

function removeTemporariesAndExit(): void {
  for (const path of pendingTemporaries()) rmSync(path, { force: true });
  const inPlace = pendingInPlace();
  process.stderr.write(
    inPlace.length === 0
      ? '\nverity: interrupted; no output was left behind.\n'
      : `\nverity: interrupted while updating ${inPlace.join(', ')} in place: the tree or FEC parity there is incomplete ` +
          'and the superblock (if there is one) cleared; run format again.\n',
  );
  process.exit(EXIT.INTERRUPTED);
}
process.once('SIGINT', removeTemporariesAndExit);
// A reader that went away (`verity verify --json | head -c 100`) or a full disk must not replace the command's exit
// status with a stack trace: output that cannot be written is dropped, with one line on stderr for a real error.
let outputLost = false;
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (outputLost) return;
  outputLost = true;
  if (e.code !== 'EPIPE') process.stderr.write(`verity: cannot write the output: ${e.message}\n`);
});
process.stderr.on('error', () => {});
process.once('SIGTERM', removeTemporariesAndExit);

// Threads load while the command's own modules do (threads/thread-set.ts: prestartThreads), hence the late import.
prestartThreads(likelyThreads(process.argv.slice(2)));
const { runCli } = await import('./program.js');
process.exitCode = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
