/**
 * The Node library API over files and block devices: format, verify and dump, as `veritysetup` does them.
 */
import { promises as fs, type Stats } from 'node:fs';
import { resolveAlgorithm, digestSize } from '../format/algorithms.js';
import { fromHex, toHex } from '../binary/bytes.js';
import { computeGeometry, hashStartBlock, type TreeGeometry } from '../format/geometry.js';
import {
  ignoredOptions,
  paramsForFormat,
  paramsFromSuperblock,
  paramsWithoutSuperblock,
  type TreeOptions,
} from '../format/options.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import type { HashEngine } from '../hash/engine.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { buildTree, checkDataSize, formatImage, writeSuperblock } from '../tree/build.js';
import type { PassOptions } from '../tree/progress.js';
import { verifyTree, type VerifyResult } from '../tree/verify.js';
import { choosePair, surveyImage } from '../discovery/survey.js';
import { inspectReport, type InspectReport } from '../report/inspect.js';
import { describeLayer, detectContent, openOperand, splitAddress, type OpenOptions, type Operand } from '../containers/operand.js';
import { VerityError } from '../errors.js';
import { openEngine, type EngineOptions } from '../threads/engines.js';
import {
  createAtomic,
  createScratch,
  fsBlockSize,
  openInPlace,
  sameFile,
  statOrNull,
  writeFileAtomic,
} from '../files/files.js';

/** Where the operands were read: each one's file and containers, outermost first (operand.ts: describeLayer). */
export interface Sources {
  data: string[];
  hash: string[];
  /** What was chosen when only an image was given (no hash operand). */
  discovered: string | null;
}

export interface RunOptions extends PassOptions, EngineOptions, OpenOptions {}

/** Runs `pass` with the engine the options ask for, and releases its threads afterwards. */
async function withEngine<T>(
  params: VerityParams,
  options: RunOptions,
  pass: (engine: HashEngine) => Promise<T>,
): Promise<T & { engine: string }> {
  const opened = await openEngine(resolveAlgorithm(params.algorithm), params.dataBlocks * params.dataBlockSize, options);
  try {
    return { ...(await pass(opened.engine)), engine: opened.description };
  } finally {
    await opened.close();
  }
}

export interface FormatOptions extends TreeOptions, RunOptions {
  /** Also write the root hash, as lower-case hex without a newline, to this file. */
  rootHashFile?: string;
}

export interface FormatResult {
  params: VerityParams;
  sources: Pick<Sources, 'data'>;
  geometry: TreeGeometry;
  rootHash: Uint8Array;
  /** The hash engine and threads used. */
  engine: string;
}

/** Where an operand's bytes lie in the file its address names; `at` null when a container is in between. */
interface Placement {
  name: string;
  file: Stats;
  at: number | null;
  /** Placed by a partition table, not by the user's offsets: an overlap is then the image's fault. */
  partition: boolean;
}

function placement(name: string, operand: Operand): Placement | null {
  if (!operand.file) return null;
  return { name, file: operand.file, at: operand.extent, partition: operand.layers.some((l) => l.kind === 'partition') };
}

/**
 * Refuses data and hash areas that overlap in one file, comparing absolute file offsets (a partition operand starts
 * at its partition). The hash area starts at the superblock, or without one at the tree, which veritysetup places at
 * the offset rounded *down* to a hash block (geometry.ts: hashStartBlock). veritysetup compares against the unrounded
 * offset and so lets the tree overwrite the last data blocks; we do not. Data inside a container (VHDX, VHD, zip) is
 * not at a fixed place in its file, so format refuses to write a hash area into that same file. Two partitions that
 * overlap are a damaged image (E_BAD_IMAGE), not a usage error.
 */
function checkOverlap(params: VerityParams, data: Placement, hash: Placement, writing: boolean): void {
  if (!sameFile(data.file, hash.file)) return;
  if (data.at === null || hash.at === null) {
    // Reading two parts of one container is fine; where they lie in the file is the container's business.
    if (!writing) return;
    const inside = data.at === null ? data : hash;
    throw new VerityError(
      'E_OVERLAP',
      `Data area overlaps with hash area: ${data.name} and ${hash.name} are in the same file, and ${inside.name} is ` +
        'inside a container in it, so the hash area cannot be placed beside the data; use another file.',
    );
  }
  const hbs = params.hashBlockSize;
  const dataStart = data.at;
  const dataEnd = dataStart + params.dataBlocks * params.dataBlockSize;
  const hashStart = hash.at + (params.superblock ? params.hashOffset : hashStartBlock(params) * hbs);
  const hashEnd = Math.max(hash.at + computeGeometry(params).hashDeviceSize, hashStart + (params.superblock ? SUPERBLOCK_SIZE : 1));
  if (dataStart < hashEnd && hashStart < dataEnd) {
    throw new VerityError(
      data.partition && hash.partition ? 'E_BAD_IMAGE' : 'E_OVERLAP',
      `Data area overlaps with hash area: ${data.name} and ${hash.name} are in the same file, the data covers its ` +
        `bytes ${dataStart}..${dataEnd} and the hash area starts at ${hashStart}.`,
    );
  }
}

/**
 * Builds the hash tree of `dataPath` into `hashPath`. A new hash file is written beside its destination and renamed
 * into place when complete. An existing one (or the data file itself, with `hashOffset`) is updated in place like
 * veritysetup does, keeping its other bytes; its old superblock is cleared first and the new one written last, so an
 * interrupted run never leaves a superblock over an incomplete tree.
 */
export async function formatFiles(dataAddress: string, hashPath: string, options: FormatOptions = {}): Promise<FormatResult> {
  if (splitAddress(hashPath).steps.length > 0 && !(await statOrNull(hashPath))) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `Cannot write the hash tree into ${hashPath}: format writes a file or block device, not into a container.`,
    );
  }
  const operand = await openOperand(dataAddress, options);
  const data = operand.source;
  try {
    if (!operand.sizeKnown && options.dataBlocks === undefined) {
      throw new VerityError('E_PARAM', `${dataAddress} is a stream of unknown length: give the number of blocks with --data-blocks.`);
    }
    const params = paramsForFormat(options, data.size);
    const existing = await statOrNull(hashPath);
    computeGeometry(params);
    const placed = placement(dataAddress, operand);
    if (existing && placed) checkOverlap(params, placed, { name: hashPath, file: existing, at: 0, partition: false }, true);
    // Fail before anything is written: an existing hash file keeps its superblock, and no new one appears.
    checkDataSize(params, data);
    if (options.rootHashFile !== undefined) {
      if ((await statOrNull(options.rootHashFile))?.isDirectory()) {
        throw new VerityError('E_NO_FILE', `${options.rootHashFile} is a directory, not a file or block device.`);
      }
      await (await createAtomic(options.rootHashFile)).abort();
    }

    const result = await withEngine(params, options, async (engine) => {
      if (existing) {
        const sink = await openInPlace(hashPath);
        try {
          if (params.superblock) {
            // Durable before any tree block changes: after a crash the old superblock never describes a new tree.
            await sink.write(new Uint8Array(SUPERBLOCK_SIZE), params.hashOffset);
            await sink.sync();
          }
          const built = await buildTree(params, data, sink, engine, options);
          await sink.sync();
          if (params.superblock) {
            await writeSuperblock(sink, params, await fsBlockSize(hashPath));
            await sink.sync();
          }
          return built;
        } finally {
          await sink.close();
        }
      }
      const out = await createAtomic(hashPath);
      try {
        const deviceBlockSize = await fsBlockSize(hashPath);
        const built = await formatImage(params, data, out.sink, engine, { ...options, deviceBlockSize });
        await out.commit();
        return built;
      } finally {
        await out.abort();
      }
    });
    if (options.rootHashFile !== undefined) await writeFileAtomic(options.rootHashFile, toHex(result.rootHash));
    return { params, ...result, sources: { data: operand.layers.map(describeLayer) } };
  } finally {
    await operand.close();
  }
}

/**
 * Reads a root hash file like veritysetup: exactly 2 × digest-size hex characters from its start (a trailing
 * newline or anything after is ignored). A missing file is an error (veritysetup 2.6.1 exits 0 there; docs/format.md §6).
 */
export async function readRootHashFile(path: string, digestBytes: number): Promise<Uint8Array> {
  let text: string;
  try {
    const stats = await fs.stat(path);
    if (!stats.isFile()) throw new VerityError('E_PARAM', `Invalid root hash file ${path}: not a regular file.`);
    text = await fs.readFile(path, 'latin1');
  } catch (e) {
    if (e instanceof VerityError) throw e;
    throw new VerityError('E_NO_FILE', `Cannot read root hash file ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (text.length < 2 * digestBytes) {
    throw new VerityError(
      'E_PARAM',
      `Invalid root hash file ${path}: it holds ${text.length} characters, a root hash needs ${2 * digestBytes}.`,
    );
  }
  return fromHex(text.slice(0, 2 * digestBytes), `root hash in ${path}`);
}

export interface VerifyOptions extends TreeOptions, RunOptions {
  /** The expected root hash, as bytes or hex. */
  rootHash?: Uint8Array | string;
  /** Read the expected root hash from this file instead (it wins over `rootHash`, as in veritysetup). */
  rootHashFile?: string;
}

export interface VerifyOutcome extends VerifyResult {
  params: VerityParams;
  sources: Sources;
  /** The hash engine and threads used. */
  engine: string;
  /** Options that a superblock overrode. */
  warnings: string[];
}

async function readSuperblockAt(hash: ByteSource, hashOffset: number, hashPath: string): Promise<Superblock> {
  if (!Number.isSafeInteger(hashOffset) || hashOffset < 0 || hashOffset % SUPERBLOCK_SIZE !== 0) {
    throw new VerityError('E_PARAM', `Unsupported VERITY hash offset ${hashOffset}: it must be a non-negative multiple of 512.`);
  }
  if (hash.size < hashOffset + SUPERBLOCK_SIZE) {
    throw new VerityError(
      'E_BAD_SUPERBLOCK',
      `Device ${hashPath} is not a valid VERITY device: it is ${hash.size} bytes, too short for a superblock at offset ${hashOffset}.`,
    );
  }
  const bytes = new Uint8Array(SUPERBLOCK_SIZE);
  await readExactly(hash, bytes, hashOffset, 'Hash device');
  try {
    return parseSuperblock(bytes);
  } catch (e) {
    if (e instanceof VerityError) {
      throw new VerityError(e.code, `Device ${hashPath} is not a valid VERITY device: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/**
 * Verifies the data at `dataAddress` against the tree at `hashAddress` (operand.ts explains addresses). Without
 * `hashAddress`, the data operand is a whole image and the pair is found in it (image/survey.ts: choosePair).
 */
export async function verifyFiles(
  dataAddress: string,
  hashAddress: string | undefined,
  options: VerifyOptions,
): Promise<VerifyOutcome> {
  const opened: Operand[] = [];
  try {
    const dataOperand = await openOperand(dataAddress, options);
    opened.push(dataOperand);
    let data = dataOperand.source;
    let hash: ByteSource;
    let hashOffset = options.hashOffset ?? 0;
    let hashLayers: string[];
    let discovered: string | null = null;
    let placements: [Placement, Placement] | null = null;
    if (hashAddress === undefined) {
      const expected = await expectedRootHash(options, null);
      if (options.superblock === false) throw new VerityError('E_PARAM', 'Finding the hash tree in an image needs its superblock.');
      const pair = await choosePair(data, (await detectContent(data)) === 'gpt', expected);
      ({ data, hash, hashOffset } = pair);
      discovered = pair.description;
      hashLayers = dataOperand.layers.map(describeLayer);
    } else {
      const hashOperand = await openOperand(hashAddress, options);
      opened.push(hashOperand);
      hash = hashOperand.source;
      hashLayers = hashOperand.layers.map(describeLayer);
      const [d, h] = [placement(dataAddress, dataOperand), placement(hashAddress, hashOperand)];
      if (d && h) placements = [d, h];
    }
    const hashName = hashAddress ?? dataAddress;
    const superblock = options.superblock ?? true;
    const params = superblock
      ? paramsFromSuperblock(await readSuperblockAt(hash, hashOffset, hashName), hashOffset)
      : paramsWithoutSuperblock(options, data.size);
    if (placements) checkOverlap(params, ...placements, false);
    const expected = await expectedRootHash(options, {
      bytes: digestSize(resolveAlgorithm(params.algorithm)),
      algorithm: params.algorithm,
    });
    const result = await withEngine(params, options, (engine) =>
      verifyTree(params, data, hash, expected, engine, { ...options, scratch: createScratch }),
    );
    return {
      ...result,
      params,
      warnings: superblock ? ignoredOptions(options, params) : [],
      sources: { data: dataOperand.layers.map(describeLayer), hash: hashLayers, discovered },
    };
  } finally {
    for (const o of opened) await o.close();
  }
}

/** The expected root hash from the options; its length is checked when `digestBytes` is known. */
async function expectedRootHash(options: VerifyOptions, digest: { bytes: number; algorithm: string } | null): Promise<Uint8Array> {
  const digestBytes = digest?.bytes ?? null;
  let expected: Uint8Array;
  if (options.rootHashFile !== undefined) {
    expected = await readRootHashFile(options.rootHashFile, digestBytes ?? (await rootHashFileLength(options.rootHashFile)));
  } else if (options.rootHash !== undefined) {
    expected = typeof options.rootHash === 'string' ? fromHex(options.rootHash, 'root hash string') : options.rootHash;
  } else throw new VerityError('E_PARAM', 'A root hash is required: give it as an argument or with a root hash file.');
  if (digestBytes !== null && expected.length !== digestBytes) {
    throw new VerityError(
      'E_PARAM',
      `Invalid root hash string specified: ${expected.length} bytes, but ${digest!.algorithm} digests are ${digestBytes} bytes.`,
    );
  }
  return expected;
}

/** Digest bytes in a root hash file before its parameters are known: its leading run of hex digits. */
async function rootHashFileLength(path: string): Promise<number> {
  const text = await fs.readFile(path, 'latin1').catch(() => '');
  const digits = /^[0-9a-fA-F]*/.exec(text)![0].length;
  return Math.max(1, Math.floor(digits / 2));
}

export interface DumpResult {
  superblock: Superblock;
  params: VerityParams;
  geometry: TreeGeometry;
  sources: Pick<Sources, 'hash'>;
}

/** Reads and validates the superblock at `hashOffset` (default 0) of the operand `hashAddress`. */
export async function dumpFile(hashAddress: string, options: { hashOffset?: number } = {}): Promise<DumpResult> {
  const hash = await openOperand(hashAddress);
  try {
    const hashOffset = options.hashOffset ?? 0;
    const superblock = await readSuperblockAt(hash.source, hashOffset, hashAddress);
    const params = paramsFromSuperblock(superblock, hashOffset);
    return { superblock, params, geometry: computeGeometry(params), sources: { hash: hash.layers.map(describeLayer) } };
  } finally {
    await hash.close();
  }
}

/**
 * What the image at `address` holds: its containers, partitions, filesystems, verity superblocks and DPS pairs
 * (`verity inspect`). An address that ends at a zip archive lists its entries.
 */
export async function inspectImage(address: string, options: OpenOptions = {}): Promise<InspectReport> {
  const operand = await openOperand(address, { ...options, stopAtArchive: true });
  try {
    const layers = operand.layers.map((l) => ({ kind: l.kind, description: describeLayer(l) }));
    const last = operand.layers.at(-1)!;
    if (last.kind === 'zip') {
      const entries = last.archive.entries.map((e) => ({
        name: e.name,
        method: e.compressionMethod === 0 ? 'stored' : e.compressionMethod === 8 ? 'deflated' : `method ${e.compressionMethod}`,
        size: e.uncompressedSize,
        compressedSize: e.compressedSize,
      }));
      return inspectReport(address, layers, entries, null);
    }
    const kind = operand.sizeKnown ? await detectContent(operand.source) : 'other';
    return inspectReport(address, layers, null, await surveyImage(operand.source, kind === 'gpt'));
  } finally {
    await operand.close();
  }
}
