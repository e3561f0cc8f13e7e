/**
 * Node file adapters: read-only inputs, positional writes, and outputs that appear at their destination only when
 * complete (written to a temporary file beside it, flushed, renamed).
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { VerityError } from '../errors.js';
import { DEFAULT_DEVICE_BLOCK_SIZE } from '../format/params.js';
import { MemorySink, type ByteSource, type ReadWriteSink } from '../io/source.js';
import { tmpdir } from 'node:os';

function ioError(e: unknown, path: string, doing: string): VerityError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR') {
    return new VerityError('E_NO_FILE', `Device ${path} does not exist or access denied.`, { cause: e, data: { path } });
  }
  if (code === 'EISDIR') {
    return new VerityError('E_NO_FILE', `${path} is a directory, not a file or block device.`, { cause: e, data: { path } });
  }
  return new VerityError('E_IO', `Cannot ${doing} ${path}: ${(e as Error).message}`, { cause: e, data: { path } });
}

/**
 * Why an output file cannot be created, in terms of its directory: the temporary file we tried is our business, and
 * "does not exist or access denied" (veritysetup's words for an input) would not say what to fix.
 */
function createError(e: unknown, path: string): VerityError {
  const dir = dirname(path);
  const reasons: Record<string, string> = {
    ENOENT: `the directory ${dir} does not exist`,
    ENOTDIR: `${dir} is not a directory`,
    EACCES: `no permission to write in ${dir}`,
    EPERM: `no permission to write in ${dir}`,
    EROFS: `${dir} is on a read-only filesystem`,
    ENOSPC: `no space left in ${dir}`,
  };
  const reason = reasons[(e as NodeJS.ErrnoException).code ?? ''];
  if (reason === undefined) return ioError(e, path, 'create');
  return new VerityError(reason.startsWith('the directory') ? 'E_NO_FILE' : 'E_IO', `Cannot create ${path}: ${reason}.`, {
    cause: e,
    data: { path },
  });
}

/** Size of a Linux block device, from sysfs (fstat reports 0 for block devices). */
async function blockDeviceSize(stats: Stats, path: string): Promise<number> {
  const major = Math.floor(stats.rdev / 256) & 0xfff;
  const minor = (stats.rdev & 0xff) | ((Math.floor(stats.rdev / 4096) & 0xfff00) >>> 0);
  try {
    const sectors = Number((await fs.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    return sectors * 512;
  } catch (e) {
    throw new VerityError('E_IO', `Cannot determine the size of block device ${path}.`, { cause: e, data: { path } });
  }
}

export interface FileSource extends ByteSource {
  readonly path: string;
  readonly stats: Stats;
  close(): Promise<void>;
}

/** Opens `path` read-only. Inputs are never opened for writing. */
export async function openFileSource(path: string): Promise<FileSource> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, constants.O_RDONLY);
  } catch (e) {
    throw ioError(e, path, 'open');
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) throw ioError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), path, 'open');
    const size = stats.isBlockDevice() ? await blockDeviceSize(stats, path) : stats.size;
    return {
      path,
      stats,
      size,
      read: positionalRead(handle, path),
      // Threads of this process read the same descriptor by position (threads/file-reads.ts).
      fileSpans: (offset, length) =>
        offset >= 0 && length >= 0 && offset + length <= size ? [{ fd: handle.fd, at: offset, length, path }] : undefined,
      close: () => handle.close(),
    };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** `ByteSource.read` over an open file: a positional read, failing with a message that names the file. */
function positionalRead(handle: fs.FileHandle, path: string): (dst: Uint8Array, position: number) => Promise<number> {
  return async (dst, position) => {
    try {
      const { bytesRead } = await handle.read(dst, 0, dst.length, position);
      return bytesRead;
    } catch (e) {
      throw ioError(e, path, 'read');
    }
  };
}

export interface FileSink extends ReadWriteSink {
  sync(): Promise<void>;
  close(): Promise<void>;
}

function sinkOver(handle: fs.FileHandle, path: string): FileSink {
  return {
    async write(src, position) {
      try {
        let done = 0;
        while (done < src.length) {
          const { bytesWritten } = await handle.write(src, done, src.length - done, position + done);
          done += bytesWritten;
        }
      } catch (e) {
        throw ioError(e, path, 'write');
      }
    },
    read: positionalRead(handle, path),
    sync: () => handle.sync(),
    close: () => handle.close(),
  };
}

const liveInPlace = new Set<string>();

/** Files being updated in place right now: an interruption leaves them incomplete, and the user must be told. */
export function pendingInPlace(): readonly string[] {
  return [...liveInPlace];
}

/** Opens an existing file for in-place writes, never truncating it (veritysetup opens the hash device "r+"). */
export async function openInPlace(path: string): Promise<FileSink> {
  let sink: FileSink;
  try {
    sink = sinkOver(await fs.open(path, constants.O_RDWR), path);
  } catch (e) {
    throw ioError(e, path, 'open for writing');
  }
  liveInPlace.add(path);
  return {
    ...sink,
    close: async () => {
      liveInPlace.delete(path);
      await sink.close();
    },
  };
}

export interface AtomicOutput {
  readonly sink: FileSink;
  /** Flushes, closes and renames the temporary file into place. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file; safe to call more than once, and after commit. */
  abort(): Promise<void>;
}

const liveTemporaries = new Set<string>();

/** Temporary files not yet committed; a signal handler removes them before the process exits. */
export function pendingTemporaries(): readonly string[] {
  return [...liveTemporaries];
}

/**
 * Creates `path`'s content in a temporary file in the same directory (so the rename is atomic), mode 0600 as
 * veritysetup creates hash images. A crash leaves at most a stray temporary file, never a partial `path`.
 */
export async function createAtomic(path: string, mode = 0o600): Promise<AtomicOutput> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.FileHandle;
  // Registered before it exists: a Ctrl-C between the file's creation and this function's next step must remove it.
  liveTemporaries.add(temp);
  try {
    handle = await fs.open(temp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (e) {
    liveTemporaries.delete(temp);
    throw createError(e, path);
  }
  let open = true;
  const close = async () => {
    if (open) {
      open = false;
      await handle.close();
    }
  };
  return {
    // Errors name the destination the user asked for; the temporary file is our business.
    sink: sinkOver(handle, path),
    async commit() {
      try {
        await handle.sync();
        await close();
        await fs.rename(temp, path);
        liveTemporaries.delete(temp);
      } catch (e) {
        throw ioError(e, path, 'write');
      }
    },
    async abort() {
      await close().catch(() => {});
      if (liveTemporaries.delete(temp)) await fs.rm(temp, { force: true });
    },
  };
}

/** Writes a small file atomically (root hash files). */
export async function writeFileAtomic(path: string, content: string | Uint8Array, mode = 0o600): Promise<void> {
  const out = await createAtomic(path, mode);
  try {
    await out.sink.write(typeof content === 'string' ? new TextEncoder().encode(content) : content, 0);
    await out.commit();
  } finally {
    await out.abort();
  }
}

/** Whether anything exists at `path` (false also when it cannot be looked up at all). */
export function pathExists(path: string): Promise<boolean> {
  return fs.access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

export async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await fs.stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(e, path, 'stat');
  }
}

export function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * The block size veritysetup uses for its read-modify-write of the superblock on a regular file
 * (lib/utils_device.c: device_block_size_fd): the filesystem's f_bsize, capped at the page size.
 */
export async function fsBlockSize(path: string): Promise<number> {
  try {
    const { bsize } = await fs.statfs(dirname(path));
    return bsize > 0 && bsize <= DEFAULT_DEVICE_BLOCK_SIZE ? bsize : DEFAULT_DEVICE_BLOCK_SIZE;
  } catch {
    return DEFAULT_DEVICE_BLOCK_SIZE;
  }
}

/** Scratch kept in memory up to this size; larger goes to a temporary file. */
const SCRATCH_IN_MEMORY = 32 * 1024 * 1024;

/**
 * Temporary storage for `bytes` of intermediate data (a streamed verify's level 0 and hash-area copy): memory when
 * small, else a file in the temporary directory that is removed as soon as it is open (and so never outlives us).
 */
export async function createScratch(bytes: number): Promise<ReadWriteSink & { close(): Promise<void> }> {
  if (bytes <= SCRATCH_IN_MEMORY) return Object.assign(new MemorySink(), { close: async () => {} });
  const path = join(tmpdir(), `verity-scratch-${process.pid}-${randomBytes(6).toString('hex')}`);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'wx+', 0o600);
  } catch (e) {
    throw ioError(e, path, 'create');
  }
  await fs.unlink(path).catch(() => {});
  const sink = sinkOver(handle, path);
  return { write: sink.write, read: sink.read, close: () => handle.close() };
}
