/**
 * Resolving a command's options and operands, once, into the plan it runs: the tree (parameters, geometry with the
 * resolved hash algorithm, salt side: tree/plan.ts), the operands' sources and where they were read, and for verify
 * the expected root hash. The commands (format.ts, verify.ts, dump.ts) only run a plan, and the layers below get
 * the plan and their own part of the options (options.ts), never the whole options bag.
 */
import type { Stats } from 'node:fs';
import { describeLayer, openOperand, splitAddress, withPath, type Operand } from '../containers/operand.js';
import { VerityError } from '../errors.js';
import { createAtomic, statOrNull } from '../files/files.js';
import { formatParams, ignoredOptions, superblockParams, verifyParams } from '../format/options.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { checkDataSize } from '../tree/build.js';
import { planTree, type TreePlan } from '../tree/plan.js';
import { openOptions, type FormatOptions, type Sources, type VerifyOptions } from './options.js';
import { checkOverlap, placement } from './overlap.js';
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
  sources: Pick<Sources, 'data'>;
  close(): Promise<void>;
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
      sources: { data: operand.layers.map(describeLayer) },
      close: () => operand.close(),
    };
  } catch (e) {
    await operand.close();
    throw e;
  }
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
  close(): Promise<void>;
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
    return {
      tree,
      data,
      hash,
      paths: { data: dataAddress, hash: hashAddress },
      expectedRoot: rootHash.bytes(geometry.digestSize, params.algorithm),
      sources: { data: dataOperand.layers.map(describeLayer), hash: hashOperand.layers.map(describeLayer) },
      warnings: superblock ? ignoredOptions(options, params) : [],
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
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
