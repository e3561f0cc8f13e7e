/**
 * Golden vectors recorded from the real veritysetup 2.6.1 (scripts/gen-golden.ts → test/golden/vectors.json): the
 * same root hash, the same hash-device bytes and the same stdout, for every case, through the CLI on real files and
 * through the pure core in memory with every hash engine.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource, MemorySink, toHex } from '../../src/core.js';
import { paramsForFormat } from '../../src/format/options.js';
import { hashWasmEngine } from '../../src/hash/hash-wasm-engine.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { wasmSimdEngine } from '../../src/hash/wasm-simd-engine.js';
import { createHashPool } from '../../src/threads/hash-pool.js';
import { formatImage } from '../../src/tree/build.js';
import { verifyFiles } from '../../src/index.js';
import { openFileSource } from '../../src/files/files.js';
import { makeData } from '../support/data.js';
import type { GoldenCase, GoldenFile } from '../golden/types.js';
import { runCaptured } from '../support/cli-harness.js';

const golden = JSON.parse(readFileSync(new URL('../golden/vectors.json', import.meta.url), 'utf8')) as GoldenFile;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe(`golden vectors from ${golden.veritysetup}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'verity-golden-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('cover the matrix the core issue asks for', () => {
    const values = <T>(f: (c: GoldenCase) => T) => new Set(golden.cases.map(f));
    expect(values((c) => c.options.hash)).toEqual(new Set(['sha1', 'sha224', 'sha256', 'sha384', 'sha512']));
    expect(values((c) => c.options.format)).toEqual(new Set([0, 1]));
    for (const size of [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]) {
      expect(values((c) => c.options.dataBlockSize)).toContain(size);
      expect(values((c) => c.options.hashBlockSize)).toContain(size);
    }
    expect(golden.cases.some((c) => c.options.dataBlockSize !== c.options.hashBlockSize)).toBe(true);
    const saltLengths = values((c) => (c.options.salt === '-' ? 'none' : c.options.salt.length / 2));
    for (const s of ['none', 0, 1, 32, 256]) expect(saltLengths).toContain(s);
    const blocks = values((c) => c.options.dataBlocks ?? c.data.blocks);
    for (const n of [1, 2, 128, 129, 16385]) expect(blocks).toContain(n);
    expect(golden.cases.some((c) => c.options.noSuperblock)).toBe(true);
    expect(golden.cases.some((c) => c.options.sameFile)).toBe(true);
    expect(golden.cases.some((c) => c.options.hashOffset > 0 && !c.options.sameFile)).toBe(true);
    expect(golden.cases.some((c) => c.options.dataBlocks !== null && c.options.dataBlocks < c.data.blocks)).toBe(true);
    expect(golden.cases.some((c) => c.data.tailBytes > 0)).toBe(true);
  });

  describe('verity format (CLI, files, node-crypto) writes what veritysetup wrote and prints what it printed', () => {
    it.each(golden.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const dataPath = join(dir, `${c.name}.data`);
      const hashPath = c.options.sameFile ? dataPath : join(dir, `${c.name}.hash`);
      writeFileSync(dataPath, makeData(c.data));
      rmSync(hashPath === dataPath ? join(dir, 'none') : hashPath, { force: true });
      const args = c.args.map((a) => a.replaceAll('<DATA>', dataPath).replaceAll('<HASH>', hashPath));
      const run = await runCaptured([...args, '--no-progress']);
      expect(run.stderr.replace(/^WARNING: Kernel cannot activate.*\n/m, '')).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(c.stdout.replaceAll('<HASH>', hashPath));
      const image = readFileSync(hashPath);
      expect(image.length).toBe(c.hashImage.size);
      expect(sha256(image)).toBe(c.hashImage.sha256);

      const verified = await verifyFiles(dataPath, hashPath, {
        rootHash: c.rootHash,
        superblock: !c.options.noSuperblock,
        hashOffset: c.options.hashOffset,
        // Without a superblock every parameter must be repeated, as with veritysetup.
        ...(c.options.noSuperblock
          ? {
              algorithm: c.options.hash,
              hashType: c.options.format,
              dataBlockSize: c.options.dataBlockSize,
              hashBlockSize: c.options.hashBlockSize,
              salt: c.options.salt,
              dataBlocks: c.options.dataBlocks ?? c.data.blocks,
            }
          : {}),
      });
      expect(verified.status).toBe('ok');
      rmSync(dataPath, { force: true });
      rmSync(hashPath, { force: true });
    });
  });

  // Every engine and thread count must write the same bytes (issue 3). Pools of 2 and 3 threads split batches
  // unevenly; each pool is closed when its cases are done.
  const pools = [
    createHashPool({ threads: 2, inner: 'node-crypto' }),
    createHashPool({ threads: 3, inner: 'wasm-simd' }),
  ];
  afterAll(() => Promise.all(pools.map((p) => p.close?.())));
  for (const engine of [nodeCryptoEngine, hashWasmEngine, wasmSimdEngine, ...pools]) {
    const where = pools.includes(engine) ? 'in memory and from a file its threads read' : 'in memory';
    describe(`the pure core with the ${engine.name} engine builds the same image ${where}`, () => {
      const cases = golden.cases.filter((c) => engine.supports(c.options.hash));
      it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
        const data = makeData(c.data);
        const params = paramsForFormat(
          {
            algorithm: c.options.hash,
            hashType: c.options.format,
            dataBlockSize: c.options.dataBlockSize,
            hashBlockSize: c.options.hashBlockSize,
            dataBlocks: c.options.dataBlocks ?? undefined,
            salt: c.options.salt,
            uuid: c.options.uuid ?? undefined,
            superblock: !c.options.noSuperblock,
            hashOffset: c.options.hashOffset,
          },
          data.length,
        );
        const sink = new MemorySink();
        if (c.options.sameFile) await sink.write(data, 0);
        const { rootHash } = await formatImage(params, bytesSource(data), sink, engine);
        expect(toHex(rootHash)).toBe(c.rootHash);
        expect(sink.bytes.length).toBe(c.hashImage.size);
        expect(sha256(sink.bytes)).toBe(c.hashImage.sha256);
        if (!pools.includes(engine)) return;
        // Again with the data in a file, which the pool's threads read by themselves (ByteSource.fileSpans).
        const path = join(dir, `pool-${c.name}.img`);
        writeFileSync(path, data);
        const file = await openFileSource(path);
        try {
          expect(file.fileSpans).toBeTypeOf('function');
          const fromFile = new MemorySink();
          if (c.options.sameFile) await fromFile.write(data, 0);
          expect(toHex((await formatImage(params, file, fromFile, engine)).rootHash)).toBe(c.rootHash);
          expect(sha256(fromFile.bytes)).toBe(c.hashImage.sha256);
        } finally {
          await file.close();
          rmSync(path, { force: true });
        }
      });
    });
  }
});
