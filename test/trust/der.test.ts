/** The bounded DER reader of src/trust/der.ts, on hand-made encodings (X.690 §8.1, §8.19, §10.1). */
import { describe, expect, it } from 'vitest';
import { VerityError } from '../../src/errors.js';
import { type DerContext, Fields, parseDer, parseDerList, readIntegerHex, readOid, readUnsigned, TAG } from '../../src/trust/der.js';

const ctx = (bytes: Uint8Array): DerContext => ({ what: 'test input', origin: bytes });
const parse = (bytes: number[], limits?: { maxDepth: number; maxElements: number }) => {
  const b = new Uint8Array(bytes);
  return parseDer(b, ctx(b), 'root', limits);
};
const fails = (bytes: number[], message: RegExp, limits?: { maxDepth: number; maxElements: number }) => {
  let error: unknown;
  try {
    parse(bytes, limits);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(VerityError);
  expect((error as VerityError).code).toBe('E_BAD_IMAGE');
  expect((error as VerityError).message).toMatch(message);
  return error as VerityError;
};

describe('parseDer', () => {
  it('decodes a tree with short and long lengths, with offsets in the input', () => {
    const long = new Array(200).fill(0x41);
    const root = parse([0x30, 0x81, 0xcb, 0x02, 0x01, 0x05, 0x04, 0x81, 0xc5, ...long.slice(0, 0xc5), 0x05, 0x00].slice(0, 3 + 0xcb));
    expect(root.tag).toBe(TAG.SEQUENCE);
    expect(root.children.map((c) => [c.tag, c.offset, c.content.length])).toEqual([
      [TAG.INTEGER, 3, 1],
      [TAG.OCTET_STRING, 6, 0xc5],
    ]);
  });

  it('refuses indefinite lengths, lengths of more than 4 bytes, truncation and trailing bytes', () => {
    fails([0x30, 0x80, 0x00, 0x00], /indefinite length/);
    fails([0x04, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00], /length of 5 bytes/);
    const e = fails([0x30, 0x05, 0x02, 0x01], /runs past/);
    expect(e.data).toMatchObject({ offset: 0, expected: 5, actual: 2, field: 'root' });
    fails([0x04, 0x82, 0x01], /truncated in its length/);
    fails([0x30], /truncated in its header/);
    fails([], /no DER element/);
    fails([0x05, 0x00, 0x05, 0x00], /bytes follow/);
    // A child that runs past its parent's end, though not past the buffer.
    fails([0x30, 0x03, 0x04, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00], /runs past the 1/);
    fails([0x1f, 0x81, 0x00, 0x00], /high tag number/);
  });

  it('bounds nesting depth and element count', () => {
    const nested = (depth: number): number[] => (depth === 0 ? [0x05, 0x00] : ((inner) => [0x30, inner.length, ...inner])(nested(depth - 1)));
    expect(parse(nested(31)).children).toHaveLength(1);
    fails(nested(40), /deeper than 32/);
    const flat = [0x30, 40, ...new Array(20).fill([0x05, 0x00]).flat()];
    expect(parse(flat).children).toHaveLength(20);
    fails(flat, /more than 10 DER elements/, { maxDepth: 32, maxElements: 10 });
  });

  it('reads consecutive elements with a bound on their number', () => {
    const b = new Uint8Array([0x05, 0x00, 0x05, 0x00, 0x05, 0x00]);
    expect(parseDerList(b, ctx(b), 'list')).toHaveLength(3);
    expect(() => parseDerList(b, ctx(b), 'list', undefined, 2)).toThrow(VerityError);
  });
});

describe('values', () => {
  const one = (bytes: number[]) => {
    const b = new Uint8Array(bytes);
    return { node: parseDer(b, ctx(b), 'v'), c: ctx(b) };
  };

  it('OBJECT IDENTIFIERs, with the first-two-arcs rule and multi-byte arcs', () => {
    const { node, c } = one([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]);
    expect(readOid(c, node, 'oid')).toBe('1.2.840.113549.1.7.2');
    const p256 = one([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
    expect(readOid(p256.c, p256.node, 'oid')).toBe('1.2.840.10045.3.1.7');
    const joint = one([0x06, 0x03, 0x88, 0x37, 0x01]);
    expect(readOid(joint.c, joint.node, 'oid')).toBe('2.999.1');
    for (const bad of [[0x06, 0x00], [0x06, 0x02, 0x2a, 0x86], [0x06, 0x02, 0x80, 0x01], [0x06, 0x0a, ...new Array(9).fill(0xff), 0x7f]]) {
      const x = one(bad);
      expect(() => readOid(x.c, x.node, 'oid')).toThrow(VerityError);
    }
  });

  it('INTEGERs: serial hex without the sign octet, unsigned magnitudes, negative refused', () => {
    const serial = one([0x02, 0x03, 0x00, 0x80, 0x01]);
    expect(readIntegerHex(serial.c, serial.node, 's')).toBe('8001');
    expect(readUnsigned(serial.c, serial.node, 's')).toEqual(new Uint8Array([0x80, 0x01]));
    const negative = one([0x02, 0x01, 0x80]);
    expect(() => readUnsigned(negative.c, negative.node, 'n')).toThrow(/positive INTEGER/);
  });

  it('Fields reads a schema in order and names missing, unexpected and mistyped fields', () => {
    const { node, c } = one([0x30, 0x06, 0x02, 0x01, 0x01, 0x04, 0x01, 0x00]);
    const f = new Fields(c, node, 'S', TAG.SEQUENCE);
    expect(f.next(TAG.INTEGER, 'a').content).toEqual(new Uint8Array([1]));
    expect(f.optional(TAG.NULL)).toBeUndefined();
    expect(() => f.end()).toThrow(/S at byte 5: unexpected OCTET STRING/);
    f.next(TAG.OCTET_STRING, 'b');
    expect(() => f.next(TAG.INTEGER, 'c')).toThrow(/S\.c at byte 8: missing/);
    const g = new Fields(c, node, 'S');
    expect(() => g.next(TAG.OID, 'x')).toThrow(/expected OBJECT IDENTIFIER, found INTEGER/);
    expect(() => new Fields(c, node.children[0]!, 'I')).toThrow(/constructed/);
  });
});
