import { describe, expect, it } from 'vitest';
import {
  array,
  at,
  bits64le,
  bytes,
  chars,
  guid,
  latin1,
  struct,
  u16be,
  u16le,
  u32be,
  u32le,
  u64be,
  u64beBig,
  u64le,
  u64leBig,
  u8,
  utf16be,
  utf16le,
  uuid,
} from '../../src/binary/struct.js';
import { toHex } from '../../src/binary/bytes.js';
import { VerityError } from '../../src/errors.js';
import { Rng } from '../support/rng.js';

const hex = (b: Uint8Array) => toHex(b);

describe('primitive fields write the byte order they name', () => {
  it.each([
    ['u8', u8, 0xab, 'ab'],
    ['u16le', u16le, 0x1234, '3412'],
    ['u16be', u16be, 0x1234, '1234'],
    ['u32le', u32le, 0x12345678, '78563412'],
    ['u32be', u32be, 0x12345678, '12345678'],
    ['u64le', u64le, 2 ** 40 + 5, '0500000000010000'],
    ['u64be', u64be, 2 ** 40 + 5, '0000010000000005'],
  ] as const)('%s', (_name, field, value, expected) => {
    const b = new Uint8Array(field.len);
    field.put(b, 0, value);
    expect(hex(b)).toBe(expected);
    expect(field.get(b, 0)).toBe(value);
  });

  it('u64 fields refuse values above 2^53 - 1 when read, and u64leBig keeps them', () => {
    const b = new Uint8Array(8).fill(0xff);
    expect(() => u64le.get(b, 0)).toThrow(VerityError);
    expect(u64leBig.get(b, 0)).toBe(2n ** 64n - 1n);
    b.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0]);
    expect(u64le.get(b, 0)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('puts refuse values that do not fit', () => {
    const b = new Uint8Array(8);
    expect(() => u16le.put(b, 0, 0x10000)).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => u32be.put(b, 0, -1)).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => u64le.put(b, 0, 2 ** 53)).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => latin1(4).put(b, 0, 'abcde')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => utf16le(4).put(b, 0, 'abc')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('a read through a subarray never sees the bytes after it', () => {
    const parent = new Uint8Array(16).fill(7);
    expect(() => u32le.get(parent.subarray(0, 2), 0)).toThrow(RangeError);
  });

  it('strings stop at the first NUL and pad with NULs', () => {
    const b = new Uint8Array(8).fill(0xee);
    latin1(8).put(b, 0, 'sha256');
    expect(hex(b)).toBe('7368613235360000');
    expect(latin1(8).get(b, 0)).toBe('sha256');
    const n = new Uint8Array(12).fill(0xee);
    utf16le(12).put(n, 0, 'rööt');
    expect(hex(n)).toBe('7200f600f600740000000000');
    expect(utf16le(12).get(n, 0)).toBe('rööt');
  });

  it('a GUID is mixed-endian and a UUID is in textual order', () => {
    const text = '00112233-4455-6677-8899-aabbccddeeff';
    const g = new Uint8Array(16);
    guid.put(g, 0, text);
    expect(hex(g)).toBe('33221100554477668899aabbccddeeff');
    expect(guid.get(g, 0)).toBe(text);
    const u = new Uint8Array(16);
    uuid.put(u, 0, text);
    expect(hex(u)).toBe('00112233445566778899aabbccddeeff');
    expect(uuid.get(u, 0)).toBe(text);
  });
});

describe('struct', () => {
  const Inner = struct('Inner', { a: at(0, u16le), b: at(2, u16be) });
  const Outer = struct(
    'Outer',
    { magic: at(0, latin1(4)), size: at(4, u64le), inner: at(16, Inner), tail: at(20, bytes(3)) },
    { size: 32 },
  );
  const value = { magic: 'OUTR', size: 2 ** 33 + 1, inner: { a: 0x0102, b: 0x0304 }, tail: new Uint8Array([9, 8, 7]) };

  it('round-trips a value byte for byte, nested structs included, with gaps left zero', () => {
    const out = Outer.serialize(value);
    expect(out.length).toBe(32);
    expect(hex(out)).toBe('4f555452' + '0100000002000000' + '00000000' + '02010304' + '090807' + '00'.repeat(9));
    expect(Outer.get(out, 0)).toEqual(value);
    expect(Outer.serialize(Outer.get(out, 0))).toEqual(out);
  });

  it('reads at an offset, and refuses a buffer too short with the sizes in data', () => {
    const buf = new Uint8Array(40);
    Outer.put(buf, 8, value);
    expect(Outer.get(buf, 8)).toEqual(value);
    try {
      Outer.get(buf, 9);
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'E_BAD_IMAGE', data: { expected: 32, actual: 31, offset: 9 } });
    }
  });

  it('names the structure and field of a value it cannot represent, with the struct code', () => {
    const S = struct('Header', { count: at(8, u64le) }, { code: 'E_BAD_SUPERBLOCK' });
    const b = new Uint8Array(16);
    b.fill(0xff, 8);
    expect(() => S.get(b, 0)).toThrow(expect.objectContaining({ code: 'E_BAD_SUPERBLOCK', data: expect.objectContaining({ offset: 8 }) }));
    expect(() => S.get(b, 0)).toThrow(/Header: field count \(offset 8\)/);
  });

  it('refuses declarations whose fields overlap or overrun the size', () => {
    expect(() => struct('Bad', { a: at(0, u32le), b: at(2, u16le) })).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
    expect(() => struct('Bad', { a: at(0, u32le) }, { size: 2 })).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });
});

describe('fields the VHD and VHDX layouts add', () => {
  it('u64beBig keeps a big-endian value whole, past 2^53', () => {
    const b = new Uint8Array(8);
    u64beBig.put(b, 0, 2n ** 63n + 5n);
    expect(hex(b)).toBe('8000000000000005');
    expect(u64beBig.get(b, 0)).toBe(2n ** 63n + 5n);
  });

  it('utf16be is big-endian, stops at the first NUL and pads with NULs', () => {
    const b = new Uint8Array(10).fill(0xee);
    utf16be(10).put(b, 0, 'C:\\ä');
    expect(hex(b)).toBe('0043003a005c00e40000');
    expect(utf16be(10).get(b, 0)).toBe('C:\\ä');
    expect(() => utf16be(4).put(b, 0, 'abc')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('chars keeps NULs and takes exactly n characters', () => {
    const b = new Uint8Array(4);
    chars(4).put(b, 0, 'ab\0d');
    expect(hex(b)).toBe('61620064');
    expect(chars(4).get(b, 0)).toBe('ab\0d');
    expect(() => chars(4).put(b, 0, 'abc')).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });

  it('bits64le cuts a little-endian word into bit fields, a field across bit 32 included', () => {
    const entry = bits64le({ state: [0, 3], reserved: [3, 17], offsetMB: [20, 44] });
    const b = new Uint8Array(8);
    entry.put(b, 0, { state: 6, reserved: 0, offsetMB: 2 ** 43 + 0xabc });
    expect(hex(b)).toBe('0600c0ab00000080');
    expect(entry.get(b, 0)).toEqual({ state: 6, reserved: 0, offsetMB: 2 ** 43 + 0xabc });
    // Every bit set: each field reads as its own all-ones value, and writing them back sets every bit again.
    const ones = new Uint8Array(8).fill(0xff);
    const all = entry.get(ones, 0);
    expect(all).toEqual({ state: 7, reserved: 2 ** 17 - 1, offsetMB: 2 ** 44 - 1 });
    entry.put(b, 0, all);
    expect(hex(b)).toBe('ff'.repeat(8));
    // Bits no field names read as nothing and are written as zero; a field refuses a value wider than itself.
    const high = bits64le({ top: [40, 24] });
    expect(high.get(ones, 0)).toEqual({ top: 2 ** 24 - 1 });
    high.put(b, 0, { top: 1 });
    expect(hex(b)).toBe('0000000000010000');
    expect(() => entry.put(b, 0, { state: 8, reserved: 0, offsetMB: 0 })).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => entry.get(ones.subarray(0, 7), 0)).toThrow(RangeError);
    expect(() => bits64le({ a: [0, 4], b: [3, 2] })).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
    expect(() => bits64le({ wide: [0, 64] })).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });

  it('bits64le agrees with bigint shifts on random words', () => {
    const layouts = [
      { state: [0, 3], reserved: [3, 17], fileOffsetMB: [20, 44] },
      { a: [1, 30], b: [31, 2], c: [33, 31] },
      { wide: [5, 53], top: [60, 4] },
    ] as const;
    const rng = new Rng(64);
    for (const layout of layouts) {
      const field = bits64le<string>(layout);
      for (let i = 0; i < 200; i++) {
        const b = new Uint8Array(8).map(() => rng.int(0, 255));
        const word = u64leBig.get(b, 0);
        const want = Object.fromEntries(
          Object.entries(layout).map(([k, [first, count]]) => [k, Number((word >> BigInt(first)) & ((1n << BigInt(count)) - 1n))]),
        );
        expect(field.get(b, 0)).toEqual(want);
        const back = new Uint8Array(8);
        field.put(back, 0, want);
        const named = Object.values(layout).reduce((m, [first, count]) => m | (((1n << BigInt(count)) - 1n) << BigInt(first)), 0n);
        expect(u64leBig.get(back, 0)).toBe(word & named);
      }
    }
  });

  it('array places its values back to back and wants exactly its count', () => {
    const pair = array(u16be, 2);
    expect(pair.len).toBe(4);
    const b = new Uint8Array(4);
    pair.put(b, 0, [0x0102, 0x0304]);
    expect(hex(b)).toBe('01020304');
    expect(pair.get(b, 0)).toEqual([0x0102, 0x0304]);
    expect(() => pair.put(b, 0, [1])).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });
});
