import { afterEach, describe, expect, it, vi } from 'vitest';
import { randomBytes, randomUuid } from '../../src/binary/bytes.js';
import { paramsForFormat } from '../../src/format/options.js';

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('random salts and UUIDs', () => {
  it('a random UUID is version 4, variant 10, and differs each time', () => {
    const a = randomUuid();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(randomUuid()).not.toBe(a);
    expect(randomBytes(100_000).some((b) => b !== 0)).toBe(true);
  });

  it('format needs no crypto.randomUUID (a plain-http page has only getRandomValues)', () => {
    const { getRandomValues } = globalThis.crypto;
    vi.stubGlobal('crypto', { getRandomValues: getRandomValues.bind(globalThis.crypto) });
    expect((globalThis.crypto as { randomUUID?: unknown }).randomUUID).toBeUndefined();
    const params = paramsForFormat({}, 1 << 20);
    expect(params.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(params.salt).toHaveLength(32);
  });

  it('without any random source: a typed error that says what to give, never a TypeError', () => {
    vi.stubGlobal('crypto', undefined);
    expect(() => paramsForFormat({}, 1 << 20)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED' }));
    const given = paramsForFormat({ salt: 'aa', uuid: '01234567-89ab-cdef-0123-456789abcdef' }, 1 << 20);
    expect(given.uuid).toBe('01234567-89ab-cdef-0123-456789abcdef');
  });
});
