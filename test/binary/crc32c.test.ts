import { describe, expect, it } from 'vitest';
import { crc32c, crc32cWithZeroedField } from '../../src/binary/crc32c.js';

describe('CRC-32C (Castagnoli), the checksum of VHDX structures', () => {
  it('matches the Castagnoli check value and the zeroed-field form', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    const b = new Uint8Array(100).map((_, i) => i * 7);
    const z = b.slice();
    z.fill(0, 4, 8);
    expect(crc32cWithZeroedField(b, 4)).toBe(crc32c(z));
  });
});
