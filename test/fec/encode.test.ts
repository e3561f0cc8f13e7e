/**
 * The streaming FEC encoder against a literal reading of veritysetup's interleaving (FEC_interleave: the physical
 * offset of RS offset `off` is off / rsn + (off % rsn) · rounds · B), one codeword at a time, with any group size:
 * the same parity, written front to back from the FEC offset, each covered block read once.
 */
import { describe, expect, it } from 'vitest';
import { encodeFec } from '../../src/fec/encode.js';
import { computeFecGeometry, type FecGeometry, type FecGeometryInput } from '../../src/fec/geometry.js';
import { createRsEncoder } from '../../src/fec/rs.js';
import { bytesSource, MemorySink, type ByteSource, type FileSpan } from '../../src/io/source.js';
import { Rng } from '../support/rng.js';

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

/** veritysetup's loop, transcribed: for each round and byte, gather the rsn interleaved bytes and encode them. */
function referenceParity(g: FecGeometry, data: Uint8Array, hash: Uint8Array): Uint8Array {
  const B = g.blockSize;
  const area = new Uint8Array(g.coveredBlocks * B);
  area.set(data.subarray(0, g.dataBlocks * B));
  const hashPart = hash.subarray(g.hashStartBlock * B, (g.hashStartBlock + g.hashBlocks) * B);
  area.set(hashPart, g.dataBlocks * B); // a short hash device leaves zeros
  const out = new Uint8Array(g.parityBytes);
  const one = createRsEncoder(g.roots, 1);
  const message = new Uint8Array(g.rsn);
  for (let n = 0; n < g.rounds; n++) {
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < g.rsn; i++) {
        const off = n * g.rsn * B + i;
        const physical = Math.floor(off / g.rsn) + (off % g.rsn) * g.rounds * B;
        message[i] = physical < area.length ? area[physical + b]! : 0;
      }
      one.encodeRound(message, out.subarray((n * B + b) * g.roots, (n * B + b + 1) * g.roots));
    }
  }
  return out;
}

/** A source that counts the bytes read at each position. */
function counting(bytes: Uint8Array): ByteSource & { reads: Map<number, number>; calls: number } {
  const inner = bytesSource(bytes);
  const reads = new Map<number, number>();
  const self = {
    size: bytes.length,
    reads,
    calls: 0,
    async read(dst: Uint8Array, position: number) {
      self.calls++;
      const n = await inner.read(dst, position);
      for (let p = position; p < position + n; p++) reads.set(p, (reads.get(p) ?? 0) + 1);
      return n;
    },
  };
  return self;
}

interface Setup {
  input: FecGeometryInput;
  data: Uint8Array;
  hash: Uint8Array;
}

function setup(seed: number, over: Partial<FecGeometryInput> & { hashBytes?: number } = {}): Setup {
  const rng = new Rng(seed);
  const B = over.dataBlockSize ?? 512;
  const input: FecGeometryInput = {
    roots: 2,
    dataBlockSize: B,
    hashBlockSize: B,
    dataBlocks: 700,
    hashStartBlock: 1,
    fecOffset: 0,
    onHashDevice: false,
    hashDeviceSize: 40 * B,
    ...over,
  };
  const data = randomBytes(rng, input.dataBlocks * B + 100);
  const hash = randomBytes(rng, over.hashBytes ?? input.hashDeviceSize);
  return { input, data, hash };
}

describe('encodeFec', () => {
  const cases: [string, Partial<FecGeometryInput> & { hashBytes?: number }][] = [
    ['2 roots, 512-byte blocks', {}],
    ['3 roots', { roots: 3 }],
    ['24 roots, the covered area a whole number of rounds', { roots: 24, dataBlocks: 3 * 231 - 39, hashDeviceSize: 40 * 512 }],
    ['8 roots, 4096-byte blocks, superblock and gap before the tree', { roots: 8, dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 300, hashStartBlock: 3, hashDeviceSize: 20 * 4096 }],
    ['one data block and an empty hash device', { dataBlocks: 1, hashDeviceSize: 0 }],
    ['parity on the hash device, past a gap the device does not hold yet (zeros)', { onHashDevice: true, fecOffset: 60 * 512, hashBytes: 45 * 512 }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: same parity as veritysetup's loop, for every group size`, async () => {
      const { input, data, hash } = setup(name.length, over);
      const g = computeFecGeometry(input);
      const expected = referenceParity(g, data, hash);
      for (const groupBytes of [1, g.rsn * g.blockSize * 2, g.rsn * g.blockSize * 3 + 1, 1 << 30]) {
        const sink = new MemorySink();
        await encodeFec(g, { data: bytesSource(data), hash: bytesSource(hash) }, sink, { groupBytes });
        expect(sink.bytes.length, `groupBytes ${groupBytes}`).toBe(g.fecOffset + g.parityBytes);
        expect(sink.bytes.subarray(g.fecOffset), `groupBytes ${groupBytes}`).toEqual(expected);
      }
    });
  }

  it('reads every covered byte exactly once, nothing else, in rsn reads per group (split where the data ends)', async () => {
    const { input, data, hash } = setup(5, { dataBlocks: 1000, hashStartBlock: 2, hashDeviceSize: 60 * 512 });
    const g = computeFecGeometry(input);
    const d = counting(data);
    const h = counting(hash);
    const groupRounds = 2;
    await encodeFec(g, { data: d, hash: h }, new MemorySink(), { groupBytes: groupRounds * g.rsn * g.blockSize });
    expect(d.reads.size).toBe(g.dataBlocks * g.blockSize);
    expect([...d.reads.values()].every((n) => n === 1)).toBe(true);
    expect(Math.min(...h.reads.keys())).toBe(g.hashStartBlock * g.blockSize);
    expect(h.reads.size).toBe(g.hashBlocks * g.blockSize);
    expect([...h.reads.values()].every((n) => n === 1)).toBe(true);
    const groups = Math.ceil(g.rounds / groupRounds);
    expect(d.calls + h.calls).toBeLessThanOrEqual(groups * g.rsn + groups);
  });

  it('data that lies in a file is read through readSpans, never through read, to the same parity', async () => {
    const { input, data, hash } = setup(11, { dataBlocks: 700, hashStartBlock: 1, hashDeviceSize: 30 * 512 });
    const g = computeFecGeometry(input);
    // "File 3" holds the data at offset 100; readSpans copies from it.
    const file = new Uint8Array(100 + data.length);
    file.set(data, 100);
    let reads = 0;
    const spanned: ByteSource = {
      size: data.length,
      read: async () => (reads++, 0),
      fileSpans: (offset, length) => [{ fd: 3, at: 100 + offset, length, path: 'data' }],
    };
    let copied = 0;
    const readSpans = (spans: readonly FileSpan[], dst: Uint8Array) => {
      let at = 0;
      for (const s of spans) {
        expect(s.fd).toBe(3);
        dst.set(file.subarray(s.at, s.at + s.length), at);
        at += s.length;
      }
      copied += at;
    };
    const sink = new MemorySink();
    await encodeFec(g, { data: spanned, hash: bytesSource(hash) }, sink, { readSpans, groupBytes: 3 * g.rsn * g.blockSize });
    expect(sink.bytes.subarray(g.fecOffset)).toEqual(referenceParity(g, data, hash));
    expect({ reads, copied }).toEqual({ reads: 0, copied: g.dataBlocks * g.blockSize });
  });

  it('writes the parity in order from the FEC offset, and reports progress up to the covered size', async () => {
    const { input, data, hash } = setup(9, { fecOffset: 7 * 512 });
    const g = computeFecGeometry(input);
    const writes: [number, number][] = [];
    const progress: number[] = [];
    const sink = new MemorySink();
    await encodeFec(
      g,
      { data: bytesSource(data), hash: bytesSource(hash) },
      { write: (src, position) => (writes.push([position, src.length]), sink.write(src, position)) },
      { groupBytes: 1, onProgress: (p) => (progress.push(p.bytesDone), expect(p.bytesTotal).toBe(g.coveredBlocks * g.blockSize)) },
    );
    let at = g.fecOffset;
    for (const [position, length] of writes) {
      expect(position).toBe(at);
      at += length;
    }
    expect(at).toBe(g.fecOffset + g.parityBytes);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(g.coveredBlocks * g.blockSize);
  });

  it('fails with E_TRUNCATED when the data device is shorter than its blocks, and stops when aborted', async () => {
    const { input, data, hash } = setup(11);
    const g = computeFecGeometry(input);
    await expect(encodeFec(g, { data: bytesSource(data.subarray(0, 100 * 512)), hash: bytesSource(hash) }, new MemorySink())).rejects.toMatchObject({
      code: 'E_TRUNCATED',
    });
    const controller = new AbortController();
    controller.abort();
    await expect(
      encodeFec(g, { data: bytesSource(data), hash: bytesSource(hash) }, new MemorySink(), { signal: controller.signal }),
    ).rejects.toThrow();
  });
});
