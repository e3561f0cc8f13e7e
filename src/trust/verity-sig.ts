/**
 * The contents of a Discoverable Partitions Specification `…-verity-sig` partition (UAPI Group, "Discoverable
 * Partitions Specification", section "Verity"): a JSON object in text, padded with NUL bytes to a multiple of 4096
 * bytes, with the fields `rootHash` (mandatory, lower-case hex), `signature` (mandatory, base64 of the DER PKCS#7
 * signature of the rootHash text) and `certificateFingerprint` (optional, SHA-256 of the signing certificate's DER,
 * lower-case hex). Other fields may be added by later revisions and are ignored. systemd-repart makes these
 * partitions 16 KiB.
 */
import { VerityError } from '../errors.js';
import { isAllZero } from '../binary/bytes.js';
import { decodeBase64 } from './certificates.js';

/** The longest JSON text read, before its NUL padding. */
export const MAX_VERITY_SIG_JSON = 64 << 10;
/** The largest partition read whole (its padding is checked to be NULs). */
export const MAX_VERITY_SIG_PARTITION = 1 << 20;

export interface VeritySigPartition {
  /** The root hash, lower-case hex. */
  rootHash: string;
  /** The signing certificate's SHA-256 fingerprint, lower-case hex, or null when the partition does not give it. */
  certificateFingerprint: string | null;
  /** The DER PKCS#7 signature of `rootHash`. */
  signature: Uint8Array;
}

function bad(message: string, field?: string, offset?: number): VerityError {
  const data: { field?: string; offset?: number } = {};
  if (field !== undefined) data.field = field;
  if (offset !== undefined) data.offset = offset;
  return new VerityError('E_BAD_IMAGE', `Verity signature partition: ${message}`, { data });
}

/**
 * Reads a `…-verity-sig` partition's bytes. E_BAD_IMAGE when the partition is larger than
 * MAX_VERITY_SIG_PARTITION, its JSON text longer than MAX_VERITY_SIG_JSON, anything but NULs follows the text, the
 * text is not a JSON object, or a field is missing or malformed (rootHash: hex of 16 to 64 bytes; signature: base64;
 * certificateFingerprint: 64 hex digits). Hex is accepted in either case and returned in lower case.
 */
export function parseVeritySigPartition(bytes: Uint8Array): VeritySigPartition {
  if (bytes.length > MAX_VERITY_SIG_PARTITION) {
    throw new VerityError('E_BAD_IMAGE', `Verity signature partition: ${bytes.length} bytes, more than the ${MAX_VERITY_SIG_PARTITION} read.`, {
      data: { expected: MAX_VERITY_SIG_PARTITION, actual: bytes.length },
    });
  }
  const nul = bytes.indexOf(0);
  const end = nul < 0 ? bytes.length : nul;
  if (end > MAX_VERITY_SIG_JSON) throw bad(`its JSON text is ${end} bytes, more than the ${MAX_VERITY_SIG_JSON} read`, 'json', 0);
  if (!isAllZero(bytes.subarray(end))) throw bad('bytes other than NUL follow the JSON text', 'padding', end + bytes.subarray(end).findIndex((b) => b !== 0));
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, end));
  } catch {
    throw bad('its text is not UTF-8', 'json', 0);
  }
  if (text.trim() === '') throw bad('it is empty (all NUL bytes)', 'json', 0);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(`its text is not JSON (${e instanceof Error ? e.message : String(e)})`, 'json', 0);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('its JSON is not an object', 'json', 0);
  const o = json as Record<string, unknown>;

  const rootHash = o.rootHash;
  if (typeof rootHash !== 'string') throw bad('the rootHash field is missing or not a string', 'rootHash');
  if (!/^(?:[0-9a-fA-F]{2}){16,64}$/.test(rootHash)) throw bad(`rootHash "${rootHash.slice(0, 200)}" is not hex of 16 to 64 bytes`, 'rootHash');

  // Absent or null: the partition does not name the certificate.
  const fingerprint = o.certificateFingerprint ?? undefined;
  if (fingerprint !== undefined && typeof fingerprint !== 'string') throw bad('the certificateFingerprint field is not a string', 'certificateFingerprint');
  if (fingerprint !== undefined && !/^[0-9a-fA-F]{64}$/.test(fingerprint)) {
    throw bad(`certificateFingerprint "${fingerprint.slice(0, 200)}" is not 64 hex digits (a SHA-256)`, 'certificateFingerprint');
  }

  const signatureText = o.signature;
  if (typeof signatureText !== 'string') throw bad('the signature field is missing or not a string', 'signature');
  const signature = decodeBase64(signatureText.replace(/[\t\n\r ]/g, ''));
  if (signature === undefined || signature.length === 0) throw bad('the signature field is not base64', 'signature');

  return { rootHash: rootHash.toLowerCase(), certificateFingerprint: fingerprint?.toLowerCase() ?? null, signature };
}
