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
      : `\nverity: interrupted while updating ${inPlace.join(', ')} in place: its tree is incomplete and its superblock ` +
          '(if it has one) cleared; run format again.\n',
  );
  process.exit(EXIT.INTERRUPTED);
}
process.once('SIGINT', removeTemporariesAndExit);
process.once('SIGTERM', removeTemporariesAndExit);

process.exitCode = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
