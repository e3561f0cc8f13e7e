/**
 * The committed Reed–Solomon artifact (src/fec/wasm-rs-binary.ts): exactly what wasm/build.mjs builds from the
 * committed generator (wasm/src/gen-rs.mjs), each binary with the sha256 recorded beside it, both valid WebAssembly;
 * and no generated WAT or .wasm beside the generator.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildRs, parseRsModule, readRsModule, RS_ARTIFACTS, RS_MODULE_PATH } from '../../wasm/build.mjs';
import { rsWasmBinary } from '../../src/fec/rs-simd.js';
import { RS_SHARED_WASM_SHA256, RS_WASM_SHA256 } from '../../src/fec/wasm-rs-binary.js';

const ROOT = new URL('../..', import.meta.url);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('the committed Reed–Solomon artifact', () => {
  it('is exactly what wasm/build.mjs builds from the committed generator', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verity-wasm-rs-build-'));
    try {
      const built = await buildRs(dir);
      const fresh = readFileSync(join(dir, RS_MODULE_PATH));
      expect(Buffer.compare(fresh, readFileSync(new URL(RS_MODULE_PATH, ROOT))), `${RS_MODULE_PATH} differs from a fresh build`).toBe(0);
      expect(built.map((b) => b.name)).toEqual(RS_ARTIFACTS.map((a) => a.name));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes to the binaries whose sha256 is recorded beside them, both valid WebAssembly; a damaged copy throws', () => {
    expect(sha256(rsWasmBinary(false))).toBe(RS_WASM_SHA256);
    expect(sha256(rsWasmBinary(true))).toBe(RS_SHARED_WASM_SHA256);
    const wasm = (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } }).WebAssembly;
    expect(wasm.validate(rsWasmBinary(false))).toBe(true);
    expect(wasm.validate(rsWasmBinary(true))).toBe(true);
    const parsed = readRsModule();
    expect(parsed.map((a) => [a.name, a.sha256])).toEqual([
      ['rs', RS_WASM_SHA256],
      ['rs-shared', RS_SHARED_WASM_SHA256],
    ]);
    expect(Buffer.compare(parsed[0]!.wasm, rsWasmBinary(false))).toBe(0);
    const text = readFileSync(new URL(RS_MODULE_PATH, ROOT), 'utf8');
    expect(() => parseRsModule(text.replace(RS_WASM_SHA256, '0'.repeat(64)))).toThrow(/recorded sha256/);
  });

  it('is the only form in the tree: no generated WAT or .wasm beside the generator (wasm/out/ is ignored by git)', () => {
    const files = readdirSync(fileURLToPath(new URL('wasm/', ROOT)), { recursive: true, encoding: 'utf8' });
    expect(files.filter((f) => !f.startsWith('out') && /\.(wat|wasm)$/.test(f))).toEqual([]);
  });
});
