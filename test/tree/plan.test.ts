/**
 * The tree plan: parameters checked and worked out once (geometry, resolved algorithm, salt side), and the passes
 * giving the same result from a plan as from the bare parameters.
 */
import { describe, expect, it } from 'vitest';
import { bytesSource, MemorySink } from '../../src/io/source.js';
import { paramsForFormat } from '../../src/format/options.js';
import { VerityError } from '../../src/errors.js';
import { nodeCryptoEngine } from '../../src/threads/node-crypto-engine.js';
import { buildTree } from '../../src/tree/build.js';
import { asTreePlan, planTree } from '../../src/tree/plan.js';
import { verifyTree } from '../../src/tree/verify.js';
import { makeData } from '../support/data.js';

const DATA = makeData({ blocks: 300, blockSize: 512, tailBytes: 0, fill: 'mixed', seed: 3 });

describe('planTree', () => {
  it('resolves the algorithm name once, keeping the name as given in the parameters', () => {
    const params = paramsForFormat({ algorithm: 'SHA1', salt: 'ab', superblock: false }, DATA.length);
    const plan = planTree(params);
    expect(plan.params).toBe(params);
    expect(plan.params.algorithm).toBe('SHA1');
    expect(plan.geometry.algorithm).toBe('sha1');
    expect(plan.hashing).toEqual({ algorithm: 'sha1', salt: params.salt, saltPlacement: 'prefix' });
  });

  it('places the salt after each block in format 0 (Chrome OS)', () => {
    const plan = planTree(paramsForFormat({ hashType: 0, salt: 'ab', superblock: false }, DATA.length));
    expect(plan.hashing.saltPlacement).toBe('suffix');
  });

  it('is where the parameters are checked: the first rule broken, with its field', () => {
    const params = { ...paramsForFormat({ salt: '-', superblock: false }, DATA.length), algorithm: 'md5' };
    expect(() => planTree(params)).toThrow(VerityError);
    expect(() => planTree(params)).toThrow(expect.objectContaining({ code: 'E_PARAM', data: { field: 'algorithm', actual: 'md5' } }));
  });

  it('asTreePlan keeps a plan and plans bare parameters', () => {
    const params = paramsForFormat({ salt: '-', superblock: false }, DATA.length);
    const plan = planTree(params);
    expect(asTreePlan(plan)).toBe(plan);
    expect(asTreePlan(params).geometry).toEqual(plan.geometry);
  });

  it('build and verify give the same from a plan as from the parameters', async () => {
    const params = paramsForFormat({ dataBlockSize: 512, hashBlockSize: 512, salt: 'ab', superblock: false }, DATA.length);
    const plan = planTree(params);
    const [a, b] = [new MemorySink(), new MemorySink()];
    const fromParams = await buildTree(params, bytesSource(DATA), a, nodeCryptoEngine);
    const fromPlan = await buildTree(plan, bytesSource(DATA), b, nodeCryptoEngine);
    expect(fromPlan.rootHash).toEqual(fromParams.rootHash);
    expect(fromPlan.geometry).toBe(plan.geometry);
    const hash = new Uint8Array(plan.geometry.hashDeviceSize);
    await b.read(hash, 0);
    const verified = await verifyTree(plan, bytesSource(DATA), bytesSource(hash), fromPlan.rootHash, nodeCryptoEngine);
    expect(verified.status).toBe('ok');
    expect(verified.geometry).toBe(plan.geometry);
  });
});
