/**
 * What the commands share: reading a superblock from an operand, and running a pass with the engine the options ask
 * for. The tree's geometry (with the resolved hash algorithm) is computed once per command and passed down.
 */
import type { TreeGeometry } from '../format/geometry.js';
import { SUPERBLOCK_SIZE } from '../format/params.js';
import { parseSuperblock, type Superblock } from '../format/superblock.js';
import type { HashEngine } from '../hash/engine.js';
import { readExactly, type ByteSource } from '../io/source.js';
import { VerityError } from '../errors.js';
import { openEngine, type EngineOptions } from '../threads/engines.js';

/**
 * Runs `pass` with the engine `options` ask for, sized for `dataBytes` of data, and releases its threads afterwards.
 * Returns the pass's result with the engine's description.
 */
export async function withEngine<T>(
  geometry: TreeGeometry,
  dataBytes: number,
  options: EngineOptions,
  pass: (engine: HashEngine) => Promise<T>,
): Promise<T & { engine: string }> {
  const opened = await openEngine(geometry.algorithm, dataBytes, options);
  try {
    return { ...(await pass(opened.engine)), engine: opened.description };
  } finally {
    await opened.close();
  }
}

/** The superblock at `hashOffset` of `hash`, or the error veritysetup gives for a device without a valid one. */
export async function readSuperblockAt(hash: ByteSource, hashOffset: number, hashPath: string): Promise<Superblock> {
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
