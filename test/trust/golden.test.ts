/**
 * Root-hash signatures checked against the golden vectors of test/fixtures/trust (made by openssl with make.sh
 * there), so that `npm test` checks signatures on a machine without openssl too.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VerityError } from '../../src/errors.js';
import { parseCertificates } from '../../src/trust/certificates.js';
import { verifyRootHashSignature } from '../../src/trust/cms.js';
import { parseVeritySigPartition } from '../../src/trust/verity-sig.js';
import { Rng } from '../support/rng.js';

const FIXTURES = new URL('../fixtures/trust/', import.meta.url);
const file = (name: string) => new Uint8Array(readFileSync(new URL(name, FIXTURES)));
const ROOT_HASH = readFileSync(new URL('roothash.txt', FIXTURES), 'latin1');
const RSA_SIG = file('rsa-noattr.p7s');
const EC_SIG = file('ec-cms.p7s');

/** The certificate's DER, decoded from its PEM independently of src/trust. */
function pemToDer(pem: Uint8Array): Uint8Array {
  const text = new TextDecoder().decode(pem);
  return new Uint8Array(Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, ''), 'base64'));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/** Ends in a result or a VerityError: anything else thrown fails the test. */
async function outcome(rootHash: string, signature: Uint8Array, certs: Awaited<ReturnType<typeof parseCertificates>>): Promise<string> {
  try {
    const r = await verifyRootHashSignature(rootHash, signature, certs);
    return r.valid ? 'valid' : 'invalid';
  } catch (e) {
    if (e instanceof VerityError && e.code === 'E_BAD_IMAGE') return e.code;
    throw e;
  }
}

describe('certificates', () => {
  it('reads the subject, issuer, serial, SHA-256 fingerprint and key of PEM certificates', async () => {
    const [rsa] = await parseCertificates(file('rsa.pem'));
    const [ec] = await parseCertificates(file('ec.pem'));
    expect(rsa!.subject).toBe('CN=verity golden RSA, O=dm-verity tests');
    expect(rsa!.issuer).toBe(rsa!.subject);
    expect(rsa!.key).toEqual({ name: 'RSA', bits: 2048 });
    expect(rsa!.serial).toMatch(/^[0-9a-f]+$/);
    // `openssl x509 -fingerprint -sha256`, the same as the DPS JSON make.sh wrote.
    const json = JSON.parse(new TextDecoder().decode(file('verity-sig.json')));
    expect(rsa!.fingerprint).toBe(json.certificateFingerprint);
    expect(ec!.subject).toBe('CN=verity golden EC, O=dm-verity tests');
    expect(ec!.key).toEqual({ name: 'EC', curve: 'P-256' });
    expect(ec!.spki[0]).toBe(0x30);
  });

  it('reads DER, one certificate or several one after another, the same as PEM', async () => {
    const [fromPem] = await parseCertificates(file('rsa.pem'));
    const der = pemToDer(file('rsa.pem'));
    const [fromDer] = await parseCertificates(der);
    expect(fromDer).toEqual(fromPem);
    const both = await parseCertificates(concat(pemToDer(file('other.pem')), der));
    expect(both.map((c) => c.subject)).toEqual(['CN=verity golden other', 'CN=verity golden RSA, O=dm-verity tests']);
  });

  it('reads a PEM bundle, skipping other blocks, and refuses input with no certificate', async () => {
    const bundle = concat(new TextEncoder().encode('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), file('other.pem'), file('ec.pem'));
    expect((await parseCertificates(bundle)).map((c) => c.key.name)).toEqual(['RSA', 'EC']);
    await expect(parseCertificates(new TextEncoder().encode('hello'))).rejects.toMatchObject({ code: 'E_BAD_IMAGE' });
    await expect(parseCertificates(new TextEncoder().encode('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'))).rejects.toThrow(/PUBLIC KEY/);
    await expect(parseCertificates(new TextEncoder().encode('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'))).rejects.toMatchObject({
      code: 'E_BAD_IMAGE',
      data: { field: 'PEM' },
    });
  });

  it('refuses a truncated certificate with a typed error', async () => {
    const der = pemToDer(file('ec.pem'));
    for (let n = 1; n < der.length; n += 7) {
      await expect(parseCertificates(der.subarray(0, n))).rejects.toBeInstanceOf(VerityError);
    }
  });
});

describe('the golden signatures', () => {
  it('an RSA smime -nocerts -noattr signature verifies with its certificate', async () => {
    const certs = await parseCertificates(file('rsa.pem'));
    const r = await verifyRootHashSignature(ROOT_HASH, RSA_SIG, certs);
    expect(r).toMatchObject({ valid: true, signer: 'CN=verity golden RSA, O=dm-verity tests', fingerprint: certs[0]!.fingerprint, signedAttributes: false });
    expect(r.valid && r.algorithm).toBe('RSA-2048 PKCS#1 v1.5, SHA-256');
    expect(r.valid && r.signerId).toContain(`serial ${certs[0]!.serial}`);
  });

  it('an EC cms signature with signed attributes and an embedded certificate verifies', async () => {
    const certs = await parseCertificates(file('ec.pem'));
    const r = await verifyRootHashSignature(ROOT_HASH, EC_SIG, certs);
    expect(r).toMatchObject({ valid: true, signer: 'CN=verity golden EC, O=dm-verity tests', algorithm: 'ECDSA P-256, SHA-256', signedAttributes: true });
    // The root hash in upper case is the same hash; it is signed as lower-case text.
    expect((await verifyRootHashSignature(ROOT_HASH.toUpperCase(), EC_SIG, certs)).valid).toBe(true);
  });

  it('a bundle where the second certificate is the signer', async () => {
    const certs = await parseCertificates(concat(file('other.pem'), file('rsa.pem')));
    expect(await verifyRootHashSignature(ROOT_HASH, RSA_SIG, certs)).toMatchObject({ valid: true, fingerprint: certs[1]!.fingerprint });
  });

  it('is invalid for another root hash, another certificate, and a flipped signature byte', async () => {
    const rsa = await parseCertificates(file('rsa.pem'));
    const ec = await parseCertificates(file('ec.pem'));
    const other = await parseCertificates(file('other.pem'));
    const wrong = `${ROOT_HASH.slice(0, -1)}${ROOT_HASH.endsWith('0') ? '1' : '0'}`;
    expect(await verifyRootHashSignature(wrong, RSA_SIG, rsa)).toMatchObject({ valid: false });
    expect(await verifyRootHashSignature(wrong, EC_SIG, ec)).toMatchObject({ valid: false, reason: expect.stringMatching(/message digest/) });
    expect(await verifyRootHashSignature(ROOT_HASH, RSA_SIG, other)).toMatchObject({ valid: false, reason: expect.stringMatching(/none of the 1 trusted RSA/) });
    expect(await verifyRootHashSignature(ROOT_HASH, EC_SIG, rsa)).toMatchObject({ valid: false, reason: expect.stringMatching(/no trusted certificate holds a P-256/) });
    expect(await verifyRootHashSignature(ROOT_HASH, RSA_SIG, [])).toMatchObject({ valid: false });
    // The signature value is the last field of the SignerInfo, which ends the file.
    for (const sig of [RSA_SIG, EC_SIG]) {
      const flipped = sig.slice();
      flipped[flipped.length - 5]! ^= 0x01;
      expect(await verifyRootHashSignature(ROOT_HASH, flipped, [...rsa, ...ec])).toMatchObject({ valid: false });
    }
  });

  it('refuses a root hash that is not hex with E_PARAM', async () => {
    await expect(verifyRootHashSignature('xyz', RSA_SIG, [])).rejects.toMatchObject({ code: 'E_PARAM' });
    await expect(verifyRootHashSignature('', RSA_SIG, [])).rejects.toMatchObject({ code: 'E_PARAM' });
  });

  it('every truncation, and bytes after the signature, end in E_BAD_IMAGE', async () => {
    const certs = await parseCertificates(concat(file('rsa.pem'), file('ec.pem')));
    for (const sig of [RSA_SIG, EC_SIG]) {
      for (let n = 0; n < sig.length; n++) expect(await outcome(ROOT_HASH, sig.subarray(0, n), certs)).toBe('E_BAD_IMAGE');
      expect(await outcome(ROOT_HASH, concat(sig, new Uint8Array([0])), certs)).toBe('E_BAD_IMAGE');
    }
  });

  it('random bytes and random byte changes end in a result or E_BAD_IMAGE, never another error', async () => {
    const certs = await parseCertificates(concat(file('rsa.pem'), file('ec.pem')));
    const rng = new Rng(7);
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const random = Uint8Array.from({ length: rng.int(0, 600) }, () => rng.int(0, 255));
      if (i % 2 === 0) random[0] = 0x30;
      seen.add(await outcome(ROOT_HASH, random, certs));
      const sig = (i % 2 === 0 ? RSA_SIG : EC_SIG).slice();
      for (let k = rng.int(1, 3); k > 0; k--) sig[rng.int(0, sig.length - 1)] = rng.int(0, 255);
      seen.add(await outcome(ROOT_HASH, sig, certs));
    }
    expect(seen).toContain('E_BAD_IMAGE');
    expect(seen).toContain('invalid');
  });
});

describe('the DPS verity-sig partition', () => {
  const json = file('verity-sig.json');
  const padded = (text: Uint8Array, size = 16384) => concat(text, new Uint8Array(size - text.length));
  const encode = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

  it('reads the JSON of a NUL-padded partition, and its signature verifies', async () => {
    const p = parseVeritySigPartition(padded(json));
    expect(p.rootHash).toBe(ROOT_HASH);
    expect(p.signature).toEqual(RSA_SIG);
    const certs = await parseCertificates(file('rsa.pem'));
    expect(p.certificateFingerprint).toBe(certs[0]!.fingerprint);
    expect(await verifyRootHashSignature(p.rootHash, p.signature, certs)).toMatchObject({ valid: true });
    expect(parseVeritySigPartition(json).rootHash).toBe(ROOT_HASH);
  });

  it('takes certificateFingerprint as optional and ignores unknown fields', () => {
    const o = JSON.parse(new TextDecoder().decode(json));
    const p = parseVeritySigPartition(padded(encode({ rootHash: o.rootHash.toUpperCase(), signature: o.signature, future: [1, 2] }), 4096));
    expect(p).toMatchObject({ rootHash: ROOT_HASH, certificateFingerprint: null });
  });

  it('refuses malformed partitions with E_BAD_IMAGE naming the field', () => {
    const o = JSON.parse(new TextDecoder().decode(json));
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(4096), 'json'],
      [padded(new TextEncoder().encode('{"rootHash": ')), 'json'],
      [padded(new TextEncoder().encode('[1]')), 'json'],
      [padded(encode({ ...o, rootHash: 'abc' })), 'rootHash'],
      [padded(encode({ ...o, rootHash: 12 })), 'rootHash'],
      [padded(encode({ signature: o.signature })), 'rootHash'],
      [padded(encode({ ...o, signature: 'not base64!' })), 'signature'],
      [padded(encode({ ...o, signature: undefined })), 'signature'],
      [padded(encode({ ...o, certificateFingerprint: 'abcd' })), 'certificateFingerprint'],
      [concat(padded(json), new Uint8Array([1])), 'padding'],
      [new Uint8Array([0xff, 0xfe, 0]), 'json'],
      [new Uint8Array(70_000).fill(0x20), 'json'],
    ];
    for (const [bytes, field] of cases) {
      expect(() => parseVeritySigPartition(bytes), field).toThrow(expect.objectContaining({ code: 'E_BAD_IMAGE', data: expect.objectContaining({ field }) }));
    }
    expect(() => parseVeritySigPartition(new Uint8Array(2 << 20))).toThrow(expect.objectContaining({ code: 'E_BAD_IMAGE' }));
  });
});
