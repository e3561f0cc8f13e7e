/**
 * A structure-aware mutator. Blind bit flips mostly die at the first signature or checksum; the mutations here aim at
 * the fields a reader trusts (sizes, counts, offsets) and overwrite them with the values that break arithmetic, and
 * a layout's fixups recompute checksums afterwards so that a mutated field gets past validation into the code
 * that uses it.
 */
import type { Rng } from '../support/rng.js';

export interface Field {
  /** What the field is, for the mutation log ("vhdx header 1 logOffset"). */
  name: string;
  at: number;
  /** Bytes; 2, 4 and 8 are written as integers, any other size as raw bytes (GUIDs, signatures, names). */
  size: number;
  littleEndian: boolean;
}

/** A byte range worth mutating as a whole (a structure, compressed data). */
export interface Region {
  name: string;
  at: number;
  length: number;
}

export interface Fixup {
  name: string;
  apply(bytes: Uint8Array): void;
}

export interface Layout {
  fields: Field[];
  regions: Region[];
  /** Checksum recomputations, applied in order (the GPT entry array CRC before the header CRC that covers it). */
  fixups: Fixup[];
}

export interface Mutated {
  bytes: Uint8Array;
  /** One line per mutation, to read a finding without re-running it. */
  log: string[];
}

const BOUNDARY_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];

/** Values that break size arithmetic: zero, one, sign and width boundaries, and beyond-safe-integer values. */
const INTERESTING: readonly bigint[] = [
  0n, 1n, 2n, 3n, 7n, 8n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x1ffn, 0x200n, 0x1000n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x100000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 40n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n,
  2n ** 63n, 2n ** 64n - 1n,
];

function writeInt(bytes: Uint8Array, f: Field, value: bigint): void {
  const masked = value & ((1n << BigInt(8 * f.size)) - 1n);
  for (let i = 0; i < f.size; i++) {
    const byte = Number((masked >> BigInt(8 * i)) & 0xffn);
    bytes[f.littleEndian ? f.at + i : f.at + f.size - 1 - i] = byte;
  }
}

function readInt(bytes: Uint8Array, f: Field): bigint {
  let v = 0n;
  for (let i = 0; i < f.size; i++) {
    const byte = BigInt(bytes[f.littleEndian ? f.at + i : f.at + f.size - 1 - i] ?? 0);
    v |= byte << BigInt(8 * i);
  }
  return v;
}

/** A value for an integer field: an interesting constant, a neighbour of the current value, or one scaled from it. */
function pickValue(rng: Rng, current: bigint, fileSize: number): bigint {
  switch (rng.int(0, 5)) {
    case 0:
    case 1:
      return rng.pick(INTERESTING);
    case 2:
      return current + BigInt(rng.pick([-2, -1, 1, 2, 8, -8, 512, -512, 4096]));
    case 3:
      return current * BigInt(rng.pick([2, 16, 256, 65536]));
    case 4:
      // Offsets and sizes that land just inside, at and past the end of the file.
      return BigInt(fileSize + rng.pick([-4096, -512, -1, 0, 1, 512, 1 << 20]));
    default:
      return BigInt(rng.u32()) | (rng.chance(0.3) ? BigInt(rng.u32()) << 32n : 0n);
  }
}

function mutateField(bytes: Uint8Array, f: Field, rng: Rng, fileSize: number): string {
  if (f.at + f.size > bytes.length) return `${f.name}: beyond the end, skipped`;
  if (f.size === 2 || f.size === 4 || f.size === 8) {
    const before = readInt(bytes, f);
    const value = pickValue(rng, before, fileSize);
    writeInt(bytes, f, value);
    return `${f.name} @${f.at} (u${8 * f.size} ${f.littleEndian ? 'LE' : 'BE'}): ${before} -> ${readInt(bytes, f)}`;
  }
  if (rng.chance(0.3)) {
    bytes.fill(rng.pick([0, 0xff]), f.at, f.at + f.size);
    return `${f.name} @${f.at}: filled`;
  }
  const at = f.at + rng.int(0, f.size - 1);
  bytes[at] = rng.chance(0.5) ? rng.pick(BOUNDARY_BYTES) : bytes[at]! ^ (1 << rng.int(0, 7));
  return `${f.name} @${f.at}: byte ${at} -> ${bytes[at]}`;
}

/** A position, in a region half of the time (where the structures are), anywhere otherwise. */
function somewhere(rng: Rng, layout: Layout, size: number): { at: number; where: string } {
  if (layout.regions.length > 0 && rng.chance(0.6)) {
    const r = rng.pick(layout.regions);
    return { at: Math.min(size - 1, r.at + rng.int(0, Math.max(0, r.length - 1))), where: r.name };
  }
  return { at: rng.int(0, size - 1), where: 'file' };
}

type Op = 'field' | 'bitflip' | 'byte' | 'truncate' | 'extend' | 'duplicate' | 'delete';
const OPS: readonly Op[] = ['field', 'bitflip', 'byte', 'truncate', 'extend', 'duplicate', 'delete'];
const WEIGHTS = [10, 3, 3, 1, 1, 1, 1];

function applyOne(bytes: Uint8Array, layout: Layout, rng: Rng, log: string[]): Uint8Array {
  if (bytes.length === 0) return new Uint8Array(rng.int(1, 64));
  const op = layout.fields.length > 0 ? rng.weighted(OPS, WEIGHTS) : rng.weighted(OPS.slice(1), WEIGHTS.slice(1));
  switch (op) {
    case 'field': {
      log.push(mutateField(bytes, rng.pick(layout.fields), rng, bytes.length));
      return bytes;
    }
    case 'bitflip': {
      const { at, where } = somewhere(rng, layout, bytes.length);
      const bit = rng.int(0, 7);
      bytes[at]! ^= 1 << bit;
      log.push(`bit ${bit} of byte ${at} (${where}) flipped`);
      return bytes;
    }
    case 'byte': {
      const { at, where } = somewhere(rng, layout, bytes.length);
      bytes[at] = rng.pick(BOUNDARY_BYTES);
      log.push(`byte ${at} (${where}) = ${bytes[at]}`);
      return bytes;
    }
    case 'truncate': {
      // Cutting inside or right after a structure finds more than a uniform cut in the payload.
      const near = rng.chance(0.7) && layout.fields.length > 0 ? rng.pick(layout.fields).at + rng.int(-8, 8) : rng.int(0, bytes.length);
      const length = Math.max(0, Math.min(bytes.length - 1, near));
      log.push(`truncated to ${length} bytes`);
      return bytes.slice(0, length);
    }
    case 'extend': {
      const extra = rng.logInt(1, 1 << 20);
      const out = new Uint8Array(bytes.length + extra);
      out.set(bytes);
      if (rng.chance(0.5)) for (let i = bytes.length; i < out.length; i += rng.int(1, 512)) out[i] = rng.int(0, 255);
      log.push(`extended by ${extra} bytes`);
      return out;
    }
    case 'duplicate': {
      const from = somewhere(rng, layout, bytes.length).at;
      const length = Math.min(rng.logInt(1, 65536), bytes.length - from);
      const to = somewhere(rng, layout, bytes.length).at;
      const chunk = bytes.slice(from, from + length);
      if (rng.chance(0.5)) {
        bytes.set(chunk.subarray(0, bytes.length - to), to);
        log.push(`${length} bytes at ${from} copied over ${to}`);
        return bytes;
      }
      const out = new Uint8Array(bytes.length + length);
      out.set(bytes.subarray(0, to));
      out.set(chunk, to);
      out.set(bytes.subarray(to), to + length);
      log.push(`${length} bytes at ${from} inserted at ${to}`);
      return out;
    }
    case 'delete': {
      const { at } = somewhere(rng, layout, bytes.length);
      const length = Math.min(rng.logInt(1, 65536), bytes.length - at);
      const out = new Uint8Array(bytes.length - length);
      out.set(bytes.subarray(0, at));
      out.set(bytes.subarray(at + length), at);
      log.push(`${length} bytes at ${at} deleted`);
      return out;
    }
  }
}

/** 1 to 4 mutations of a copy of `seed`; then, half of the time, the layout's checksums recomputed. */
export function mutate(seed: Uint8Array, layout: Layout, rng: Rng): Mutated {
  const log: string[] = [];
  let bytes: Uint8Array = seed.slice();
  const count = rng.weighted([1, 2, 3, 4], [8, 4, 2, 1]);
  for (let i = 0; i < count; i++) bytes = applyOne(bytes, layout, rng, log);
  if (layout.fixups.length > 0 && rng.chance(0.5)) {
    for (const fix of layout.fixups) fix.apply(bytes);
    log.push(`checksums recomputed: ${layout.fixups.map((f) => f.name).join(', ')}`);
  }
  return { bytes, log };
}
