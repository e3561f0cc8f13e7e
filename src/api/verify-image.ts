/**
 * `verity verify IMAGE [ROOT-HASH]`: finds every dm-verity target of a disk image (discovery/targets.ts) and
 * verifies each one, labelling where its root hash came from and whether anyone vouches for it.
 *
 * - With a root hash from the user, the targets the image declares with that root hash are verified against it; if
 *   none does and the image has exactly one target, that one is (a wrong root hash is then a mismatch, exit 3, as
 *   with explicit operands); with several targets and none declaring it, nothing matches: `root-mismatch`.
 * - Without one, every target is verified against the root hash the image declares for it, or, when it declares
 *   none, against its own stored top block (consistency only). Either way the result is `authenticated: false`.
 * - No target at all is `no-verity`, with what was searched.
 * - With trusted certificates (`--trusted-cert`), a claimed root hash whose signature verifies under one of them is
 *   authenticated; any target left unauthenticated makes the image's status `unauthenticated`.
 * - A target the boot configuration declares and that cannot be checked (a missing partition, an unreadable
 *   initramfs) is listed as unresolved and makes the image's status `unresolved`: a gate must not pass an image
 *   whose protection it could not check.
 */
import { toHex } from '../binary/bytes.js';
import { describeLayer, detectContent, openOperand } from '../containers/operand.js';
import { findTargets, targetsClaiming, type VerityTarget } from '../discovery/targets.js';
import { VerityError } from '../errors.js';
import { ignoredOptions } from '../format/options.js';
import { createScratch } from '../files/files.js';
import { nodeCryptoEngine } from '../threads/node-crypto-engine.js';
import type { ImageOutcome, RootHashSource, TargetOutcome } from '../report/image.js';
import { damagedFiles } from '../report/owners.js';
import { checkFecSize } from '../fec/decode.js';
import type { HashEngine } from '../hash/engine.js';
import type { PassOptions } from '../tree/progress.js';
import { assessRepair, nothingToRepair } from '../tree/repairable.js';
import { verifyTree, type VerifyResult, type VerifyStatus, type VerifyTreeOptions } from '../tree/verify.js';
import type { Certificate } from '../trust/certificates.js';
import { withEngine } from './engine.js';
import { judgeClaim, loadTrustedCertificates } from './trust.js';
import { engineOptions, openOptions, passOptions, type VerifyOptions } from './options.js';
import { fecGeometryOf } from './plan.js';
import { expectedRootHash, type ExpectedRootHash } from './root-hash.js';

type Status = VerifyStatus | 'unresolved' | 'unauthenticated';
const SEVERITY: Record<Status, number> = { ok: 0, unauthenticated: 1, corrupt: 2, 'root-mismatch': 3, unresolved: 4 };

/** Verifies every dm-verity target of the image at `address` (see the module comment for the root hash rules). */
export async function verifyImage(address: string, options: VerifyOptions = {}): Promise<ImageOutcome> {
  if (options.superblock === false) {
    throw new VerityError('E_PARAM', 'Finding the hash tree in an image needs its superblock.', {
      data: { path: address, field: 'superblock' },
    });
  }
  const given = options.rootHash !== undefined || options.rootHashFile !== undefined ? await expectedRootHash(options) : null;
  const certs = options.trustedCertificates?.length ? await loadTrustedCertificates(options.trustedCertificates) : null;
  const operand = await openOperand(address, openOptions(options));
  try {
    const disk = operand.source;
    const search = await findTargets(disk, (await detectContent(disk)) === 'gpt', nodeCryptoEngine, given?.guess());
    const image = { address, layers: operand.layers.map(describeLayer) };
    const base = { image, searched: search.searched, skipped: search.skipped, unresolved: search.unresolved };
    const { targets } = search;
    if (targets.length === 0) {
      return { ...base, status: search.unresolved.length > 0 ? 'unresolved' : 'no-verity', targets: [], note: null };
    }

    let chosen: VerityTarget[] = targets;
    if (given) {
      const claiming = targetsClaiming(targets, given.guess());
      chosen = claiming.length > 0 ? claiming : targets.length === 1 ? targets : [];
      if (chosen.length === 0) {
        const note =
          `The image declares no target with root hash ${toHex(given.guess())}; its targets: ` +
          `${targets.map((t) => `${t.name} (${t.description})`).join('; ')}. Give the data and hash operands to check one.`;
        return { ...base, status: 'root-mismatch', targets: [], note };
      }
    }
    const outcomes: TargetOutcome[] = [];
    for (const target of chosen) outcomes.push(await verifyTarget(address, target, given, certs, options));
    const statuses: Status[] = [
      ...outcomes.map((t) => t.status),
      ...(search.unresolved.length > 0 ? (['unresolved'] as const) : []),
      // With trusted certificates, a root hash they do not vouch for fails the image even when its tree matches it.
      ...(certs && outcomes.some((t) => !t.rootHash.authenticated) ? (['unauthenticated'] as const) : []),
    ];
    const worst = statuses.reduce<Status>((w, s) => (SEVERITY[s] > SEVERITY[w] ? s : w), 'ok');
    return { ...base, status: worst, targets: outcomes, note: null };
  } finally {
    await operand.close();
  }
}

async function verifyTarget(
  address: string,
  target: VerityTarget,
  given: ExpectedRootHash | null,
  certs: readonly Certificate[] | null,
  options: VerifyOptions,
): Promise<TargetOutcome> {
  const { tree } = target;
  const { params, geometry } = tree;
  const dataAddress = target.dataPartition ? `${address}::${target.dataPartition.index}` : address;
  const hashAddress = target.hashFile ?? (target.hashPartition ? `${address}::${target.hashPartition.index}` : address);
  const expected = given ? given.bytes(geometry.digestSize, params.algorithm) : (target.claim?.bytes ?? null);
  const rootHash: RootHashSource = given
    ? { from: 'given by the user', authenticated: true }
    : target.claim
      ? certs
        ? await judgeClaim(target.claim, certs)
        : { from: target.claim.from, authenticated: false, ...(target.claim.signature ? { signature: `${target.claim.signature} (not checked)` } : {}) }
      : { from: 'none in the image: the tree was checked against its own top block', authenticated: false };
  const warnings = ignoredOptions(options, params);
  const pass = { ...passOptions(options), scratch: createScratch, paths: { data: dataAddress, hash: hashAddress } };
  const { fec: fecReport, ...result } = await withEngine(tree, engineOptions(options), async (engine) => {
    const result = await verifyTree(tree, target.data, target.hash, expected, engine, pass);
    return { ...result, fec: await assessTargetFec(target, result, expected, engine, pass, warnings) };
  });
  return {
    ...result,
    name: target.name,
    via: target.via,
    description: target.description,
    dataAddress,
    hashAddress,
    hashOffset: target.hashOffset,
    rootHash,
    params,
    warnings,
    files: await damagedFiles(target.data, params.dataBlockSize, result.data.corrupt, result.data.unverified),
    ...(fecReport && { fec: fecReport }),
  };
}

/**
 * What the parity the image names for `target` can repair (tree/repairable.ts), when the tree found damage under a
 * root hash it matches. Parity that does not fit (too short, bad roots) is reported as a warning, not as bad input:
 * the verification itself stands without it.
 */
async function assessTargetFec(
  target: VerityTarget,
  result: VerifyResult,
  expected: Uint8Array | null,
  engine: HashEngine,
  pass: PassOptions & Pick<VerifyTreeOptions, 'scratch' | 'paths'>,
  warnings: string[],
): Promise<TargetOutcome['fec']> {
  const fec = target.fec;
  if (!fec) return undefined;
  if (target.data.sequential || target.hash.sequential) {
    warnings.push(`FEC ${fec.where} not used: the data is read as a stream (a compressed entry or stdin), and FEC reads blocks out of order`);
    return undefined;
  }
  try {
    const geometry = fecGeometryOf(
      target.tree,
      { roots: fec.roots, offset: fec.offset, onHashDevice: fec.onHashDevice, hashDeviceSize: target.hash.size },
      { hash: target.hashFile ?? target.name, fec: fec.where },
    );
    checkFecSize(geometry, fec.source);
    const report = { path: fec.where, placement: fec.onHashDevice ? ('hash-device' as const) : ('separate' as const), geometry };
    if (result.status === 'root-mismatch' || expected === null) return { ...report, assessment: null };
    if (result.status === 'ok') {
      return { ...report, assessment: nothingToRepair(fec.roots) };
    }
    const { blocks: _blocks, ...assessment } = await assessRepair(target.tree, result, geometry, { data: target.data, hash: target.hash, fec: fec.source }, expected, engine, pass);
    return { ...report, assessment };
  } catch (e) {
    if (!(e instanceof VerityError) || e.code === 'E_INTERNAL') throw e;
    warnings.push(`FEC ${fec.where} not used: ${e.message}`);
    return undefined;
  }
}
