/**
 * The read-only ext2/ext3/ext4 reader (src/fs/ext4/): `openExt4` gives a `Volume` with the filesystem's geometry.
 * Extents and block maps, inline data, fast and slow symbolic links and hashed directories are read; journals are
 * not replayed and checksums are not verified.
 */
export { openExt4, Ext4Volume, MAX_SYMLINK_HOPS } from './ext4/volume.js';
export type { Ext4Info } from './ext4/filesystem.js';
