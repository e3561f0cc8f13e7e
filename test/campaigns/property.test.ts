/**
 * Property: for random parameters and random data, a clean image verifies ok with nothing reported, and a single
 * flipped bit anywhere in the data file or the hash file is either detected and attributed to the block (or
 * superblock field) it hit, or lies in a byte that dm-verity does not cover, in which case nothing may be reported.
 *
 * The expectation comes from where the bit was flipped (tree-damage.ts derives the report from the set of modified
 * blocks), never from what the verifier computed. `PROPERTY_CASES=20000 npx vitest run test/campaigns/property.test.ts` runs a
 * longer campaign; `PROPERTY_SEED` picks another sequence. A failure names its seed and case index.
 */
import { describe, expect, it } from 'vitest';
import { resolveAlgorithm } from '../../src/format/algorithms.js';
import type { TreeGeometry } from '../../src/format/geometry.js';
import { paramsForFormat, paramsFromSuperblock } from '../../src/format/options.js';
import { SUPERBLOCK_SIZE, type VerityParams } from '../../src/format/params.js';
import { parseSuperblock } from '../../src/format/superblock.js';
import type { HashEngine } from '../../src/hash/engine.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { checkedEngine } from '../../src/hash/select.js';
import { wasmSimdEngine } from '../../src/hash/wasm-simd-engine.js';
import { simdSupported } from '../../src/hash/wasm-kernel.js';
import { bytesSource, MemorySink } from '../../src/io/source.js';
import { formatImage } from '../../src/tree/build.js';
import { verifyTree, type VerifyResult } from '../../src/tree/verify.js';
import { VerityError } from '../../src/errors.js';
import { cleanReport, expectedFromDamage, reportOf, type ExpectedReport } from '../support/tree-damage.js';
import { Rng } from '../support/rng.js';

const CASES = Number(process.env.PROPERTY_CASES ?? 300);
const SEED = Number(process.env.PROPERTY_SEED ?? 20_261_121);
const ALGORITHMS = ['sha1', 'sha256', 'sha512', 'sha224', 'sha384'] as const;

interface Case {
  params: VerityParams;
  data: Uint8Array;
  hash: Uint8Array;
  root: Uint8Array;
  geometry: TreeGeometry;
  engine: HashEngine;
}

async function makeCase(rng: Rng): Promise<Case> {
  const algorithm = rng.pick(ALGORITHMS);
  const digest = { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 }[algorithm];
  const dataBlockSize = 2 ** rng.int(9, 12);
  let hashBlockSize = 2 ** rng.int(9, 12);
  while (hashBlockSize < 2 * digest) hashBlockSize *= 2;
  // Mostly small trees, sometimes one block (no tree) and sometimes enough blocks for three or four levels.
  const dataBlocks = rng.weighted([1, rng.int(2, 64), rng.int(65, 2500)], [1, 4, 5]);
  const tail = rng.chance(0.3) ? rng.int(1, dataBlockSize - 1) : 0;
  const data = new Uint8Array(dataBlocks * dataBlockSize + tail);
  for (let b = 0; b < dataBlocks; b++) {
    // Zero blocks take the engines' zero-block shortcut; the rest are random.
    if (rng.chance(0.3)) continue;
    const block = data.subarray(b * dataBlockSize, (b + 1) * dataBlockSize);
    for (let i = 0; i < block.length; i += 4) new DataView(block.buffer, block.byteOffset + i, 4).setUint32(0, rng.u32());
  }
  const salt = new Uint8Array(rng.weighted([0, rng.int(1, 32), rng.int(33, 256)], [2, 5, 2]));
  for (let i = 0; i < salt.length; i++) salt[i] = rng.int(0, 255);
  const superblock = rng.chance(0.75);
  const params = paramsForFormat(
    {
      algorithm,
      hashType: rng.chance(0.8) ? 1 : 0,
      dataBlockSize,
      hashBlockSize,
      dataBlocks: rng.chance(0.5) ? dataBlocks : undefined,
      salt,
      superblock,
      hashOffset: rng.chance(0.3) ? 512 * rng.int(1, 16) : 0,
      uuid: superblock ? '1e2a8a5d-9c0b-4c4e-9a47-3f1d2b6c7e80' : undefined,
    },
    data.length,
  );
  const engine = algorithm === 'sha256' && simdSupported() && rng.chance(0.5) ? wasmSimdEngine : nodeCryptoEngine;
  const sink = new MemorySink();
  const { rootHash, geometry } = await formatImage(params, bytesSource(data), sink, await checkedEngine(engine, resolveAlgorithm(params.algorithm)));
  return { params, data, hash: sink.bytes.slice(), root: rootHash, geometry, engine };
}

/** Verifies as `verity verify` does: parameters from the superblock when there is one, else the format's own. */
async function verifyCase(c: Case, data: Uint8Array, hash: Uint8Array): Promise<VerifyResult> {
  let params = c.params;
  if (c.params.superblock) {
    const sb = parseSuperblock(hash.subarray(c.params.hashOffset, c.params.hashOffset + SUPERBLOCK_SIZE));
    params = paramsFromSuperblock(sb, c.params.hashOffset);
  }
  const algorithm = resolveAlgorithm(params.algorithm);
  const engine = await checkedEngine(c.engine.supports(algorithm) ? c.engine : nodeCryptoEngine, algorithm);
  return verifyTree(params, bytesSource(data), bytesSource(hash), c.root, engine);
}

/**
 * What a flip at `offset` of the 512-byte superblock must do. `detected`: verify must fail or report damage;
 * `uncovered`: the bit changes nothing verify reads (the UUID, the padding, the algorithm name after its NUL, the
 * salt field after salt_size bytes, the case of a letter of the name), so verify must stay exactly ok, as veritysetup
 * verify does.
 */
function superblockEffect(c: Case, offset: number, bit: number): 'detected' | 'uncovered' {
  const name = c.params.algorithm;
  const nameLength = name.length;
  if (offset >= 16 && offset < 32) return 'uncovered'; // uuid
  // Bit 5 of a letter is its case; names are matched without case, as veritysetup's OpenSSL lookup does.
  if (offset >= 32 && offset < 32 + nameLength && bit === 5 && /[a-z]/i.test(name[offset - 32]!)) return 'uncovered';
  if (offset >= 32 + nameLength + 1 && offset < 64) return 'uncovered'; // after the name's NUL
  if (offset >= 82 && offset < 88) return 'uncovered'; // _pad1
  if (offset >= 88 + c.params.salt.length) return 'uncovered'; // unused salt bytes and _pad2
  return 'detected';
}

/** A byte of the superblock: half the time one that matters (most of its 512 bytes are padding or unused salt). */
function superblockOffset(c: Case, rng: Rng): number {
  if (rng.chance(0.5)) return rng.int(0, SUPERBLOCK_SIZE - 1);
  const covered = Array.from({ length: SUPERBLOCK_SIZE }, (_, i) => i).filter((i) => superblockEffect(c, i, 0) === 'detected');
  return rng.pick(covered);
}

type Expectation = { kind: 'report'; report: ExpectedReport } | { kind: 'detected' } | { kind: 'uncovered' };

/** Where a bit at byte `offset` of the data (`inHash` false) or hash file lands, and what verify must then say. */
function expectationFor(c: Case, inHash: boolean, offset: number, bit: number): Expectation {
  const { params, geometry } = c;
  const levels = geometry.levels.length;
  if (!inHash) {
    if (offset >= params.dataBlocks * params.dataBlockSize) return { kind: 'uncovered' }; // tail after the last block
    const block = Math.floor(offset / params.dataBlockSize);
    // Without a tree the root is the block's own digest: damage to it is indistinguishable from a wrong root.
    if (levels === 0) return { kind: 'report', report: cleanReport(0, 'root-mismatch') };
    return { kind: 'report', report: expectedFromDamage(params, geometry, [block], new Map()) };
  }
  // Tree blocks first: without a superblock the tree starts at the hash offset rounded *down* to a hash block
  // (cryptsetup lib/verity/verity_hash.c; docs/format.md), so it can begin before the offset.
  const hashBlock = Math.floor(offset / params.hashBlockSize);
  for (let l = 0; l < levels; l++) {
    const level = geometry.levels[l]!;
    if (hashBlock >= level.startBlock && hashBlock < level.startBlock + level.blocks) {
      return { kind: 'report', report: expectedFromDamage(params, geometry, [], new Map([[l, [hashBlock - level.startBlock]]])) };
    }
  }
  const relative = offset - params.hashOffset;
  if (params.superblock && relative >= 0 && relative < SUPERBLOCK_SIZE) {
    return superblockEffect(c, relative, bit) === 'detected' ? { kind: 'detected' } : { kind: 'uncovered' };
  }
  return { kind: 'uncovered' }; // before the offset, between the superblock and the tree, or after the tree
}

function describeCase(c: Case, index: number): string {
  const p = c.params;
  return (
    `seed ${SEED} case ${index}: ${p.algorithm} format ${p.hashType} ${p.dataBlockSize}/${p.hashBlockSize} ` +
    `${p.dataBlocks} blocks, salt ${p.salt.length} bytes, ${p.superblock ? 'superblock' : 'no superblock'}, ` +
    `hash offset ${p.hashOffset}, levels ${c.geometry.levels.map((l) => l.blocks).join('/')}, engine ${c.engine.name}`
  );
}

describe(`property: single-bit flips (${CASES} cases, seed ${SEED})`, () => {
  it('clean images verify ok; every flipped bit is reported at the block it hit, or lies in a byte nothing covers', async () => {
    const rng = new Rng(SEED);
    const seen = { report: 0, detected: 0, uncovered: 0, superblockErrors: 0 };
    for (let i = 0; i < CASES; i++) {
      const c = await makeCase(rng);
      const name = describeCase(c, i);
      const clean = await verifyCase(c, c.data, c.hash);
      expect(reportOf(clean), `${name}: clean`).toEqual(cleanReport(c.geometry.levels.length));

      // A uniform bit of the data file, of the hash file, or (a small region, so aimed at on purpose) of the superblock.
      const region = rng.weighted(['data', 'hash', 'superblock'], [4, 4, c.params.superblock ? 2 : 0]);
      const inHash = region !== 'data' && c.hash.length > 0;
      const target = inHash ? c.hash : c.data;
      const offset = region === 'superblock' ? c.params.hashOffset + superblockOffset(c, rng) : rng.int(0, target.length - 1);
      const bit = rng.int(0, 7);
      const expectation = expectationFor(c, inHash, offset, bit);
      const flipped = target.slice();
      flipped[offset]! ^= 1 << bit;
      const where = `${name}: bit ${bit} of byte ${offset} of the ${inHash ? 'hash' : 'data'} file (${expectation.kind})`;

      let outcome: VerifyResult | VerityError;
      try {
        outcome = await verifyCase(c, inHash ? c.data : flipped, inHash ? flipped : c.hash);
      } catch (e) {
        if (!(e instanceof VerityError)) throw e;
        outcome = e;
      }
      seen[expectation.kind]++;
      if (expectation.kind === 'detected') {
        if (outcome instanceof VerityError) {
          seen.superblockErrors++;
          expect(['E_BAD_SUPERBLOCK', 'E_TRUNCATED', 'E_PARAM'], `${where}: ${outcome.message}`).toContain(outcome.code);
        } else {
          expect(outcome.status, where).not.toBe('ok');
        }
      } else {
        expect(outcome, where).not.toBeInstanceOf(VerityError);
        const report = reportOf(outcome as VerifyResult);
        expect(report, where).toEqual(expectation.kind === 'report' ? expectation.report : cleanReport(c.geometry.levels.length));
      }
    }
    // The generator must reach every kind of place, or the property says little.
    expect(seen.report).toBeGreaterThan(CASES / 4);
    expect(seen.detected).toBeGreaterThan(0);
    expect(seen.uncovered).toBeGreaterThan(0);
    console.info(`property: ${CASES} cases, seed ${SEED}: ${JSON.stringify(seen)}`);
  }, Math.max(60_000, CASES * 200));
});
