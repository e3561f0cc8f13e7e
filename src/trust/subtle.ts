/**
 * The Web Crypto API (`globalThis.crypto.subtle`), present in Node >= 20 and in browsers (on secure pages), typed
 * here by the little of it the trust module uses, so that the core does not depend on Node's or the DOM's types.
 */
import { VerityError } from '../errors.js';
import { toHex } from '../binary/bytes.js';

export type HashName = 'SHA-256' | 'SHA-384' | 'SHA-512';

export type ImportParams = { name: 'RSASSA-PKCS1-v1_5'; hash: HashName } | { name: 'ECDSA'; namedCurve: 'P-256' | 'P-384' | 'P-521' };
export type VerifyParams = { name: 'RSASSA-PKCS1-v1_5' } | { name: 'ECDSA'; hash: HashName };

export interface Subtle {
  digest(algorithm: HashName, data: Uint8Array): Promise<ArrayBuffer>;
  importKey(format: 'spki', keyData: Uint8Array, algorithm: ImportParams, extractable: boolean, usages: Array<'verify'>): Promise<unknown>;
  verify(algorithm: VerifyParams, key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

/** The runtime's SubtleCrypto; E_UNSUPPORTED when there is none (an old runtime, or a browser page over plain http). */
export function subtle(): Subtle {
  const s = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (typeof s?.verify !== 'function' || typeof s.digest !== 'function' || typeof s.importKey !== 'function') {
    throw new VerityError('E_UNSUPPORTED', 'This runtime has no Web Crypto API (crypto.subtle): signatures cannot be checked here.');
  }
  return s;
}

/**
 * A copy of `bytes` in an ArrayBuffer of its own: Web Crypto refuses views of a SharedArrayBuffer, and a view into
 * a larger buffer (a subarray of a file) is passed as exactly its bytes.
 */
export function own(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}

export async function digest(hash: HashName, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest(hash, own(data)));
}

export async function sha256Hex(data: Uint8Array): Promise<string> {
  return toHex(await digest('SHA-256', data));
}
