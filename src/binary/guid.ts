/**
 * GUIDs as GPT (and VHDX) store them: the Microsoft layout, whose first three groups are little-endian integers
 * (Data1 u32, Data2 u16, Data3 u16) and whose last 8 bytes are kept in order. The type GUID
 * 4f68bce3-e8cd-4db1-96e7-fbcaf984b709 is on disk `e3 bc 68 4f cd e8 b1 4d 96 e7 fb ca f9 84 b7 09`
 * (UEFI spec 2.10 Appendix A, EFI_GUID; docs/disk-image-formats.md, "GPT"). A verity superblock UUID, by contrast, is stored
 * in textual order (formatUuid).
 */
import { VerityError } from '../errors.js';
import { formatUuid, parseUuid } from './bytes.js';

export const GUID_SIZE = 16;

/** Reverses the three little-endian groups; its own inverse, so it maps disk order to text order and back. */
function swapGroups(bytes: Uint8Array): Uint8Array {
  const b = bytes.slice(0, GUID_SIZE);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** The lower-case text of the on-disk GUID at `bytes[offset..offset+16)`. */
export function formatGuid(bytes: Uint8Array, offset = 0): string {
  if (offset < 0 || offset + GUID_SIZE > bytes.length) {
    throw new VerityError('E_INTERNAL', `GUID at offset ${offset} lies outside its ${bytes.length}-byte buffer.`);
  }
  return formatUuid(swapGroups(bytes.subarray(offset, offset + GUID_SIZE)));
}

/** The 16 on-disk bytes of a textual GUID (either case); E_PARAM when the text is not 8-4-4-4-12 hex. */
export function encodeGuid(text: string): Uint8Array {
  return swapGroups(parseUuid(text));
}

export const NULL_GUID = '00000000-0000-0000-0000-000000000000';
