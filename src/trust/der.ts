/**
 * A minimal, bounded reader of DER (ITU-T X.690 §8 and §10), enough for X.509 certificates and CMS SignedData.
 *
 * DER is type-length-value: where an element starts depends on the lengths of all the elements before it, so the
 * fixed-offset declarations of binary/struct.ts (`struct()`, `at()`) do not fit. Instead `parseDer` decodes a whole
 * tree of elements eagerly, checking every length against the bytes that hold it, and callers walk it with `Fields`,
 * which reads a constructed element's children in order and names the field at fault in its errors.
 *
 * Every length is untrusted: an element never reaches past its parent (nor the parent past the buffer), only
 * definite lengths are read (the indefinite form 0x80 is BER, not DER), lengths are at most 4 bytes long, tag
 * numbers are the low form (0..30), nesting is at most `maxDepth` and a tree has at most `maxElements` elements.
 * A violation is a `VerityError('E_BAD_IMAGE')` naming the input (`what`), the field and the byte offset.
 */
import { VerityError } from '../errors.js';
import { toHex } from '../binary/bytes.js';

/** Identifier octets of the universal types read here (class universal; bit 5 set for the constructed ones). */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** The identifier octet of a context-specific tag `[n]`: constructed (EXPLICIT, or IMPLICIT over a SEQUENCE/SET) or primitive. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

export interface DerLimits {
  /** Deepest nesting of constructed elements (the outermost element is depth 1). */
  maxDepth: number;
  /** Most elements in one tree. */
  maxElements: number;
}

export const DEFAULT_DER_LIMITS: DerLimits = { maxDepth: 32, maxElements: 1 << 16 };

/** One decoded element. Its byte arrays are views into the parsed buffer, not copies. */
export interface Der {
  /** The identifier octet: class (bits 8-7), constructed (bit 6) and tag number (bits 5-1). */
  readonly tag: number;
  /** The offset of the identifier octet in the outermost input (`DerContext.origin`). */
  readonly offset: number;
  /** The whole encoding: identifier, length and contents. */
  readonly der: Uint8Array;
  /** The contents octets. */
  readonly content: Uint8Array;
  /** The elements inside a constructed element, in order; empty for a primitive one. */
  readonly children: readonly Der[];
}

/** What a parse is of, for error messages, and the outermost input, against which offsets are counted. */
export interface DerContext {
  /** The input, as the messages name it: "the PKCS#7 signature", "certificate 2". */
  readonly what: string;
  /** The outermost buffer: elements found in a nested encoding (a BIT STRING's contents) keep offsets in it. */
  readonly origin: Uint8Array;
}

/** A malformed-input error for `ctx`: "The PKCS#7 signature: SignedData.version at byte 19: …", with the field and offset in its data. */
export function derError(ctx: DerContext, field: string, message: string, offset: number, values: { expected?: number | string; actual?: number | string } = {}): VerityError {
  const what = ctx.what.charAt(0).toUpperCase() + ctx.what.slice(1);
  return new VerityError('E_BAD_IMAGE', `${what}: ${field} at byte ${offset}: ${message}.`, { data: { field, offset, ...values } });
}

/** Where `bytes` starts in `ctx.origin` (both views of one buffer); 0 when `bytes` is a copy. */
function offsetIn(ctx: DerContext, bytes: Uint8Array): number {
  const delta = bytes.byteOffset - ctx.origin.byteOffset;
  return bytes.buffer === ctx.origin.buffer && delta >= 0 && delta <= ctx.origin.length ? delta : 0;
}

/** Decodes the one element that `bytes` holds entirely; trailing bytes are an error. */
export function parseDer(bytes: Uint8Array, ctx: DerContext, field: string, limits: DerLimits = DEFAULT_DER_LIMITS): Der {
  const all = parseDerList(bytes, ctx, field, limits, 1);
  if (all.length !== 1) {
    throw derError(ctx, field, all.length === 0 ? 'no DER element' : 'bytes follow the DER element', offsetIn(ctx, bytes) + (all[0]?.der.length ?? 0));
  }
  return all[0]!;
}

/** Decodes consecutive elements filling `bytes` (several DER certificates one after another), at most `maxCount`. */
export function parseDerList(bytes: Uint8Array, ctx: DerContext, field: string, limits: DerLimits = DEFAULT_DER_LIMITS, maxCount = Number.MAX_SAFE_INTEGER): Der[] {
  const state = { elements: 0 };
  const base = offsetIn(ctx, bytes);
  const out: Der[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (out.length === maxCount) throw derError(ctx, field, maxCount === 1 ? 'bytes follow the DER element' : `more than ${maxCount} DER elements`, base + at);
    const element = readElement(bytes, at, base, 1, ctx, field, limits, state);
    out.push(element);
    at += element.der.length;
  }
  return out;
}

function readElement(bytes: Uint8Array, at: number, base: number, depth: number, ctx: DerContext, field: string, limits: DerLimits, state: { elements: number }): Der {
  const offset = base + at;
  if (depth > limits.maxDepth) throw derError(ctx, field, `DER nested deeper than ${limits.maxDepth} levels`, offset);
  if (++state.elements > limits.maxElements) throw derError(ctx, field, `more than ${limits.maxElements} DER elements`, offset);
  if (bytes.length - at < 2) throw derError(ctx, field, 'DER element truncated in its header', offset);
  const tag = bytes[at]!;
  if ((tag & 0x1f) === 0x1f) throw derError(ctx, field, `high tag number form (identifier 0x${tag.toString(16)}) is not read`, offset);
  const first = bytes[at + 1]!;
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw derError(ctx, field, 'indefinite length (BER) where DER needs a definite one', offset);
    if (count > 4) throw derError(ctx, field, `a length of ${count} bytes`, offset);
    if (bytes.length - at - 2 < count) throw derError(ctx, field, 'DER element truncated in its length', offset);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[at + 2 + i]!;
    header = 2 + count;
  }
  if (length > bytes.length - at - header) {
    const room = bytes.length - at - header;
    throw derError(ctx, field, `a DER element of ${length} bytes runs past the ${room} that hold it`, offset, { expected: length, actual: room });
  }
  const der = bytes.subarray(at, at + header + length);
  const content = der.subarray(header);
  const children: Der[] = [];
  if ((tag & 0x20) !== 0) {
    let inner = 0;
    while (inner < content.length) {
      const child = readElement(content, inner, offset + header, depth + 1, ctx, field, limits, state);
      children.push(child);
      inner += child.der.length;
    }
  }
  return { tag, offset, der, content, children };
}

/** A short name of an identifier octet, for messages: "SEQUENCE", "[0]". */
export function tagName(tag: number): string {
  const universal: Record<number, string> = {
    [TAG.BOOLEAN]: 'BOOLEAN', [TAG.INTEGER]: 'INTEGER', [TAG.BIT_STRING]: 'BIT STRING', [TAG.OCTET_STRING]: 'OCTET STRING',
    [TAG.NULL]: 'NULL', [TAG.OID]: 'OBJECT IDENTIFIER', [TAG.SEQUENCE]: 'SEQUENCE', [TAG.SET]: 'SET',
  };
  if ((tag & 0xc0) === 0x80) return `[${tag & 0x1f}]`;
  return universal[tag] ?? `tag 0x${tag.toString(16).padStart(2, '0')}`;
}

/**
 * The children of a constructed element, read in order as a schema lists them: `next` takes a required field,
 * `optional` one that may be absent, `end` checks that nothing is left (or `rest` takes what is).
 */
export class Fields {
  private index = 0;
  private readonly children: readonly Der[];

  constructor(
    readonly ctx: DerContext,
    readonly node: Der,
    readonly field: string,
    tag?: number,
  ) {
    if (tag !== undefined) expectTag(ctx, node, tag, field);
    if ((node.tag & 0x20) === 0) throw derError(ctx, field, `expected a constructed element, found ${tagName(node.tag)}`, node.offset);
    this.children = node.children;
  }

  /** The next child, which must have identifier `tag` (any identifier when `tag` is undefined). */
  next(tag: number | undefined, name: string): Der {
    const child = this.children[this.index];
    if (child === undefined) throw derError(this.ctx, `${this.field}.${name}`, `missing (${this.field} ends)`, this.node.offset + this.node.der.length);
    if (tag !== undefined) expectTag(this.ctx, child, tag, `${this.field}.${name}`);
    this.index++;
    return child;
  }

  /** The next child when its identifier is `tag`; else nothing is consumed. */
  optional(tag: number): Der | undefined {
    const child = this.children[this.index];
    if (child?.tag !== tag) return undefined;
    this.index++;
    return child;
  }

  /** Every child not read yet. */
  rest(): readonly Der[] {
    const out = this.children.slice(this.index);
    this.index = this.children.length;
    return out;
  }

  /** Refuses children left unread. */
  end(): void {
    const child = this.children[this.index];
    if (child !== undefined) throw derError(this.ctx, this.field, `unexpected ${tagName(child.tag)} after the last field`, child.offset);
  }
}

export function expectTag(ctx: DerContext, node: Der, tag: number, field: string): void {
  if (node.tag !== tag) throw derError(ctx, field, `expected ${tagName(tag)}, found ${tagName(node.tag)}`, node.offset);
}

/** The dotted text of an OBJECT IDENTIFIER ("1.2.840.113549.1.7.2"). Arcs above 2^53 - 1 and non-minimal arcs are refused. */
export function readOid(ctx: DerContext, node: Der, field: string): string {
  expectTag(ctx, node, TAG.OID, field);
  const c = node.content;
  if (c.length === 0 || c.length > 64) throw derError(ctx, field, `an OBJECT IDENTIFIER of ${c.length} bytes`, node.offset);
  const arcs: number[] = [];
  let value = 0;
  let started = false;
  for (let i = 0; i < c.length; i++) {
    const b = c[i]!;
    if (!started && b === 0x80) throw derError(ctx, field, 'an OBJECT IDENTIFIER arc with a leading zero group', node.offset);
    started = true;
    if (value > (Number.MAX_SAFE_INTEGER - (b & 0x7f)) / 128) throw derError(ctx, field, 'an OBJECT IDENTIFIER arc above 2^53 - 1', node.offset);
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(value);
      value = 0;
      started = false;
    }
  }
  if (started) throw derError(ctx, field, 'an OBJECT IDENTIFIER ends inside an arc', node.offset);
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** An INTEGER's magnitude as lower-case hex, without the sign octet DER adds before a high bit (serial numbers). */
export function readIntegerHex(ctx: DerContext, node: Der, field: string): string {
  expectTag(ctx, node, TAG.INTEGER, field);
  const c = node.content;
  if (c.length === 0) throw derError(ctx, field, 'an empty INTEGER', node.offset);
  return toHex(c.length > 1 && c[0] === 0 ? c.subarray(1) : c);
}

/** A small non-negative INTEGER (a version number): 0..2^31 - 1. */
export function readSmallInteger(ctx: DerContext, node: Der, field: string): number {
  expectTag(ctx, node, TAG.INTEGER, field);
  const c = node.content;
  if (c.length === 0 || c.length > 4 || (c[0]! & 0x80) !== 0) throw derError(ctx, field, 'expected a small non-negative INTEGER', node.offset);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** The unsigned magnitude of a positive INTEGER (an RSA modulus, an ECDSA r or s), without leading zero octets. */
export function readUnsigned(ctx: DerContext, node: Der, field: string): Uint8Array {
  expectTag(ctx, node, TAG.INTEGER, field);
  const c = node.content;
  if (c.length === 0 || (c[0]! & 0x80) !== 0) throw derError(ctx, field, 'expected a positive INTEGER', node.offset);
  let start = 0;
  while (start < c.length - 1 && c[start] === 0) start++;
  return c.subarray(start);
}

/** The bits of a BIT STRING whose length is a whole number of bytes (keys and signatures). */
export function readBitStringBytes(ctx: DerContext, node: Der, field: string): Uint8Array {
  expectTag(ctx, node, TAG.BIT_STRING, field);
  if (node.content.length === 0 || node.content[0] !== 0) throw derError(ctx, field, 'a BIT STRING that is not a whole number of bytes', node.offset);
  return node.content.subarray(1);
}

/** An AlgorithmIdentifier (RFC 5280 §4.1.1.2): its OID and its parameters, if any. */
export function readAlgorithm(ctx: DerContext, node: Der, field: string): { oid: string; parameters: Der | undefined } {
  const f = new Fields(ctx, node, field, TAG.SEQUENCE);
  const oid = readOid(ctx, f.next(TAG.OID, 'algorithm'), `${field}.algorithm`);
  const rest = f.rest();
  if (rest.length > 1) throw derError(ctx, field, 'more than one parameters field', rest[1]!.offset);
  return { oid, parameters: rest[0] };
}
