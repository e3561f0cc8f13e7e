// `npm start`: formats the bundled sample rootfs, verifies it, then damages a copy and shows the report.
// Runs the built CLI (dist/), exactly as a user would; outputs go to samples/out/ (git-ignored).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

// Relative paths, so the output reads as it would for a user in the repository root.
const here = relative(process.cwd(), dirname(fileURLToPath(import.meta.url))) || '.';
const cli = join(here, '..', 'dist', 'cli', 'main.js');
const image = join(here, 'rootfs.ext4');
const out = join(here, 'out');
const hash = join(out, 'rootfs.hash');
const root = join(out, 'rootfs.roothash');
mkdirSync(out, { recursive: true });
rmSync(hash, { force: true });

function verity(...args) {
  console.log(`\n$ verity ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  console.log(`(exit ${r.status})`);
  return r.status;
}

if (verity('format', image, hash, '--root-hash-file', root) !== 0) process.exit(1);
if (verity('verify', image, hash, '--root-hash-file', root) !== 0) process.exit(1);

// Damage a copy in three places: two neighbouring data blocks and one far away.
const damaged = join(out, 'rootfs-damaged.ext4');
copyFileSync(image, damaged);
const fd = openSync(damaged, 'r+');
for (const offset of [300 * 4096 + 17, 301 * 4096 + 99, 900 * 4096]) writeSync(fd, Buffer.from([0xff, 0x00, 0xaa]), 0, 3, offset);
closeSync(fd);
const status = verity('verify', damaged, hash, '--root-hash-file', root);
console.log(status === 2 ? '\nAs expected: the damaged copy is reported block by block (exit 2).' : '\nUnexpected exit status.');
process.exit(status === 2 ? 0 : 1);
