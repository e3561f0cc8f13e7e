/**
 * What every filesystem reader of the core (ext4, FAT) offers: read-only access to files by path, as the boot
 * configuration search needs it (grub.cfg, GRUB environment blocks, BLS entries, UKIs, an initramfs). Paths are
 * absolute, '/'-separated; symbolic links are followed (a bounded number of times). Every size and block number read
 * from an image is untrusted: a reader fails with E_BAD_IMAGE (malformed), E_TRUNCATED (past the end of the source)
 * or E_UNSUPPORTED (a valid feature it does not read), never with a hang or an allocation an image field sized.
 */
import type { ByteSource } from '../io/source.js';

export type FilesystemKind = 'ext4' | 'fat';

export interface DirEntry {
  name: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  /** Bytes (files and symlinks); 0 for others. */
  size: number;
}

export interface Volume {
  readonly kind: FilesystemKind;
  /** ext4: the filesystem UUID in lower case (8-4-4-4-12); FAT: the volume id as `ABCD-EF01` (upper case). */
  readonly uuid: string;
  /** The volume label ('' when none). */
  readonly label: string;
  /** The directory's entries (without `.` and `..`), or null when `path` is not a directory. */
  list(path: string): Promise<DirEntry[] | null>;
  /** The whole file at `path`, or null when there is none. Throws E_UNSUPPORTED when it is larger than `maxBytes`. */
  readFile(path: string, maxBytes: number): Promise<Uint8Array | null>;
  /** The file at `path` as a random-access source (large files: an initramfs), or null when there is none. */
  open(path: string): Promise<ByteSource | null>;
}
