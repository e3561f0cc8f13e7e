/**
 * Hostile zip archives, written byte by byte here (local headers, central directory, end records, ZIP64 records) so
 * that every field can lie. Each must end in a VerityError with a fitting code and exit 4 from the CLI, without a
 * stack trace, in bounded time and memory; or, for a bomb whose lie is never read, in the correct result. Every case
 * has a well-formed counterpart built the same way that must verify, so a broken builder cannot pass a test.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDeflateRaw, deflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { VerityError } from '../../src/errors.js';
import { crc32 } from '../../src/binary/crc32.js';
import { formatFiles, inspectImage, verifyFiles } from '../../src/index.js';
import { expectFailure, runCaptured, spawnBuiltCli } from '../support/cli-harness.js';
import { MemoryWatch } from '../fuzz/guard.js';
import { ROOT_HASH, fixture } from '../fuzz/targets.js';

const DATA = fixture('data.img');
const HASH = fixture('hash.img');
const MiB = 1 << 20;

const work = mkdtempSync(join(tmpdir(), 'verity-zip-hostile-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let files = 0;

// ---------------------------------------------------------------------------------------------------------------------
// A zip writer whose every field can be overridden (APPNOTE.TXT 6.3.10, §4.3)

interface Header {
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  uncompressedSize: number;
  nameLength: number;
  name: Uint8Array;
  localOffset: number;
}

interface Spec {
  name: string;
  data: Uint8Array;
  /** 0 stored (default), 8 deflated; any other number stores `data` under that method. */
  method?: number;
  /** The bytes written as the entry's data (default: `data`, deflated for method 8). */
  body?: Uint8Array;
  flags?: number;
  /** Put sizes and offset in ZIP64 extra fields even when they fit in 32 bits. */
  zip64?: boolean;
  /** A data descriptor after the data (flag bit 3), with zero sizes and CRC in the local header. */
  descriptor?: boolean;
  central?: Partial<Header>;
  local?: Partial<Header>;
}

interface Options {
  eocd?: Partial<{ entries: number; cdSize: number; cdOffset: number }>;
  /** Write ZIP64 end records; the fields given replace the true ones. */
  zip64?: Partial<{ locatorOffset: bigint; entries: bigint; cdOffset: bigint }>;
  /** Rewrites the list of central records (to duplicate or drop some). */
  records?: (records: Uint8Array[], headers: Header[]) => Uint8Array[];
}

const enc = new TextEncoder();
const M32 = 0xffffffff;

function le(size: 2 | 4 | 8, value: number | bigint): Uint8Array {
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  if (size === 2) v.setUint16(0, Number(value), true);
  else if (size === 4) v.setUint32(0, Number(value), true);
  else v.setBigUint64(0, BigInt(value), true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function zip64Extra(values: number[]): Uint8Array {
  return values.length === 0 ? new Uint8Array(0) : concat([le(2, 1), le(2, 8 * values.length), ...values.map((v) => le(8, v))]);
}

function buildZip(specs: Spec[], options: Options = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const headers: Header[] = [];
  let at = 0;
  for (const s of specs) {
    const method = s.method ?? 0;
    const body = s.body ?? (method === 8 ? deflateRawSync(s.data) : s.data);
    const flags = (s.flags ?? 0) | (s.descriptor ? 8 : 0) | 0x800;
    const name = enc.encode(s.name);
    const truth: Header = { method, flags, crc: crc32(s.data), compressedSize: body.length, uncompressedSize: s.data.length, nameLength: name.length, name, localOffset: at };
    const c = { ...truth, ...s.central };
    const l = { ...truth, ...s.local };
    headers.push(c);
    const big = (v: number) => s.zip64 === true || v >= M32;
    // Local header: both sizes go to the ZIP64 field when either does (APPNOTE §4.5.3).
    const localZip64 = !s.descriptor && (big(l.compressedSize) || big(l.uncompressedSize));
    const localExtra = localZip64 ? zip64Extra([l.uncompressedSize, l.compressedSize]) : new Uint8Array(0);
    const hidden = s.descriptor ? 0 : undefined;
    parts.push(concat([
      le(4, 0x04034b50), le(2, 45), le(2, l.flags), le(2, l.method), le(2, 0), le(2, 0x21),
      le(4, hidden ?? l.crc), le(4, hidden ?? (localZip64 ? M32 : l.compressedSize)), le(4, hidden ?? (localZip64 ? M32 : l.uncompressedSize)),
      le(2, l.nameLength), le(2, localExtra.length), l.name, localExtra,
    ]));
    parts.push(body);
    at += parts.at(-2)!.length + body.length;
    if (s.descriptor) {
      parts.push(concat([le(4, 0x08074b50), le(4, l.crc), le(4, l.compressedSize), le(4, l.uncompressedSize)]));
      at += 16;
    }
  }
  const records = headers.map((c, i) => {
    const s = specs[i]!;
    const big = (v: number) => s.zip64 === true || v >= M32;
    const values = [c.uncompressedSize, c.compressedSize, c.localOffset].filter(big);
    const extra = zip64Extra(values);
    return concat([
      le(4, 0x02014b50), le(2, 0x031e), le(2, 45), le(2, c.flags), le(2, c.method), le(2, 0), le(2, 0x21), le(4, c.crc),
      le(4, big(c.compressedSize) ? M32 : c.compressedSize), le(4, big(c.uncompressedSize) ? M32 : c.uncompressedSize),
      le(2, c.nameLength), le(2, extra.length), le(2, 0), le(2, 0), le(2, 0), le(4, 0),
      le(4, big(c.localOffset) ? M32 : c.localOffset), c.name, extra,
    ]);
  });
  const listed = options.records ? options.records(records, headers) : records;
  const directory = concat(listed);
  const cdOffset = at;
  const count = listed.length;
  const tail: Uint8Array[] = [directory];
  if (options.zip64) {
    const recordAt = cdOffset + directory.length;
    tail.push(concat([
      le(4, 0x06064b50), le(8, 44), le(2, 45), le(2, 45), le(4, 0), le(4, 0),
      le(8, options.zip64.entries ?? BigInt(count)), le(8, options.zip64.entries ?? BigInt(count)),
      le(8, directory.length), le(8, options.zip64.cdOffset ?? BigInt(cdOffset)),
    ]));
    tail.push(concat([le(4, 0x07064b50), le(4, 0), le(8, options.zip64.locatorOffset ?? BigInt(recordAt)), le(4, 1)]));
  }
  const z64 = Boolean(options.zip64);
  tail.push(concat([
    le(4, 0x06054b50), le(2, 0), le(2, 0),
    le(2, z64 ? 0xffff : options.eocd?.entries ?? count), le(2, z64 ? 0xffff : options.eocd?.entries ?? count),
    le(4, options.eocd?.cdSize ?? directory.length), le(4, z64 ? M32 : options.eocd?.cdOffset ?? cdOffset), le(2, 0),
  ]));
  return concat([...parts, ...tail]);
}

function save(bytes: Uint8Array): string {
  const path = join(work, `z${files++}.zip`);
  writeFileSync(path, bytes);
  return path;
}

const DATA_ENTRY: Spec = { name: 'data.img', data: DATA, method: 8 };
const HASH_ENTRY: Spec = { name: 'hash.img', data: HASH };

/** `verity verify zip::data.img zip::hash.img <root>` on the archive of `specs`. */
async function verifyZip(specs: Spec[], options: Options = {}, entries: [string, string] = ['data.img', 'hash.img']) {
  const z = save(buildZip(specs, options));
  return runCaptured(['verify', `${z}::${entries[0]}`, `${z}::${entries[1]}`, ROOT_HASH]);
}

async function expectVerified(specs: Spec[], options: Options = {}, entries?: [string, string]): Promise<void> {
  const r = await verifyZip(specs, options, entries);
  expect(r.code, r.stderr).toBe(0);
}

async function expectBadInput(specs: Spec[], options: Options, message: RegExp, entries?: [string, string]): Promise<void> {
  expectFailure(await verifyZip(specs, options, entries), 4, message);
}

/** Runs `fn` under the allocation watch of the fuzzer; returns its result or error, and the live memory growth. */
async function watched<T>(fn: () => Promise<T>): Promise<{ value: T | VerityError; growth: number; ms: number }> {
  const watch = new MemoryWatch(64 * MiB);
  const start = performance.now();
  watch.start();
  let value: T | VerityError;
  try {
    value = await fn();
  } catch (e) {
    if (!(e instanceof VerityError)) throw e;
    value = e;
  }
  return { value, growth: watch.stop(), ms: performance.now() - start };
}

/** `mib` MiB of zeros after `head`, deflated by streaming (the inflated bomb is never held in memory). */
async function deflatedBomb(head: Uint8Array, mib: number): Promise<Uint8Array> {
  const deflate = createDeflateRaw({ level: 9 });
  const chunks: Buffer[] = [];
  deflate.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => deflate.on('end', resolve));
  deflate.write(head);
  const zeros = new Uint8Array(MiB);
  for (let i = 0; i < mib; i++) if (!deflate.write(zeros)) await new Promise((r) => deflate.once('drain', r));
  deflate.end();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

// ---------------------------------------------------------------------------------------------------------------------

describe('the zip writer of this test', () => {
  it('writes archives that verify: deflated and stored entries, ZIP64 fields and records, data descriptors', async () => {
    await expectVerified([DATA_ENTRY, HASH_ENTRY]);
    await expectVerified([{ ...DATA_ENTRY, zip64: true }, { ...HASH_ENTRY, zip64: true }], { zip64: {} });
    await expectVerified([{ ...DATA_ENTRY, descriptor: true }, { ...HASH_ENTRY, descriptor: true }]);
  });
});

describe('zip bombs', () => {
  it('a deflated entry that inflates to 128 MiB more than it declares: an error once its declared end is reached, with little inflated', async () => {
    const body = await deflatedBomb(DATA, 128);
    const z = save(buildZip([{ ...DATA_ENTRY, body }, HASH_ENTRY]));
    // The declared 512 KiB are the true data, but the entry lies about its size: whoever reads to its declared end
    // learns that, at the cost of one more inflated chunk.
    const v = await watched(() => verifyFiles(`${z}::data.img`, `${z}::hash.img`, { rootHash: ROOT_HASH, engine: 'node-crypto', threads: 1 }));
    expect(v.value).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/holds more than the \d+ bytes it declares/) });
    // Found mid-pass by the stream under the entry, which does not know the address: the operand adds it.
    expect((v.value as VerityError).data).toEqual({ path: `${z}::data.img` });
    expect(v.growth).toBeLessThan(64 * MiB);
    expect(v.ms).toBeLessThan(10_000);
    // inspect reads only the entry's start, but here that first inflated chunk already reaches the declared end.
    const i = await watched(() => inspectImage(`${z}::data.img`));
    expect(i.value).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/holds more than the \d+ bytes it declares/) });
    expect(i.growth).toBeLessThan(64 * MiB);
  });

  it('declaring a size that ends inside an inflated chunk, the first byte past it is an error', async () => {
    const declared = DATA.length + 12345;
    const body = await deflatedBomb(DATA, 128);
    const z = save(buildZip([{ ...DATA_ENTRY, data: new Uint8Array(declared), body }, HASH_ENTRY]));
    const out = join(work, 'bomb-format.img');
    const f = await watched(() => formatFiles(`${z}::data.img`, out, { engine: 'node-crypto', threads: 1 }));
    expect(f.value).toBeInstanceOf(VerityError);
    expect(f.value).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(/holds more than the 536633 bytes it declares|too many bytes in the stream/) });
    expect(f.growth).toBeLessThan(64 * MiB);
    expectFailure(await runCaptured(['format', `${z}::data.img`, out]), 4, /holds more than the 536633 bytes it declares|too many bytes in the stream/);
  });

  it('a declared size of 2^40 bytes from a few KiB of deflate is refused before anything is read', async () => {
    const lie: Spec = { ...DATA_ENTRY, central: { uncompressedSize: 2 ** 40 }, local: { uncompressedSize: 2 ** 40 } };
    const z = save(buildZip([lie, HASH_ENTRY]));
    const message = /declares 1099511627776 bytes from \d+ deflated bytes; deflate expands at most 1032:1/;
    for (const run of <Array<() => Promise<unknown>>>[
      () => verifyFiles(`${z}::data.img`, `${z}::hash.img`, { rootHash: ROOT_HASH, engine: 'node-crypto', threads: 1 }),
      () => inspectImage(`${z}::data.img`),
      () => formatFiles(`${z}::data.img`, join(work, 'big.img'), { engine: 'node-crypto', threads: 1 }),
    ]) {
      const r = await watched(run);
      expect(r.value).toMatchObject({ code: 'E_BAD_IMAGE', message: expect.stringMatching(message) });
      expect(r.ms).toBeLessThan(5_000);
    }
    const cli = spawnBuiltCli(['format', `${z}::data.img`, join(work, 'big.img')]);
    expectFailure(cli, 4, message);
    // The same archive with the true size (in ZIP64 fields, as the lie was) verifies.
    await expectVerified([{ ...DATA_ENTRY, zip64: true }, HASH_ENTRY]);
  });

  it('a stored entry of 2^40 bytes in a small file runs past its end', async () => {
    const lie: Spec = { ...HASH_ENTRY, central: { compressedSize: 2 ** 40, uncompressedSize: 2 ** 40 }, local: { compressedSize: 2 ** 40, uncompressedSize: 2 ** 40 } };
    await expectBadInput([DATA_ENTRY, lie], {}, /file data overflows file bounds/);
  });
});

describe('local headers that disagree with the central directory', () => {
  const cases: Array<[string, Spec, RegExp]> = [
    ['uncompressed size', { ...DATA_ENTRY, local: { uncompressedSize: DATA.length - 4096 } }, /uncompressed size 520192 there, 524288 in the directory/],
    ['compressed size', { ...DATA_ENTRY, local: { compressedSize: 100 } }, /compressed size 100 there/],
    ['compression method', { ...DATA_ENTRY, local: { method: 0 } }, /compression method 0 there, 8 in the directory/],
    ['CRC-32', { ...DATA_ENTRY, local: { crc: 0x12345678 } }, /CRC-32 305419896 there/],
    ['name', { ...DATA_ENTRY, local: { name: enc.encode('evil.img') } }, /name "evil\.img" there, "data\.img" in the directory/],
    ['ZIP64 sizes', { ...DATA_ENTRY, zip64: true, local: { uncompressedSize: DATA.length * 2 } }, /uncompressed size 1048576 there/],
  ];
  for (const [field, spec, message] of cases) {
    it(`${field}: refused (E_BAD_IMAGE, exit 4)`, async () => {
      await expectBadInput([spec, HASH_ENTRY], {}, message);
    });
  }

  it('a data descriptor entry has no sizes in its local header, and verifies', async () => {
    await expectVerified([{ ...DATA_ENTRY, descriptor: true }, HASH_ENTRY]);
  });

  it('a local name length off by one or absurd: the name differs, or the data runs past the end', async () => {
    await expectBadInput([{ ...DATA_ENTRY, local: { nameLength: 9 } }, HASH_ENTRY], {}, /disagrees with the central directory: name/);
    await expectBadInput([DATA_ENTRY, { ...HASH_ENTRY, local: { nameLength: 0xffff } }], {}, /file data overflows file bounds|damaged/);
  });
});

describe('sizes and offsets that run off the archive', () => {
  it('a deflated entry whose compressed size runs past the end of the file', async () => {
    await expectBadInput([{ ...DATA_ENTRY, central: { compressedSize: 50 * MiB } }, HASH_ENTRY], {}, /file data overflows file bounds/);
  });

  it('a truncated file: the central directory cut off, the end record missing', async () => {
    const good = buildZip([DATA_ENTRY, HASH_ENTRY]);
    const cdOffset = new DataView(good.buffer).getUint32(good.length - 6, true);
    for (const cut of [cdOffset + 30, good.length - 22, good.length - 1, 100]) {
      const z = save(good.subarray(0, cut));
      expectFailure(await runCaptured(['verify', `${z}::data.img`, `${z}::hash.img`, ROOT_HASH]), 4, /not a readable zip archive|ended early|damaged/);
    }
  });

  it('an end record whose entry count lies: more records than there are is damage, fewer hides an entry', async () => {
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { entries: 3 } }, /zip directory of .* is damaged/);
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { entries: 0xffff } }, /zip directory of .* is damaged/);
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { entries: 1 } }, /has no entry "hash\.img"\. It holds: data\.img/);
  });

  it('an end record whose directory offset lies: at a local header, past the end, at 2^32 - 1', async () => {
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { cdOffset: 0 } }, /invalid central directory file header signature/);
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { cdOffset: 2 * MiB } }, /lies outside the \d+-byte archive/);
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { eocd: { cdOffset: 0xfffffffe } }, /lies outside the \d+-byte archive/);
  });

  it('a central record with an absurd name length', async () => {
    await expectBadInput([DATA_ENTRY, { ...HASH_ENTRY, central: { nameLength: 0xffff } }], {}, /zip directory of .* is damaged/);
  });

  it('ZIP64: a locator pointing past the end of the file or at 2^64 - 1, an entry count of 2^64 - 1', async () => {
    const entries = [{ ...DATA_ENTRY, zip64: true }, { ...HASH_ENTRY, zip64: true }];
    await expectVerified(entries, { zip64: {} });
    await expectBadInput(entries, { zip64: { locatorOffset: 10n * BigInt(MiB) } }, /not a readable zip archive: a zip structure at bytes \d+\.\.\d+ lies outside/);
    await expectBadInput(entries, { zip64: { locatorOffset: 2n ** 64n - 1n } }, /not a readable zip archive: a zip structure .* lies outside/);
    await expectBadInput(entries, { zip64: { entries: 2n ** 64n - 1n } }, /zip directory of .* is damaged/);
    await expectBadInput(entries, { zip64: { cdOffset: 2n ** 63n } }, /lies outside/);
  });
});

describe('entries that cannot be read', () => {
  it('an encrypted entry (traditional PKWARE encryption) is unsupported; strong encryption makes the directory unreadable', async () => {
    const encrypted: Spec = { ...HASH_ENTRY, flags: 1, body: concat([new Uint8Array(12), HASH]), central: { compressedSize: HASH.length + 12 }, local: { compressedSize: HASH.length + 12 } };
    await expectBadInput([DATA_ENTRY, encrypted], {}, /zip entry hash\.img is encrypted/);
    const strong: Spec = { ...HASH_ENTRY, flags: 0x41, body: concat([new Uint8Array(12), HASH]), central: { compressedSize: HASH.length + 12 }, local: { compressedSize: HASH.length + 12 } };
    await expectBadInput([DATA_ENTRY, strong], {}, /strong encryption is not supported/);
  });

  for (const method of [1, 12, 14, 93, 99]) {
    it(`compression method ${method} is unsupported, naming the method`, async () => {
      await expectBadInput([{ ...DATA_ENTRY, method }, HASH_ENTRY], {}, new RegExp(`uses compression method ${method}; only stored and deflated`));
    });
  }
});

describe('overlapping entries', () => {
  it('two central records pointing at one local header: the second name is not the one in the header', async () => {
    const duplicate = (records: Uint8Array[], headers: Header[]) => {
      const copy = buildZip([{ ...HASH_ENTRY, name: 'copy.img', central: { localOffset: headers[1]!.localOffset } }]);
      const view = new DataView(copy.buffer);
      const at = view.getUint32(copy.length - 6, true);
      return [...records, copy.subarray(at, at + view.getUint32(copy.length - 10, true))];
    };
    await expectVerified([DATA_ENTRY, HASH_ENTRY], { records: duplicate });
    await expectBadInput([DATA_ENTRY, HASH_ENTRY], { records: duplicate }, /name "hash\.img" there, "copy\.img" in the directory/, ['data.img', 'copy.img']);
  });

  it('a stored entry whose data runs into the central directory', async () => {
    const into = HASH.length + 46;
    const lie: Spec = { ...HASH_ENTRY, central: { compressedSize: into, uncompressedSize: into }, local: { compressedSize: into, uncompressedSize: into } };
    await expectBadInput([DATA_ENTRY, lie], {}, /overlaps the central directory at byte \d+/);
  });

  it("a deflated entry whose data covers the next entry's local header (overlapping-file bomb)", async () => {
    const size = deflateRawSync(DATA).length + 100;
    await expectBadInput([{ ...DATA_ENTRY, central: { compressedSize: size }, local: { compressedSize: size } }, HASH_ENTRY], {}, /overlaps the next entry at byte \d+/);
  });
});

describe('names that carry control characters', () => {
  it('an entry name with an escape sequence and a line break reaches the terminal as \\u escapes, and JSON keeps it exact', async () => {
    const name = 'x\u001b[2J\nhash.img';
    const path = save(buildZip([DATA_ENTRY, { ...HASH_ENTRY, name }]));
    const text = await runCaptured(['inspect', path]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('x\\u001b[2J\\u000ahash.img');
    expect(text.stdout).not.toMatch(/\u001b/);
    const json = await runCaptured(['inspect', path, '--json']);
    expect(JSON.parse(json.stdout).zipEntries.map((e: { name: string }) => e.name)).toContain(name);
    const missing = await runCaptured(['verify', `${path}::data.img`, `${path}::nothing`, ROOT_HASH]);
    expectFailure(missing, 4, /has no entry "nothing"\. It holds: data\.img, x\\u001b\[2J\\u000ahash\.img/);
  });
});
