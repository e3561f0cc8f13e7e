/**
 * The `cms` and `x509` fuzz targets (listed in test/fuzz/targets.ts): the golden signature and certificate of
 * test/fixtures/trust, their DER length fields found by a walk written here (independently of src/trust/der.ts, so a
 * misreading there is not repeated), and the entry points run on each mutated file: the signature checked against
 * the golden certificates, and the mutated certificate read and used to check the golden signature.
 */
import { readFileSync } from 'node:fs';
import { parseCertificates } from '../../src/trust/certificates.js';
import { verifyRootHashSignature } from '../../src/trust/cms.js';
import type { Field, Layout, Region } from '../fuzz/mutate.js';
import type { Target } from '../fuzz/targets.js';

/** The harness reports an error of this name as a bad result (test/fuzz/harness.ts). */
class BadResult extends Error {
  override readonly name = 'BadResult';
}

const FIXTURES = new URL('../fixtures/trust/', import.meta.url);
const file = (name: string) => new Uint8Array(readFileSync(new URL(name, FIXTURES)));
const ROOT_HASH = readFileSync(new URL('roothash.txt', FIXTURES), 'latin1');

function pemToDer(pem: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.from(new TextDecoder().decode(pem).replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, ''), 'base64'));
}

/** Every element's length octets as a field, and every constructed element as a region (X.690 §8.1). */
export function derLayout(bytes: Uint8Array): Layout {
  const fields: Field[] = [];
  const regions: Region[] = [];
  const walk = (start: number, end: number, depth: number) => {
    let at = start;
    while (at + 2 <= end && depth < 16) {
      const tag = bytes[at]!;
      const first = bytes[at + 1]!;
      const count = first < 0x80 ? 0 : first & 0x7f;
      let length = first < 0x80 ? first : 0;
      for (let i = 0; i < count; i++) length = length * 256 + bytes[at + 2 + i]!;
      const header = 2 + count;
      fields.push({ name: `DER length of tag 0x${tag.toString(16)} at ${at}`, at: at + (count === 0 ? 1 : 2), size: Math.max(1, count), littleEndian: false });
      if (tag & 0x20) {
        regions.push({ name: `DER tag 0x${tag.toString(16)} at ${at}`, at, length: Math.min(header + length, 64) });
        walk(at + header, at + header + length, depth + 1);
      }
      at += header + length;
    }
  };
  walk(0, bytes.length, 0);
  return { fields, regions, fixups: [] };
}

let golden: ReturnType<typeof parseCertificates> | undefined;
/** The golden RSA and EC certificates, read once. */
const goldenCerts = () => (golden ??= parseCertificates(new Uint8Array([...file('rsa.pem'), ...file('ec.pem')])));

/** Checks the shape of a verification result; returns whether it was valid. */
function checked(r: Awaited<ReturnType<typeof verifyRootHashSignature>>, subjects: string[]): boolean {
  if (r.valid) {
    if (!subjects.includes(r.signer) || !/^[0-9a-f]{64}$/.test(r.fingerprint)) throw new BadResult(`valid, signed by ${JSON.stringify(r.signer)} ${r.fingerprint}`);
    return true;
  }
  if (typeof r.reason !== 'string' || r.reason.length === 0) throw new BadResult(`invalid without a reason: ${JSON.stringify(r)}`);
  return false;
}

export function trustTargets(): Target[] {
  const signature = file('ec-cms.p7s');
  const cert = pemToDer(file('ec.pem'));
  return [
    {
      name: 'cms', seed: 'signature.p7s', bytes: signature, layout: derLayout(signature), companions: [], weight: 2,
      entries: [
        {
          name: 'verify',
          run: async (p) => {
            const certs = await goldenCerts();
            return checked(await verifyRootHashSignature(ROOT_HASH, new Uint8Array(readFileSync(p('signature.p7s'))), certs), certs.map((c) => c.subject));
          },
        },
      ],
    },
    {
      name: 'x509', seed: 'cert.der', bytes: cert, layout: derLayout(cert), companions: [], weight: 2,
      entries: [
        {
          name: 'read and verify with it',
          run: async (p) => {
            const certs = await parseCertificates(new Uint8Array(readFileSync(p('cert.der'))));
            for (const c of certs) {
              if (!/^[0-9a-f]{64}$/.test(c.fingerprint) || typeof c.subject !== 'string' || c.spki.length === 0) throw new BadResult(`certificate ${JSON.stringify({ ...c, der: undefined, spki: undefined })}`);
            }
            return checked(await verifyRootHashSignature(ROOT_HASH, signature, certs), certs.map((c) => c.subject));
          },
        },
      ],
    },
  ];
}
