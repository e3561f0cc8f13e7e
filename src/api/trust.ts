/**
 * `--trusted-cert`: the certificates a user trusts, read once, and what they say about the root hash each target of
 * an image claims. A claim becomes authenticated only when a signature the image carries for it (boot/cmdline.ts
 * names where) verifies under one of these certificates, as the kernel checks `root_hash_sig_key_desc` against its
 * keyring (kernel Documentation/admin-guide/device-mapper/verity.rst).
 */
import { readFile } from 'node:fs/promises';
import { toHex } from '../binary/bytes.js';
import type { RootHashClaim } from '../discovery/targets.js';
import { VerityError } from '../errors.js';
import type { RootHashSource } from '../report/image.js';
import { type Certificate, parseCertificates } from '../trust/certificates.js';
import { verifyRootHashSignature } from '../trust/cms.js';

/** The certificates in `inputs` (paths, or PEM/DER bytes), each input holding one or more. */
export async function loadTrustedCertificates(inputs: ReadonlyArray<string | Uint8Array>): Promise<Certificate[]> {
  const certs: Certificate[] = [];
  for (const input of inputs) {
    let bytes: Uint8Array;
    if (typeof input === 'string') {
      try {
        bytes = new Uint8Array(await readFile(input));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new VerityError(code === 'ENOENT' ? 'E_NO_FILE' : 'E_IO', `Cannot read the trusted certificate ${input}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}.`, {
          data: { path: input, field: 'trusted-cert' },
        });
      }
    } else {
      bytes = input;
    }
    const found = await parseCertificates(bytes);
    if (found.length === 0) {
      throw new VerityError('E_PARAM', `${typeof input === 'string' ? input : 'A trusted certificate input'} holds no certificate.`, {
        data: { field: 'trusted-cert', ...(typeof input === 'string' ? { path: input } : {}) },
      });
    }
    certs.push(...found);
  }
  return certs;
}

/**
 * How a claimed root hash stands against the trusted certificates: authenticated when its signature verifies under
 * one of them; otherwise the reason (no signature, a signature not found, not valid).
 */
export async function judgeClaim(claim: RootHashClaim, certs: readonly Certificate[]): Promise<RootHashSource> {
  const base = { from: claim.from };
  if (!claim.signatureBytes) {
    return { ...base, authenticated: false, signature: claim.signature ? `${claim.signature}: nothing to check` : 'none: the image names no signature for this root hash' };
  }
  const verdict = await verifyRootHashSignature(toHex(claim.bytes), claim.signatureBytes, certs);
  return verdict.valid
    ? { ...base, authenticated: true, signature: `${claim.signature}: valid, signed by ${verdict.signer} (trusted certificate, SHA-256 ${verdict.fingerprint})` }
    : { ...base, authenticated: false, signature: `${claim.signature}: NOT VALID for the trusted certificates (${verdict.reason})` };
}
