/** `verity format`: builds the hash tree of a data operand into a hash file, as `veritysetup format` does. */
import { toHex } from '../binary/bytes.js';
import { describeLayer, openOperand, splitAddress } from '../containers/operand.js';
import { VerityError } from '../errors.js';
import { createAtomic, fsBlockSize, openInPlace, statOrNull, writeFileAtomic } from '../files/files.js';
import { computeGeometry, type TreeGeometry } from '../format/geometry.js';
import { paramsForFormat } from '../format/options.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../format/params.js';
import { buildTree, checkDataSize, formatImage, writeSuperblock } from '../tree/build.js';
import { engineOptions, openOptions, passOptions, type FormatOptions, type Sources } from './options.js';
import { checkOverlap, placement } from './overlap.js';
import { withEngine } from './plan.js';

export interface FormatResult {
  params: VerityParams;
  sources: Pick<Sources, 'data'>;
  geometry: TreeGeometry;
  rootHash: Uint8Array;
  /** The hash engine and threads used. */
  engine: string;
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
  const operand = await openOperand(dataAddress, openOptions(options));
  const data = operand.source;
  try {
    if (!operand.sizeKnown && options.dataBlocks === undefined) {
      throw new VerityError('E_PARAM', `${dataAddress} is a stream of unknown length: give the number of blocks with --data-blocks.`);
    }
    const params = paramsForFormat(options, data.size);
    const existing = await statOrNull(hashPath);
    const geometry = computeGeometry(params);
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

    const pass = passOptions(options);
    const result = await withEngine(geometry, params.dataBlocks * params.dataBlockSize, engineOptions(options), async (engine) => {
      if (existing) {
        const sink = await openInPlace(hashPath);
        try {
          if (params.superblock) {
            // Durable before any tree block changes: after a crash the old superblock never describes a new tree.
            await sink.write(new Uint8Array(SUPERBLOCK_SIZE), params.hashOffset);
            await sink.sync();
          }
          const built = await buildTree(params, data, sink, engine, pass);
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
        const built = await formatImage(params, data, out.sink, engine, { ...pass, deviceBlockSize });
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
