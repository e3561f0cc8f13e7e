/**
 * `verify IMAGE --trusted-cert` (src/api/trust.ts): a root hash an image claims is authenticated only when the
 * signature the image carries for it verifies under a certificate the user trusts. The signatures are openssl's,
 * made as systemd and veritysetup document it (`openssl smime -sign -nocerts -noattr -binary` over the hex root hash),
 * on disks built with the distributions' layouts (test/support/os-images.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCaptured } from '../support/cli-harness.js';
import { buildMarinerDisk, buildOsGuardDisk, makeSigner, type MarinerDisk, opensslTool, osImageTools, type Signer } from '../support/os-images.js';

const missing = [...osImageTools({ uki: true }), ...(opensslTool ? [] : ['openssl'])];
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}]`;

let work: string;
let vendor: Signer;
let stranger: Signer;
let mariner: MarinerDisk;

beforeAll(() => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'verity-trust-'));
  vendor = makeSigner(join(work, 'keys'), 'Image Vendor');
  stranger = makeSigner(join(work, 'keys'), 'Someone Else');
  mariner = buildMarinerDisk(join(work, 'eflow'), { sign: vendor, damage: { B: [7] } });
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

type Target = { name: string; status: string; rootHash: { authenticated: boolean; signature: string | null } };

describe.skipIf(SKIP !== '')(`root hashes authenticated by a trusted certificate${SKIP}`, () => {
  it('Mariner: each slot signature in its initramfs verifies under the vendor certificate; the damage in B still fails', async () => {
    const r = await runCaptured(['verify', mariner.vhdx, '--trusted-cert', vendor.cert, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const targets = JSON.parse(r.stdout).targets as Target[];
    expect(targets.map((t) => [t.status, t.rootHash.authenticated])).toEqual([
      ['ok', true],
      ['corrupt', true],
    ]);
    expect(targets[0]!.rootHash.signature).toMatch(
      /^a signature in initramfs file \/verity-verity_root_fs\.p7 in #2 "BootA":\/initrd\.img-\S+: valid, signed by CN=Image Vendor \(trusted certificate, SHA-256 [0-9a-f]{64}\)$/,
    );
    const text = await runCaptured(['verify', mariner.raw, '--trusted-cert', vendor.cert]);
    expect(text.stdout).toContain('authenticated: a signature in initramfs file /verity-verity_root_fs.p7');
    expect(text.stdout).not.toContain('NOT AUTHENTICATED');
  });

  it("another party's certificate authenticates nothing: exit 6 where the trees are intact, and the reason per target", async () => {
    const clean = buildMarinerDisk(join(work, 'eflow-clean'), { sign: vendor });
    const r = await runCaptured(['verify', clean.raw, '--trusted-cert', stranger.cert, '--json']);
    expect(r.code, r.stderr).toBe(6);
    const j = JSON.parse(r.stdout);
    expect(j.status).toBe('unauthenticated');
    for (const t of j.targets as Target[]) {
      expect(t.status).toBe('ok');
      expect(t.rootHash.authenticated).toBe(false);
      expect(t.rootHash.signature).toMatch(/NOT VALID for the trusted certificates/);
    }
    // Both certificates in one bundle: the vendor's is among them.
    const bundle = join(work, 'bundle.pem');
    writeFileSync(bundle, Buffer.concat([readFileSync(stranger.cert), readFileSync(vendor.cert)]));
    const both = await runCaptured(['verify', clean.raw, '--trusted-cert', bundle]);
    expect(both.code, both.stderr).toBe(0);
    // Without --trusted-cert the signature is found and said to be unchecked; the claim stays unauthenticated, exit 0.
    const unchecked = await runCaptured(['verify', clean.raw, '--json']);
    expect(unchecked.code).toBe(0);
    expect((JSON.parse(unchecked.stdout).targets as Target[]).map((t) => t.rootHash)).toEqual([
      expect.objectContaining({ authenticated: false, signature: expect.stringMatching(/\.p7 in #2 "BootA":\S+ \(not checked\)$/) }),
      expect.objectContaining({ authenticated: false, signature: expect.stringMatching(/\.p7 in #5 "BootB":\S+ \(not checked\)$/) }),
    ]);
  });

  it('an image without signatures cannot be authenticated: exit 6, "no signature" per target', async () => {
    const unsigned = buildMarinerDisk(join(work, 'eflow-unsigned'));
    const r = await runCaptured(['verify', unsigned.raw, '--trusted-cert', vendor.cert, '--json']);
    expect(r.code, r.stderr).toBe(6);
    expect((JSON.parse(r.stdout).targets as Target[]).map((t) => t.rootHash.signature)).toEqual([
      'none: the image names no signature for this root hash',
      'none: the image names no signature for this root hash',
    ]);
  });

  it('OS Guard: the usr hash signature on the /boot partition (root-hash-signature=/boot/usr.hash.sig) verifies', async () => {
    const disk = buildOsGuardDisk(join(work, 'osguard'), { sign: vendor });
    const r = await runCaptured(['verify', disk.vhdx, '--trusted-cert', vendor.cert, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout).targets as Target[])[0]!.rootHash).toMatchObject({
      authenticated: true,
      signature: expect.stringMatching(/^a signature in #2 "boot-a":\/usr\.hash\.sig \(\/boot\/usr\.hash\.sig on the running system\): valid, signed by CN=Image Vendor/),
    });
  });

  it('bad certificate input and --trusted-cert with explicit operands are clear errors', async () => {
    const notCert = join(work, 'not-a-cert.pem');
    writeFileSync(notCert, 'hello\n');
    const bad = await runCaptured(['verify', mariner.raw, '--trusted-cert', notCert]);
    expect([1, 4]).toContain(bad.code);
    expect(bad.stderr).toMatch(/certificate/i);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const none = await runCaptured(['verify', mariner.raw, '--trusted-cert', join(work, 'missing.pem')]);
    expect(none.code).toBe(4);
    expect(none.stderr).toContain('Cannot read the trusted certificate');
    const explicit = await runCaptured(['verify', `${mariner.raw}::3`, `${mariner.raw}::3`, 'ab'.repeat(32), '--trusted-cert', vendor.cert]);
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toContain('applies to verify <image> only');
  });
});
