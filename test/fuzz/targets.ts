/**
 * Fuzz targets: a seed image (test/fixtures/fuzz, README.md there says how each was made), the layout of its
 * structures, and the entry points a case runs on the mutated image, all through the library API as a user calls it.
 */
import { readFileSync } from 'node:fs';
import { crc32, deflateRawSync, gunzipSync } from 'node:zlib';
import { VerityError } from '../../src/errors.js';
import { dumpFile, formatFiles, inspectImage, verifyFiles, verifyImage } from '../../src/index.js';
import { openOperand } from '../../src/containers/operand.js';
import { renderInspect } from '../../src/report/inspect.js';
import { rawDiskLayout, superblockLayout, vhdLayout, vhdxLayout, zipLayout } from './layouts.js';
import type { Layout } from './mutate.js';

const FIXTURES = new URL('../fixtures/fuzz/', import.meta.url);

export function fixture(name: string): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL(`${name}.gz`, FIXTURES))));
}

export const ROOT_HASH = readFileSync(new URL('roothash', FIXTURES), 'latin1').trim();

/** `path(name)` is where the case's file `name` was written. */
export type PathOf = (name: string) => string;

export interface Entry {
  name: string;
  run(path: PathOf): Promise<unknown>;
}

export interface Target {
  name: string;
  /** The fixture mutated; it is written under this name. */
  seed: string;
  bytes: Uint8Array;
  layout: Layout;
  /** Fixtures written unchanged beside it. */
  companions: string[];
  /** What the mutated seed is put in before it is written (a zip around a disk image). */
  wrap?: (bytes: Uint8Array) => Uint8Array;
  /** Cases of this target per round of the schedule (`targetForCase`). */
  weight: number;
  entries: Entry[];
}

/** A result that no input may produce, found by a check of what an entry point returned. */
export class BadResult extends Error {
  override readonly name = 'BadResult';
}

const VERIFY = { engine: 'node-crypto', threads: 1, rootHash: ROOT_HASH } as const;
const FORMAT = { engine: 'node-crypto', threads: 1, salt: '5a5a5a5a5a5a5a5a', uuid: '12345678-9abc-def0-1234-56789abcdef0' } as const;
const STATUSES = new Set(['ok', 'corrupt', 'root-mismatch', 'no-verity']);

async function verify(data: string, hash: string | undefined): Promise<string> {
  const r = hash === undefined ? await verifyImage(data, VERIFY) : await verifyFiles(data, hash, VERIFY);
  if (!STATUSES.has(r.status)) throw new BadResult(`verify status ${String(r.status)}`);
  return r.status;
}

async function inspect(address: string): Promise<string> {
  const report = await inspectImage(address);
  // The text and JSON renderings format every number the image declared.
  JSON.stringify(report);
  return renderInspect(report);
}

const WINDOW = 1 << 20;
/** Sources larger than this are read at the start, the end and in between instead of whole, to keep cases short. */
const WHOLE_READ_LIMIT = 32 << 20;

/** Opens `address` and reads its data source (all of it when small), checking what every read returns. */
async function readAll(address: string): Promise<number> {
  const operand = await openOperand(address);
  try {
    const { source } = operand;
    if (!Number.isSafeInteger(source.size) || source.size < 0) throw new BadResult(`source size ${source.size}`);
    const spans: Array<[number, number]> = [];
    if (source.size <= WHOLE_READ_LIMIT) spans.push([0, source.size]);
    else for (let k = 0; k <= 8; k++) spans.push([Math.floor(((source.size - WINDOW) * k) / 8), WINDOW]);
    const buffer = new Uint8Array(WINDOW);
    let total = 0;
    for (const [start, length] of spans) {
      for (let at = start; at < start + length; ) {
        const want = buffer.subarray(0, Math.min(WINDOW, start + length - at));
        const n = await source.read(want, at);
        if (!Number.isInteger(n) || n <= 0 || n > want.length) {
          throw new BadResult(`read of ${want.length} bytes at ${at} of a ${source.size}-byte source returned ${n}`);
        }
        at += n;
        total += n;
      }
    }
    return total;
  } finally {
    await operand.close();
  }
}

/** The entry points of a whole-disk image: a GPT disk with the root and root-verity pair, in any container. */
function diskEntries(file: string): Entry[] {
  return [
    { name: 'inspect', run: (p) => inspect(p(file)) },
    { name: 'read', run: (p) => readAll(p(file)) },
    { name: 'read partition', run: (p) => readAll(`${p(file)}::root-x86-64-verity`) },
    { name: 'verify (discovered pair)', run: (p) => verify(p(file), undefined) },
    { name: 'verify partitions', run: (p) => verify(`${p(file)}::1`, `${p(file)}::2`) },
    { name: 'format partition', run: (p) => formatFiles(`${p(file)}::1`, p('format-out.img'), FORMAT) },
  ];
}

/**
 * A zip of one deflated entry, so that a disk image is read as a stream (io/sequential.ts, tree/origin-order.ts).
 * Level 1: the point is the stream, not the ratio, and an 11 MiB VHDX must deflate in a few milliseconds.
 */
function zipOf(name: string): (bytes: Uint8Array) => Uint8Array {
  const fileName = new TextEncoder().encode(name);
  return (bytes) => {
    const body = deflateRawSync(bytes, { level: 1 });
    const crc = crc32(bytes);
    const local = new DataView(new ArrayBuffer(30));
    const central = new DataView(new ArrayBuffer(46));
    const end = new DataView(new ArrayBuffer(22));
    for (const [v, sig] of [[local, 0x04034b50], [central, 0x02014b50], [end, 0x06054b50]] as const) v.setUint32(0, sig, true);
    const common = (v: DataView, at: number) => {
      v.setUint16(at, 20, true); // version needed
      v.setUint16(at + 4, 8, true); // deflated
      v.setUint32(at + 10, crc, true);
      v.setUint32(at + 14, body.length, true);
      v.setUint32(at + 18, bytes.length, true);
      v.setUint16(at + 22, fileName.length, true);
    };
    common(local, 4);
    common(central, 6);
    const cdOffset = 30 + fileName.length + body.length;
    end.setUint16(8, 1, true);
    end.setUint16(10, 1, true);
    end.setUint32(12, 46 + fileName.length, true);
    end.setUint32(16, cdOffset, true);
    const out = new Uint8Array(cdOffset + 46 + fileName.length + 22);
    out.set(new Uint8Array(local.buffer), 0);
    out.set(fileName, 30);
    out.set(body, 30 + fileName.length);
    out.set(new Uint8Array(central.buffer), cdOffset);
    out.set(fileName, cdOffset + 46);
    out.set(new Uint8Array(end.buffer), cdOffset + 46 + fileName.length);
    return out;
  };
}

function make(name: string, seed: string, layout: (bytes: Uint8Array) => Layout, entries: Entry[], companions: string[] = []): Target {
  const bytes = fixture(seed);
  return { name, seed, bytes, layout: layout(bytes), companions, entries, weight: 4 };
}

/**
 * `inner`'s image, mutated the same way, read as the deflated entry of a zip named `zip`. Every backward read
 * inflates the entry again from its start, so a case costs ~10 times one on the image itself: fewer entry points
 * (the streamed passes are those of verify and format), and a quarter of the share of cases.
 */
function zipped(name: string, inner: string, layout: (bytes: Uint8Array) => Layout, zip: string): Target {
  const bytes = fixture(inner);
  const entries = diskEntries(`${zip}::${inner}`).filter((e) => ['inspect', 'verify (discovered pair)', 'format partition'].includes(e.name));
  return { name, seed: zip, bytes, layout: layout(bytes), companions: [], entries, wrap: zipOf(inner), weight: 1 };
}

let cached: Target[] | null = null;

export function targets(): Target[] {
  cached ??= [
    make('superblock', 'hash.img', () => superblockLayout(0, 4096), [
      { name: 'dump', run: (p) => dumpFile(p('hash.img')) },
      { name: 'verify', run: (p) => verify(p('data.img'), p('hash.img')) },
      { name: 'inspect', run: (p) => inspect(p('hash.img')) },
    ], ['data.img']),
    make('gpt', 'disk.raw', (b) => rawDiskLayout(b), diskEntries('disk.raw')),
    make('vhd-fixed', 'disk-fixed.vhd', vhdLayout, diskEntries('disk-fixed.vhd')),
    make('vhd-dynamic', 'disk-dynamic.vhd', vhdLayout, diskEntries('disk-dynamic.vhd')),
    make('vhdx', 'disk.vhdx', vhdxLayout, diskEntries('disk.vhdx')),
    make('zip', 'disk.zip', zipLayout, [
      { name: 'inspect', run: (p) => inspect(p('disk.zip')) },
      { name: 'read deflated', run: (p) => readAll(`${p('disk.zip')}::data.img`) },
      { name: 'read stored', run: (p) => readAll(`${p('disk.zip')}::hash.img`) },
      { name: 'verify entries', run: (p) => verify(`${p('disk.zip')}::data.img`, `${p('disk.zip')}::hash.img`) },
      { name: 'verify disk entry', run: (p) => verify(`${p('disk.zip')}::disk.raw`, undefined) },
    ]),
    zipped('zip-vhdx', 'disk.vhdx', vhdxLayout, 'vhdx.zip'),
    zipped('zip-vhd', 'disk-dynamic.vhd', vhdLayout, 'vhd.zip'),
    make('zip64', 'disk64.zip', zipLayout, [
      { name: 'inspect', run: (p) => inspect(p('disk64.zip')) },
      { name: 'read deflated', run: (p) => readAll(`${p('disk64.zip')}::data.img`) },
      { name: 'dump stored', run: (p) => dumpFile(`${p('disk64.zip')}::hash.img`) },
      { name: 'verify entries', run: (p) => verify(`${p('disk64.zip')}::data.img`, `${p('disk64.zip')}::hash.img`) },
    ]),
  ];
  return cached;
}

/**
 * The target of case `index` when fuzzing `names`: rounds in which each target has `weight` cases, interleaved,
 * so that any run of cases spreads over all targets.
 */
export function targetForCase(names: readonly string[], index: number): Target {
  const chosen = names.map(targetNamed);
  const rounds = Math.max(...chosen.map((t) => t.weight));
  const order = Array.from({ length: rounds }, (_, r) => chosen.filter((t) => t.weight > r)).flat();
  return order[index % order.length]!;
}

export function targetNamed(name: string): Target {
  const t = targets().find((x) => x.name === name);
  if (!t) throw new Error(`No fuzz target "${name}"; there are ${targets().map((x) => x.name).join(', ')}.`);
  return t;
}

/** Whether an error is an acceptable end of a case: a VerityError, but not one that reports a bug. */
export function acceptable(e: unknown): e is VerityError {
  return e instanceof VerityError && e.code !== 'E_INTERNAL' && e.message.length > 0;
}
