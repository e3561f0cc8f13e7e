/**
 * The read-only FAT12/FAT16/FAT32 reader: a `Volume` over an EFI system partition or any FAT volume.
 *
 * Layout and rules follow the Microsoft FAT specification ("Microsoft Extensible Firmware Initiative FAT32 File
 * System Specification", version 1.03): the BPB in sector 0, the FAT type decided by the count of clusters alone
 * (fewer than 4085: FAT12; fewer than 65525: FAT16; else FAT32), the root directory in its fixed region (FAT12/16)
 * or in a cluster chain (FAT32), 32-byte directory entries with 8.3 names, and VFAT long names stored in UCS-2 in the
 * entries before their short entry, bound to it by a checksum of the short name. Names are looked up
 * case-insensitively, by long name or by short alias, as Windows and Linux's vfat do.
 *
 * Every value read from the image is untrusted: the BPB is checked before anything else is read, the FAT is read in
 * small windows on demand, a cluster chain may not leave the volume, revisit a cluster or run longer than the volume
 * has clusters, a directory may hold at most 65536 entries (the specification's limit), and a file is read through
 * a source that maps its chain lazily.
 */
import { VerityError, type VerityErrorData } from '../errors.js';
import { at, bytes, latin1, struct, u16le, u32le, u8, type StructValue } from '../binary/struct.js';
import { readExactly, type ByteSource } from '../io/source.js';
import type { DirEntry, Volume } from './volume.js';

/** The BPB fields common to all FAT types (specification §3.1, "Boot Sector and BPB Structure"). */
export const FAT_BPB = struct(
  'FAT boot sector',
  {
    jmpBoot: at(0, bytes(3)), // BS_jmpBoot
    oemName: at(3, latin1(8)), // BS_OEMName
    bytsPerSec: at(11, u16le), // BPB_BytsPerSec: 512, 1024, 2048 or 4096
    secPerClus: at(13, u8), // BPB_SecPerClus: a power of 2, 1 to 128
    rsvdSecCnt: at(14, u16le), // BPB_RsvdSecCnt: not 0
    numFats: at(16, u8), // BPB_NumFATs: usually 2
    rootEntCnt: at(17, u16le), // BPB_RootEntCnt: 32-byte entries of the FAT12/16 root directory; 0 on FAT32
    totSec16: at(19, u16le), // BPB_TotSec16: 0 when BPB_TotSec32 holds the count
    media: at(21, u8), // BPB_Media
    fatSz16: at(22, u16le), // BPB_FATSz16: 0 on FAT32
    secPerTrk: at(24, u16le), // BPB_SecPerTrk
    numHeads: at(26, u16le), // BPB_NumHeads
    hiddSec: at(28, u32le), // BPB_HiddSec
    totSec32: at(32, u32le), // BPB_TotSec32
    signature: at(510, u16le), // 0xAA55 (bytes 55 AA)
  },
  { size: 512 },
);

/** The FAT12/FAT16 extended BPB, at offset 36 (§3.2). */
export const FAT16_EBPB = struct('FAT12/16 extended BPB', {
  drvNum: at(0, u8), // BS_DrvNum
  reserved1: at(1, u8), // BS_Reserved1
  bootSig: at(2, u8), // BS_BootSig: 0x29 when the next three fields are present
  volId: at(3, u32le), // BS_VolID
  volLab: at(7, latin1(11)), // BS_VolLab
  filSysType: at(18, latin1(8)), // BS_FilSysType: informational only
});

/** The FAT32 extended BPB, at offset 36 (§3.3). */
export const FAT32_EBPB = struct('FAT32 extended BPB', {
  fatSz32: at(0, u32le), // BPB_FATSz32
  extFlags: at(4, u16le), // BPB_ExtFlags: bit 7 set = only the FAT numbered in bits 0-3 is active
  fsVer: at(6, u16le), // BPB_FSVer: 0:0
  rootClus: at(8, u32le), // BPB_RootClus
  fsInfo: at(12, u16le), // BPB_FSInfo
  bkBootSec: at(14, u16le), // BPB_BkBootSec
  drvNum: at(28, u8), // BS_DrvNum
  reserved1: at(29, u8), // BS_Reserved1
  bootSig: at(30, u8), // BS_BootSig: 0x29 when the next three fields are present
  volId: at(31, u32le), // BS_VolID
  volLab: at(35, latin1(11)), // BS_VolLab
  filSysType: at(46, latin1(8)), // BS_FilSysType
});
const EBPB_OFFSET = 36;

/** A 32-byte directory entry (§6, "FAT Directory Structure"). */
export const FAT_DIR_ENTRY = struct('FAT directory entry', {
  name: at(0, bytes(11)), // DIR_Name: 8 + 3 bytes, space padded; [0] = 0xE5 free, 0x00 end, 0x05 for 0xE5
  attr: at(11, u8), // DIR_Attr
  ntRes: at(12, u8), // DIR_NTRes: bit 3 = base in lower case, bit 4 = extension in lower case (Windows NT)
  crtTimeTenth: at(13, u8), // DIR_CrtTimeTenth
  crtTime: at(14, u16le), // DIR_CrtTime
  crtDate: at(16, u16le), // DIR_CrtDate
  lstAccDate: at(18, u16le), // DIR_LstAccDate
  fstClusHi: at(20, u16le), // DIR_FstClusHI: FAT32 only
  wrtTime: at(22, u16le), // DIR_WrtTime
  wrtDate: at(24, u16le), // DIR_WrtDate
  fstClusLo: at(26, u16le), // DIR_FstClusLO
  fileSize: at(28, u32le), // DIR_FileSize
});
type DirRecord = StructValue<typeof FAT_DIR_ENTRY.fields>;

/** A long-name entry (§7, "FAT Long Directory Entries"): 13 UCS-2 characters in three pieces. */
export const FAT_LFN_ENTRY = struct('FAT long name entry', {
  ord: at(0, u8), // LDIR_Ord: sequence number, 0x40 on the last (first stored) one
  name1: at(1, bytes(10)), // LDIR_Name1: characters 1-5
  attr: at(11, u8), // LDIR_Attr: ATTR_LONG_NAME (0x0F)
  type: at(12, u8), // LDIR_Type: 0
  chksum: at(13, u8), // LDIR_Chksum: of the short name
  name2: at(14, bytes(12)), // LDIR_Name2: characters 6-11
  fstClusLo: at(26, u16le), // LDIR_FstClusLO: 0
  name3: at(28, bytes(4)), // LDIR_Name3: characters 12-13
});

const ATTR_VOLUME_ID = 0x08;
const ATTR_DIRECTORY = 0x10;
const ATTR_LONG_NAME = 0x0f;
const ATTR_LONG_NAME_MASK = 0x3f;
const LAST_LONG_ENTRY = 0x40;
const DIR_ENTRY_BYTES = 32;
/** The most entries a directory may have (§6.1: 65536 32-byte entries). */
export const MAX_DIR_ENTRIES = 65536;
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MAX_CLUSTERS = 65524;
/** The largest cluster count FAT32's 28-bit entries allow (0x0FFFFFF5 clusters, numbered 2 to 0x0FFFFFF6). */
const FAT32_MAX_CLUSTERS = 0x0ffffff5;
const FAT_WINDOW = 64 * 1024;
const FAT_WINDOWS_CACHED = 64;
const DIRS_CACHED = 64;

export type FatType = 12 | 16 | 32;

function bad(message: string, data: VerityErrorData = {}): VerityError {
  return new VerityError('E_BAD_IMAGE', `FAT: ${message}`, { data });
}

export interface FatGeometry {
  fatType: FatType;
  bytesPerSector: number;
  clusterSize: number;
  clusterCount: number;
  /** Byte offsets of the FAT in use, the FAT12/16 root directory and the data region (cluster 2). */
  fatOffset: number;
  rootDirOffset: number;
  rootDirBytes: number;
  dataOffset: number;
  /** FAT32: the first cluster of the root directory; 0 on FAT12/16. */
  rootCluster: number;
  volumeId: string;
  bootLabel: string;
}

/** Reads and checks the BPB of the volume at the start of `source` (the first 512 bytes). */
export function parseFatBootSector(sector: Uint8Array, sourceSize: number): FatGeometry {
  const b = FAT_BPB.get(sector, 0);
  const field = (name: string, actual: number, expected: string) => ({ field: name, actual, expected, offset: FAT_BPB.fields[name as keyof typeof FAT_BPB.fields]?.offset });
  if (![512, 1024, 2048, 4096].includes(b.bytsPerSec)) {
    throw bad(`BPB_BytsPerSec is ${b.bytsPerSec}, not 512, 1024, 2048 or 4096: this is not a FAT volume, or it is damaged.`, field('bytsPerSec', b.bytsPerSec, '512, 1024, 2048 or 4096'));
  }
  if (b.secPerClus === 0 || (b.secPerClus & (b.secPerClus - 1)) !== 0) {
    throw bad(`BPB_SecPerClus is ${b.secPerClus}, not a power of 2.`, field('secPerClus', b.secPerClus, '1, 2, 4, ... 128'));
  }
  const clusterSize = b.bytsPerSec * b.secPerClus;
  if (clusterSize > 64 * 1024) {
    throw bad(`clusters of ${clusterSize} bytes are larger than 64 KiB.`, field('secPerClus', b.secPerClus, `<= ${(64 * 1024) / b.bytsPerSec}`));
  }
  if (b.rsvdSecCnt === 0) throw bad('BPB_RsvdSecCnt is 0.', field('rsvdSecCnt', 0, '>= 1'));
  if (b.numFats === 0) throw bad('BPB_NumFATs is 0.', field('numFats', 0, '>= 1'));
  const e32 = FAT32_EBPB.get(sector, EBPB_OFFSET);
  const fatSz = b.fatSz16 !== 0 ? b.fatSz16 : e32.fatSz32;
  const totSec = b.totSec16 !== 0 ? b.totSec16 : b.totSec32;
  if (fatSz === 0) throw bad('the FAT size (BPB_FATSz16 and BPB_FATSz32) is 0.', field('fatSz16', 0, '>= 1'));
  if (totSec === 0) throw bad('the sector count (BPB_TotSec16 and BPB_TotSec32) is 0.', field('totSec16', 0, '>= 1'));
  // §3.5, "FAT Type Determination".
  const rootDirSectors = Math.ceil((b.rootEntCnt * DIR_ENTRY_BYTES) / b.bytsPerSec);
  const firstDataSector = b.rsvdSecCnt + b.numFats * fatSz + rootDirSectors;
  if (firstDataSector >= totSec) {
    throw bad(`the reserved sectors, FATs and root directory (${firstDataSector} sectors) fill the whole volume of ${totSec} sectors.`, {
      field: 'totSec32',
      expected: `> ${firstDataSector}`,
      actual: totSec,
    });
  }
  const clusterCount = Math.floor((totSec - firstDataSector) / b.secPerClus);
  const fatType: FatType = clusterCount <= FAT12_MAX_CLUSTERS ? 12 : clusterCount <= FAT16_MAX_CLUSTERS ? 16 : 32;
  if (clusterCount === 0) throw bad('the volume has no data clusters.', { field: 'totSec32', actual: totSec });
  if (fatType === 32) {
    if (b.fatSz16 !== 0 || b.rootEntCnt !== 0 || b.totSec16 !== 0) {
      throw bad(`the volume has ${clusterCount} clusters (FAT32), but its BPB has FAT12/16 fields set (BPB_FATSz16 ${b.fatSz16}, BPB_RootEntCnt ${b.rootEntCnt}).`, {
        field: 'rootEntCnt',
        actual: b.rootEntCnt,
        expected: 0,
      });
    }
    if (clusterCount > FAT32_MAX_CLUSTERS) {
      throw bad(`${clusterCount} clusters are more than FAT32 can number.`, { field: 'totSec32', actual: clusterCount, expected: `<= ${FAT32_MAX_CLUSTERS}` });
    }
    if (e32.fsVer !== 0) {
      throw new VerityError('E_UNSUPPORTED', `FAT: FAT32 version ${e32.fsVer >> 8}.${e32.fsVer & 0xff} is not 0.0.`, { data: { field: 'BPB_FSVer', actual: e32.fsVer, expected: 0 } });
    }
  } else if (b.rootEntCnt === 0) {
    throw bad(`the volume has ${clusterCount} clusters (FAT${fatType}) but no root directory entries (BPB_RootEntCnt 0).`, field('rootEntCnt', 0, '>= 1'));
  }
  // The FAT must have an entry for every cluster (0 and 1 are reserved).
  const fatBytesNeeded = fatType === 12 ? Math.ceil(((clusterCount + 2) * 3) / 2) : (clusterCount + 2) * (fatType / 8);
  if (fatBytesNeeded > fatSz * b.bytsPerSec) {
    throw bad(`a FAT of ${fatSz} sectors cannot hold the entries of ${clusterCount} clusters.`, {
      field: 'fatSz',
      expected: `>= ${Math.ceil(fatBytesNeeded / b.bytsPerSec)}`,
      actual: fatSz,
    });
  }
  let activeFat = 0;
  if (fatType === 32 && e32.extFlags & 0x80) {
    activeFat = e32.extFlags & 0x0f;
    if (activeFat >= b.numFats) {
      throw bad(`BPB_ExtFlags makes FAT ${activeFat} the active one, but there are ${b.numFats}.`, { field: 'extFlags', actual: e32.extFlags });
    }
  }
  const bps = b.bytsPerSec;
  const geometry: FatGeometry = {
    fatType,
    bytesPerSector: bps,
    clusterSize,
    clusterCount,
    fatOffset: (b.rsvdSecCnt + activeFat * fatSz) * bps,
    rootDirOffset: (b.rsvdSecCnt + b.numFats * fatSz) * bps,
    rootDirBytes: fatType === 32 ? 0 : b.rootEntCnt * DIR_ENTRY_BYTES,
    dataOffset: firstDataSector * bps,
    rootCluster: fatType === 32 ? e32.rootClus : 0,
    volumeId: '',
    bootLabel: '',
  };
  if (fatType === 32 && (e32.rootClus < 2 || e32.rootClus > clusterCount + 1)) {
    throw bad(`BPB_RootClus ${e32.rootClus} is not a cluster of the volume (2 to ${clusterCount + 1}).`, { field: 'rootClus', actual: e32.rootClus, expected: `2..${clusterCount + 1}` });
  }
  // The metadata must be there; clusters past the end of a cut image fail (E_TRUNCATED) when they are read.
  if (geometry.dataOffset > sourceSize) {
    throw new VerityError('E_TRUNCATED', `FAT: the FATs and root directory end at byte ${geometry.dataOffset}, past the end of the ${sourceSize}-byte volume.`, {
      data: { field: 'fatSz', expected: `<= ${sourceSize}`, actual: geometry.dataOffset },
    });
  }
  const ext = fatType === 32 ? e32 : FAT16_EBPB.get(sector, EBPB_OFFSET);
  if (ext.bootSig === 0x29) {
    const id = ext.volId.toString(16).toUpperCase().padStart(8, '0');
    geometry.volumeId = `${id.slice(0, 4)}-${id.slice(4)}`;
    geometry.bootLabel = cleanLabel(ext.volLab);
  }
  return geometry;
}

/** A label without its space padding; "NO NAME" is mkfs's word for none. */
function cleanLabel(label: string): string {
  const l = label.replace(/[ \0]+$/, '');
  return l === 'NO NAME' ? '' : l;
}

/** The FAT, read in windows on demand. */
class FatTable {
  private readonly windows = new Map<number, Uint8Array>();
  readonly endOfChain: number;
  readonly badCluster: number;

  constructor(
    private readonly source: ByteSource,
    private readonly g: FatGeometry,
  ) {
    this.endOfChain = g.fatType === 12 ? 0xff8 : g.fatType === 16 ? 0xfff8 : 0x0ffffff8;
    this.badCluster = this.endOfChain - 1;
  }

  private async byteAt(offset: number): Promise<number> {
    const index = Math.floor(offset / FAT_WINDOW);
    let window = this.windows.get(index);
    if (!window) {
      const start = this.g.fatOffset + index * FAT_WINDOW;
      const length = Math.min(FAT_WINDOW, this.source.size - start);
      if (length <= offset % FAT_WINDOW) {
        throw new VerityError('E_TRUNCATED', `FAT: the FAT entry at byte ${this.g.fatOffset + offset} lies past the end of the volume.`, {
          data: { offset: this.g.fatOffset + offset },
        });
      }
      window = new Uint8Array(length);
      await readExactly(this.source, window, start, 'FAT');
      if (this.windows.size >= FAT_WINDOWS_CACHED) this.windows.delete(this.windows.keys().next().value!);
      this.windows.set(index, window);
    }
    return window[offset % FAT_WINDOW]!;
  }

  /** The FAT entry of cluster `n` (§4, "FAT Data Structure"); FAT32's top 4 bits are reserved and masked off. */
  async entry(n: number): Promise<number> {
    switch (this.g.fatType) {
      case 12: {
        const off = n + (n >> 1);
        const v = (await this.byteAt(off)) | ((await this.byteAt(off + 1)) << 8);
        return n & 1 ? v >> 4 : v & 0xfff;
      }
      case 16:
        return (await this.byteAt(n * 2)) | ((await this.byteAt(n * 2 + 1)) << 8);
      default: {
        const o = n * 4;
        const v = (await this.byteAt(o)) | ((await this.byteAt(o + 1)) << 8) | ((await this.byteAt(o + 2)) << 16) | ((await this.byteAt(o + 3)) << 24);
        return (v >>> 0) & 0x0fffffff;
      }
    }
  }
}

/**
 * A cluster chain followed on demand: `cluster(i)` is the chain's i-th cluster. The chain may not leave the volume,
 * hit a free or bad cluster, come back to a cluster, or run longer than `limit` clusters.
 */
class Chain {
  private readonly clusters: number[];
  private readonly seen = new Set<number>();
  private ended = false;

  constructor(
    private readonly fat: FatTable,
    private readonly g: FatGeometry,
    first: number,
    private readonly limit: number,
    private readonly what: string,
  ) {
    this.check(first, 'its first cluster');
    this.clusters = [first];
    this.seen.add(first);
  }

  private check(cluster: number, where: string): void {
    if (cluster < 2 || cluster > this.g.clusterCount + 1) {
      throw bad(`${this.what}: ${where} is cluster ${cluster}, outside the volume's clusters 2 to ${this.g.clusterCount + 1}.`, {
        field: 'cluster',
        actual: cluster,
        expected: `2..${this.g.clusterCount + 1}`,
      });
    }
  }

  /** The i-th cluster, or null when the chain ends before it. */
  async cluster(i: number): Promise<number | null> {
    while (this.clusters.length <= i && !this.ended) {
      const last = this.clusters[this.clusters.length - 1]!;
      const next = await this.fat.entry(last);
      if (next >= this.fat.endOfChain) {
        this.ended = true;
        break;
      }
      if (next === this.fat.badCluster) throw bad(`${this.what}: the chain reaches a cluster marked bad (after cluster ${last}).`, { field: 'FAT entry', actual: next });
      if (next < 2) throw bad(`${this.what}: the chain reaches a free cluster (the FAT entry of cluster ${last} is ${next}).`, { field: 'FAT entry', actual: next });
      this.check(next, `the FAT entry of cluster ${last}`);
      if (this.seen.has(next)) {
        throw bad(`${this.what}: the cluster chain loops (cluster ${last} leads back to cluster ${next}).`, { field: 'FAT entry', actual: next });
      }
      if (this.clusters.length >= this.limit) {
        throw bad(`${this.what}: the cluster chain is longer than ${this.limit} clusters.`, { field: 'FAT entry', expected: `<= ${this.limit} clusters` });
      }
      this.seen.add(next);
      this.clusters.push(next);
    }
    return i < this.clusters.length ? this.clusters[i]! : null;
  }
}

interface FatEntry {
  /** The long name when there is a valid one, else the short name as displayed. */
  name: string;
  shortName: string;
  directory: boolean;
  size: number;
  firstCluster: number;
}

/** The LFN checksum of an 11-byte short name (§7.2). */
export function shortNameChecksum(name: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + name[i]!) & 0xff;
  return sum;
}

/** The 8.3 name as displayed: "BASE.EXT", with DIR_NTRes's lower-case flags applied. */
function displayShortName(raw: Uint8Array, ntRes: number): string {
  const bytes = raw.slice();
  if (bytes[0] === 0x05) bytes[0] = 0xe5; // §6.1: 0x05 stands for a leading 0xE5 (KANJI lead byte)
  // Bytes above 0x7F are in the OEM code page; they are shown as Latin-1 here.
  let base = String.fromCharCode(...bytes.subarray(0, 8)).replace(/ +$/, '');
  let ext = String.fromCharCode(...bytes.subarray(8, 11)).replace(/ +$/, '');
  if (ntRes & 0x08) base = base.toLowerCase();
  if (ntRes & 0x10) ext = ext.toLowerCase();
  return ext ? `${base}.${ext}` : base;
}

/** The 13 UCS-2 characters of a long-name entry, up to the first NUL (0xFFFF pads after it). */
function lfnPiece(bytes: Uint8Array, offset: number): { text: string; ended: boolean } {
  const e = FAT_LFN_ENTRY.get(bytes, offset);
  const units = [...e.name1, ...e.name2, ...e.name3];
  let text = '';
  for (let i = 0; i + 1 < units.length; i += 2) {
    const unit = units[i]! | (units[i + 1]! << 8);
    if (unit === 0) return { text, ended: true };
    text += String.fromCharCode(unit);
  }
  return { text, ended: false };
}

/** Parses a directory's bytes into entries, with their long names where the LFN entries check out. */
function parseDirectory(data: Uint8Array, fatType: FatType): { entries: FatEntry[]; label: string | null } {
  const entries: FatEntry[] = [];
  let label: string | null = null;
  // The long name being gathered: pieces by sequence number, expected next number, checksum.
  let pieces: string[] = [];
  let expectOrd = 0;
  let checksum = -1;
  for (let off = 0; off + DIR_ENTRY_BYTES <= data.length; off += DIR_ENTRY_BYTES) {
    const first = data[off]!;
    if (first === 0x00) break; // §6.1: this and every later entry are free
    if (first === 0xe5) {
      expectOrd = 0;
      continue;
    }
    const attr = data[off + 11]!;
    if ((attr & ATTR_LONG_NAME_MASK) === ATTR_LONG_NAME) {
      const lfn = FAT_LFN_ENTRY.get(data, off);
      const ord = lfn.ord & 0x3f;
      if (lfn.ord & LAST_LONG_ENTRY) {
        pieces = [];
        expectOrd = ord;
        checksum = lfn.chksum;
      }
      // An entry out of sequence orphans the long name (§7.1): the short name is used.
      if (ord === 0 || ord !== expectOrd || lfn.chksum !== checksum || lfn.type !== 0) {
        expectOrd = 0;
        continue;
      }
      pieces[ord - 1] = lfnPiece(data, off).text;
      expectOrd = ord - 1 === 0 ? -1 : ord - 1; // -1: complete, waiting for its short entry
      continue;
    }
    const rec: DirRecord = FAT_DIR_ENTRY.get(data, off);
    const complete = expectOrd === -1 && shortNameChecksum(rec.name) === checksum;
    expectOrd = 0;
    if (attr & ATTR_VOLUME_ID) {
      if (!(attr & ATTR_DIRECTORY) && label === null) label = cleanLabel(String.fromCharCode(...rec.name));
      continue;
    }
    const shortName = displayShortName(rec.name, rec.ntRes);
    const longName = complete ? pieces.join('') : '';
    // A name no path can reach (empty, with '/' or NUL, or a long name "." or "..") is not offered.
    const name = usable(longName) && longName !== '.' && longName !== '..' ? longName : shortName;
    if (!usable(name)) continue;
    entries.push({
      name,
      shortName,
      directory: (attr & ATTR_DIRECTORY) !== 0,
      size: rec.fileSize,
      // DIR_FstClusHI counts on FAT32 only (§6.1); FAT12/16 may leave anything there.
      firstCluster: rec.fstClusLo + (fatType === 32 ? rec.fstClusHi * 0x10000 : 0),
    });
  }
  return { entries, label };
}

const fold = (s: string) => s.toLowerCase();
const usable = (name: string) => name !== '' && !/[/\0]/.test(name);

export class FatVolume implements Volume {
  readonly kind = 'fat' as const;
  readonly uuid: string;
  label: string;
  readonly fatType: FatType;
  readonly clusterSize: number;
  readonly clusterCount: number;
  private readonly fat: FatTable;
  private readonly dirs = new Map<number, FatEntry[]>();

  constructor(
    readonly source: ByteSource,
    readonly geometry: FatGeometry,
  ) {
    this.fatType = geometry.fatType;
    this.clusterSize = geometry.clusterSize;
    this.clusterCount = geometry.clusterCount;
    this.uuid = geometry.volumeId;
    this.label = geometry.bootLabel;
    this.fat = new FatTable(source, geometry);
  }

  private clusterOffset(cluster: number): number {
    return this.geometry.dataOffset + (cluster - 2) * this.clusterSize;
  }

  /** The entries of the directory starting at `cluster` (0: the root), read whole (at most 65536 entries). */
  async directory(cluster: number): Promise<FatEntry[]> {
    const cached = this.dirs.get(cluster);
    if (cached) return cached;
    const g = this.geometry;
    let data: Uint8Array;
    if (cluster === 0 && g.fatType !== 32) {
      data = new Uint8Array(g.rootDirBytes);
      await readExactly(this.source, data, g.rootDirOffset, 'FAT root directory');
    } else {
      const first = cluster === 0 ? g.rootCluster : cluster;
      const maxClusters = Math.ceil((MAX_DIR_ENTRIES * DIR_ENTRY_BYTES) / this.clusterSize);
      const chain = new Chain(this.fat, g, first, Math.min(maxClusters, g.clusterCount), cluster === 0 ? 'the root directory' : `the directory at cluster ${cluster}`);
      const parts: Uint8Array[] = [];
      for (let i = 0; ; i++) {
        const c = await chain.cluster(i);
        if (c === null) break;
        const part = new Uint8Array(this.clusterSize);
        await readExactly(this.source, part, this.clusterOffset(c), `FAT directory cluster ${c}`);
        parts.push(part);
        // Stop at the end-of-directory mark rather than reading clusters nobody uses.
        if (endMarkIn(part)) break;
      }
      data = new Uint8Array(parts.length * this.clusterSize);
      parts.forEach((p, i) => data.set(p, i * this.clusterSize));
    }
    const { entries, label } = parseDirectory(data, g.fatType);
    if (cluster === 0 && label !== null) this.label = label;
    if (this.dirs.size >= DIRS_CACHED) this.dirs.delete(this.dirs.keys().next().value!);
    this.dirs.set(cluster, entries);
    return entries;
  }

  /** The entry `path` names, or the root (null entry) for "/", or undefined when there is none. */
  private async resolve(path: string): Promise<{ entry: FatEntry | null } | undefined> {
    const stack: FatEntry[] = [];
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1];
      if (dir && !dir.directory) return undefined;
      const entries = await this.directory(dir ? this.dirCluster(dir) : 0);
      const want = fold(part);
      const found = entries.find((e) => e.name !== '.' && e.name !== '..' && (fold(e.name) === want || fold(e.shortName) === want));
      if (!found) return undefined;
      stack.push(found);
    }
    return { entry: stack[stack.length - 1] ?? null };
  }

  /** A subdirectory's first cluster; 0 (the root) is not a subdirectory's. */
  private dirCluster(e: FatEntry): number {
    if (e.firstCluster === 0) throw bad(`directory "${e.name}" has no first cluster.`, { field: 'DIR_FstClusLO', actual: 0, path: e.name });
    return e.firstCluster;
  }

  async list(path: string): Promise<DirEntry[] | null> {
    const r = await this.resolve(path);
    if (!r || (r.entry && !r.entry.directory)) return null;
    const entries = await this.directory(r.entry ? this.dirCluster(r.entry) : 0);
    return entries
      .filter((e) => e.name !== '.' && e.name !== '..')
      .map((e) => ({ name: e.name, kind: e.directory ? 'directory' : 'file', size: e.directory ? 0 : e.size }));
  }

  private async file(path: string): Promise<FatEntry | null> {
    const r = await this.resolve(path);
    return r?.entry && !r.entry.directory ? r.entry : null;
  }

  async readFile(path: string, maxBytes: number): Promise<Uint8Array | null> {
    const e = await this.file(path);
    if (!e) return null;
    if (e.size > maxBytes) {
      throw new VerityError('E_UNSUPPORTED', `FAT: ${path} is ${e.size} bytes, above the ${maxBytes}-byte limit for reading it whole.`, {
        data: { path, field: 'DIR_FileSize', actual: e.size, expected: `<= ${maxBytes}` },
      });
    }
    const out = new Uint8Array(e.size);
    await readExactly(this.fileSource(e, path), out, 0, `FAT ${path}`);
    return out;
  }

  async open(path: string): Promise<ByteSource | null> {
    const e = await this.file(path);
    return e ? this.fileSource(e, path) : null;
  }

  /** A source over the file's clusters, following its chain as reads reach further. */
  private fileSource(e: FatEntry, path: string): ByteSource {
    const size = e.size;
    const cs = this.clusterSize;
    if (size === 0) return { size: 0, read: async () => 0 };
    const needed = Math.ceil(size / cs);
    if (needed > this.geometry.clusterCount) {
      throw bad(`${path} is ${size} bytes, more than the volume's ${this.geometry.clusterCount} clusters hold.`, { path, field: 'DIR_FileSize', actual: size });
    }
    const chain = new Chain(this.fat, this.geometry, e.firstCluster, needed, path);
    return {
      size,
      read: async (dst, position) => {
        if (!Number.isSafeInteger(position) || position < 0) throw new VerityError('E_PARAM', `Invalid read position ${position}.`);
        if (position >= size) return 0;
        const n = Math.min(dst.length, size - position);
        let done = 0;
        while (done < n) {
          const at = position + done;
          const index = Math.floor(at / cs);
          const first = await chain.cluster(index);
          if (first === null) {
            throw bad(`${path} is ${size} bytes, but its cluster chain ends after ${index} clusters.`, { path, field: 'DIR_FileSize', actual: size, expected: `<= ${index * cs}` });
          }
          // Extend over clusters that follow each other on disk, to read them at once.
          let run = 1;
          while (done + run * cs - (at % cs) < n && (await chain.cluster(index + run)) === first + run) run++;
          const take = Math.min(n - done, run * cs - (at % cs));
          const from = this.clusterOffset(first) + (at % cs);
          if (from + take > this.source.size) {
            throw new VerityError('E_TRUNCATED', `FAT: ${path} continues at byte ${from}, past the end of the ${this.source.size}-byte volume.`, {
              data: { path, offset: from, expected: `<= ${this.source.size}`, actual: from + take },
            });
          }
          await readExactly(this.source, dst.subarray(done, done + take), from, `FAT ${path}`);
          done += take;
        }
        return n;
      },
    };
  }
}

function endMarkIn(cluster: Uint8Array): boolean {
  for (let off = 0; off < cluster.length; off += DIR_ENTRY_BYTES) if (cluster[off] === 0) return true;
  return false;
}

/**
 * Opens a FAT12, FAT16 or FAT32 volume: reads and checks its boot sector and its root directory (for the label);
 * everything else is read on demand.
 */
export async function openFat(source: ByteSource): Promise<FatVolume> {
  if (source.size < 512) {
    throw new VerityError('E_TRUNCATED', `FAT: a volume needs at least its 512-byte boot sector; this one has ${source.size} bytes.`, {
      data: { expected: 512, actual: source.size },
    });
  }
  const sector = new Uint8Array(512);
  await readExactly(source, sector, 0, 'FAT boot sector');
  const volume = new FatVolume(source, parseFatBootSector(sector, source.size));
  await volume.directory(0);
  return volume;
}
