/**
 * Declarations of on-disk structures, read and written from the same table.
 *
 * A `Field<T>` knows its length and how to get and put a `T` at an offset (the shape of token-types' tokens). A
 * `struct()` places named fields at the offsets a specification numbers and is itself a field, so structures nest.
 * Parsers call `get`, writers `serialize`/`put`; nothing else in the library computes a field offset.
 *
 * Two rules live here and nowhere else:
 * - 64-bit fields are read as `number` and refused above 2^53 - 1 (`u64le`/`u64be`), or kept as `bigint` where the
 *   value is a bit set or may legitimately be that large (`u64leBig`);
 * - every read is bounded by the array's own `byteLength` (a `DataView` over it, or an explicit check), and a struct
 *   checks that the whole structure fits before it reads any field, so a short buffer is an error, never a read of a
 *   neighbouring buffer.
 */
import { VerityError, type VerityErrorCode } from '../errors.js';
import { formatGuid, encodeGuid } from './guid.js';
import { formatUuid, parseUuid } from './bytes.js';

/** One value of type `T` stored in `len` bytes. */
export interface Field<T> {
  readonly len: number;
  /** Reads the value at `offset`. Throws a `VerityError` when the stored value cannot be represented. */
  get(bytes: Uint8Array, offset: number): T;
  /** Writes the value at `offset`. Throws `E_PARAM` when the value does not fit the field. */
  put(bytes: Uint8Array, offset: number, value: T): void;
}

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function checkInteger(value: number, max: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new VerityError('E_PARAM', `${what} value ${value} does not fit: expected an integer in 0..${max}.`, {
      data: { actual: value },
    });
  }
}

export const u8: Field<number> = {
  len: 1,
  get: (b, o) => view(b).getUint8(o),
  put: (b, o, v) => (checkInteger(v, 0xff, 'u8'), view(b).setUint8(o, v)),
};

function u16(littleEndian: boolean): Field<number> {
  return {
    len: 2,
    get: (b, o) => view(b).getUint16(o, littleEndian),
    put: (b, o, v) => (checkInteger(v, 0xffff, 'u16'), view(b).setUint16(o, v, littleEndian)),
  };
}

function u32(littleEndian: boolean): Field<number> {
  return {
    len: 4,
    get: (b, o) => view(b).getUint32(o, littleEndian),
    put: (b, o, v) => (checkInteger(v, 0xffffffff, 'u32'), view(b).setUint32(o, v, littleEndian)),
  };
}

function u64(littleEndian: boolean): Field<number> {
  return {
    len: 8,
    get: (b, o) => {
      const value = view(b).getBigUint64(o, littleEndian);
      if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
        // The caller's struct names the structure and field and gives the error its code.
        throw new VerityError('E_BAD_IMAGE', `${value} is beyond 2^53 - 1, the largest exact offset or size here.`, {
          data: { actual: value.toString() },
        });
      }
      return Number(value);
    },
    put: (b, o, v) => (checkInteger(v, Number.MAX_SAFE_INTEGER, 'u64'), view(b).setBigUint64(o, BigInt(v), littleEndian)),
  };
}

export const u16le = u16(true);
export const u32le = u32(true);
/** A 64-bit little-endian size or offset: a `number`, refused above 2^53 - 1. */
export const u64le = u64(true);
export const u16be = u16(false);
export const u32be = u32(false);
/** A 64-bit big-endian size or offset: a `number`, refused above 2^53 - 1. */
export const u64be = u64(false);

/** A 64-bit little-endian value kept whole: flags, attributes, or a field checked against other limits. */
export const u64leBig: Field<bigint> = {
  len: 8,
  get: (b, o) => view(b).getBigUint64(o, true),
  put: (b, o, v) => view(b).setBigUint64(o, v, true),
};

/** A 64-bit big-endian value kept whole. */
export const u64beBig: Field<bigint> = {
  len: 8,
  get: (b, o) => view(b).getBigUint64(o, false),
  put: (b, o, v) => view(b).setBigUint64(o, v, false),
};

/**
 * A 64-bit little-endian word cut into named bit fields, each `[firstBit, bitCount]` counted from the least
 * significant bit (the VHDX BAT entry: State in bits 0-2, FileOffsetMB in bits 20-63). A field is at most 53 bits, so
 * its value is an exact `number`, without a bigint per word in tables read in bulk. Bits no field names read as
 * nothing and are written as zero; a declaration whose fields overlap or pass bit 63 is refused (E_INTERNAL).
 */
export function bits64le<K extends string>(layout: Record<K, readonly [first: number, count: number]>): Field<Record<K, number>> {
  const parts = (Object.entries(layout) as Array<[K, readonly [number, number]]>).sort((a, b) => a[1][0] - b[1][0]);
  let end = 0;
  for (const [key, [first, count]] of parts) {
    if (!(Number.isInteger(first) && Number.isInteger(count) && first >= end && count >= 1 && count <= 53 && first + count <= 64)) {
      throw new VerityError('E_INTERNAL', `bit field ${key} [${first}, ${count}] overlaps another, or is not 1-53 bits of 64.`);
    }
    end = first + count;
  }
  // A field takes its low bits from the word's low half (from bit `first`) and the rest from the high half: each part
  // is cut out by exact division and remainder, so no 32-bit shift overflows and a part of no bits comes out as 0.
  const fields = parts.map(([key, [first, count]]) => {
    const fromLo = Math.max(0, Math.min(count, 32 - first));
    return { key, count, loDiv: 2 ** Math.min(first, 32), loMod: 2 ** fromLo, hiDiv: 2 ** Math.max(0, first - 32), hiMod: 2 ** (count - fromLo) };
  });
  return {
    len: 8,
    get: (b, o) => {
      // Read byte by byte rather than through a new DataView: BATs are read millions of entries at a time.
      if (!(o >= 0 && o + 8 <= b.length)) throw new RangeError(`Offset ${o} is outside the bounds of the buffer`);
      const lo = (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
      const hi = (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24)) >>> 0;
      const out = {} as Record<K, number>;
      for (const f of fields) out[f.key] = (Math.floor(hi / f.hiDiv) % f.hiMod) * f.loMod + (Math.floor(lo / f.loDiv) % f.loMod);
      return out;
    },
    put: (b, o, value) => {
      // The fields do not overlap, so adding each one's parts into the two halves is or-ing them.
      let lo = 0;
      let hi = 0;
      for (const f of fields) {
        const x = value[f.key];
        checkInteger(x, 2 ** f.count - 1, `bit field ${f.key}`);
        lo += (x % f.loMod) * f.loDiv;
        hi += Math.floor(x / f.loMod) * f.hiDiv;
      }
      const dv = view(b);
      dv.setUint32(o, lo, true);
      dv.setUint32(o + 4, hi, true);
    },
  };
}

/** `n` raw bytes; `get` returns a copy, so the result outlives the buffer it came from. */
export function bytes(n: number): Field<Uint8Array> {
  return {
    len: n,
    get: (b, o) => b.slice(o, o + n),
    put: (b, o, v) => {
      if (v.length > n) throw new VerityError('E_PARAM', `${v.length} bytes do not fit a ${n}-byte field.`);
      b.fill(0, o, o + n);
      b.set(v, o);
    },
  };
}

/** `n` single-byte characters taken as they are, NULs included: a magic value such as "vhdxfile" or "loge". */
export function chars(n: number): Field<string> {
  return {
    len: n,
    get: (b, o) => String.fromCharCode(...b.subarray(o, o + n)),
    put: (b, o, v) => {
      if (v.length !== n || /[^\u0000-\u00ff]/.test(v)) {
        throw new VerityError('E_PARAM', `"${v}" is not ${n} single-byte characters.`);
      }
      for (let i = 0; i < n; i++) b[o + i] = v.charCodeAt(i);
    },
  };
}

/**
 * A NUL-padded single-byte string of `n` bytes (ASCII or Latin-1): `get` stops at the first NUL; `put` refuses a
 * string longer than the field or with a character above U+00FF.
 */
export function latin1(n: number): Field<string> {
  return {
    len: n,
    get: (b, o) => {
      const field = b.subarray(o, o + n);
      const nul = field.indexOf(0);
      return String.fromCharCode(...(nul < 0 ? field : field.subarray(0, nul)));
    },
    put: (b, o, v) => {
      if (v.length > n || /[^\u0000-\u00ff]/.test(v)) {
        throw new VerityError('E_PARAM', `"${v}" does not fit a ${n}-byte single-byte string field.`);
      }
      b.fill(0, o, o + n);
      for (let i = 0; i < v.length; i++) b[o + i] = v.charCodeAt(i);
    },
  };
}

function utf16(n: number, littleEndian: boolean): Field<string> {
  return {
    len: n,
    // Decoded by hand, code unit by code unit: TextDecoder's utf-16be needs full ICU, which a browser or a small-ICU
    // Node build may lack, and an unpaired surrogate is kept as it is rather than replaced.
    get: (b, o) => {
      const v = view(b);
      let out = '';
      for (let i = 0; i + 1 < n; i += 2) {
        const unit = v.getUint16(o + i, littleEndian);
        if (unit === 0) break;
        out += String.fromCharCode(unit);
      }
      return out;
    },
    put: (b, o, v) => {
      if (v.length * 2 > n) throw new VerityError('E_PARAM', `Name "${v}" does not fit ${n} bytes of UTF-16.`);
      b.fill(0, o, o + n);
      const dv = view(b);
      for (let i = 0; i < v.length; i++) dv.setUint16(o + 2 * i, v.charCodeAt(i), littleEndian);
    },
  };
}

/** A NUL-padded UTF-16LE name of `n` bytes (GPT partition names); `get` stops at the first NUL code unit. */
export function utf16le(n: number): Field<string> {
  return utf16(n, true);
}

/** A NUL-padded UTF-16BE name of `n` bytes (the VHD parent name); `get` stops at the first NUL code unit. */
export function utf16be(n: number): Field<string> {
  return utf16(n, false);
}

/** A 16-byte GUID in the mixed-endian layout of UEFI and Microsoft formats, as lower-case text. */
export const guid: Field<string> = {
  len: 16,
  get: (b, o) => formatGuid(b.subarray(o, o + 16)),
  put: (b, o, v) => b.set(encodeGuid(v), o),
};

/** A 16-byte UUID stored in textual byte order (libuuid's uuid_parse; the verity superblock), as lower-case text. */
export const uuid: Field<string> = {
  len: 16,
  get: (b, o) => formatUuid(b.subarray(o, o + 16)),
  put: (b, o, v) => b.set(parseUuid(v), o),
};

/** `count` consecutive values of `field`, as a fixed-length array (e.g. the four MBR partition records). */
export function array<T>(field: Field<T>, count: number): Field<T[]> {
  return {
    len: field.len * count,
    get: (b, o) => Array.from({ length: count }, (_, i) => field.get(b, o + i * field.len)),
    put: (b, o, v) => {
      if (v.length !== count) throw new VerityError('E_PARAM', `Expected ${count} values, got ${v.length}.`);
      v.forEach((item, i) => field.put(b, o + i * field.len, item));
    },
  };
}

/** A field at the offset a specification gives it. */
export interface Placed<T> {
  readonly offset: number;
  readonly field: Field<T>;
}

export function at<T>(offset: number, field: Field<T>): Placed<T> {
  return { offset, field };
}

type ValueOf<F> = F extends Placed<infer T> ? T : never;
/** The parsed value of a struct declared with fields `F`. */
export type StructValue<F extends Record<string, Placed<unknown>>> = { [K in keyof F]: ValueOf<F[K]> };

export interface StructOptions {
  /** The structure's full size, when the specification pads it past its last field. */
  size?: number;
  /** The code of the errors `get` raises for this structure: `E_BAD_IMAGE` unless given. */
  code?: VerityErrorCode;
}

/** A structure: named fields at fixed offsets, itself a field so structures nest. */
export interface Struct<F extends Record<string, Placed<unknown>>> extends Field<StructValue<F>> {
  readonly name: string;
  readonly fields: F;
  /** A new zero-filled buffer of `len` bytes holding `value`; bytes no field covers stay zero. */
  serialize(value: StructValue<F>): Uint8Array;
}

/**
 * Declares a structure. Offsets are checked once here: fields may not overlap nor run past `size`.
 *
 * `get` first checks that the structure fits in `bytes` (a short buffer raises the struct's code with the sizes),
 * then reads each field; a field whose value cannot be represented raises the struct's code, naming the structure
 * and the field, with the field's offset in `data`.
 */
export function struct<F extends Record<string, Placed<unknown>>>(name: string, fields: F, options: StructOptions = {}): Struct<F> {
  const entries = Object.entries(fields).sort((a, b) => a[1].offset - b[1].offset);
  let end = 0;
  for (const [key, { offset, field }] of entries) {
    if (offset < end) throw new VerityError('E_INTERNAL', `${name}: field ${key} at ${offset} overlaps the field before it.`);
    end = offset + field.len;
  }
  const len = options.size ?? end;
  if (end > len) throw new VerityError('E_INTERNAL', `${name}: fields end at ${end}, past its size ${len}.`);
  const code = options.code ?? 'E_BAD_IMAGE';

  const get = (b: Uint8Array, o: number): StructValue<F> => {
    if (!(o >= 0 && o + len <= b.length)) {
      throw new VerityError(code, `${name} needs ${len} bytes at offset ${o}; only ${Math.max(0, b.length - o)} available.`, {
        data: { expected: len, actual: Math.max(0, b.length - o), offset: o },
      });
    }
    const out: Record<string, unknown> = {};
    for (const [key, { offset, field }] of entries) {
      try {
        out[key] = field.get(b, o + offset);
      } catch (e) {
        if (!(e instanceof VerityError)) throw e;
        throw new VerityError(code, `${name}: field ${key} (offset ${offset}): ${e.message}`, {
          cause: e,
          data: { ...e.data, offset: o + offset },
        });
      }
    }
    return out as StructValue<F>;
  };
  const put = (b: Uint8Array, o: number, value: StructValue<F>): void => {
    if (!(o >= 0 && o + len <= b.length)) {
      throw new VerityError('E_INTERNAL', `${name} needs ${len} bytes at offset ${o}; the buffer has ${b.length}.`);
    }
    for (const [key, { offset, field }] of entries) {
      try {
        field.put(b, o + offset, (value as Record<string, unknown>)[key]);
      } catch (e) {
        if (!(e instanceof VerityError)) throw e;
        throw new VerityError(e.code, `${name}: field ${key}: ${e.message}`, { cause: e, data: e.data });
      }
    }
  };
  return {
    name,
    fields,
    len,
    get,
    put,
    serialize(value) {
      const out = new Uint8Array(len);
      put(out, 0, value);
      return out;
    },
  };
}
