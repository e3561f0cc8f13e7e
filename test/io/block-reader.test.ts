import { describe, expect, it } from 'vitest';
import { readBlocks } from '../../src/io/block-reader.js';
import type { ByteSource } from '../../src/io/source.js';

/** A source whose reads finish only when released, and which records reads still running. */
function slowSource(size: number) {
  let running = 0;
  const releases: (() => void)[] = [];
  const source: ByteSource = {
    size,
    read(dst, position) {
      running++;
      return new Promise((resolve) => {
        releases.push(() => {
          dst.fill(position / 512);
          running--;
          resolve(Math.min(dst.length, size - position));
        });
      });
    },
  };
  return { source, running: () => running, releaseAll: () => releases.splice(0).forEach((r) => r()) };
}

describe('readBlocks', () => {
  it('reads every block once, in order, in chunks of whole blocks', async () => {
    const bytes = new Uint8Array(10 * 512).map((_, i) => Math.floor(i / 512));
    const source: ByteSource = {
      size: bytes.length,
      async read(dst, position) {
        const chunk = bytes.subarray(position, position + dst.length);
        dst.set(chunk);
        return chunk.length;
      },
    };
    const seen: number[] = [];
    for await (const c of readBlocks(source, 512, 10, 'data', { chunkBytes: 3 * 512 })) {
      for (let i = 0; i < c.count; i++) seen.push(c.bytes[i * 512]!);
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('does not return from an early stop while its read-ahead can still write into a buffer', async () => {
    const slow = slowSource(8 * 512);
    const reads = readBlocks(slow.source, 512, 8, 'data', { chunkBytes: 2 * 512 });
    const first = reads.next();
    slow.releaseAll();
    await first;
    expect(slow.running()).toBe(1); // the read-ahead of the second chunk
    let stopped = false;
    const stopping = reads.return(undefined).then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBe(false);
    slow.releaseAll();
    await stopping;
    expect(slow.running()).toBe(0);
  });

  it('reports a failed read-ahead when it is reached, not as an unhandled rejection', async () => {
    let calls = 0;
    const source: ByteSource = {
      size: 4 * 512,
      async read(dst) {
        if (++calls === 2) throw new Error('disk on fire');
        return dst.length;
      },
    };
    const reads = readBlocks(source, 512, 4, 'data', { chunkBytes: 2 * 512 });
    await reads.next();
    await new Promise((r) => setTimeout(r, 20)); // the read-ahead fails while the consumer is busy
    await expect(reads.next()).rejects.toThrow('disk on fire');
  });
});
