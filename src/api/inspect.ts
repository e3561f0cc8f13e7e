/** `verity inspect`: what an image holds, layer by layer. */
import { describeLayer, detectContent, openOperand, type OpenOptions } from '../containers/operand.js';
import { surveyImage } from '../discovery/survey.js';
import { inspectReport, type InspectReport } from '../report/inspect.js';
import { openOptions } from './options.js';

/**
 * What the image at `address` holds: its containers, partitions, filesystems, verity superblocks and DPS pairs
 * (`verity inspect`). An address that ends at a zip archive lists its entries.
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
      return inspectReport(address, layers, entries, null);
    }
    const kind = operand.sizeKnown ? await detectContent(operand.source) : 'other';
    return inspectReport(address, layers, null, await surveyImage(operand.source, kind === 'gpt'));
  } finally {
    await operand.close();
  }
}
