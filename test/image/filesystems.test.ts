import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  EROFS_MAGIC,
  EROFS_SUPERBLOCK,
  EXT4_SUPERBLOCK,
  filesystemOf,
  FS_SUPERBLOCK_OFFSET,
  SQUASHFS_MAGIC,
  SQUASHFS_SUPERBLOCK,
} from '../../src/image/filesystems.js';

/** The bundled sample, made by mke2fs (samples/make-sample.sh): 4 MiB, 4096-byte blocks. */
const SAMPLE = new Uint8Array(readFileSync(new URL('../../samples/rootfs.ext4', import.meta.url)));

describe('filesystem superblocks', () => {
  it('an ext4 superblock written by mke2fs reads as its size, and writing back what was read changes no byte', () => {
    expect(filesystemOf(SAMPLE.subarray(0, 2048))).toEqual({ type: 'ext4', size: SAMPLE.length });
    const sb = EXT4_SUPERBLOCK.get(SAMPLE, FS_SUPERBLOCK_OFFSET);
    expect(sb).toMatchObject({ magic: 0xef53, logBlockSize: 2, blocksCountLo: SAMPLE.length / 4096 });
    const copy = SAMPLE.slice(0, 2048);
    EXT4_SUPERBLOCK.put(copy, FS_SUPERBLOCK_OFFSET, sb);
    expect(copy).toEqual(SAMPLE.subarray(0, 2048));
  });

  it('a 64-bit ext4 adds s_blocks_count_hi; an absurd block size is not a filesystem', () => {
    const head = SAMPLE.slice(0, 2048);
    const sb = EXT4_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
    EXT4_SUPERBLOCK.put(head, FS_SUPERBLOCK_OFFSET, { ...sb, featureIncompat: sb.featureIncompat | 0x80, blocksCountHi: 3 });
    expect(filesystemOf(head)).toEqual({ type: 'ext4', size: (sb.blocksCountLo + 3 * 2 ** 32) * 4096 });
    EXT4_SUPERBLOCK.put(head, FS_SUPERBLOCK_OFFSET, { ...sb, logBlockSize: 7 });
    expect(filesystemOf(head)).toBeNull();
  });

  it('squashfs: bytes_used is the size', () => {
    const head = new Uint8Array(2048);
    const sb = SQUASHFS_SUPERBLOCK.get(new Uint8Array(SQUASHFS_SUPERBLOCK.len), 0);
    SQUASHFS_SUPERBLOCK.put(head, 0, { ...sb, magic: SQUASHFS_MAGIC, bytesUsed: 2n ** 33n + 5n });
    expect([...head.subarray(0, 4)]).toEqual([...new TextEncoder().encode('hsqs')]);
    expect(filesystemOf(head)).toEqual({ type: 'squashfs', size: 2 ** 33 + 5 });
    expect(SQUASHFS_SUPERBLOCK.serialize(SQUASHFS_SUPERBLOCK.get(head, 0))).toEqual(head.subarray(0, SQUASHFS_SUPERBLOCK.len));
  });

  it('EROFS: blocks × 2^blkszbits, block sizes 512 to 64 KiB only', () => {
    const head = new Uint8Array(2048);
    const sb = EROFS_SUPERBLOCK.get(new Uint8Array(EROFS_SUPERBLOCK.len), 0);
    EROFS_SUPERBLOCK.put(head, FS_SUPERBLOCK_OFFSET, { ...sb, magic: EROFS_MAGIC, blkszbits: 12, blocks: 1000 });
    expect(filesystemOf(head)).toEqual({ type: 'erofs', size: 4096 * 1000 });
    EROFS_SUPERBLOCK.put(head, FS_SUPERBLOCK_OFFSET, { ...sb, magic: EROFS_MAGIC, blkszbits: 20, blocks: 1000 });
    expect(filesystemOf(head)).toBeNull();
  });

  it('nothing is recognised in zeros or in too short a head', () => {
    expect(filesystemOf(new Uint8Array(2048))).toBeNull();
    expect(filesystemOf(SAMPLE.subarray(0, 1500))).toBeNull();
  });
});
