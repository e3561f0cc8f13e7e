/** `verity inspect`: what an image holds, layer by layer. */
import { describeLayer, detectContent, openOperand, type OpenOptions } from '../containers/operand.js';
import type { ZipArchive } from '../containers/zip.js';
import { VerityError } from '../errors.js';
import { SUPERBLOCK_SIZE } from '../format/params.js';
import { superblockAt, surveyImage, type FoundSuperblock } from '../discovery/survey.js';
import { findTargets, type TargetSearch } from '../discovery/targets.js';
import type { ByteSource } from '../io/source.js';
import { inspectReport, type InspectReport } from '../report/inspect.js';
import { nodeCryptoEngine } from '../threads/node-crypto-engine.js';
import { openOptions } from './options.js';

/**
 * What the image at `address` holds: its containers, partitions, filesystems, verity superblocks and DPS pairs
 * (`verity inspect`); on a GPT disk also its boot entries and the targets `verify IMAGE` would check. An address that
 * ends at a zip archive lists its entries.
 */
export async function inspectImage(address: string, options: OpenOptions = {}): Promise<InspectReport> {
  const operand = await openOperand(address, { ...openOptions(options), stopAtArchive: true });
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
      return inspectReport(address, layers, entries, { gpt: null, filesystems: [], superblocks: await entrySuperblocks(last.archive) });
    }
    const kind = operand.sizeKnown ? await detectContent(operand.source) : 'other';
    const survey = await surveyImage(operand.source, kind === 'gpt');
    return inspectReport(address, layers, null, survey, survey.gpt ? await targetSearch(operand.source) : null);
  } finally {
    await operand.close();
  }
}

/**
 * The targets of a GPT disk as `verify IMAGE` finds them (the same call, with the same engine: api/verify-image.ts),
 * with the boot entries read on the way. A disk whose boot configuration or pairs cannot be read is still inspected:
 * the reason is reported as left out.
 */
async function targetSearch(disk: ByteSource): Promise<TargetSearch> {
  try {
    return await findTargets(disk, true, nodeCryptoEngine);
  } catch (e) {
    if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
    return { targets: [], searched: [], skipped: [`the targets could not be searched for: ${e.message}`], unresolved: [], bootEntries: [] };
  }
}

/**
 * The superblocks at the start of the archive's entries (a hash file made by `veritysetup format`, zipped). Only the
 * first 512 bytes of each entry are read (inflated), so a large archive costs one local header per entry. An entry
 * that cannot be opened (encrypted, another compression, damaged) is left out here; opening it by name says why.
 */
async function entrySuperblocks(archive: ZipArchive): Promise<FoundSuperblock[]> {
  const found: FoundSuperblock[] = [];
  for (const e of archive.entries) {
    if (e.name.endsWith('/') || e.uncompressedSize < SUPERBLOCK_SIZE) continue;
    try {
      const superblock = await superblockAt(await archive.open(e.name), 0);
      if (superblock) found.push({ partition: null, entry: e.name, offset: 0, where: 'start', superblock });
    } catch (error) {
      if (!(error instanceof VerityError) || error.code === 'E_INTERNAL') throw error;
    }
  }
  return found;
}
