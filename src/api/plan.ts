/**
 * Resolving a command's options and operands, once, into the plan it runs: the tree (parameters, geometry with the
 * resolved hash algorithm, salt side: tree/plan.ts), the operands' sources and where they were read, and for verify
 * the expected root hash. The commands (format.ts, verify.ts, dump.ts) only run a plan, and the layers below get
 * the plan and their own part of the options (options.ts), never the whole options bag.
 */
import type { Stats } from 'node:fs';
import { resolve } from 'node:path';
import { describeLayer, openOperand, splitAddress, withPath, type Operand } from '../containers/operand.js';
import { VerityError } from '../errors.js';
import { checkFecParams, computeFecGeometry, type FecGeometry, type FecPlacement } from '../fec/geometry.js';
import { checkFecSize } from '../fec/decode.js';
import { DEFAULT_ROOTS } from '../fec/rs.js';
import { createAtomic, openFileSource, sameFile, statOrNull } from '../files/files.js';
import { formatParams, ignoredOptions, superblockParams, verifyParams } from '../format/options.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { checkDataSize } from '../tree/build.js';
import { planTree, type TreePlan } from '../tree/plan.js';
import { openOptions, type FecOptions, type FormatOptions, type Sources, type VerifyOptions } from './options.js';
import { checkOverlap, placement, type Placement } from './overlap.js';
import { expectedRootHash } from './root-hash.js';

/** What `format` runs: a checked tree over an open data operand, and where its output goes. Close it when done. */
export interface FormatPlan {
  tree: TreePlan;
  data: ByteSource;
  hashPath: string;
  /** The hash file or device when it exists: it is then updated in place, keeping its other bytes. */
  existing: Stats | null;
  /** Where to write the root hash too; already checked to be creatable. */
  rootHashFile: string | undefined;
  /** The FEC parity to write after the tree, when asked for. */
  fec: FecPlan | null;
  sources: Pick<Sources, 'data'>;
  close(): Promise<void>;
}

/** Where the FEC parity goes and what it covers, worked out before anything is written. */
export interface FecPlan {
  /** The FEC device as given. */
  path: string;
  /** On the hash device (written with the tree), in the data file, or in a file of its own. */
  placement: FecPlacement;
  geometry: FecGeometry;
  /** The FEC file when it exists and is not the hash device: updated in place, keeping its other bytes. */
  existing: Stats | null;
}

/**
 * Plans a format of `dataAddress` into `hashPath`. Every check that can fail on the inputs runs here, before the
 * command writes anything: an existing hash file keeps its superblock, and no new file appears.
 */
export async function planFormat(dataAddress: string, hashPath: string, options: FormatOptions): Promise<FormatPlan> {
  if (splitAddress(hashPath).steps.length > 0 && !(await statOrNull(hashPath))) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `Cannot write the hash tree into ${hashPath}: format writes a file or block device, not into a container.`,
      { data: { path: hashPath } },
    );
  }
  const operand = await openOperand(dataAddress, openOptions(options));
  try {
    const data = operand.source;
    if (!operand.sizeKnown && options.dataBlocks === undefined) {
      throw new VerityError('E_PARAM', `${dataAddress} is a stream of unknown length: give the number of blocks with --data-blocks.`, {
        data: { path: dataAddress, field: 'dataBlocks' },
      });
    }
    const tree = planOver(() => formatParams(options, data.size), dataAddress);
    const existing = await statOrNull(hashPath);
    const placed = placement(dataAddress, operand);
    if (existing && placed) checkOverlap(tree, placed, { name: hashPath, file: existing, at: 0, partition: false }, true);
    checkDataSize(tree.params, data, dataAddress);
    const fec = await planFec(options, tree, { dataAddress, data, placed, hashPath, existing });
    if (options.rootHashFile !== undefined) {
      const path = options.rootHashFile;
      if ((await statOrNull(path))?.isDirectory()) {
        throw new VerityError('E_NO_FILE', `${path} is a directory, not a file or block device.`, { data: { path } });
      }
      // Creating and dropping a temporary file beside it proves now that the root hash can be written at the end.
      await (await createAtomic(path)).abort();
    }
    return {
      tree,
      data,
      hashPath,
      existing,
      rootHashFile: options.rootHashFile,
      fec,
      sources: { data: operand.layers.map(describeLayer) },
      close: () => operand.close(),
    };
  } catch (e) {
    await operand.close();
    throw e;
  }
}

/** The FEC device, or null when none is given; `--fec-offset`/`--fec-roots` alone are an error. */
function fecDeviceOf(options: FecOptions): string | null {
  if (options.fecDevice !== undefined) return options.fecDevice;
  const given = options.fecOffset !== undefined ? 'fecOffset' : options.fecRoots !== undefined ? 'fecRoots' : null;
  if (given === null) return null;
  throw new VerityError('E_PARAM', `--${given === 'fecOffset' ? 'fec-offset' : 'fec-roots'} needs --fec-device.`, { data: { field: given } });
}

/** Refuses an operand FEC cannot use: one that can only be read front to back. */
function checkRandomAccess(address: string, source: ByteSource): void {
  if (source.sequential) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `FEC reads blocks out of order, and ${address} can only be read front to back (a stream or a compressed entry); give it as a file.`,
      { data: { path: address } },
    );
  }
}

/**
 * The FEC geometry over `tree` (fec/geometry.ts) for parity on `fecPath`. On the hash device the parity must start at
 * or after the tree's end: veritysetup checks this only when --data-blocks is given (its overlap test otherwise uses
 * the tree of 0 data blocks) and lets the parity overwrite the tree, and the kernel refuses FEC that does not cover the
 * whole tree.
 */
export function fecGeometryOf(
  tree: TreePlan,
  fec: { roots: number | undefined; offset: number | undefined; onHashDevice: boolean; hashDeviceSize: number },
  names: { hash: string; fec: string },
): FecGeometry {
  const { params, geometry: treeGeometry } = tree;
  const fecOffset = fec.offset ?? 0;
  const roots = fec.roots ?? DEFAULT_ROOTS;
  checkFecParams({ roots, dataBlockSize: params.dataBlockSize, hashBlockSize: params.hashBlockSize, fecOffset });
  const treeEnd = treeGeometry.hashDeviceSize;
  if (fec.onHashDevice && fecOffset < treeEnd) {
    throw new VerityError(
      'E_OVERLAP',
      `Hash area overlaps with FEC area: on ${names.hash} the hash tree ends at byte ${treeEnd} and the FEC area must ` +
        `start there or later; --fec-offset is ${fecOffset}.`,
      { data: { path: names.fec, field: 'fecOffset', expected: treeEnd, actual: fecOffset } },
    );
  }
  return computeFecGeometry({
    roots,
    dataBlockSize: params.dataBlockSize,
    hashBlockSize: params.hashBlockSize,
    dataBlocks: params.dataBlocks,
    hashStartBlock: treeGeometry.hashStartBlock,
    fecOffset,
    onHashDevice: fec.onHashDevice,
    hashDeviceSize: fec.hashDeviceSize,
  });
}

/** What planFec knows of the other two operands. */
interface FecContext {
  dataAddress: string;
  data: ByteSource;
  /** Where the data lies in its file; null for stdin. */
  placed: Placement | null;
  hashPath: string;
  /** The hash file when it exists (it is then updated in place). */
  existing: Stats | null;
}

/**
 * Plans the FEC parity of a format: the device it goes to, what it covers (fec/geometry.ts) and the checks that it
 * overlaps neither the data nor the tree. The covered part of a separate hash device ends where that device ends
 * once the tree is written, which is known now: the tree's end for a new file, else the larger of the file's size and
 * what format writes into it (the cleared superblock, the tree).
 */
async function planFec(options: FecOptions, tree: TreePlan, ctx: FecContext): Promise<FecPlan | null> {
  const { params } = tree;
  const path = fecDeviceOf(options);
  if (path === null) return null;
  const fecFile = await statOrNull(path);
  if (!fecFile && splitAddress(path).steps.length > 0) {
    throw new VerityError('E_UNSUPPORTED', `Cannot write FEC parity into ${path}: format writes a file or block device, not into a container.`, {
      data: { path },
    });
  }
  if (fecFile?.isDirectory()) throw new VerityError('E_NO_FILE', `${path} is a directory, not a file or block device.`, { data: { path } });
  checkRandomAccess(ctx.dataAddress, ctx.data);
  const onHash = resolve(path) === resolve(ctx.hashPath) || (fecFile !== null && ctx.existing !== null && sameFile(fecFile, ctx.existing));
  const inData = fecFile !== null && ctx.placed !== null && sameFile(fecFile, ctx.placed.file);
  const fecOffset = options.fecOffset ?? 0;
  const geometry = fecGeometryOf(
    tree,
    {
      roots: options.fecRoots,
      offset: options.fecOffset,
      onHashDevice: onHash,
      hashDeviceSize: onHash ? 0 : await hashSizeAfterTree(tree, ctx.hashPath, ctx.existing),
    },
    { hash: ctx.hashPath, fec: path },
  );
  const fecEnd = fecOffset + geometry.parityBytes;
  if (inData && ctx.placed) {
    const { at, name } = ctx.placed;
    if (at === null) {
      throw new VerityError(
        'E_OVERLAP',
        `Data area overlaps with FEC area: ${name} is inside a container in ${path}, so the FEC area cannot be placed beside it; use another file.`,
        { data: { path } },
      );
    }
    const dataEnd = at + params.dataBlocks * params.dataBlockSize;
    if (fecOffset < dataEnd && at < fecEnd) {
      throw new VerityError(
        'E_OVERLAP',
        `Data area overlaps with FEC area: in ${path} the data covers bytes ${at}..${dataEnd} and the FEC area bytes ` +
          `${fecOffset}..${fecEnd}.`,
        { data: { path, field: 'fecOffset', expected: dataEnd, actual: fecOffset } },
      );
    }
  }
  const placement: FecPlacement = onHash ? 'hash-device' : inData ? 'data-device' : 'separate';
  if (placement === 'separate' && !fecFile) {
    // As for the root hash file: prove now that the FEC file can be created at the end.
    await (await createAtomic(path)).abort();
  }
  return { path, placement, geometry, existing: onHash ? null : fecFile };
}

/** The size of the hash device once the tree is written into it, before the superblock (api/format.ts). */
async function hashSizeAfterTree(tree: TreePlan, hashPath: string, existing: Stats | null): Promise<number> {
  const { params, geometry } = tree;
  const written = geometry.levels.length > 0 ? geometry.hashDeviceSize : 0;
  if (!existing) return written;
  // Block devices report their size through the file source (sysfs), not stat.
  const source = await openFileSource(hashPath);
  const size = source.size;
  await source.close();
  // In place, the old superblock is cleared first (api/format.ts: updateInPlace).
  return Math.max(size, params.superblock ? params.hashOffset + SUPERBLOCK_SIZE : 0, written);
}

/** What `verify` runs: a checked tree, the two sources it reads and the root hash it expects. Close it when done. */
export interface VerifyPlan {
  tree: TreePlan;
  data: ByteSource;
  hash: ByteSource;
  /** The addresses that name the two sources in errors. */
  paths: { data: string; hash: string };
  expectedRoot: Uint8Array;
  sources: Sources;
  /** Options that a superblock overrode. */
  warnings: string[];
  /** With `fecDevice`: the parity, its geometry and its source, to tell whether damage can be repaired. */
  fec: VerifyFecPlan | null;
  /**
   * Where each operand's bytes lie unchanged in a file (a plain file or a partition of a raw disk: its path and the
   * byte offset there), for repair --in-place; null inside a VHDX, VHD or zip, or for stdin.
   */
  extents: { data: FileExtent | null; hash: FileExtent | null };
  close(): Promise<void>;
}

export interface FileExtent {
  path: string;
  offset: number;
}

function fileExtent(o: Operand): FileExtent | null {
  return o.file !== null && o.extent !== null && o.file.isFile() ? { path: splitAddress(o.address).path, offset: o.extent } : null;
}

/** The FEC parity a verify or repair reads. */
export interface VerifyFecPlan {
  path: string;
  placement: FecPlacement;
  geometry: FecGeometry;
  source: ByteSource;
}

/**
 * Plans a verify of `dataAddress` against `hashAddress`. The root hash file is read here, once. (An image without a
 * hash operand is verify-image.ts's: it may hold several targets.)
 */
export async function planVerify(dataAddress: string, hashAddress: string, options: VerifyOptions): Promise<VerifyPlan> {
  const opened: Operand[] = [];
  const close = async () => {
    for (const o of opened) await o.close();
  };
  const open = openOptions(options);
  try {
    const dataOperand = await openOperand(dataAddress, open);
    opened.push(dataOperand);
    const data = dataOperand.source;
    const rootHash = await expectedRootHash(options);
    const hashOperand = await openOperand(hashAddress, open);
    opened.push(hashOperand);
    const hash = hashOperand.source;
    const [d, h] = [placement(dataAddress, dataOperand), placement(hashAddress, hashOperand)];
    const superblock = options.superblock ?? true;
    const tree = superblock
      ? (await readTreeAt(hash, options.hashOffset ?? 0, hashAddress)).tree
      : planOver(() => verifyParams(options, data.size), dataAddress);
    if (d && h) checkOverlap(tree, d, h, false);
    const { params, geometry } = tree;
    const fec = await planVerifyFec(options, tree, { data: dataOperand, hash: hashOperand, hashAddress }, opened);
    return {
      tree,
      data,
      hash,
      paths: { data: dataAddress, hash: hashAddress },
      expectedRoot: rootHash.bytes(geometry.digestSize, params.algorithm),
      sources: { data: dataOperand.layers.map(describeLayer), hash: hashOperand.layers.map(describeLayer) },
      warnings: superblock ? ignoredOptions(options, params) : [],
      fec,
      extents: { data: fileExtent(dataOperand), hash: fileExtent(hashOperand) },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * The FEC parity of a verify: the FEC device is opened read-only like the other operands (a container address works).
 * It is the hash device when it names the same bytes (same file, same offset); then the covered area ends at the FEC
 * offset, else at the hash device's end, as veritysetup and the kernel read it (fec/geometry.ts).
 */
async function planVerifyFec(
  options: FecOptions,
  tree: TreePlan,
  ops: { data: Operand; hash: Operand; hashAddress: string },
  opened: Operand[],
): Promise<VerifyFecPlan | null> {
  const path = fecDeviceOf(options);
  if (path === null) return null;
  checkRandomAccess(ops.data.address, ops.data.source);
  checkRandomAccess(ops.hash.address, ops.hash.source);
  const fecOperand = await openOperand(path);
  opened.push(fecOperand);
  const same = (a: Operand, b: Operand) => a.file !== null && b.file !== null && sameFile(a.file, b.file) && a.extent !== null && a.extent === b.extent;
  const onHash = resolve(path) === resolve(ops.hashAddress) || same(fecOperand, ops.hash);
  const inData = !onHash && same(fecOperand, ops.data);
  const fecOffset = options.fecOffset ?? 0;
  const { params } = tree;
  const geometry = fecGeometryOf(
    tree,
    { roots: options.fecRoots, offset: options.fecOffset, onHashDevice: onHash, hashDeviceSize: ops.hash.source.size },
    { hash: ops.hashAddress, fec: path },
  );
  const dataEnd = params.dataBlocks * params.dataBlockSize;
  if (inData && fecOffset < dataEnd) {
    throw new VerityError(
      'E_OVERLAP',
      `Data area overlaps with FEC area: in ${path} the data covers bytes 0..${dataEnd} and the FEC area starts at ${fecOffset}.`,
      { data: { path, field: 'fecOffset', expected: dataEnd, actual: fecOffset } },
    );
  }
  checkFecSize(geometry, fecOperand.source, path);
  return { path, placement: onHash ? 'hash-device' : inData ? 'data-device' : 'separate', geometry, source: fecOperand.source };
}

/**
 * The tree of the parameters `params` fills in from the options. A data operand too small for a single block is
 * found while filling them in, where its address is not known: it is named here.
 */
function planOver(params: () => VerityParams, dataAddress: string): TreePlan {
  try {
    return planTree(params());
  } catch (e) {
    throw e instanceof VerityError && e.code === 'E_TRUNCATED' ? withPath(e, dataAddress) : e;
  }
}

/** The superblock at `hashOffset` of `hash` and the tree it describes, planned; `hashPath` names `hash` in errors. */
export async function readTreeAt(
  hash: ByteSource,
  hashOffset: number,
  hashPath: string,
): Promise<{ superblock: Superblock; tree: TreePlan }> {
  const superblock = await readSuperblockAt(hash, hashOffset, hashPath);
  return { superblock, tree: planTree(superblockParams(superblock, hashOffset)) };
}

/** The superblock at `hashOffset` of `hash`, or the error veritysetup gives for a device without a valid one. */
export async function readSuperblockAt(hash: ByteSource, hashOffset: number, hashPath: string): Promise<Superblock> {
  if (!Number.isSafeInteger(hashOffset) || hashOffset < 0 || hashOffset % SUPERBLOCK_SIZE !== 0) {
    throw new VerityError('E_PARAM', `Unsupported VERITY hash offset ${hashOffset}: it must be a non-negative multiple of 512.`, {
      data: { path: hashPath, field: 'hashOffset', actual: Number.isFinite(hashOffset) ? hashOffset : String(hashOffset) },
    });
  }
  if (hash.size < hashOffset + SUPERBLOCK_SIZE) {
    throw new VerityError(
      'E_BAD_SUPERBLOCK',
      `Device ${hashPath} is not a valid VERITY device: it is ${hash.size} bytes, too short for a superblock at offset ${hashOffset}.`,
      { data: { path: hashPath, offset: hashOffset, expected: hashOffset + SUPERBLOCK_SIZE, actual: hash.size } },
    );
  }
  const bytes = new Uint8Array(SUPERBLOCK_SIZE);
  await readExactly(hash, bytes, hashOffset, 'Hash device');
  try {
    return parseSuperblock(bytes);
  } catch (e) {
    if (e instanceof VerityError) {
      throw new VerityError(e.code, `Device ${hashPath} is not a valid VERITY device: ${e.message}`, {
        cause: e,
        // An offset the parser gives is into the superblock; the error's offset is into the hash device.
        data: { ...e.data, path: hashPath, offset: hashOffset + (typeof e.data.offset === 'number' ? e.data.offset : 0) },
      });
    }
    throw e;
  }
}
