/**
 * The VHDX log (metadata journal) and its replay in memory [MS-VHDX §2.3; qemu block/vhdx-log.c].
 *
 * A header with a non-zero LogGuid says the log may hold updates (BAT, metadata) not yet written to their place;
 * they must be applied before anything after the headers is read, even by a reader [MS-VHDX §2.3.3; qemu
 * `vhdx_parse_log`]. We never write the file: the replay builds an overlay (4 KiB sectors and zeroed ranges, by file
 * offset) and `ReplayedFile` presents the file as it would be after replay. Entry layouts: structures.ts; the
 * replay rules in full: docs/disk-image-formats.md.
 */
import { VerityError } from '../../errors.js';
import type { ByteSource, SequentialMap } from '../../io/source.js';
import { checkRange, readFully, readRange } from './io.js';
import {
  DATA_DESCRIPTOR,
  DATA_DESCRIPTOR_SIGNATURE,
  LOG_DATA_SECTOR,
  LOG_DATA_SIGNATURE,
  LOG_DESCRIPTOR_SIZE,
  LOG_DESCRIPTORS_AT,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_SIGNATURE,
  LOG_SECTOR_SIZE,
  MiB,
  ZERO_DESCRIPTOR,
  ZERO_DESCRIPTOR_SIGNATURE,
  checksumOf,
  descriptorSectors,
  joinLogSector,
  safeOffset,
} from './structures.js';

/**
 * The log is read whole, and the sectors it writes are kept, so replay costs at most about twice this much memory.
 * qemu and Hyper-V create 1 MiB logs; a larger dirty log is refused with E_UNSUPPORTED rather than allocated.
 */
export const MAX_REPLAYED_LOG_LENGTH = 64 * MiB;

export interface VhdxLogInfo {
  /** The current header's LogGuid: entries carrying it belong to the log; all others are stale. */
  guid: string;
  offset: number;
  length: number;
  /** True when an active sequence was found and applied in memory. */
  replayed: boolean;
  /** Entries applied, and their first and last sequence numbers. */
  entries: number;
  firstSequence: bigint | null;
  lastSequence: bigint | null;
  /** 4 KiB sectors written, and byte ranges zeroed, by the applied descriptors. */
  sectorsWritten: number;
  rangesZeroed: number;
  /**
   * Entries with this LogGuid whose checksum failed: torn writes from a crash, which the spec says to ignore (the
   * update they carried never reached its place either). Non-zero means the image was not closed cleanly.
   */
  discardedEntries: number;
  /** The file size after replay: larger than the file when an entry's LastFileOffset says the file grew. */
  replayedFileSize: number;
}

type Descriptor = { kind: 'data'; target: number; sector: Uint8Array } | { kind: 'zero'; target: number; length: number };

interface LogEntry {
  /** Index of the entry's first 4 KiB sector in the log. */
  sector: number;
  sectors: number;
  sequenceNumber: bigint;
  /** Log byte offset of the first entry of the sequence this entry ends (the head's Tail). */
  tail: number;
  flushedFileOffset: bigint;
  lastFileOffset: number;
  descriptors: Descriptor[];
}

/** What is found at a log sector: an entry, or how far to move on and whether it was a torn entry of this log. */
type Probe = { entry: LogEntry } | { skip: number; torn: boolean };

/**
 * Finds the active sequence of the log at `offset`/`length` (LogGuid `guid`) and returns the file as it reads after
 * replay. With no valid entry the file is returned unchanged (the log holds nothing that was not already written).
 */
export async function replayLog(
  file: ByteSource,
  log: { guid: string; offset: number; length: number },
): Promise<{ source: ByteSource; info: VhdxLogInfo }> {
  // A log the file cannot hold is a truncated (or corrupt) file before it is a large log.
  checkRange(file, log.offset, log.length, 'log');
  if (log.length > MAX_REPLAYED_LOG_LENGTH) {
    throw new VerityError(
      'E_UNSUPPORTED',
      `VHDX log of ${log.length} bytes must be replayed, but this reader replays logs of at most ` +
        `${MAX_REPLAYED_LOG_LENGTH} bytes in memory.`,
    );
  }
  const bytes = await readRange(file, log.offset, log.length, 'log');
  const scan = new LogScan(bytes, log.guid, log.offset);
  const sequence = scan.activeSequence();
  const info: VhdxLogInfo = {
    ...log,
    replayed: false,
    entries: 0,
    firstSequence: null,
    lastSequence: null,
    sectorsWritten: 0,
    rangesZeroed: 0,
    discardedEntries: scan.tornEntries,
    replayedFileSize: file.size,
  };
  if (sequence.length === 0) return { source: file, info };

  const overlay = new Overlay(file.size);
  for (const entry of sequence) {
    // [MS-VHDX §2.3; qemu `vhdx_log_flush`]: the file must be at least FlushedFileOffset long, or it lost data
    // that the log assumes is in place.
    if (entry.flushedFileOffset > BigInt(file.size)) {
      throw new VerityError(
        'E_TRUNCATED',
        `VHDX log entry ${entry.sequenceNumber} was written when the file had ${entry.flushedFileOffset} bytes; ` +
          `it now has ${file.size}: the file is truncated.`,
      );
    }
    for (const d of entry.descriptors) {
      if (d.kind === 'data') overlay.write(d.target, d.sector);
      else overlay.zero(d.target, d.length);
    }
    // The file grows to LastFileOffset, rounded up to 1 MiB as qemu does; the new bytes read as zeros.
    overlay.grow(Math.ceil(entry.lastFileOffset / MiB) * MiB);
  }
  overlay.seal();
  const last = sequence[sequence.length - 1]!;
  return {
    source: new ReplayedFile(file, overlay),
    info: {
      ...info,
      replayed: true,
      entries: sequence.length,
      firstSequence: sequence[0]!.sequenceNumber,
      lastSequence: last.sequenceNumber,
      sectorsWritten: overlay.sectorsWritten,
      rangesZeroed: overlay.rangesZeroed,
      replayedFileSize: overlay.size,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Finding the active sequence

class LogScan {
  private readonly sectorCount: number;
  private readonly probes = new Map<number, Probe>();
  tornEntries = 0;

  constructor(
    private readonly log: Uint8Array,
    private readonly guid: string,
    private readonly fileOffset: number,
  ) {
    this.sectorCount = log.length / LOG_SECTOR_SIZE;
  }

  /**
   * The log is a circular buffer of 4 KiB sectors; entries may wrap past its end. Like qemu's `vhdx_log_search`, scan
   * every sector from the start: where a valid entry begins, extend a sequence over the entries that follow it
   * contiguously, each with the previous sequence number + 1 (checked on every link, which qemu skips for the
   * second), and keep the sequence whose last entry has the highest sequence number. (qemu 7.2 ranks sequences by
   * their first entry and keeps the first met on a tie, so of a sequence that wraps it replays only the part after
   * the wrap; test/image/vhdx/log-replay.test.ts shows it.) A torn entry is skipped whole, as qemu does, so the scan
   * reads each log byte a bounded number of times whatever the entries claim.
   */
  activeSequence(): LogEntry[] {
    let best: LogEntry[] = [];
    let sector = 0;
    while (sector < this.sectorCount) {
      const first = this.probe(sector);
      if (!('entry' in first)) {
        sector += first.skip;
        continue;
      }
      const run = [first.entry];
      let runSectors = first.entry.sectors;
      while (runSectors < this.sectorCount) {
        const next = this.probe((sector + runSectors) % this.sectorCount);
        if (!('entry' in next)) break;
        if (next.entry.sequenceNumber !== run[run.length - 1]!.sequenceNumber + 1n) break;
        if (runSectors + next.entry.sectors > this.sectorCount) break;
        run.push(next.entry);
        runSectors += next.entry.sectors;
      }
      const head = run[run.length - 1]!.sequenceNumber;
      const bestHead = best.length ? best[best.length - 1]!.sequenceNumber : -1n;
      // On a tie the longer run wins: it is the same sequence seen from an earlier start (one that wraps past the end
      // of the buffer is first met from the sector after the wrap).
      if (head > bestHead || (head === bestHead && run.length > best.length)) best = run;
      sector += runSectors;
    }
    return this.fromTail(best);
  }

  /**
   * The head entry's Tail names the first entry of its sequence [MS-VHDX §2.3]; entries before it in the run were
   * already flushed. When the Tail names no entry of the run, replay the whole run: qemu ignores Tail altogether, and
   * doing as it does there is the reading most likely to match what wrote the log.
   */
  private fromTail(run: LogEntry[]): LogEntry[] {
    if (run.length === 0) return run;
    const tail = run[run.length - 1]!.tail;
    const start = run.findIndex((e) => e.sector * LOG_SECTOR_SIZE === tail);
    return start < 0 ? run : run.slice(start);
  }

  private probe(sector: number): Probe {
    let p = this.probes.get(sector);
    if (!p) {
      p = this.read(sector);
      if (!('entry' in p) && p.torn) this.tornEntries++;
      this.probes.set(sector, p);
    }
    return p;
  }

  /** Validates the entry starting at `sector` [qemu `vhdx_log_hdr_is_valid`, `vhdx_validate_log_entry`]. */
  private read(sector: number): Probe {
    const at = sector * LOG_SECTOR_SIZE;
    const h = LOG_ENTRY_HEADER.get(this.log, at);
    const notAnEntry = { skip: 1, torn: false };
    // Entries of other LogGuids are stale: left from earlier opens, ignored [MS-VHDX §2.2.2 LogGuid].
    if (h.signature !== LOG_ENTRY_SIGNATURE || h.logGuid !== this.guid) return notAnEntry;
    if (h.entryLength === 0 || h.entryLength % LOG_SECTOR_SIZE !== 0 || h.entryLength > this.log.length) return notAnEntry;
    if (h.sequenceNumber === 0n) return notAnEntry;
    const sectors = h.entryLength / LOG_SECTOR_SIZE;
    if (h.descriptorCount * LOG_DESCRIPTOR_SIZE > h.entryLength) return notAnEntry;
    const descSectors = descriptorSectors(h.descriptorCount);
    if (descSectors > sectors) return notAnEntry;

    const bytes = this.entryBytes(at, h.entryLength);
    if (checksumOf(LOG_ENTRY_HEADER, bytes) !== h.checksum) return { skip: sectors, torn: true };

    // The checksum holds, so the writer meant these bytes: anything malformed from here on is corruption, not a torn
    // write, and is an error (qemu also fails the open on an invalid descriptor).
    const where = `VHDX log entry at file offset ${this.fileOffset + at} (sequence ${h.sequenceNumber})`;
    const fail = (why: string) => new VerityError('E_BAD_IMAGE', `${where}: ${why}`);
    const descriptors: Descriptor[] = [];
    let dataSectors = 0;
    for (let i = 0; i < h.descriptorCount; i++) {
      const dAt = LOG_DESCRIPTORS_AT + i * LOG_DESCRIPTOR_SIZE;
      const z = ZERO_DESCRIPTOR.get(bytes, dAt);
      if (z.sequenceNumber !== h.sequenceNumber) throw fail(`descriptor ${i} has sequence number ${z.sequenceNumber}.`);
      const target = safeOffset(z.fileOffset, `log descriptor ${i} file offset`);
      if (target % LOG_SECTOR_SIZE !== 0) throw fail(`descriptor ${i} targets offset ${target}, not 4 KiB aligned.`);
      if (z.signature === ZERO_DESCRIPTOR_SIGNATURE) {
        const length = safeOffset(z.zeroLength, `log zero descriptor ${i} length`);
        if (length % LOG_SECTOR_SIZE !== 0 || !Number.isSafeInteger(target + length)) {
          throw fail(`zero descriptor ${i} has length ${length}, not a multiple of 4 KiB.`);
        }
        descriptors.push({ kind: 'zero', target, length });
      } else if (z.signature === DATA_DESCRIPTOR_SIGNATURE) {
        const d = DATA_DESCRIPTOR.get(bytes, dAt);
        const sAt = (descSectors + dataSectors) * LOG_SECTOR_SIZE;
        if (sAt + LOG_SECTOR_SIZE > bytes.length) throw fail(`data descriptor ${i} has no data sector in the entry.`);
        const s = LOG_DATA_SECTOR.get(bytes, sAt);
        const seq = (BigInt(s.sequenceHigh) << 32n) | BigInt(s.sequenceLow);
        if (s.signature !== LOG_DATA_SIGNATURE || seq !== d.sequenceNumber) {
          throw fail(`data sector ${dataSectors} does not match its descriptor.`);
        }
        descriptors.push({ kind: 'data', target, sector: joinLogSector(d, s) });
        dataSectors++;
      } else {
        throw fail(`descriptor ${i} has signature "${z.signature}".`);
      }
    }
    return {
      entry: {
        sector,
        sectors,
        sequenceNumber: h.sequenceNumber,
        tail: h.tail,
        flushedFileOffset: h.flushedFileOffset,
        lastFileOffset: safeOffset(h.lastFileOffset, `log entry ${h.sequenceNumber} LastFileOffset`),
        descriptors,
      },
    };
  }

  /** The entry's bytes; copied only when the entry wraps past the end of the circular log. */
  private entryBytes(at: number, length: number): Uint8Array {
    if (at + length <= this.log.length) return this.log.subarray(at, at + length);
    const out = new Uint8Array(length);
    const first = this.log.length - at;
    out.set(this.log.subarray(at), 0);
    out.set(this.log.subarray(0, length - first), first);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The overlay and the replayed file

/** What the replay wrote: whole 4 KiB sectors and zeroed ranges by file offset, and the file's new size. */
class Overlay {
  private readonly sectors = new Map<number, Uint8Array>();
  private zeroed: Array<[number, number]> = [];
  private sortedSectors: number[] = [];
  sectorsWritten = 0;
  rangesZeroed = 0;

  constructor(public size: number) {}

  write(target: number, sector: Uint8Array): void {
    this.sectors.set(target, sector);
    this.sectorsWritten++;
    this.grow(target + LOG_SECTOR_SIZE);
  }

  /** Zeroes [target, target + length): a later zero range hides sectors written before it, so drop those. */
  zero(target: number, length: number): void {
    if (length === 0) return;
    const end = target + length;
    if (this.sectors.size <= length / LOG_SECTOR_SIZE) {
      for (const key of [...this.sectors.keys()]) if (key >= target && key < end) this.sectors.delete(key);
    } else {
      for (let key = target; key < end; key += LOG_SECTOR_SIZE) this.sectors.delete(key);
    }
    this.zeroed.push([target, end]);
    this.rangesZeroed++;
    this.grow(end);
  }

  grow(size: number): void {
    if (size > this.size) this.size = size;
  }

  /** Sorts and merges for lookups. Sectors go on top of zero ranges: right, since `zero` dropped the older ones. */
  seal(): void {
    this.sortedSectors = [...this.sectors.keys()].sort((a, b) => a - b);
    const ranges = this.zeroed.sort((a, b) => a[0] - b[0]);
    const merged: Array<[number, number]> = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.zeroed = merged;
  }

  /** Applies the overlay to `dst`, which holds the file's bytes from `position`. */
  apply(dst: Uint8Array, position: number): void {
    const end = position + dst.length;
    for (let i = firstAtOrAfter(this.zeroed, position, (r) => r[1] - 1); i < this.zeroed.length; i++) {
      const [s, e] = this.zeroed[i]!;
      if (s >= end) break;
      dst.fill(0, Math.max(s, position) - position, Math.min(e, end) - position);
    }
    const keys = this.sortedSectors;
    for (let i = firstAtOrAfter(keys, position - LOG_SECTOR_SIZE + 1, (k) => k); i < keys.length; i++) {
      const key = keys[i]!;
      if (key >= end) break;
      const sector = this.sectors.get(key)!;
      const from = Math.max(key, position);
      const to = Math.min(key + LOG_SECTOR_SIZE, end);
      dst.set(sector.subarray(from - key, to - key), from - position);
    }
  }
}

/** Index of the first item whose `key` is ≥ `value` in an array sorted by `key`. */
function firstAtOrAfter<T>(items: readonly T[], value: number, key: (item: T) => number): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(items[mid]!) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The file as it reads after the log has been replayed: its bytes, zeros past its end, then the overlay. */
class ReplayedFile implements ByteSource {
  readonly size: number;
  readonly sequential?: SequentialMap;

  constructor(
    private readonly file: ByteSource,
    private readonly overlay: Overlay,
  ) {
    this.size = overlay.size;
    // Streamed straight from its origin (file offsets are origin offsets), the overlay patches bytes as they pass. A
    // log that grew the file writes past the origin's end; such a file is read the slow way.
    const inner = file.sequential;
    if (inner && inner.origin === file && overlay.size <= file.size) {
      this.sequential = {
        origin: file,
        runs: (offset, length) => inner.runs(offset, length),
        patch: (bytes, from) => overlay.apply(bytes, from),
      };
    }
  }

  async read(dst: Uint8Array, position: number): Promise<number> {
    if (position >= this.size) return 0;
    const out = dst.subarray(0, Math.min(dst.length, this.size - position));
    const physical = Math.max(0, Math.min(out.length, this.file.size - position));
    if (physical > 0) await readFully(this.file, out.subarray(0, physical), position, 'file');
    out.fill(0, physical);
    this.overlay.apply(out, position);
    return out.length;
  }
}
