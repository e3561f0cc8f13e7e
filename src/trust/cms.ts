/**
 * Checks a dm-verity root-hash signature: a detached PKCS#7 / CMS SignedData (RFC 5652) in DER over the root hash
 * as lower-case hex text without a newline, as the kernel checks it (Documentation/admin-guide/device-mapper/
 * verity.rst, `root_hash_sig_key_desc`; drivers/md/dm-verity-verify-sig.c) and as veritysetup's
 * `--root-hash-signature` and systemd's signature partitions carry it. Made by
 * `openssl smime -sign -nocerts -noattr -binary` (no signed attributes, no certificate) or `openssl cms -sign -binary`
 * (signed attributes).
 *
 * A signature is valid when one of its SignerInfos verifies with the key of one of the certificates the user trusts.
 * Certificates inside the signature are ignored (they are not trusted), so a signature made with `-nocerts` is
 * matched by key; the signer's issuer and serial number (or subject key identifier) are reported, and a trusted
 * certificate with that issuer and serial is tried first.
 */
import { VerityError } from '../errors.js';
import { bytesEqual, fromHex } from '../binary/bytes.js';
import { type Certificate, type EcCurve, formatName } from './certificates.js';
import { contextTag, type Der, type DerContext, derError, Fields, expectTag, parseDer, readAlgorithm, readIntegerHex, readOid, readSmallInteger, readUnsigned, TAG } from './der.js';
import { digest, type HashName, own, subtle } from './subtle.js';

/** The largest signature read: a signature with a few embedded certificates is a few KiB. */
export const MAX_SIGNATURE_SIZE = 256 << 10;
/** The most SignerInfos, digest algorithms and certificates considered in one signature, and signed attributes in one SignerInfo. */
export const MAX_SIGNERS = 16;
export const MAX_SIGNED_ATTRIBUTES = 64;

export type SignatureCheck =
  | {
      valid: true;
      /** The subject of the trusted certificate whose key verified the signature. */
      signer: string;
      /** Its SHA-256 fingerprint, lower-case hex. */
      fingerprint: string;
      /** How it was signed: "RSA-2048 PKCS#1 v1.5, SHA-256", "ECDSA P-256, SHA-256". */
      algorithm: string;
      /** The signer as the SignerInfo names it: "issuer CN=…, serial 1a2b…" or "subject key identifier …". */
      signerId: string;
      /** Whether the signature covers signed attributes (whose message digest was checked) rather than the root hash itself. */
      signedAttributes: boolean;
    }
  | { valid: false; reason: string };

const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
} as const;

/** Digest algorithms (RFC 5754 §2, RFC 3370 §2.1) by OID: a WebCrypto name, or the name of one that is refused. */
const DIGESTS: Record<string, HashName | { refused: string }> = {
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
  '2.16.840.1.101.3.4.2.4': { refused: 'SHA-224 is not supported (Web Crypto has no SHA-224)' },
  '1.3.14.3.2.26': { refused: 'SHA-1 is refused: SHA-1 is broken' },
  '1.2.840.113549.2.5': { refused: 'MD5 is refused: MD5 is broken' },
};

type SignatureKind = { kind: 'RSA' | 'EC'; hash?: HashName } | { refused: string };

/** Signature algorithms (RFC 3370 §3.2, RFC 4055 §5, RFC 5754 §3, RFC 5753 §7.1.3) by OID; `hash` when the OID names one. */
const SIGNATURES: Record<string, SignatureKind> = {
  [OID.rsaEncryption]: { kind: 'RSA' },
  '1.2.840.113549.1.1.11': { kind: 'RSA', hash: 'SHA-256' },
  '1.2.840.113549.1.1.12': { kind: 'RSA', hash: 'SHA-384' },
  '1.2.840.113549.1.1.13': { kind: 'RSA', hash: 'SHA-512' },
  '1.2.840.113549.1.1.5': { refused: 'sha1WithRSAEncryption is refused: SHA-1 is broken' },
  '1.2.840.113549.1.1.4': { refused: 'md5WithRSAEncryption is refused: MD5 is broken' },
  '1.2.840.113549.1.1.14': { refused: 'sha224WithRSAEncryption is not supported (Web Crypto has no SHA-224)' },
  [OID.rsassaPss]: { refused: 'RSASSA-PSS is not supported' },
  [OID.ecPublicKey]: { kind: 'EC' },
  '1.2.840.10045.4.3.2': { kind: 'EC', hash: 'SHA-256' },
  '1.2.840.10045.4.3.3': { kind: 'EC', hash: 'SHA-384' },
  '1.2.840.10045.4.3.4': { kind: 'EC', hash: 'SHA-512' },
  '1.2.840.10045.4.1': { refused: 'ecdsa-with-SHA1 is refused: SHA-1 is broken' },
  '1.2.840.10045.4.3.1': { refused: 'ecdsa-with-SHA224 is not supported (Web Crypto has no SHA-224)' },
  '1.3.101.112': { refused: 'Ed25519 is not supported' },
  '1.3.101.113': { refused: 'Ed448 is not supported' },
};

const CURVE_BYTES: Record<EcCurve, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };

interface SignerInfo {
  /** "signer 2", for reasons. */
  label: string;
  signerId: string;
  /** The issuer and serial the SignerInfo names, to try that certificate first. */
  issuerSerial: { issuer: string; serial: string } | undefined;
  digestOid: string;
  /** The signed attributes' element ([0] IMPLICIT SET OF Attribute), when present. */
  signedAttrs: Der | undefined;
  signatureOid: string;
  signature: Uint8Array;
}

/**
 * Checks `signatureDer` (a DER CMS SignedData) over `rootHashHex` against the `certs` the user trusts.
 *
 * - E_PARAM when `rootHashHex` is not hex. It is compared in lower case, as veritysetup hands it to the kernel.
 * - E_BAD_IMAGE when the signature is not a well-formed DER SignedData, or is larger than MAX_SIGNATURE_SIZE, or
 *   has more than MAX_SIGNERS signers.
 * - E_UNSUPPORTED when the runtime has no Web Crypto.
 * - `{ valid: false, reason }` when it is well formed but no signer verifies with a trusted key, with each signer's
 *   reason: a refused or unsupported algorithm (SHA-1 among them), a message digest that is not the root hash's,
 *   embedded content other than the root hash, or no trusted key that verifies it.
 */
export async function verifyRootHashSignature(rootHashHex: string, signatureDer: Uint8Array, certs: readonly Certificate[]): Promise<SignatureCheck> {
  if (rootHashHex.length === 0) throw new VerityError('E_PARAM', 'Invalid root hash: it is empty.');
  fromHex(rootHashHex, 'root hash');
  const content = new TextEncoder().encode(rootHashHex.toLowerCase());
  if (signatureDer.length > MAX_SIGNATURE_SIZE) {
    throw new VerityError('E_BAD_IMAGE', `The PKCS#7 signature is ${signatureDer.length} bytes, more than the ${MAX_SIGNATURE_SIZE} read.`, {
      data: { field: 'ContentInfo', expected: MAX_SIGNATURE_SIZE, actual: signatureDer.length },
    });
  }
  const ctx: DerContext = { what: 'the PKCS#7 signature', origin: signatureDer };
  const parsed = readSignedData(ctx, parseDer(signatureDer, ctx, 'ContentInfo'));

  if (parsed.contentType !== OID.data) {
    return { valid: false, reason: `the signed content is of type ${parsed.contentType}, not id-data (${OID.data}), which the kernel requires` };
  }
  if (parsed.embedded !== undefined && !bytesEqual(parsed.embedded, content)) {
    return { valid: false, reason: 'the signature embeds signed content that is not this root hash' };
  }
  if (parsed.signers.length === 0) return { valid: false, reason: 'the signature has no signer' };

  const reasons: string[] = [];
  for (const signer of parsed.signers) {
    const r = await checkSigner(ctx, signer, content, parsed.contentType, certs);
    if (r.valid) return r;
    reasons.push(parsed.signers.length > 1 ? `${signer.label} (${signer.signerId}): ${r.reason}` : `${r.reason} (signer: ${signer.signerId})`);
  }
  return { valid: false, reason: reasons.join('; ') };
}

function readSignedData(ctx: DerContext, root: Der): { contentType: string; embedded: Uint8Array | undefined; signers: SignerInfo[] } {
  const info = new Fields(ctx, root, 'ContentInfo', TAG.SEQUENCE);
  const type = readOid(ctx, info.next(TAG.OID, 'contentType'), 'ContentInfo.contentType');
  if (type !== OID.signedData) {
    throw derError(ctx, 'ContentInfo.contentType', `content type ${type}, not SignedData (${OID.signedData})`, root.offset, { expected: OID.signedData, actual: type });
  }
  const explicit = new Fields(ctx, info.next(contextTag(0, true), 'content'), 'ContentInfo.content');
  const signedData = explicit.next(TAG.SEQUENCE, 'SignedData');
  explicit.end();
  info.end();

  const sd = new Fields(ctx, signedData, 'SignedData');
  readSmallInteger(ctx, sd.next(TAG.INTEGER, 'version'), 'SignedData.version');
  const digestAlgorithms = new Fields(ctx, sd.next(TAG.SET, 'digestAlgorithms'), 'SignedData.digestAlgorithms').rest();
  if (digestAlgorithms.length > MAX_SIGNERS) throw tooMany(ctx, 'SignedData.digestAlgorithms', digestAlgorithms.length, signedData.offset);
  for (const [i, a] of digestAlgorithms.entries()) readAlgorithm(ctx, a, `SignedData.digestAlgorithms[${i}]`);

  const encap = new Fields(ctx, sd.next(TAG.SEQUENCE, 'encapContentInfo'), 'SignedData.encapContentInfo');
  const contentType = readOid(ctx, encap.next(TAG.OID, 'eContentType'), 'SignedData.encapContentInfo.eContentType');
  const eContent = encap.optional(contextTag(0, true));
  encap.end();
  let embedded: Uint8Array | undefined;
  if (eContent !== undefined) {
    const e = new Fields(ctx, eContent, 'SignedData.encapContentInfo.eContent');
    embedded = e.next(TAG.OCTET_STRING, 'OCTET STRING').content;
    e.end();
  }
  sd.optional(contextTag(0, true)); // certificates: not trusted, not read
  sd.optional(contextTag(1, true)); // crls
  const signerNodes = new Fields(ctx, sd.next(TAG.SET, 'signerInfos'), 'SignedData.signerInfos').rest();
  sd.end();
  if (signerNodes.length > MAX_SIGNERS) throw tooMany(ctx, 'SignedData.signerInfos', signerNodes.length, signedData.offset);
  return { contentType, embedded, signers: signerNodes.map((n, i) => readSignerInfo(ctx, n, i)) };
}

function tooMany(ctx: DerContext, field: string, count: number, offset: number, max = MAX_SIGNERS): VerityError {
  return derError(ctx, field, `${count} entries, more than the ${max} read`, offset, { expected: max, actual: count });
}

function readSignerInfo(ctx: DerContext, node: Der, index: number): SignerInfo {
  const field = `SignedData.signerInfos[${index}]`;
  const f = new Fields(ctx, node, field, TAG.SEQUENCE);
  readSmallInteger(ctx, f.next(TAG.INTEGER, 'version'), `${field}.version`);
  const sid = f.next(undefined, 'sid');
  let signerId: string;
  let issuerSerial: SignerInfo['issuerSerial'];
  if (sid.tag === TAG.SEQUENCE) {
    const s = new Fields(ctx, sid, `${field}.sid`);
    const issuer = formatName(ctx, s.next(TAG.SEQUENCE, 'issuer'), `${field}.sid.issuer`);
    const serial = readIntegerHex(ctx, s.next(TAG.INTEGER, 'serialNumber'), `${field}.sid.serialNumber`);
    s.end();
    issuerSerial = { issuer, serial };
    signerId = `issuer ${issuer || '(empty)'}, serial ${serial}`;
  } else {
    expectTag(ctx, sid, contextTag(0, false), `${field}.sid`);
    signerId = `subject key identifier ${[...sid.content].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
  const digestOid = readAlgorithm(ctx, f.next(TAG.SEQUENCE, 'digestAlgorithm'), `${field}.digestAlgorithm`).oid;
  const signedAttrs = f.optional(contextTag(0, true));
  const signatureOid = readAlgorithm(ctx, f.next(TAG.SEQUENCE, 'signatureAlgorithm'), `${field}.signatureAlgorithm`).oid;
  const signature = f.next(TAG.OCTET_STRING, 'signature').content;
  f.optional(contextTag(1, true)); // unsignedAttrs
  f.end();
  return { label: `signer ${index + 1}`, signerId, issuerSerial, digestOid, signedAttrs, signatureOid, signature };
}

/** One value of each attribute type in the signed attributes (RFC 5652 §5.3: each type at most once, with one value). */
function readSignedAttributes(ctx: DerContext, node: Der, field: string): Map<string, Der> | string {
  const attributes = new Fields(ctx, node, field).rest();
  if (attributes.length > MAX_SIGNED_ATTRIBUTES) throw tooMany(ctx, field, attributes.length, node.offset, MAX_SIGNED_ATTRIBUTES);
  const out = new Map<string, Der>();
  for (const [i, a] of attributes.entries()) {
    const f = new Fields(ctx, a, `${field}[${i}]`, TAG.SEQUENCE);
    const type = readOid(ctx, f.next(TAG.OID, 'attrType'), `${field}[${i}].attrType`);
    const values = new Fields(ctx, f.next(TAG.SET, 'attrValues'), `${field}[${i}].attrValues`).rest();
    f.end();
    if (type !== OID.contentType && type !== OID.messageDigest) continue;
    if (out.has(type) || values.length !== 1) return `the signed attribute ${type} appears more than once or has ${values.length} values`;
    out.set(type, values[0]!);
  }
  return out;
}

async function checkSigner(ctx: DerContext, signer: SignerInfo, content: Uint8Array, contentType: string, certs: readonly Certificate[]): Promise<SignatureCheck> {
  const hash = DIGESTS[signer.digestOid];
  if (hash === undefined) return { valid: false, reason: `digest algorithm ${signer.digestOid} is not supported` };
  if (typeof hash !== 'string') return { valid: false, reason: `digest algorithm ${hash.refused}` };
  const sig = SIGNATURES[signer.signatureOid];
  if (sig === undefined) return { valid: false, reason: `signature algorithm ${signer.signatureOid} is not supported` };
  if ('refused' in sig) return { valid: false, reason: `signature algorithm ${sig.refused}` };
  if (sig.hash !== undefined && sig.hash !== hash) {
    return { valid: false, reason: `the signature algorithm names ${sig.hash} but the digest algorithm is ${hash}` };
  }

  let signed = content;
  if (signer.signedAttrs !== undefined) {
    const field = `${signer.label} signedAttrs`;
    const attributes = readSignedAttributes(ctx, signer.signedAttrs, field);
    if (typeof attributes === 'string') return { valid: false, reason: attributes };
    const type = attributes.get(OID.contentType);
    const md = attributes.get(OID.messageDigest);
    if (type === undefined || md === undefined) return { valid: false, reason: 'the signed attributes lack the content-type or message-digest attribute' };
    if (readOid(ctx, type, `${field} contentType`) !== contentType) return { valid: false, reason: 'the signed content-type attribute differs from the content type' };
    expectTag(ctx, md, TAG.OCTET_STRING, `${field} messageDigest`);
    if (!bytesEqual(md.content, await digest(hash, content))) {
      return { valid: false, reason: `the signed message digest is not the ${hash} of this root hash: the signature is of another root hash` };
    }
    // The signature covers the DER of the attributes as a SET OF (RFC 5652 §5.4), not their [0] IMPLICIT tag.
    signed = signer.signedAttrs.der.slice();
    signed[0] = TAG.SET;
  }

  const algorithm = sig.kind === 'RSA' ? 'RSA' : 'EC';
  const usable = certs.filter((c) => c.key.name === algorithm);
  if (usable.length === 0) {
    return { valid: false, reason: `it is an ${algorithm === 'RSA' ? 'RSA' : 'ECDSA'} signature and no trusted certificate holds ${algorithm === 'RSA' ? 'an RSA' : 'a P-256, P-384 or P-521 EC'} key` };
  }
  const named = signer.issuerSerial;
  const isNamed = (c: Certificate) => named !== undefined && c.issuer === named.issuer && c.serial === named.serial;
  const ordered = [...usable.filter(isNamed), ...usable.filter((c) => !isNamed(c))];
  const failures: string[] = [];
  for (const cert of ordered) {
    const outcome = await verifyWith(ctx, cert, hash, signer.signature, signed);
    if (outcome === true) {
      const keyText = cert.key.name === 'RSA' ? `RSA-${cert.key.bits} PKCS#1 v1.5` : cert.key.name === 'EC' ? `ECDSA ${cert.key.curve}` : '';
      return { valid: true, signer: cert.subject, fingerprint: cert.fingerprint, algorithm: `${keyText}, ${hash}`, signerId: signer.signerId, signedAttributes: signer.signedAttrs !== undefined };
    }
    if (typeof outcome === 'string') failures.push(`certificate ${cert.fingerprint.slice(0, 16)}…: ${outcome}`);
  }
  const namedCert = ordered.find(isNamed);
  const head = namedCert
    ? `the trusted certificate it names (${namedCert.subject}) does not verify it, nor does any other trusted ${algorithm} key: the signature or the signed root hash differs`
    : `none of the ${ordered.length} trusted ${algorithm} key(s) verifies it: signed by another key, or over another root hash`;
  return { valid: false, reason: failures.length > 0 ? `${head} (${failures.join('; ')})` : head };
}

/** True when `cert`'s key verifies; false when it does not; a reason when the key or the signature value cannot be used. */
async function verifyWith(ctx: DerContext, cert: Certificate, hash: HashName, signature: Uint8Array, data: Uint8Array): Promise<boolean | string> {
  const s = subtle();
  let key: unknown;
  try {
    key =
      cert.key.name === 'RSA'
        ? await s.importKey('spki', own(cert.spki), { name: 'RSASSA-PKCS1-v1_5', hash }, false, ['verify'])
        : cert.key.name === 'EC'
          ? await s.importKey('spki', own(cert.spki), { name: 'ECDSA', namedCurve: cert.key.curve }, false, ['verify'])
          : undefined;
  } catch (e) {
    return `its key cannot be imported (${e instanceof Error ? e.message : String(e)})`;
  }
  if (key === undefined) return false;
  let value = signature;
  if (cert.key.name === 'EC') {
    const raw = ecdsaRaw(ctx, signature, CURVE_BYTES[cert.key.curve]);
    if (raw === undefined) return false;
    value = raw;
  }
  try {
    const params = cert.key.name === 'RSA' ? { name: 'RSASSA-PKCS1-v1_5' as const } : { name: 'ECDSA' as const, hash };
    return await s.verify(params, key, own(value), own(data));
  } catch {
    return false;
  }
}

/**
 * An ECDSA signature as CMS holds it (ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, RFC 5753 §7.2) in Web
 * Crypto's form, r and s each left-padded to the curve's size; undefined when it is not that, or r or s is too long.
 */
function ecdsaRaw(ctx: DerContext, signature: Uint8Array, size: number): Uint8Array | undefined {
  try {
    const node = parseDer(signature, ctx, 'ECDSA-Sig-Value');
    const f = new Fields(ctx, node, 'ECDSA-Sig-Value', TAG.SEQUENCE);
    const r = readUnsigned(ctx, f.next(TAG.INTEGER, 'r'), 'ECDSA-Sig-Value.r');
    const sv = readUnsigned(ctx, f.next(TAG.INTEGER, 's'), 'ECDSA-Sig-Value.s');
    f.end();
    if (r.length > size || sv.length > size) return undefined;
    const out = new Uint8Array(2 * size);
    out.set(r, size - r.length);
    out.set(sv, 2 * size - sv.length);
    return out;
  } catch (e) {
    if (e instanceof VerityError) return undefined;
    throw e;
  }
}
