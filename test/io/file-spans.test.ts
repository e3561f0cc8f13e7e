/**
 * ByteSource.fileSpans through the helpers, slices and the block reader: which blocks a pass leaves to threads that
 * read files by themselves, and which it still reads.
 */
import { describe, expect, it } from 'vitest';
import { readBlocks } from '../../src/io/block-reader.js';
import { sliceSource } from '../../src/io/slice.js';
import { spansOf, spansWithin, type ByteRange, type ByteSource, type FileSpan } from '../../src/io/source.js';

const span = (fd: number, at: number, length: number): FileSpan => ({ fd, at, length, path: `file${fd}` });

/**
 * A source of `size` bytes that lies in "file 7" at offset 1000 except the `unmapped` ranges, for which it has no
 * spans; and that records its reads.
 */
function mapped(size: number, unmapped: ByteRange[] = [], zero: ByteRange[] = []) {
  const reads: Array<[number, number]> = [];
  const source: ByteSource = {
    size,
    fileSpans(offset, length) {
      if (unmapped.some((r) => r.at < offset + length && offset < r.at + r.length)) return undefined;
      return [span(7, 1000 + offset, length)];
    },
    knownZero: (offset, length) =>
      zero
        .map((r) => ({ at: Math.max(offset, r.at), end: Math.min(offset + length, r.at + r.length) }))
        .filter((r) => r.at < r.end)
        .map((r) => ({ at: r.at, length: r.end - r.at })),
    async read(dst, position) {
      reads.push([position, dst.length]);
      dst.fill(1);
      return Math.min(dst.length, size - position);
    },
  };
  return { source, reads };
}

async function chunks(source: ByteSource, blocks: number, options: { files?: boolean } = {}) {
  const out: Array<{ first: number; count: number; how: string }> = [];
  let allocated = 0;
  const reads = readBlocks(source, 512, blocks, 'test', {
    chunkBytes: 4 * 512,
    skipKnownZero: true,
    allocate: (n) => (allocated++, new Uint8Array(n)),
    ...(options.files !== false && { files: { chunkBytes: 16 * 512 } }),
  });
  for await (const c of reads) {
    const how = c.zero ? 'zero' : c.spans ? JSON.stringify(c.spans.map((s) => [s.fd, s.at, s.length])) : 'read';
    out.push({ first: c.first, count: c.count, how });
  }
  return { out, allocated };
}

describe('spansWithin', () => {
  const spans = [span(1, 100, 10), span(2, 0, 5), span(1, 500, 20)];
  it('cuts the bytes the spans cover in order, across spans and inside one', () => {
    expect(spansWithin(spans, 8, 10)).toEqual([span(1, 108, 2), span(2, 0, 5), span(1, 500, 3)]);
    expect(spansWithin(spans, 16, 2)).toEqual([span(1, 501, 2)]);
    expect(spansWithin(spans, 0, 35)).toEqual(spans);
    expect(spansWithin(spans, 35, 0)).toEqual([]);
  });
  it('refuses a range past what the spans cover', () => {
    expect(() => spansWithin(spans, 30, 6)).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });
});

describe('spansOf', () => {
  it('maps ranges of a file through its spans, merging what is adjacent in the same file', () => {
    const { source } = mapped(10_000);
    expect(spansOf(source, [{ at: 0, length: 512 }, { at: 512, length: 100 }, { at: 4096, length: 8 }])).toEqual([
      span(7, 1000, 612),
      span(7, 5096, 8),
    ]);
  });
  it('is undefined when the file cannot say where one range lies, or has no spans at all', () => {
    const { source } = mapped(10_000, [{ at: 4000, length: 1 }]);
    expect(spansOf(source, [{ at: 0, length: 512 }, { at: 3990, length: 20 }])).toBeUndefined();
    expect(spansOf({ size: 10, read: async () => 0 }, [{ at: 0, length: 1 }])).toBeUndefined();
  });
});

describe('file spans through a slice', () => {
  it('keep the window offset, and a window past the slice has none', () => {
    const slice = sliceSource(mapped(10_000).source, 2048, 4096);
    expect(slice.fileSpans!(512, 1024)).toEqual([span(7, 1000 + 2048 + 512, 1024)]);
    expect(slice.fileSpans!(4000, 200)).toBeUndefined();
  });
  it('a slice of a source without spans has none', () => {
    expect(sliceSource({ size: 100, read: async () => 0 }, 0, 50).fileSpans).toBeUndefined();
  });
});

describe('file spans in the block reader', () => {
  it('yields what lies in files unread, in file-sized chunks, and allocates no buffer when nothing is read', async () => {
    const { source, reads } = mapped(40 * 512);
    const { out, allocated } = await chunks(source, 40);
    expect(out).toEqual([
      { first: 0, count: 16, how: '[[7,1000,8192]]' },
      { first: 16, count: 16, how: '[[7,9192,8192]]' },
      { first: 32, count: 8, how: '[[7,17384,4096]]' },
    ]);
    expect({ reads, allocated }).toEqual({ reads: [], allocated: 0 });
  });

  it('reads a chunk without spans in read-sized pieces, and still skips known zeros', async () => {
    // Blocks 16–31 have no spans (one unmapped byte at block 20); blocks 34–35 are known zero.
    const { source, reads } = mapped(40 * 512, [{ at: 20 * 512, length: 1 }], [{ at: 34 * 512, length: 1024 }]);
    const { out, allocated } = await chunks(source, 40);
    expect(out).toEqual([
      { first: 0, count: 16, how: '[[7,1000,8192]]' },
      { first: 16, count: 4, how: 'read' },
      { first: 20, count: 4, how: 'read' },
      { first: 24, count: 4, how: 'read' },
      { first: 28, count: 4, how: 'read' },
      { first: 32, count: 2, how: '[[7,17384,1024]]' },
      { first: 34, count: 2, how: 'zero' },
      { first: 36, count: 4, how: '[[7,19432,2048]]' },
    ]);
    expect(reads).toEqual([16, 20, 24, 28].map((b) => [b * 512, 4 * 512]));
    expect(allocated).toBe(2);
  });

  it('without the files option, reads everything as before', async () => {
    const { source, reads } = mapped(8 * 512);
    const { out } = await chunks(source, 8, { files: false });
    expect(out.map((c) => c.how)).toEqual(['read', 'read']);
    expect(reads).toHaveLength(2);
  });
});
