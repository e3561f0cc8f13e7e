#!/usr/bin/env node
/** The only place that touches process exit state. */
import { rmSync } from 'node:fs';
import { pendingTemporaries } from '../node/files.js';
import { EXIT } from './exit-codes.js';
import { runCli } from './program.js';

function removeTemporariesAndExit(): void {
  for (const path of pendingTemporaries()) rmSync(path, { force: true });
  process.stderr.write('\nverity: interrupted; no output was left behind.\n');
  process.exit(EXIT.INTERRUPTED);
}
process.once('SIGINT', removeTemporariesAndExit);
process.once('SIGTERM', removeTemporariesAndExit);

process.exitCode = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
