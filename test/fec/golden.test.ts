/**
 * FEC golden vectors recorded from the real veritysetup 2.6.1 (scripts/gen-golden.ts → test/golden/fec-vectors.json):
 * the same hash image, the same parity (in its own file, after the tree, or after the data) and the same stdout, for
 * every layout, through the CLI on real files and through the pure core in memory.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource, MemorySink, toHex } from '../../src/core.js';
import { encodeFec } from '../../src/fec/encode.js';
import { computeFecGeometry } from '../../src/fec/geometry.js';
import { paramsForFormat } from '../../src/format/options.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { buildTree, writeSuperblock } from '../../src/tree/build.js';
import { planTree } from '../../src/tree/plan.js';
import type { FecGoldenCase, FecGoldenFile } from '../golden/types.js';
import { runCaptured } from '../support/cli-harness.js';
import { makeData } from '../support/data.js';
import { fecPaths } from '../support/fec-layout.js';

const golden = JSON.parse(readFileSync(new URL('../golden/fec-vectors.json', import.meta.url), 'utf8')) as FecGoldenFile;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const digest = (bytes: Uint8Array) => ({ size: bytes.length, sha256: sha256(bytes) });

function prefill(c: FecGoldenCase): Uint8Array | null {
  const p = c.options.hashPrefill;
  return p && makeData({ blocks: 0, blockSize: 1, tailBytes: p.bytes, fill: 'random', seed: p.seed });
}

describe(`FEC golden vectors from ${golden.veritysetup}`, () => {
  const root = mkdtempSync(join(tmpdir(), 'verity-fec-golden-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('cover every layout, roots 2, 3, 8 and 24, 512- and 4096-byte blocks, and hash files with bytes after the tree', () => {
    const values = <T>(f: (c: FecGoldenCase) => T) => new Set(golden.cases.map(f));
    expect(values((c) => c.options.layout)).toEqual(new Set(['separate', 'hash-device', 'one-device', 'data-device']));
    for (const roots of [2, 3, 8, 24]) expect(values((c) => c.options.fecRoots)).toContain(roots);
    for (const layout of ['separate', 'hash-device', 'one-device'] as const) {
      for (const bs of [512, 4096]) {
        const roots = values((c) => (c.options.layout === layout && c.options.dataBlockSize === bs ? c.options.fecRoots : 0));
        for (const r of [2, 3, 8, 24]) expect(roots, `${layout}, ${bs}-byte blocks`).toContain(r);
      }
    }
    // A separate hash file longer than the tree (its extra bytes are covered), a FEC offset in a separate file, a
    // hash-device FEC past foreign bytes, no superblock, and a single data block.
    expect(golden.cases.some((c) => c.options.layout === 'separate' && (c.options.hashPrefill?.bytes ?? 0) > c.hashImage.size / 2)).toBe(true);
    expect(golden.cases.some((c) => c.options.layout === 'separate' && c.options.fecOffset > 0)).toBe(true);
    expect(golden.cases.some((c) => c.options.layout === 'hash-device' && c.options.hashPrefill !== null)).toBe(true);
    expect(golden.cases.some((c) => c.options.noSuperblock)).toBe(true);
    expect(golden.cases.some((c) => (c.options.dataBlocks ?? c.data.blocks) === 1)).toBe(true);
  });

  describe('verity format --fec-device (CLI, files) writes what veritysetup wrote and prints what it printed', () => {
    it.each(golden.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const paths = fecPaths(c.options.layout, mkdtempSync(join(root, `${c.name}-`)));
      writeFileSync(paths.data, makeData(c.data));
      const pre = prefill(c);
      if (pre) writeFileSync(paths.hash, pre);
      const args = c.args.map((a) => a.replaceAll('<DATA>', paths.data).replaceAll('<HASH>', paths.hash).replaceAll('<FEC>', paths.fec));
      const run = await runCaptured([...args, '--no-progress']);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(c.stdout.replaceAll('<HASH>', paths.hash));
      expect(digest(readFileSync(paths.hash)), 'hash image').toEqual(c.hashImage);
      if (c.fecImage) expect(digest(readFileSync(paths.fec)), 'FEC image').toEqual(c.fecImage);
      if (c.dataImage) expect(digest(readFileSync(paths.data)), 'data image with the parity').toEqual(c.dataImage);
    });
  });

  describe('the pure core builds the same images in memory (tree, then parity over the tree as written, then superblock)', () => {
    it.each(golden.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const o = c.options;
      const data = makeData(c.data);
      const params = paramsForFormat(
        {
          algorithm: o.hash,
          hashType: o.format,
          dataBlockSize: o.dataBlockSize,
          hashBlockSize: o.hashBlockSize,
          dataBlocks: o.dataBlocks ?? undefined,
          salt: o.salt,
          uuid: o.uuid ?? undefined,
          superblock: !o.noSuperblock,
          hashOffset: o.hashOffset,
        },
        data.length,
      );
      const tree = planTree(params);
      const dataFile = new MemorySink();
      await dataFile.write(data, 0);
      const hash = o.layout === 'one-device' ? dataFile : new MemorySink();
      const pre = prefill(c);
      if (pre) await hash.write(pre, 0);
      const { rootHash } = await buildTree(tree, bytesSource(data), hash, nodeCryptoEngine);
      const onHash = o.layout === 'hash-device' || o.layout === 'one-device';
      const geometry = computeFecGeometry({
        roots: o.fecRoots,
        dataBlockSize: params.dataBlockSize,
        hashBlockSize: params.hashBlockSize,
        dataBlocks: params.dataBlocks,
        hashStartBlock: tree.geometry.hashStartBlock,
        fecOffset: o.fecOffset,
        onHashDevice: onHash,
        hashDeviceSize: hash.bytes.length,
      });
      const fec = o.layout === 'separate' ? new MemorySink() : o.layout === 'data-device' ? dataFile : hash;
      await encodeFec(geometry, { data: bytesSource(data), hash: bytesSource(hash.bytes.slice()) }, fec);
      if (params.superblock) await writeSuperblock(hash, params);
      expect(toHex(rootHash)).toBe(c.rootHash);
      expect(digest(hash.bytes), 'hash image').toEqual(c.hashImage);
      if (c.fecImage) expect(digest(fec.bytes), 'FEC image').toEqual(c.fecImage);
      if (c.dataImage) expect(digest(dataFile.bytes), 'data image with the parity').toEqual(c.dataImage);
    });
  });
});
