import { VerityError } from '../errors.js';

/** A DataView over exactly `bytes`: built with byteLength, so a read past a subarray's end throws. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += HEX[b];
  return out;
}

/** Parses even-length hex, either case. `what` names the value in the error message. */
export function fromHex(text: string, what: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new VerityError('E_PARAM', `Invalid ${what}: expected an even number of hex digits, got "${text}".`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Textual UUID (8-4-4-4-12 hex, either case) to its 16 bytes in textual order, as libuuid's uuid_parse stores it. */
export function parseUuid(text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(text)) {
    throw new VerityError('E_PARAM', `Invalid UUID "${text}": expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.`);
  }
  return fromHex(text.replaceAll('-', ''), 'UUID');
}

export function formatUuid(bytes: Uint8Array): string {
  const h = toHex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Random bytes from the Web Crypto API's getRandomValues, present in Node and in every browser, also on plain-http
 * pages (where randomUUID is not). Without it there is no secure random source, and a salt or UUID must be given.
 */
export function randomBytes(length: number): Uint8Array {
  const crypto = (globalThis as { crypto?: { getRandomValues?<T extends Uint8Array>(array: T): T } }).crypto;
  if (typeof crypto?.getRandomValues !== 'function') {
    throw new VerityError(
      'E_UNSUPPORTED',
      'This runtime has no secure random source (crypto.getRandomValues): give the salt and the UUID explicitly.',
    );
  }
  const out = new Uint8Array(length);
  // getRandomValues fills at most 65,536 bytes per call.
  for (let at = 0; at < length; at += 65536) crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  return out;
}

/**
 * A random version-4 UUID (RFC 9562 §5.4), as uuid_generate() makes when libuuid has a random source. Built from
 * getRandomValues rather than crypto.randomUUID, which browsers offer only in secure contexts.
 */
export function randomUuid(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  return formatUuid(b);
}
