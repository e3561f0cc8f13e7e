#!/usr/bin/env node
/** The only place that touches process exit state. */
import { rmSync } from 'node:fs';
import { pendingInPlace, pendingTemporaries } from '../files/files.js';
import { EXIT } from './exit-codes.js';
import { runCli } from './program.js';

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

process.exitCode = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
