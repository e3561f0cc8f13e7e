import { spawnSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  EROFS_MAGIC,
  EROFS_SUPERBLOCK,
  EXT4_FEATURE_INCOMPAT_64BIT,
  EXT4_SUPERBLOCK,
  filesystemOf,
  FS_SUPERBLOCK_OFFSET,
  SQUASHFS_MAGIC,
  SQUASHFS_SUPERBLOCK,
} from '../../src/image/filesystems.js';
import { findTool } from '../support/tools.js';
import { tempDirPerTest } from '../support/tree-damage.js';

const MKFS_EXT4 = findTool('mkfs.ext4', '/usr/sbin/mkfs.ext4');
const NEEDS_MKFS_EXT4 = MKFS_EXT4 ? '' : ' [SKIPPED: mkfs.ext4 not installed]';

/** The bundled sample, made by mke2fs (samples/make-sample.sh): 4 MiB, 4096-byte blocks. */
const SAMPLE = new Uint8Array(readFileSync(new URL('../../samples/rootfs.ext4', import.meta.url)));

describe('filesystem superblocks', () => {
  const dir = tempDirPerTest('filesystems-');

  it('an ext4 superblock written by mke2fs reads as its size, and writing back what was read changes no byte', () => {
    expect(filesystemOf(SAMPLE.subarray(0, 2048))).toEqual({ type: 'ext4', size: SAMPLE.length });
    const sb = EXT4_SUPERBLOCK.get(SAMPLE, FS_SUPERBLOCK_OFFSET);
    expect(sb).toMatchObject({ magic: 0xef53, logBlockSize: 2, blocksCountLo: SAMPLE.length / 4096 });
    const copy = SAMPLE.slice(0, 2048);
    EXT4_SUPERBLOCK.put(copy, FS_SUPERBLOCK_OFFSET, sb);
    expect(copy).toEqual(SAMPLE.subarray(0, 2048));
  });

  it.skipIf(!MKFS_EXT4)(`ext4 made by mkfs.ext4 with 64bit and 1024-byte blocks: its size, and a byte-identical rewrite${NEEDS_MKFS_EXT4}`, () => {
    const path = join(dir(), 'fs.img');
    writeFileSync(path, new Uint8Array(0));
    truncateSync(path, 3 * 1024 * 1024);
    const r = spawnSync(MKFS_EXT4!, ['-q', '-F', '-O', '64bit', '-b', '1024', '-L', 'sixty-four', path, '2500'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const head = new Uint8Array(readFileSync(path).subarray(0, 2048));
    const sb = EXT4_SUPERBLOCK.get(head, FS_SUPERBLOCK_OFFSET);
    expect(sb).toMatchObject({ logBlockSize: 0, firstDataBlock: 1, blocksCountLo: 2500, blocksCountHi: 0 });
    expect(new TextDecoder().decode(sb.volumeName)).toBe('sixty-four'.padEnd(16, '\0'));
    expect(sb.featureIncompat & EXT4_FEATURE_INCOMPAT_64BIT).toBe(EXT4_FEATURE_INCOMPAT_64BIT);
    expect(filesystemOf(head)).toEqual({ type: 'ext4', size: 2500 * 1024 });
    const copy = head.slice();
    EXT4_SUPERBLOCK.put(copy, FS_SUPERBLOCK_OFFSET, sb);
    expect(copy).toEqual(head);
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
    expect([...head.subarray(FS_SUPERBLOCK_OFFSET, FS_SUPERBLOCK_OFFSET + 4)]).toEqual([0xe2, 0xe1, 0xf5, 0xe0]);
    expect(filesystemOf(head)).toEqual({ type: 'erofs', size: 4096 * 1000 });
    EROFS_SUPERBLOCK.put(head, FS_SUPERBLOCK_OFFSET, { ...sb, magic: EROFS_MAGIC, blkszbits: 20, blocks: 1000 });
    expect(filesystemOf(head)).toBeNull();
  });

  it('every field survives serialise then parse (squashfs, EROFS)', () => {
    const squashfs = {
      magic: SQUASHFS_MAGIC, inodes: 7, mkfsTime: 0x65000000, blockSize: 131072, fragments: 2, compression: 4, blockLog: 17,
      flags: 0x1c0, noIds: 1, major: 4, minor: 0, rootInode: 0x12345n, bytesUsed: 2n ** 40n + 3n, idTableStart: 100n,
      xattrIdTableStart: 2n ** 64n - 1n, inodeTableStart: 200n, directoryTableStart: 300n, fragmentTableStart: 400n, lookupTableStart: 500n,
    };
    expect(SQUASHFS_SUPERBLOCK.get(SQUASHFS_SUPERBLOCK.serialize(squashfs), 0)).toEqual(squashfs);
    const volumeName = new Uint8Array(16);
    volumeName.set(new TextEncoder().encode('erofs-vol'));
    const erofs = {
      magic: EROFS_MAGIC, checksum: 0xcafef00d, featureCompat: 1, blkszbits: 12, sbExtslots: 0, rootNid: 36, inos: 12n,
      buildTime: 1700000000n, buildTimeNsec: 5, blocks: 99, metaBlkaddr: 0, xattrBlkaddr: 0,
      uuid: '00112233-4455-6677-8899-aabbccddeeff', volumeName, featureIncompat: 3,
    };
    expect(EROFS_SUPERBLOCK.get(EROFS_SUPERBLOCK.serialize(erofs), 0)).toEqual(erofs);
  });

  it('nothing is recognised in zeros or in too short a head', () => {
    expect(filesystemOf(new Uint8Array(2048))).toBeNull();
    expect(filesystemOf(SAMPLE.subarray(0, 1500))).toBeNull();
  });
});
