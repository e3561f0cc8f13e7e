/**
 * What dm-verity's FEC covers and where its parity goes, as veritysetup computes them (cryptsetup
 * lib/verity/verity_fec.c: VERITY_FEC_blocks, VERITY_FEC_RS_blocks, VERITY_FEC_process) and the kernel reads them
 * (Documentation/admin-guide/device-mapper/verity.rst, "use_fec_from_device … fec_roots … fec_blocks … fec_start").
 *
 * The covered area is one run of blocks of B bytes: the data blocks, then the hash device from its hash start block
 * (past the superblock, which is never covered) up to E, where E is the FEC offset in blocks when the parity is on the
 * hash device, and the hash device's size in blocks otherwise (the whole rest of the hash image is covered, foreign
 * bytes after the tree included). Blocks are dealt round-robin into `rounds = ceil(covered / rsn)` rounds; the
 * parity of round n, byte b is at `(n · B + b) · roots` from the FEC offset.
 */
import { VerityError } from '../errors.js';
import { checkRoots, RS_CODEWORD } from './rs.js';

/** Where the parity goes relative to the other two devices. */
export type FecPlacement =
  /** A device of its own: the hash device is covered to its end. */
  | 'separate'
  /** The hash device, at the FEC offset (the data device may be the same file too: one device for everything). */
  | 'hash-device'
  /** The data device, after the data; the hash device is separate and covered to its end. */
  | 'data-device';

export interface FecGeometryInput {
  roots: number;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  /** The tree's first block on the hash device (format/geometry.ts: hashStartBlock). */
  hashStartBlock: number;
  /** Byte offset of the parity on the FEC device. */
  fecOffset: number;
  /** Whether the FEC device is the hash device (veritysetup: device_is_identical). */
  onHashDevice: boolean;
  /** Size in bytes of the hash device when the tree is written; used only when the FEC is not on the hash device. */
  hashDeviceSize: number;
}

export interface FecGeometry {
  roots: number;
  /** Message symbols per codeword: 255 − roots. */
  rsn: number;
  /** B: the data block size, which must equal the hash block size. */
  blockSize: number;
  dataBlocks: number;
  /** First covered block of the hash device (its hash start block). */
  hashStartBlock: number;
  /** Covered blocks of the hash device, from `hashStartBlock`. */
  hashBlocks: number;
  /** All covered blocks: data, then hash device (the kernel's fec_blocks). */
  coveredBlocks: number;
  /** ceil(coveredBlocks / rsn). */
  rounds: number;
  /** Parity size in blocks, rounds · roots ("FEC blocks" in veritysetup's output). */
  parityBlocks: number;
  /** Parity size in bytes: rounds · B · roots. */
  parityBytes: number;
  /** Byte offset of the parity on the FEC device. */
  fecOffset: number;
  /** The same in blocks (the kernel's fec_start); the offset is a whole number of blocks. */
  fecStartBlock: number;
}

/**
 * Checks the FEC parameters that do not depend on the devices: roots 2..24, equal block sizes, an offset that is a
 * whole number of blocks. veritysetup only asks for a multiple of 512, but the kernel addresses the parity in blocks
 * (fec_start = offset / block size, rounded down), so a misaligned offset gives parity the kernel does not find.
 */
export function checkFecParams(p: Pick<FecGeometryInput, 'roots' | 'dataBlockSize' | 'hashBlockSize' | 'fecOffset'>): void {
  checkRoots(p.roots);
  if (p.dataBlockSize !== p.hashBlockSize) {
    throw new VerityError(
      'E_PARAM',
      `Block sizes must match for FEC: the data block size is ${p.dataBlockSize} and the hash block size ${p.hashBlockSize}.`,
      { data: { field: 'hashBlockSize', expected: p.dataBlockSize, actual: p.hashBlockSize } },
    );
  }
  const B = p.dataBlockSize;
  if (!Number.isSafeInteger(p.fecOffset) || p.fecOffset < 0 || p.fecOffset % B !== 0) {
    throw new VerityError(
      'E_PARAM',
      `Unsupported VERITY FEC offset ${p.fecOffset}: it must be a non-negative multiple of the ${B}-byte block size ` +
        '(the kernel reads the parity from a whole block).',
      { data: { field: 'fecOffset', actual: Number.isFinite(p.fecOffset) ? p.fecOffset : String(p.fecOffset) } },
    );
  }
}

/** Checks the parameters and works out the covered area and the parity's size. */
export function computeFecGeometry(input: FecGeometryInput): FecGeometry {
  checkFecParams(input);
  const { roots, dataBlocks, hashStartBlock, fecOffset } = input;
  const B = input.dataBlockSize;
  const rsn = RS_CODEWORD - roots;
  // E: where the covered part of the hash device ends, in blocks.
  const end = Math.floor((input.onHashDevice ? fecOffset : input.hashDeviceSize) / B);
  // veritysetup subtracts the hash start only when E is not 0 ("if (blocks)"): parity at offset 0 of the hash device
  // covers the data alone. An E between 0 and the hash start (a hash device that ends before its tree would start:
  // one data block, so no tree, and a short hash file) makes veritysetup's unsigned subtraction wrap and its reads
  // fail; no hash block is covered then either, which is what the kernel expects of a device without a tree.
  const hashBlocks = Math.max(0, end - hashStartBlock);
  const coveredBlocks = dataBlocks + hashBlocks;
  const rounds = Math.ceil(coveredBlocks / rsn);
  const parityBytes = rounds * B * roots;
  if (!Number.isSafeInteger(coveredBlocks * B) || !Number.isSafeInteger(fecOffset + parityBytes)) {
    throw new VerityError('E_PARAM', 'Device offset overflow: the FEC area would end beyond 2^53 bytes.', { data: { field: 'fecOffset' } });
  }
  return {
    roots,
    rsn,
    blockSize: B,
    dataBlocks,
    hashStartBlock,
    hashBlocks,
    coveredBlocks,
    rounds,
    parityBlocks: rounds * roots,
    parityBytes,
    fecOffset,
    fecStartBlock: fecOffset / B,
  };
}

/**
 * Where covered block `k` lies: a data block, or a block of the hash device (`k − dataBlocks + hashStartBlock`, as
 * the kernel's fec_read_bufs addresses it), or past the covered area (read as zeros).
 */
export function coveredBlockAt(g: FecGeometry, k: number): { device: 'data' | 'hash'; block: number } | null {
  if (k < 0 || k >= g.coveredBlocks) return null;
  return k < g.dataBlocks ? { device: 'data', block: k } : { device: 'hash', block: k - g.dataBlocks + g.hashStartBlock };
}

/** The covered block that is symbol `i` of the codewords of round `n`: block i · rounds + n. */
export function blockOfSymbol(g: FecGeometry, n: number, i: number): number {
  return i * g.rounds + n;
}

/** Where the parity byte `k` of codeword (round n, byte b) lies from the FEC offset: (n · B + b) · roots + k. */
export function parityOffset(g: FecGeometry, n: number, b: number, k = 0): number {
  return (n * g.blockSize + b) * g.roots + k;
}
