import { describe, expect, it } from 'vitest';
import { sliceSource } from '../../src/io/slice.js';
import { bytesSource } from '../../src/io/source.js';
import { failure, readAt } from '../support/sources.js';

describe('sliceSource', () => {
  const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
  it('reads within its window only', async () => {
    const s = sliceSource(bytesSource(bytes), 10, 20);
    expect(s.size).toBe(20);
    expect([...(await readAt(s, 15, 50))]).toEqual([25, 26, 27, 28, 29]);
    expect((await readAt(s, 20, 5)).length).toBe(0);
    expect(await failure(s.read(new Uint8Array(1), -1))).toMatchObject({ code: 'E_PARAM' });
  });
  it('refuses a window outside its source', () => {
    expect(() => sliceSource(bytesSource(bytes), 90, 11)).toThrow(expect.objectContaining({ code: 'E_TRUNCATED' }));
    expect(() => sliceSource(bytesSource(bytes), -1, 1)).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
    expect(() => sliceSource(bytesSource(bytes), 0.5, 1)).toThrow(expect.objectContaining({ code: 'E_PARAM' }));
  });
});

