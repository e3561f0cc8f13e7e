/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF): the checksum of GPT headers
 * and partition entry arrays (UEFI spec 2.10 §5.3.2, the GPT header's HeaderCRC32 and PartitionEntryArrayCRC32),
 * identical to zlib's `crc32`. Not CRC-32C, which VHDX uses (crc32c.ts).
 */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `bytes`. Pass the result of a previous call as `previous` to continue over data given in pieces:
 * `crc32(b, crc32(a))` equals `crc32(a ‖ b)`.
 */
export function crc32(bytes: Uint8Array, previous = 0): number {
  let c = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
