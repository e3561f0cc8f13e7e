/**
 * FEC parity on worker threads (src/threads/fec-pool.ts): the same parity as the calling thread's encoder for 1 to 4
 * threads and any group size, through `verity format` too; a pool refuses bad thread counts and fails cleanly once
 * closed.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatFiles } from '../../src/api/format.js';
import { encodeFec } from '../../src/fec/encode.js';
import { computeFecGeometry } from '../../src/fec/geometry.js';
import { createRsEncoder } from '../../src/fec/rs.js';
import { bytesSource, MemorySink } from '../../src/io/source.js';
import { createFecPool } from '../../src/threads/fec-pool.js';
import { Rng } from '../support/rng.js';

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'verity-fec-threads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FEC on worker threads', () => {
  it('gives the single-threaded parity for 1 to 4 threads, several roots and group sizes', async () => {
    const rng = new Rng(42);
    for (const [roots, B] of [[2, 512], [7, 4096], [24, 1024]] as const) {
      const g = computeFecGeometry({ roots, dataBlockSize: B, hashBlockSize: B, dataBlocks: 1500, hashStartBlock: 1, fecOffset: 0, onHashDevice: false, hashDeviceSize: 50 * B });
      const inputs = { data: bytesSource(randomBytes(rng, 1500 * B)), hash: bytesSource(randomBytes(rng, 50 * B)) };
      const expected = new MemorySink();
      await encodeFec(g, inputs, expected, { encoder: createRsEncoder(roots, B) });
      for (const threads of [1, 2, 3, 4]) {
        const pool = createFecPool({ threads });
        try {
          const groups = await pool.groupEncoder(roots, B);
          for (const groupBytes of [1, 3 * g.rsn * B, 1 << 30]) {
            const sink = new MemorySink();
            await encodeFec(g, inputs, sink, { groups, groupBytes });
            expect(Buffer.compare(sink.bytes, expected.bytes), `roots ${roots}, B ${B}, ${threads} threads, groupBytes ${groupBytes}`).toBe(0);
          }
        } finally {
          await pool.close();
        }
      }
    }
  });

  it('writes the same parity file through verity format with --threads 1 to 4', async () => {
    const rng = new Rng(9);
    const data = join(dir, 'data.img');
    writeFileSync(data, randomBytes(rng, 3000 * 4096));
    const salt = '00'.repeat(32);
    let first: Buffer | undefined;
    for (const threads of [1, 2, 3, 4]) {
      const fec = join(dir, `fec-${threads}`);
      await formatFiles(data, join(dir, `hash-${threads}`), { fecDevice: fec, fecRoots: 3, salt, threads });
      const bytes = readFileSync(fec);
      first ??= bytes;
      expect(Buffer.compare(bytes, first), `${threads} threads`).toBe(0);
    }
  });

  it('refuses thread counts out of range, and rejects work once closed', async () => {
    expect(() => createFecPool({ threads: 0 })).toThrow(/FEC threads/);
    expect(() => createFecPool({ threads: 65 })).toThrow(/FEC threads/);
    const pool = createFecPool({ threads: 2 });
    const groups = await pool.groupEncoder(2, 512);
    const [messages, parity] = groups.buffers([253 * 512, 2 * 512]);
    await pool.close();
    await expect(groups.encodeGroup(messages!, parity!, 1, 512)).rejects.toThrow(/closed/);
    await expect(pool.groupEncoder(2, 512)).rejects.toThrow(/closed/);
  });
});
