/**
 * Findings of the hostile-input work, each as the smallest mutation of a fuzz seed that shows it (a recipe over the
 * field names of test/fuzz/layouts.ts), run through every entry point of its fuzz target. None of them crashed
 * before the fix: each ended in a wrong or misleading result that the fuzzer's oracle (result or VerityError)
 * cannot see, which is why the expected codes and messages are pinned here.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Fuzzer } from '../fuzz/harness.js';
import type { Field } from '../fuzz/mutate.js';
import { targetNamed, type Target } from '../fuzz/targets.js';

const fuzzer = new Fuzzer(0);
afterAll(() => fuzzer.close());

function field(target: Target, name: string): Field {
  const f = target.layout.fields.find((x) => x.name === name);
  if (!f) throw new Error(`${target.name} has no field "${name}"`);
  return f;
}

/** The seed of `target` with each named little-endian integer field set to its value. */
function recipe(target: Target, changes: Record<string, bigint>): Uint8Array {
  const bytes = target.bytes.slice();
  const view = new DataView(bytes.buffer);
  for (const [name, value] of Object.entries(changes)) {
    const f = field(target, name);
    if (f.size === 8) view.setBigUint64(f.at, value, true);
    else if (f.size === 4) view.setUint32(f.at, Number(value), true);
    else view.setUint16(f.at, Number(value), true);
  }
  return bytes;
}

function readField(target: Target, name: string): bigint {
  const f = field(target, name);
  const view = new DataView(target.bytes.buffer, target.bytes.byteOffset);
  return f.size === 8 ? view.getBigUint64(f.at, true) : BigInt(f.size === 4 ? view.getUint32(f.at, true) : view.getUint16(f.at, true));
}

/** Runs every entry point of `target` on `bytes`; each must end in `code` with a message matching `message`. */
async function expectEveryEntry(target: Target, bytes: Uint8Array, code: string, message: RegExp): Promise<void> {
  const r = await fuzzer.run(target, 0, { bytes, log: ['regression recipe'] });
  expect(r.findings).toEqual([]);
  for (const e of target.entries) {
    expect(r.outcomes[e.name], `${e.name}: ${r.messages[e.name]}`).toBe(code);
    expect(r.messages[e.name], e.name).toMatch(message);
  }
}

describe('ZIP64 offsets beyond 2^53 (yauzl read nothing and parsed an uninitialised Buffer.allocUnsafe)', () => {
  const zip64 = targetNamed('zip64');

  it('zip64-locator-offset-2^64-1: the ZIP64 end record "at" 2^64 - 1 lies outside the archive', async () => {
    const bytes = recipe(zip64, { 'ZIP64 locator eocdOffset': 2n ** 64n - 1n });
    await expectEveryEntry(zip64, bytes, 'E_BAD_IMAGE', /not a readable zip archive: a zip structure at bytes 18446744073709552000\.\.\d+ lies outside the 9556-byte archive/);
  });

  it('zip64-directory-offset-2^63: a central directory "at" 2^63 lies outside the archive', async () => {
    const bytes = recipe(zip64, { 'ZIP64 EOCD cdOffset': 2n ** 63n });
    await expectEveryEntry(zip64, bytes, 'E_BAD_IMAGE', /zip directory of .* is damaged: a zip structure at bytes 9223372036854776000\.\.\d+ lies outside/);
  });
});

describe('zip entries whose local header or data range contradicts the central directory (were read as the directory says)', () => {
  const zip = targetNamed('zip');
  // Entry 2 of the seed is hash.img, stored, the last entry before the central directory.
  const stored = (e: string) => e === 'read stored' || e === 'verify entries';

  it('zip-local-method-differs: hash.img stored in the directory, deflated in its local header', async () => {
    const bytes = recipe(zip, { 'local 2 method': 8n });
    const r = await fuzzer.run(zip, 0, { bytes, log: ['regression recipe'] });
    expect(r.findings).toEqual([]);
    for (const e of zip.entries.filter((x) => stored(x.name))) {
      expect(r.outcomes[e.name]).toBe('E_BAD_IMAGE');
      expect(r.messages[e.name]).toMatch(/local header of zip entry hash\.img disagrees with the central directory: compression method 8 there, 0 in the directory/);
    }
    expect(r.outcomes['read deflated']).toBe('ok');
  });

  it('zip-stored-entry-into-directory: hash.img sizes (both headers) 46 bytes longer, so its data covers the central directory', async () => {
    const size = readField(zip, 'central 2 compressedSize') + 46n;
    const bytes = recipe(zip, {
      'central 2 compressedSize': size, 'central 2 uncompressedSize': size,
      'local 2 compressedSize': size, 'local 2 uncompressedSize': size,
    });
    const r = await fuzzer.run(zip, 0, { bytes, log: ['regression recipe'] });
    expect(r.findings).toEqual([]);
    for (const e of zip.entries.filter((x) => stored(x.name))) {
      expect(r.outcomes[e.name]).toBe('E_BAD_IMAGE');
      expect(r.messages[e.name]).toMatch(/zip entry hash\.img has data at bytes \d+\.\.\d+ of the archive, which overlaps the central directory/);
    }
  });

  it('zip-deflated-entry-over-next-header: data.img compressed size (both headers) covering the local header of hash.img', async () => {
    const size = readField(zip, 'central 1 compressedSize') + 40n;
    const bytes = recipe(zip, { 'central 1 compressedSize': size, 'local 1 compressedSize': size });
    const r = await fuzzer.run(zip, 0, { bytes, log: ['regression recipe'] });
    expect(r.findings).toEqual([]);
    for (const e of ['read deflated', 'verify entries']) {
      expect(r.outcomes[e]).toBe('E_BAD_IMAGE');
      expect(r.messages[e]).toMatch(/zip entry data\.img has data at bytes \d+\.\.\d+ of the archive, which overlaps the next entry at byte \d+/);
    }
    expect(r.outcomes['read stored']).toBe('ok');
  });
});
