/**
 * Every VHDX structure is read and written from one declaration (src/image/vhdx/structures.ts): writing back what was
 * read changes no byte, on files Hyper-V and Disk2VHD wrote (the qemu-iotests samples) and on the test writer's.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Placed, Struct, StructValue } from '../../../src/binary/struct.js';
import {
  FILE_IDENTIFIER,
  HEADER,
  HEADER_OFFSETS,
  METADATA_ENTRY,
  METADATA_TABLE_HEADER,
  REGION_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS,
  LOG_ENTRY_HEADER,
  DATA_DESCRIPTOR,
  ZERO_DESCRIPTOR,
  LOG_DATA_SECTOR,
} from '../../../src/image/vhdx/structures.js';
import { buildVhdx, G, logEntry } from '../../support/vhdx-writer.js';
import { bunzip, HAS_BZIP2, MiB, SKIP_BZIP2, useWorkDir } from './helpers.js';

useWorkDir();

function rewritesItself<F extends Record<string, Placed<any>>>(decl: Struct<F>, file: Uint8Array, at: number): StructValue<F> {
  const value = decl.get(file, at);
  const copy = file.slice(at, at + decl.len);
  decl.put(copy, 0, value);
  expect(copy).toEqual(file.subarray(at, at + decl.len));
  return value;
}

/** Round-trips the header section and the metadata table of a whole VHDX file. */
function roundTripFile(file: Uint8Array): void {
  expect(rewritesItself(FILE_IDENTIFIER, file, 0).signature).toBe('vhdxfile');
  for (const at of HEADER_OFFSETS) rewritesItself(HEADER, file, at);
  let metadataAt = -1;
  for (const at of REGION_TABLE_OFFSETS) {
    const { entryCount } = rewritesItself(REGION_TABLE_HEADER, file, at);
    expect(entryCount).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < entryCount; i++) {
      const e = rewritesItself(REGION_ENTRY, file, at + REGION_TABLE_HEADER.len + REGION_ENTRY.len * i);
      if (e.guid === G.metadata) metadataAt = Number(e.fileOffset);
    }
  }
  const { entryCount } = rewritesItself(METADATA_TABLE_HEADER, file, metadataAt);
  for (let i = 0; i < entryCount; i++) rewritesItself(METADATA_ENTRY, file, metadataAt + METADATA_TABLE_HEADER.len + METADATA_ENTRY.len * i);
}

describe('VHDX structures read and write the same bytes', () => {
  it.skipIf(!HAS_BZIP2).each(['test-disk2vhd.vhdx.bz2', 'iotest-dynamic-1G.vhdx.bz2'])(`on %s${SKIP_BZIP2}`, async (name) => {
    roundTripFile(new Uint8Array(readFileSync(await bunzip(name))));
  });

  it('on a file and a log entry from the test writer', () => {
    roundTripFile(buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [2, 0] }).file);
    const sector = new Uint8Array(4096).map((_, i) => i * 13);
    const entry = logEntry({ seq: 0x1_0000_0002n, tail: 0, fileSize: 8 * MiB, descs: [{ target: 4096, data: sector }, { target: 8192, zero: 4096 }] });
    expect(rewritesItself(LOG_ENTRY_HEADER, entry, 0)).toMatchObject({ signature: 'loge', descriptorCount: 2 });
    const data = rewritesItself(DATA_DESCRIPTOR, entry, 64);
    expect([...data.leadingBytes]).toEqual([...sector.subarray(0, 8)]);
    expect(rewritesItself(ZERO_DESCRIPTOR, entry, 96)).toMatchObject({ signature: 'zero', zeroLength: 4096n });
    expect(rewritesItself(LOG_DATA_SECTOR, entry, 4096)).toMatchObject({ signature: 'data', sequenceHigh: 1, sequenceLow: 2 });
  });
});
