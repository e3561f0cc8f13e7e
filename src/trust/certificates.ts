/**
 * X.509 certificates the user trusts (RFC 5280 §4.1), read as far as signature checking needs: the subject and
 * issuer names, the serial number, the SubjectPublicKeyInfo and the kind of key in it. Nothing else of the
 * certificate is checked: not its own signature, validity dates, extensions or chain, because the user names the
 * certificate itself as trusted, as a key in the kernel's keyring is (the key is what counts).
 */
import { VerityError } from '../errors.js';
import { toHex } from '../binary/bytes.js';
import { type Der, type DerContext, derError, Fields, parseDer, parseDerList, readAlgorithm, readBitStringBytes, readIntegerHex, readOid, readUnsigned, TAG, contextTag } from './der.js';
import { sha256Hex } from './subtle.js';

/** The most bytes `parseCertificates` reads (a system CA bundle is ~200 KiB). */
export const MAX_CERTIFICATE_INPUT = 4 << 20;
/** The most certificates in one input. */
export const MAX_CERTIFICATES = 512;
/** The largest certificate, in bytes of DER. */
export const MAX_CERTIFICATE_SIZE = 64 << 10;

export type EcCurve = 'P-256' | 'P-384' | 'P-521';

/** The kind of public key a certificate holds; `unsupported` keys are listed but verify nothing. */
export type KeyAlgorithm =
  | { name: 'RSA'; bits: number }
  | { name: 'EC'; curve: EcCurve }
  | { name: 'unsupported'; oid: string; description: string };

export interface Certificate {
  /** The subject name, most specific attribute first (RFC 4514 order): "CN=signer, O=Example, C=DE". */
  subject: string;
  /** The issuer name, in the same form. */
  issuer: string;
  /** The serial number, lower-case hex. */
  serial: string;
  /** SHA-256 of the certificate's DER, lower-case hex (what `openssl x509 -fingerprint -sha256` prints, without colons). */
  fingerprint: string;
  /** The DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  key: KeyAlgorithm;
  /** The certificate's DER. */
  der: Uint8Array;
}

export const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  p256: '1.2.840.10045.3.1.7',
  p384: '1.3.132.0.34',
  p521: '1.3.132.0.35',
} as const;

const CURVES: Record<string, EcCurve> = { [OID.p256]: 'P-256', [OID.p384]: 'P-384', [OID.p521]: 'P-521' };

/** Short names of the attribute types names commonly hold (RFC 4514 §3, RFC 4519, PKCS #9). */
const ATTRIBUTE_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'street',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.42': 'GN',
  '2.5.4.43': 'initials',
  '2.5.4.46': 'dnQualifier',
  '2.5.4.65': 'pseudonym',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/** Most attributes in one name; more is not a name anyone issues. */
const MAX_NAME_ATTRIBUTES = 64;

const utf8 = new TextDecoder('utf-8');

/** The text of a directory string, or undefined when its type is not a string type. */
function stringValue(node: Der): string | undefined {
  const c = node.content;
  switch (node.tag) {
    case TAG.UTF8_STRING:
      return utf8.decode(c);
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.NUMERIC_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.T61_STRING: // Teletex, read as Latin-1 as most tools do
      return latin1(c);
    case TAG.BMP_STRING: {
      let s = '';
      for (let i = 0; i + 1 < c.length; i += 2) s += String.fromCharCode((c[i]! << 8) | c[i + 1]!);
      return s;
    }
    case TAG.UNIVERSAL_STRING: {
      let s = '';
      for (let i = 0; i + 3 < c.length; i += 4) {
        const cp = ((c[i]! << 24) | (c[i + 1]! << 16) | (c[i + 2]! << 8) | c[i + 3]!) >>> 0;
        s += cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
      }
      return s;
    }
    default:
      return undefined;
  }
}

/** RFC 4514 §2.4 escaping of an attribute value. */
function escapeValue(value: string): string {
  let s = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  if (s.startsWith('#') || s.startsWith(' ')) s = `\\${s}`;
  if (s.endsWith(' ') && s.length > 1) s = `${s.slice(0, -1)}\\ `;
  return s;
}

/**
 * A Name (RFC 5280 §4.1.2.4) as text: relative distinguished names most specific first, as RFC 4514 orders them
 * (`openssl x509 -nameopt RFC2253`), attributes of one RDN joined by "+". A value of a non-string type, or an
 * attribute type without a short name, is written `OID=#hex` of its DER. Control characters are kept: pass the
 * text through binary/printable.ts before it reaches a terminal.
 */
export function formatName(ctx: DerContext, node: Der, field: string): string {
  const rdns = new Fields(ctx, node, field, TAG.SEQUENCE).rest();
  let count = 0;
  const parts: string[] = [];
  for (const [i, rdn] of rdns.entries()) {
    const attributes = new Fields(ctx, rdn, `${field}[${i}]`, TAG.SET).rest();
    const texts: string[] = [];
    for (const [j, attribute] of attributes.entries()) {
      if (++count > MAX_NAME_ATTRIBUTES) throw derError(ctx, field, `more than ${MAX_NAME_ATTRIBUTES} attributes`, attribute.offset);
      const f = new Fields(ctx, attribute, `${field}[${i}][${j}]`, TAG.SEQUENCE);
      const type = readOid(ctx, f.next(TAG.OID, 'type'), `${field}[${i}][${j}].type`);
      const value = f.next(undefined, 'value');
      f.end();
      const name = ATTRIBUTE_NAMES[type];
      const text = stringValue(value);
      texts.push(name !== undefined && text !== undefined ? `${name}=${escapeValue(text)}` : `${name ?? type}=#${toHex(value.der)}`);
    }
    parts.push(texts.join('+'));
  }
  return parts.reverse().join(', ');
}

/** The kind of key in a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7; RFC 3279 §2.3.1, RFC 5480 §2). */
export function keyAlgorithm(ctx: DerContext, spki: Der, field: string): KeyAlgorithm {
  const f = new Fields(ctx, spki, field, TAG.SEQUENCE);
  const algorithm = readAlgorithm(ctx, f.next(TAG.SEQUENCE, 'algorithm'), `${field}.algorithm`);
  const keyBits = readBitStringBytes(ctx, f.next(TAG.BIT_STRING, 'subjectPublicKey'), `${field}.subjectPublicKey`);
  f.end();
  switch (algorithm.oid) {
    case OID.rsaEncryption: {
      const key = parseDer(keyBits, ctx, `${field}.subjectPublicKey (RSAPublicKey)`);
      const k = new Fields(ctx, key, `${field}.RSAPublicKey`, TAG.SEQUENCE);
      const modulus = readUnsigned(ctx, k.next(TAG.INTEGER, 'modulus'), `${field}.RSAPublicKey.modulus`);
      readUnsigned(ctx, k.next(TAG.INTEGER, 'publicExponent'), `${field}.RSAPublicKey.publicExponent`);
      k.end();
      return { name: 'RSA', bits: (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]!)) };
    }
    case OID.ecPublicKey: {
      const curveOid = algorithm.parameters?.tag === TAG.OID ? readOid(ctx, algorithm.parameters, `${field}.algorithm.namedCurve`) : undefined;
      const curve = curveOid === undefined ? undefined : CURVES[curveOid];
      if (curve) return { name: 'EC', curve };
      return {
        name: 'unsupported',
        oid: algorithm.oid,
        description: curveOid ? `an EC key on curve ${curveOid} (only P-256, P-384 and P-521 are read)` : 'an EC key with explicit curve parameters',
      };
    }
    case OID.rsassaPss:
      return { name: 'unsupported', oid: algorithm.oid, description: 'an RSASSA-PSS key' };
    case OID.ed25519:
      return { name: 'unsupported', oid: algorithm.oid, description: 'an Ed25519 key' };
    case OID.ed448:
      return { name: 'unsupported', oid: algorithm.oid, description: 'an Ed448 key' };
    default:
      return { name: 'unsupported', oid: algorithm.oid, description: `a key of algorithm ${algorithm.oid}` };
  }
}

/** Reads one certificate's DER; `what` names it in errors ("PEM certificate 2"), whose offsets count from its first byte. */
export async function readCertificate(der: Uint8Array, what: string): Promise<Certificate> {
  if (der.length > MAX_CERTIFICATE_SIZE) {
    throw new VerityError('E_BAD_IMAGE', `${what.charAt(0).toUpperCase()}${what.slice(1)}: ${der.length} bytes, more than the ${MAX_CERTIFICATE_SIZE} read.`, {
      data: { field: 'Certificate', expected: MAX_CERTIFICATE_SIZE, actual: der.length },
    });
  }
  const ctx: DerContext = { what, origin: der };
  const root = parseDer(der, ctx, 'Certificate');
  const cert = new Fields(ctx, root, 'Certificate', TAG.SEQUENCE);
  const tbsNode = cert.next(TAG.SEQUENCE, 'tbsCertificate');
  cert.next(TAG.SEQUENCE, 'signatureAlgorithm');
  cert.next(TAG.BIT_STRING, 'signatureValue');
  cert.end();
  const tbs = new Fields(ctx, tbsNode, 'tbsCertificate');
  tbs.optional(contextTag(0, true)); // version, absent for v1
  const serial = readIntegerHex(ctx, tbs.next(TAG.INTEGER, 'serialNumber'), 'tbsCertificate.serialNumber');
  tbs.next(TAG.SEQUENCE, 'signature');
  const issuer = formatName(ctx, tbs.next(TAG.SEQUENCE, 'issuer'), 'tbsCertificate.issuer');
  tbs.next(TAG.SEQUENCE, 'validity');
  const subject = formatName(ctx, tbs.next(TAG.SEQUENCE, 'subject'), 'tbsCertificate.subject');
  const spkiNode = tbs.next(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  // issuerUniqueID, subjectUniqueID, extensions follow: not needed.
  const key = keyAlgorithm(ctx, spkiNode, 'tbsCertificate.subjectPublicKeyInfo');
  return { subject, issuer, serial, fingerprint: await sha256Hex(root.der), spki: spkiNode.der.slice(), key, der: root.der.slice() };
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----/g;

/** Strict base64 (RFC 4648 §4, padding required to a multiple of 4 characters) of text without whitespace. */
export function decodeBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = text.charCodeAt(i + k);
      const d = c >= 65 && c <= 90 ? c - 65 : c >= 97 && c <= 122 ? c - 71 : c >= 48 && c <= 57 ? c + 4 : c === 43 ? 62 : c === 47 ? 63 : 0;
      v = v * 64 + d;
    }
    for (let k = 2; k >= 0; k--) {
      if (o + (2 - k) < out.length) out[o + (2 - k)] = (v >> (8 * k)) & 0xff;
    }
    o += 3;
  }
  return out;
}

/**
 * The certificates in `bytes`: PEM text with one or more `-----BEGIN CERTIFICATE-----` blocks (other blocks, such as
 * a private key in the same file, are skipped), or DER, one certificate or several one after another.
 * E_BAD_IMAGE when the input holds no certificate, when a block or certificate is malformed, or past the limits
 * (MAX_CERTIFICATE_INPUT bytes, MAX_CERTIFICATES certificates of MAX_CERTIFICATE_SIZE bytes each).
 */
export async function parseCertificates(bytes: Uint8Array): Promise<Certificate[]> {
  if (bytes.length > MAX_CERTIFICATE_INPUT) {
    throw new VerityError('E_BAD_IMAGE', `The certificate input is ${bytes.length} bytes, more than the ${MAX_CERTIFICATE_INPUT} read.`, {
      data: { expected: MAX_CERTIFICATE_INPUT, actual: bytes.length },
    });
  }
  if (bytes.length > 0 && bytes[0] === TAG.SEQUENCE) {
    const ctx: DerContext = { what: 'the DER certificate input', origin: bytes };
    const elements = parseDerList(bytes, ctx, 'Certificate', undefined, MAX_CERTIFICATES);
    const out: Certificate[] = [];
    for (const [i, e] of elements.entries()) out.push(await readCertificate(e.der, elements.length > 1 ? `DER certificate ${i + 1}` : 'the DER certificate'));
    return out;
  }
  const text = latin1(bytes);
  const out: Certificate[] = [];
  const others: string[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = m[1]!;
    if (label !== 'CERTIFICATE') {
      others.push(label);
      continue;
    }
    const n = out.length + 1;
    if (n > MAX_CERTIFICATES) {
      throw new VerityError('E_BAD_IMAGE', `The certificate input holds more than ${MAX_CERTIFICATES} certificates.`, { data: { expected: MAX_CERTIFICATES } });
    }
    const body = m[2]!.replace(/[\t\n\v\f\r ]/g, '');
    const der = decodeBase64(body);
    if (der === undefined) {
      throw new VerityError('E_BAD_IMAGE', `PEM certificate ${n} (at character ${m.index}): its body is not base64.`, {
        data: { offset: m.index, field: 'PEM' },
      });
    }
    out.push(await readCertificate(der, `PEM certificate ${n}`));
  }
  if (out.length === 0) {
    const found = others.length > 0 ? `only PEM blocks ${[...new Set(others)].map((l) => `"${l}"`).join(', ')}` : 'neither PEM nor DER';
    throw new VerityError('E_BAD_IMAGE', `No certificate found: the input is ${found}; expected -----BEGIN CERTIFICATE----- blocks or a DER certificate.`, {
      data: { field: 'certificate' },
    });
  }
  return out;
}

/** Bytes as Latin-1 text, in chunks (String.fromCharCode's argument count is bounded). */
function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return s;
}
