/**
 * CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF. VHDX checksums
 * its headers, region tables and log entries with it [MS-VHDX §2.2.2; qemu block/vhdx.c `vhdx_checksum_is_valid`].
 * A 256-entry table: the structures it covers are at most a few MiB, read once when an image is opened.
 */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The register before any byte: pass it to `crc32cUpdate`, and the result of the last update to `crc32cFinish`. */
export const CRC32C_INIT = 0xffffffff;

/** Feeds `bytes` into a running (not yet finished) CRC-32C register. */
export function crc32cUpdate(register: number, bytes: Uint8Array): number {
  let c = register >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** Feeds `count` zero bytes, for a checksum field that the checksum is defined over as zeros. */
export function crc32cUpdateZeros(register: number, count: number): number {
  let c = register >>> 0;
  for (let i = 0; i < count; i++) c = TABLE[c & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

export function crc32cFinish(register: number): number {
  return (register ^ 0xffffffff) >>> 0;
}

/** CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cFinish(crc32cUpdate(CRC32C_INIT, bytes));
}

/**
 * CRC-32C of `bytes` as if the 4-byte checksum field at `fieldOffset` held zeros, which is how VHDX defines every
 * checksum it stores ("computed with the Checksum field set to zero") — without copying the structure.
 */
export function crc32cWithZeroedField(bytes: Uint8Array, fieldOffset: number): number {
  let c = crc32cUpdate(CRC32C_INIT, bytes.subarray(0, fieldOffset));
  c = crc32cUpdateZeros(c, 4);
  c = crc32cUpdate(c, bytes.subarray(fieldOffset + 4));
  return crc32cFinish(c);
}
