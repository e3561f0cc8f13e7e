/**
 * Where a disk image's bytes lie in its file (ByteSource.fileSpans), so the hash pool's threads can read them by
 * themselves: exactly the bytes `read` returns, for present blocks only; nothing where a block is absent or a
 * replayed log may have changed the bytes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openVhd } from '../../src/image/vhd.js';
import { openVhdx } from '../../src/image/vhdx/vhdx.js';
import { PayloadState } from '../../src/image/vhdx/structures.js';
import { openFileSource } from '../../src/files/files.js';
import { bytesSource, type ByteSource } from '../../src/io/source.js';
import { readSpans } from '../../src/threads/file-reads.js';
import { buildVhdx, G, logEntry, placeLog } from '../support/vhdx-writer.js';
import { HAS_QEMU_IMG, SKIP_QEMU, run, useWorkDir, workDir } from './vhdx/helpers.js';

useWorkDir();

const MiB = 1 << 20;

/**
 * Walks `img` in windows of `step` bytes: where `present(at, length)` says every block is in the file, the spans must
 * give the bytes `read` gives; elsewhere there must be none. Returns how many windows had spans.
 */
async function expectSpansMatchReads(img: ByteSource, step: number, present: (at: number, length: number) => boolean) {
  let mapped = 0;
  for (let at = 0; at < img.size; at += step) {
    const length = Math.min(step, img.size - at);
    const spans = img.fileSpans!(at, length);
    const expected = new Uint8Array(length);
    await img.read(expected, at);
    if (!present(at, length)) {
      expect(spans, `window at ${at}`).toBeUndefined();
      continue;
    }
    expect(spans, `window at ${at}`).toBeDefined();
    const got = new Uint8Array(length);
    readSpans(spans!, got);
    expect(Buffer.compare(got, expected), `window at ${at}`).toBe(0);
    mapped++;
  }
  return mapped;
}

describe('VHDX', () => {
  // Blocks 9, 1, 4, 5 in the file, in that order: 4 and 5 adjacent in both, 9 before them in the file.
  const spec = {
    virtualSize: 12 * MiB,
    blockSize: MiB,
    present: [9, 1, 4, 5],
    states: { 2: PayloadState.ZERO, 3: PayloadState.UNMAPPED, 7: PayloadState.UNDEFINED },
  };
  const inFile = (at: number, length: number) => {
    for (let b = Math.floor(at / MiB); b * MiB < at + length; b++) if (!spec.present.includes(b)) return false;
    return true;
  };

  it('present payload blocks lie in the file as read returns them; absent ones, whatever their state, do not', async () => {
    const path = join(workDir(), 'sparse.vhdx');
    writeFileSync(path, buildVhdx(spec).file);
    const file = await openFileSource(path);
    try {
      const img = await openVhdx(file);
      // Windows across block boundaries (3 MiB / 7), and whole blocks.
      expect(await expectSpansMatchReads(img, Math.floor((3 * MiB) / 7), inFile)).toBeGreaterThan(4);
      expect(await expectSpansMatchReads(img, 2 * MiB, inFile)).toBe(1); // blocks 4–5
      // Blocks 4 and 5 follow each other in the file: one span.
      expect(img.fileSpans!(4 * MiB + 10, MiB)).toHaveLength(1);
      expect(img.fileSpans!(img.size - 1, 2)).toBeUndefined();
    } finally {
      await file.close();
    }
  });

  it('a replayed log may change any byte: no spans at all, so every byte is read', async () => {
    const built = buildVhdx({ virtualSize: 8 * MiB, blockSize: MiB, present: [1], logGuid: G.logGuid });
    const entry = logEntry({
      seq: 6n,
      tail: 0,
      fileSize: built.file.length,
      descs: [{ target: built.offsetOf.get(1)!, data: new Uint8Array(4096).fill(0x22) }],
    });
    placeLog(built.file, entry, 0);
    const path = join(workDir(), 'replayed.vhdx');
    writeFileSync(path, built.file);
    const file = await openFileSource(path);
    try {
      const img = await openVhdx(file);
      expect(img.info.replay).toMatchObject({ replayed: true });
      expect(img.fileSpans!(MiB, 4096)).toBeUndefined();
    } finally {
      await file.close();
    }
  });

  it('from memory (no file) there are no spans', async () => {
    const img = await openVhdx(bytesSource(buildVhdx(spec).file));
    expect(img.fileSpans!(MiB, 4096)).toBeUndefined();
  });
});

describe(`VHD from qemu-img${SKIP_QEMU}`, () => {
  it.skipIf(!HAS_QEMU_IMG)('fixed: all of it; dynamic: the allocated blocks, as read returns them', async () => {
    const raw = join(workDir(), 'disk.raw');
    const bytes = new Uint8Array(8 * MiB);
    // Data in blocks 0 and 3 (2 MiB blocks): qemu-img allocates only those.
    globalThis.crypto.getRandomValues(bytes.subarray(100, 100 + 60_000));
    globalThis.crypto.getRandomValues(bytes.subarray(6 * MiB + 5, 6 * MiB + 65_000));
    writeFileSync(raw, bytes);
    for (const subformat of ['fixed', 'dynamic']) {
      const vhd = join(workDir(), `${subformat}.vhd`);
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', `subformat=${subformat},force_size=on`, raw, vhd]);
      const file = await openFileSource(vhd);
      try {
        const img = await openVhd(file);
        const allocated = (at: number, length: number) => {
          if (subformat === 'fixed') return true;
          for (let b = Math.floor(at / (2 * MiB)); b * 2 * MiB < at + length; b++) if (b !== 0 && b !== 3) return false;
          return true;
        };
        const mapped = await expectSpansMatchReads(img, MiB, allocated);
        expect(mapped).toBe(subformat === 'fixed' ? 8 : 4);
      } finally {
        await file.close();
      }
    }
  });
});
