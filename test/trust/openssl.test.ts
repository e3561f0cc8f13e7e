/**
 * Root-hash signatures made by the real producer, openssl, as veritysetup's and systemd's documentation make them
 * (`openssl smime -sign -nocerts -noattr -binary`) and with signed attributes (`openssl cms -sign -binary`), over
 * RSA-2048 and EC P-256 keys, checked by src/trust. Skipped, with the reason in the title, without openssl.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerityError } from '../../src/errors.js';
import { type Certificate, parseCertificates } from '../../src/trust/certificates.js';
import { verifyRootHashSignature } from '../../src/trust/cms.js';
import { parseVeritySigPartition } from '../../src/trust/verity-sig.js';
import { findTool } from '../support/tools.js';

const OPENSSL = findTool('openssl', '/usr/bin/openssl');
const SKIP = OPENSSL ? '' : ' [SKIPPED: needs openssl]';

const ROOT_HASH = 'c2bca389b1d4562accee487aa39662ad51ba27e193e02fac383a980dab517f06';
const OTHER_HASH = 'c2bca389b1d4562accee487aa39662ad51ba27e193e02fac383a980dab517f07';

function openssl(args: string[]): string {
  const r = spawnSync(OPENSSL!, args, { encoding: 'latin1' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(!OPENSSL)(`root-hash signatures made by openssl${SKIP}`, () => {
  let dir = '';
  const path = (name: string) => join(dir, name);
  const bytes = (name: string) => new Uint8Array(readFileSync(path(name)));
  const certs: Record<string, Certificate> = {};

  /** A key (`rsa` or `ec`) and its self-signed certificate `<name>.pem`. */
  function makeSigner(name: string, kind: 'rsa' | 'ec', subject: string): void {
    const keyArgs = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    openssl(['req', '-x509', ...keyArgs, '-nodes', '-keyout', path(`${name}.key`), '-out', path(`${name}.pem`), '-days', '3650', '-subj', subject]);
  }

  /** Signs `text` with `signer`'s key: `tool` smime or cms, and the given extra options. Returns the DER. */
  function sign(signer: string, tool: 'smime' | 'cms', extra: string[], text = ROOT_HASH): Uint8Array {
    const out = path(`${signer}-${tool}-${extra.join('').replace(/\W/g, '')}-${text.slice(-2)}.p7s`);
    writeFileSync(path('in.txt'), text);
    openssl([tool, '-sign', '-binary', ...extra, '-in', path('in.txt'), '-inkey', path(`${signer}.key`), '-signer', path(`${signer}.pem`), '-outform', 'der', '-out', out]);
    return new Uint8Array(readFileSync(out));
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verity-trust-'));
    makeSigner('rsa', 'rsa', '/C=DE/O=Example Corp/OU=Images/CN=Image signing, RSA');
    makeSigner('ec', 'ec', '/O=Example Corp/CN=Image signing EC');
    makeSigner('stranger', 'rsa', '/CN=stranger');
    for (const name of ['rsa', 'ec', 'stranger']) certs[name] = (await parseCertificates(bytes(`${name}.pem`)))[0]!;
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads certificates as openssl does: subject (RFC 2253 order), serial, SHA-256 fingerprint, key', () => {
    for (const name of ['rsa', 'ec']) {
      const c = certs[name]!;
      const fp = openssl(['x509', '-in', path(`${name}.pem`), '-noout', '-fingerprint', '-sha256']).trim().split('=')[1]!;
      expect(c.fingerprint).toBe(fp.replaceAll(':', '').toLowerCase());
      const serial = openssl(['x509', '-in', path(`${name}.pem`), '-noout', '-serial']).trim().split('=')[1]!;
      expect(c.serial).toBe(serial.toLowerCase());
      const subject = openssl(['x509', '-in', path(`${name}.pem`), '-noout', '-subject', '-nameopt', 'RFC2253']).trim().replace(/^subject=/, '');
      // openssl joins RDNs with "," where we write ", ".
      expect(c.subject.replaceAll(/(?<!\\), /g, ',')).toBe(subject);
    }
    expect(certs.rsa!.subject).toBe('CN=Image signing\\, RSA, OU=Images, O=Example Corp, C=DE');
    expect(certs.rsa!.key).toEqual({ name: 'RSA', bits: 2048 });
    expect(certs.ec!.key).toEqual({ name: 'EC', curve: 'P-256' });
  });

  const variants: Array<[string, 'rsa' | 'ec', 'smime' | 'cms', string[], boolean]> = [
    ['RSA, smime -nocerts -noattr', 'rsa', 'smime', ['-nocerts', '-noattr'], false],
    ['EC, smime -nocerts -noattr', 'ec', 'smime', ['-nocerts', '-noattr'], false],
    ['RSA, cms with signed attributes', 'rsa', 'cms', [], true],
    ['EC, cms with signed attributes', 'ec', 'cms', [], true],
    ['RSA, cms -nocerts, SHA-512', 'rsa', 'cms', ['-nocerts', '-md', 'sha512'], true],
    ['EC, cms -noattr, SHA-384', 'ec', 'cms', ['-noattr', '-md', 'sha384'], false],
  ];
  for (const [title, signer, tool, extra, attributes] of variants) {
    it(`${title}: valid with its certificate; invalid for another root hash, another certificate, a flipped byte`, async () => {
      const sig = sign(signer, tool, extra);
      const own = certs[signer]!;
      const ok = await verifyRootHashSignature(ROOT_HASH, sig, [own]);
      expect(ok).toMatchObject({ valid: true, signer: own.subject, fingerprint: own.fingerprint, signedAttributes: attributes });
      const hash = extra.includes('sha512') ? 'SHA-512' : extra.includes('sha384') ? 'SHA-384' : 'SHA-256';
      expect(ok.valid && ok.algorithm).toBe(`${signer === 'rsa' ? 'RSA-2048 PKCS#1 v1.5' : 'ECDSA P-256'}, ${hash}`);

      const wrong = await verifyRootHashSignature(OTHER_HASH, sig, [own]);
      expect(wrong.valid).toBe(false);
      if (attributes) expect(!wrong.valid && wrong.reason).toMatch(/message digest/);

      expect((await verifyRootHashSignature(ROOT_HASH, sig, [certs.stranger!])).valid).toBe(false);

      // The signature value ends the SignerInfo, which ends the file.
      const flipped = sig.slice();
      flipped[flipped.length - 10]! ^= 0x40;
      expect((await verifyRootHashSignature(ROOT_HASH, flipped, Object.values(certs))).valid).toBe(false);
    });
  }

  it('a PEM bundle of two certificates where the second is the signer', async () => {
    const bundle = new Uint8Array([...bytes('stranger.pem'), ...bytes('ec.pem')]);
    const trusted = await parseCertificates(bundle);
    expect(trusted.map((c) => c.subject)).toEqual(['CN=stranger', certs.ec!.subject]);
    const r = await verifyRootHashSignature(ROOT_HASH, sign('ec', 'smime', ['-nocerts', '-noattr']), trusted);
    expect(r).toMatchObject({ valid: true, signer: certs.ec!.subject, fingerprint: certs.ec!.fingerprint });
  });

  it('a DER certificate from openssl x509 -outform der', async () => {
    openssl(['x509', '-in', path('rsa.pem'), '-outform', 'der', '-out', path('rsa.der')]);
    const [c] = await parseCertificates(bytes('rsa.der'));
    expect(c).toEqual(certs.rsa);
  });

  it('refuses SHA-1 with a reason, as digest and as signature algorithm', async () => {
    for (const signer of ['rsa', 'ec'] as const) {
      const r = await verifyRootHashSignature(ROOT_HASH, sign(signer, 'cms', ['-md', 'sha1']), [certs[signer]!]);
      expect(r).toMatchObject({ valid: false, reason: expect.stringMatching(/SHA-1 is refused/) });
    }
  });

  it('embedded content (cms -nodetach) must be the root hash', async () => {
    const sig = sign('rsa', 'cms', ['-nodetach']);
    expect((await verifyRootHashSignature(ROOT_HASH, sig, [certs.rsa!])).valid).toBe(true);
    expect(await verifyRootHashSignature(OTHER_HASH, sig, [certs.rsa!])).toMatchObject({ valid: false, reason: expect.stringMatching(/embeds signed content/) });
  });

  it('a signature over the hash with a newline (echo instead of printf) is not one over the root hash', async () => {
    const sig = sign('rsa', 'smime', ['-nocerts', '-noattr'], `${ROOT_HASH}\n`);
    expect((await verifyRootHashSignature(ROOT_HASH, sig, [certs.rsa!])).valid).toBe(false);
  });

  it('truncated signatures end in E_BAD_IMAGE', async () => {
    const sig = sign('ec', 'cms', []);
    for (let n = 0; n < sig.length; n += 3) {
      const r = await verifyRootHashSignature(ROOT_HASH, sig.subarray(0, n), [certs.ec!]).catch((e: unknown) => e);
      expect(r instanceof VerityError && r.code === 'E_BAD_IMAGE', `truncated to ${n}`).toBe(true);
    }
  });

  it('a DPS verity-sig partition as systemd-repart writes it verifies with the certificate it names', async () => {
    const sig = sign('rsa', 'smime', ['-nocerts', '-noattr']);
    const json = JSON.stringify({ rootHash: ROOT_HASH, certificateFingerprint: certs.rsa!.fingerprint, signature: Buffer.from(sig).toString('base64') });
    const partition = new Uint8Array(16384);
    partition.set(new TextEncoder().encode(json));
    const p = parseVeritySigPartition(partition);
    const trusted = Object.values(certs);
    expect(trusted.find((c) => c.fingerprint === p.certificateFingerprint)).toBe(certs.rsa);
    expect(await verifyRootHashSignature(p.rootHash, p.signature, trusted)).toMatchObject({ valid: true, fingerprint: p.certificateFingerprint });
  });
});
