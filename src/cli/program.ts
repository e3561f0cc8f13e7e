/**
 * The `verity` command line: a thin shell over the library API. Option names and meanings follow veritysetup 2.6.1
 * (cryptsetup src/veritysetup.c), including `-h` for the hash algorithm; help is `--help`.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { VerityError } from '../errors.js';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from '../format/params.js';
import type { TreeOptions } from '../format/options.js';
import { pathExists } from '../files/files.js';
import { ENGINE_NAMES, MAX_THREADS } from '../threads/limits.js';
import { errorJson } from '../report/json.js';
import { EXIT, exitCodeForError, exitCodeForStatus } from './exit-codes.js';
import { hashFormat, integer } from './parsers.js';
import { progressLine } from './progress.js';

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

/** Colour on stdout: a terminal, unless NO_COLOR is set and not empty (no-color.org) or TERM is dumb. */
function colourOn(io: CliIo): boolean {
  return io.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}

interface CommonFlags {
  hash?: string;
  format?: 0 | 1;
  dataBlockSize?: number;
  hashBlockSize?: number;
  dataBlocks?: number;
  hashOffset?: number;
  salt?: string;
  uuid?: string;
  superblock: boolean;
  rootHashFile?: string;
  fecDevice?: string;
  fecOffset?: number;
  fecRoots?: number;
  trustedCert?: string[];
  json?: boolean;
  progress: boolean;
  engine: string;
  threads?: number;
}

const PAGE_SIZE = 4096;
/** The veritysetup release whose formats, output lines and options this CLI matches (golden vectors, differential test). */
export const VERITYSETUP_VERSION = '2.6.1';
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
const blockSize = integer(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
const u64 = integer(0, Number.MAX_SAFE_INTEGER);

function treeOptions(f: CommonFlags): TreeOptions {
  return {
    algorithm: f.hash,
    hashType: f.format,
    dataBlockSize: f.dataBlockSize,
    hashBlockSize: f.hashBlockSize,
    dataBlocks: f.dataBlocks,
    salt: f.salt,
    uuid: f.uuid,
    superblock: f.superblock,
    hashOffset: f.hashOffset,
  };
}

function addTreeOptions(cmd: Command): Command {
  return cmd
    .option('-h, --hash <algorithm>', 'hash algorithm: sha1, sha224, sha256, sha384, sha512 (default: sha256)')
    .option('--format <number>', 'hash format: 1 normal, 0 original Chrome OS (default: 1)', hashFormat)
    .option('--data-block-size <bytes>', 'block size on the data device (default: 4096)', blockSize)
    .option('--hash-block-size <bytes>', 'block size on the hash device (default: 4096)', blockSize)
    .option('--data-blocks <blocks>', 'number of data blocks to cover (default: the whole data device)', integer(1, Number.MAX_SAFE_INTEGER))
    .option('--hash-offset <bytes>', 'byte offset of the superblock / hash area on the hash device (default: 0)', u64)
    .option('-s, --salt <hex>', 'salt as hex, "-" for none (default: 32 random bytes)')
    .option('--no-superblock', 'do not write or read a superblock (every parameter must then be given)')
    .option('--json', 'print one JSON document (schemaVersion 1) on stdout')
    .option('--no-progress', 'no progress display on stderr')
    .addOption(
      new Option('--engine <name>', 'hash engine; auto measures wasm-simd against node-crypto for sha256')
        .choices(ENGINE_NAMES)
        .default('auto'),
    )
    .option('--threads <n>', 'hashing threads (default: the available cores; 1 below 16 MiB of data)', integer(1, MAX_THREADS));
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.OK;
  let json = false;
  let command = 'verity';
  const out = (text: string) => io.stdout.write(text);
  const err = (text: string) => io.stderr.write(text);
  const progress = (f: CommonFlags, label: string) =>
    f.progress && io.stderr.isTTY ? progressLine(io.stderr, label) : undefined;
  const pageSizeWarning = (dataBlockSize: number) => {
    if (dataBlockSize > PAGE_SIZE) {
      err(`WARNING: Kernel cannot activate device if data block size exceeds page size (${PAGE_SIZE}).\n`);
    }
  };

  const program = new Command('verity')
    .description('dm-verity hash trees: format, verify, dump and inspect, compatible with veritysetup')
    .helpOption('--help', 'show help (also -? and --usage, as in veritysetup)')
    .version(`verity ${version} (compatible with veritysetup ${VERITYSETUP_VERSION})`, '-V, --version', 'print the version')
    .option('-v, --verbose', 'print "Command successful." when a command succeeds, as veritysetup -v does')
    .option('--debug', 'print the stack trace of an error (as VERITY_DEBUG=1)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err });

  addTreeOptions(
    program
      .command('format')
      .description('build the hash tree of <data> into <hash> and print the root hash')
      .argument('<data>', 'data device, image file or address (read only); "-" for stdin')
      .argument('<hash>', 'hash device or file to write (created if missing)')
      .option('--uuid <uuid>', 'UUID to store in the superblock (default: random)')
      .option('--root-hash-file <path>', 'also write the root hash (hex, no newline) to this file')
      .option(
        '--fec-device <path>',
        'also write Reed-Solomon parity (forward error correction) to this file or device (created if missing); ' +
          'it may be <hash> (with --fec-offset after the tree) or <data> (after the data)',
      )
      .option('--fec-offset <bytes>', 'byte offset of the parity on the FEC device, a multiple of the block size (default: 0)', u64)
      .option('--fec-roots <number>', 'parity bytes per 255-byte codeword, 2 to 24 (default: 2)', integer(0, 0xffffffff)),
  ).action(async (data: string, hash: string, f: CommonFlags) => {
    command = 'format';
    json = Boolean(f.json);
    // Each command loads only its own modules: start-up is part of every run's time.
    const [{ formatFiles }, { formatJson }, { renderHeader }] = await Promise.all([
      import('../api/format.js'),
      import('../report/json.js'),
      import('../report/text.js'),
    ]);
    const bar = progress(f, f.fecDevice === undefined ? 'Hashing' : 'Hashing and encoding');
    const result = await formatFiles(data, hash, {
      ...treeOptions(f),
      rootHashFile: f.rootHashFile,
      fecDevice: f.fecDevice,
      fecOffset: f.fecOffset,
      fecRoots: f.fecRoots,
      engine: f.engine,
      threads: f.threads,
      onProgress: bar?.update,
    }).finally(() => bar?.done());
    pageSizeWarning(result.params.dataBlockSize);
    if (json) out(JSON.stringify(formatJson(data, hash, result, result.sources), null, 2) + '\n');
    else out(renderHeader(hash, result.params, result.geometry, result.rootHash, result.fec));
  });

  addTreeOptions(
    program
      .command('verify')
      .description('check <data> against the hash tree in <hash>; report every corrupted block')
      .argument('<data>', 'data device, image file or address (read only); "-" for stdin')
      .argument('[hash]', 'hash device, file or address (read only); omit it to find the pair in the <data> image')
      .argument('[root-hash]', 'expected root hash, hex')
      .option('--root-hash-file <path>', 'read the expected root hash from this file')
      .option(
        '--trusted-cert <file>',
        'verify <image>: a PEM or DER certificate whose signatures authenticate the root hashes the image claims; repeatable. ' +
          'Every target must then be authenticated (exit 6 otherwise)',
        (value: string, previous: string[] = []) => [...previous, value],
      )
      .option(
        '--fec-device <path>',
        'Reed-Solomon parity (as format --fec-device wrote it): say whether every damaged block can be restored, by ' +
          'erasure decoding (up to --fec-roots damaged blocks per round); the exit code stays 2',
      )
      .option('--fec-offset <bytes>', 'byte offset of the parity on the FEC device (default: 0)', u64)
      .option('--fec-roots <number>', 'parity bytes per 255-byte codeword, 2 to 24 (default: 2)', integer(0, 0xffffffff))
      .addHelpText(
        'after',
        '\nWith a superblock (the default) the tree parameters are read from it and the tree options above are\n' +
          'ignored (a warning names any that differ). With --no-superblock every parameter, the salt included,\n' +
          'must be given again as at format time.\n\n' +
          'Addresses: <file>[::<step>]... where each step names a zip entry or a GPT partition (index, name, GUID or\n' +
          'DPS type), e.g. eflow.zip::EFLOW.vhdx::3. VHDX and VHD files read as their disks. With only an image and\n' +
          'an optional root hash (verify disk.vhdx [<root-hash>]), every verity target of the image is found (the\n' +
          'kernel command lines of its GRUB, BLS and UKI boot entries, with Mariner\'s trees in the initramfs; else\n' +
          'DPS partition types and root-hash partition UUIDs, verity superblocks) and verified; a root hash the\n' +
          'image declares itself is reported as NOT AUTHENTICATED.\n\n' +
          'Exit codes: 0 clean, 1 bad parameters, 2 corrupted blocks, 3 root hash mismatch, 4 bad input (or a\n' +
          'target the image declares that cannot be checked), 5 no dm-verity target in the image, 6 with\n' +
          '--trusted-cert, a root hash the image claims that no trusted certificate signed.',
      ),
  ).action(async (data: string, hashArg: string | undefined, rootArg: string | undefined, f: CommonFlags) => {
    command = 'verify';
    json = Boolean(f.json);
    let hash = hashArg;
    let rootHash = rootArg;
    // `verify <image> <root-hash>`: a second operand that is hex and names no file is the root hash.
    if (hash !== undefined && rootHash === undefined && f.rootHashFile === undefined && /^([0-9a-fA-F]{2})+$/.test(hash)) {
      if (!(await pathExists(hash))) [hash, rootHash] = [undefined, hash];
    }
    const bar = progress(f, 'Verifying');
    const options = {
      ...treeOptions(f),
      rootHash,
      rootHashFile: f.rootHashFile,
      trustedCertificates: f.trustedCert,
      fecDevice: f.fecDevice,
      fecOffset: f.fecOffset,
      fecRoots: f.fecRoots,
      engine: f.engine,
      threads: f.threads,
      onProgress: bar?.update,
    };
    if (hash === undefined && (f.fecDevice ?? f.fecOffset ?? f.fecRoots) !== undefined) {
      throw new VerityError('E_PARAM', '--fec-device, --fec-offset and --fec-roots apply to verify <data> <hash>, not to a whole image.', {
        data: { field: 'fec-device' },
      });
    }
    if (hash !== undefined && f.trustedCert !== undefined) {
      throw new VerityError('E_PARAM', '--trusted-cert authenticates the root hashes an image claims: it applies to verify <image> only.', {
        data: { field: 'trusted-cert' },
      });
    }
    if (hash === undefined) {
      // An image alone: every target it holds (api/verify-image.ts).
      const [{ verifyImage }, { imageVerifyJson, renderImageVerify }] = await Promise.all([
        import('../api/verify-image.js'),
        import('../report/image.js'),
      ]);
      const r = await verifyImage(data, options).finally(() => bar?.done());
      exitCode =
        r.status === 'no-verity'
          ? EXIT.NO_VERITY
          : r.status === 'unresolved'
            ? EXIT.BAD_INPUT
            : r.status === 'unauthenticated'
              ? EXIT.UNAUTHENTICATED
              : exitCodeForStatus(r.status);
      for (const t of r.targets) for (const w of t.warnings) err(`WARNING: ${t.name}: ${w}.\n`);
      out(json ? JSON.stringify(imageVerifyJson(r, exitCode, exitCodeForStatus), null, 2) + '\n' : renderImageVerify(r));
      return;
    }
    const [{ verifyFiles }, { verifyJson }, { renderVerify, veritysetupLines }] = await Promise.all([
      import('../api/verify.js'),
      import('../report/json.js'),
      import('../report/text.js'),
    ]);
    const result = await verifyFiles(data, hash, options).finally(() => bar?.done());
    exitCode = exitCodeForStatus(result.status);
    for (const w of result.warnings) err(`WARNING: ${w}.\n`);
    if (json) out(JSON.stringify(verifyJson(data, hash, result, exitCode, result.sources), null, 2) + '\n');
    else {
      err(veritysetupLines(result));
      out(renderVerify(result, result.params));
    }
  });

  addTreeOptions(
    program
      .command('repair')
      .description('restore the damaged blocks of <data> (and of the tree in <hash>) from FEC parity, into new files or in place')
      .argument('<data>', 'data device, image file or address (read only unless --in-place)')
      .argument('<hash>', 'hash device, file or address (read only unless --in-place)')
      .argument('[root-hash]', 'expected root hash, hex')
      .option('--root-hash-file <path>', 'read the expected root hash from this file')
      .requiredOption('--fec-device <path>', 'the Reed-Solomon parity, as format --fec-device wrote it')
      .option('--fec-offset <bytes>', 'byte offset of the parity on the FEC device (default: 0)', u64)
      .option('--fec-roots <number>', 'parity bytes per 255-byte codeword, 2 to 24 (default: 2)', integer(0, 0xffffffff))
      .option('-o, --output <file>', 'write the restored data here (a new file, renamed into place once it verifies)')
      .option('--hash-output <file>', 'write the restored hash device here; needed when tree blocks are damaged')
      .option('--in-place', 'rewrite only the damaged blocks of the inputs (plain files or partitions of raw disks), then sync')
      .addHelpText(
        'after',
        '\nEach damaged block the tree finds is rebuilt by erasure decoding: up to --fec-roots damaged blocks per\n' +
          'round of the parity. Nothing is written unless every damaged block is rebuilt and the result verifies\n' +
          'against the root hash. Images inside a VHDX, VHD or zip are repaired to --output as raw files.\n\n' +
          'Exit codes: 0 repaired (or nothing to repair), 1 bad parameters, 2 damage that cannot be restored\n' +
          '(nothing written), 3 root hash mismatch, 4 bad input.',
      ),
  ).action(async (data: string, hash: string, rootHash: string | undefined, f: CommonFlags & { output?: string; hashOutput?: string; inPlace?: boolean }) => {
    command = 'repair';
    json = Boolean(f.json);
    const [{ repairFiles }, { repairJson }, { renderRepair }] = await Promise.all([
      import('../api/repair.js'),
      import('../report/json.js'),
      import('../report/text.js'),
    ]);
    const bar = progress(f, 'Verifying and repairing');
    const r = await repairFiles(data, hash, {
      ...treeOptions(f),
      rootHash,
      rootHashFile: f.rootHashFile,
      fecDevice: f.fecDevice,
      fecOffset: f.fecOffset,
      fecRoots: f.fecRoots,
      output: f.output,
      hashOutput: f.hashOutput,
      inPlace: f.inPlace,
      engine: f.engine,
      threads: f.threads,
      onProgress: bar?.update,
    }).finally(() => bar?.done());
    exitCode = r.status === 'unrepairable' ? EXIT.CORRUPT : r.status === 'root-mismatch' ? exitCodeForStatus('root-mismatch') : EXIT.OK;
    out(json ? JSON.stringify(repairJson(data, hash, r, r.params, r.fec, exitCode), null, 2) + '\n' : renderRepair(r, r.params, r.fec));
  });

  program
    .command('inspect')
    .description('show the containers, partitions, filesystems and verity superblocks of an image; on a disk, its boot entries and the targets verify would check')
    .argument('<image>', 'image file or address (read only): raw, VHDX, VHD, zip, GPT disk or partition')
    .option('--json', 'print one JSON document (schemaVersion 1) on stdout')
    .action(async (image: string, f: { json?: boolean }) => {
      command = 'inspect';
      json = Boolean(f.json);
      const [{ inspectImage }, { renderInspect }] = await Promise.all([import('../api/inspect.js'), import('../report/inspect.js')]);
      const report = await inspectImage(image);
      out(json ? JSON.stringify(report, null, 2) + '\n' : renderInspect(report, { colour: colourOn(io) }));
    });

  program
    .command('dump')
    .description('print the parameters in the superblock of <hash>')
    .argument('<hash>', 'hash device, file or address (read only)')
    .option('--hash-offset <bytes>', 'byte offset of the superblock (default: 0)', u64)
    .option('--fec-device <path>', 'also print the FEC geometry for parity on this device (the superblock does not record it)')
    .option('--fec-offset <bytes>', 'byte offset of the parity on the FEC device (default: 0)', u64)
    .option('--fec-roots <number>', 'parity bytes per codeword, 2 to 24 (default: 2)', integer(0, 0xffffffff))
    .option('--json', 'print one JSON document (schemaVersion 1) on stdout')
    .action(async (hash: string, f: { hashOffset?: number; fecDevice?: string; fecOffset?: number; fecRoots?: number; json?: boolean }) => {
      command = 'dump';
      json = Boolean(f.json);
      const [{ dumpFile }, { dumpJson }, { renderHeader }] = await Promise.all([
        import('../api/dump.js'),
        import('../report/json.js'),
        import('../report/text.js'),
      ]);
      const { params, geometry, sources, fec } = await dumpFile(hash, {
        hashOffset: f.hashOffset,
        fecDevice: f.fecDevice,
        fecOffset: f.fecOffset,
        fecRoots: f.fecRoots,
      });
      if (json) out(JSON.stringify(dumpJson(hash, params, geometry, sources, fec), null, 2) + '\n');
      else out(renderHeader(hash, params, geometry, undefined, fec));
    });

  // veritysetup's other names for help; commander takes one help flag.
  const args = argv.map((a) => (a === '-?' || a === '--usage' ? '--help' : a));
  const globals = () => program.opts<{ verbose?: boolean; debug?: boolean }>();
  try {
    await program.parseAsync(args, { from: 'user' });
    if (exitCode === EXIT.OK && globals().verbose && !json) out('Command successful.\n');
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed by commander.
      if (e.exitCode === 0) return EXIT.OK;
      // A usage error stops commander before any action ran, so `json` is still unset: look at argv. `--json` promises
      // one JSON document on stdout, also on error.
      if (argv.includes('--json')) {
        const name = ['format', 'verify', 'dump', 'inspect'].includes(argv[0] ?? '') ? argv[0]! : command;
        out(JSON.stringify(errorJson(name, { code: 'E_PARAM', message: e.message }, EXIT.USAGE), null, 2) + '\n');
      }
      return EXIT.USAGE;
    }
    const error =
      e instanceof VerityError
        ? e
        : new VerityError('E_INTERNAL', `internal error: ${e instanceof Error ? e.message : String(e)} (please report this)`, {
            cause: e,
          });
    const code = exitCodeForError(error.code);
    err(`verity ${command}: ${error.message}\n`);
    if ((process.env.VERITY_DEBUG || globals().debug) && e instanceof Error && e.stack) err(e.stack + '\n');
    if (json) out(JSON.stringify(errorJson(command, error.toJSON(), code), null, 2) + '\n');
    return code;
  }
}
