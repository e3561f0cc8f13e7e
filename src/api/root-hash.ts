/**
 * The expected root hash of a verify: given as bytes or hex, or read from a file like veritysetup reads
 * `--root-hash-file`. The file is read once; its digest length is checked once the parameters are known.
 */
import { promises as fs } from 'node:fs';
import { fromHex } from '../binary/bytes.js';
import { printable } from '../binary/printable.js';
import { VerityError } from '../errors.js';
import type { VerifyOptions } from './options.js';

async function readRootHashText(path: string): Promise<string> {
  try {
    const stats = await fs.stat(path);
    if (!stats.isFile()) throw new VerityError('E_PARAM', `Invalid root hash file ${path}: not a regular file.`, { data: { path } });
    return await fs.readFile(path, 'latin1');
  } catch (e) {
    if (e instanceof VerityError) throw e;
    throw new VerityError('E_NO_FILE', `Cannot read root hash file ${path}: ${(e as Error).message}`, { cause: e, data: { path } });
  }
}

function parseRootHashText(text: string, path: string, digestBytes: number): Uint8Array {
  if (text.length < 2 * digestBytes) {
    throw new VerityError(
      'E_PARAM',
      `Invalid root hash file ${path}: it holds ${text.length} characters, a root hash needs ${2 * digestBytes}.`,
      { data: { path, expected: 2 * digestBytes, actual: text.length } },
    );
  }
  const head = text.slice(0, 2 * digestBytes);
  if (!/^[0-9a-fA-F]*$/.test(head)) {
    // veritysetup reads exactly that many characters from the start: whitespace or a prefix there is not skipped.
    throw new VerityError(
      'E_PARAM',
      `Invalid root hash file ${path}: it must start with ${2 * digestBytes} hex digits, but begins with "${printable(head)}".`,
      { data: { path } },
    );
  }
  return fromHex(head, `root hash in ${path}`);
}

/** A root hash given as text; its errors name the parameter. */
function parseRootHashString(text: string): Uint8Array {
  try {
    return fromHex(text, 'root hash string');
  } catch (e) {
    if (e instanceof VerityError) throw new VerityError(e.code, e.message, { cause: e, data: { ...e.data, field: 'rootHash' } });
    throw e;
  }
}

/**
 * Reads a root hash file like veritysetup: exactly 2 × digest-size hex characters from its start (a trailing
 * newline or anything after is ignored). A missing file is an error (veritysetup 2.6.1 exits 0 there; docs/format.md §6).
 */
export async function readRootHashFile(path: string, digestBytes: number): Promise<Uint8Array> {
  return parseRootHashText(await readRootHashText(path), path, digestBytes);
}

/** The root hash a verify expects, read once; `bytes` checks and returns it for a known digest size. */
export interface ExpectedRootHash {
  /** Before the parameters are known (to find a pair by it): the file's leading hex digits, or the given hash. */
  guess(): Uint8Array;
  /** The root hash for `algorithm` digests of `digestBytes` bytes; E_PARAM when it has another length. */
  bytes(digestBytes: number, algorithm: string): Uint8Array;
}

/** Resolves the root hash options once: reads the file (which wins, as in veritysetup) or takes the given hash. */
export async function expectedRootHash(options: Pick<VerifyOptions, 'rootHash' | 'rootHashFile'>): Promise<ExpectedRootHash> {
  if (options.rootHashFile !== undefined) {
    const path = options.rootHashFile;
    const text = await readRootHashText(path);
    const digits = /^[0-9a-fA-F]*/.exec(text)![0].length;
    const guessBytes = Math.max(1, Math.floor(digits / 2));
    return {
      guess: () => parseRootHashText(text, path, guessBytes),
      bytes: (digestBytes) => parseRootHashText(text, path, digestBytes),
    };
  }
  if (options.rootHash === undefined) {
    throw new VerityError('E_PARAM', 'A root hash is required: give it as an argument or with a root hash file.', {
      data: { field: 'rootHash' },
    });
  }
  const given = typeof options.rootHash === 'string' ? parseRootHashString(options.rootHash) : options.rootHash;
  return {
    guess: () => given,
    bytes(digestBytes, algorithm) {
      if (given.length !== digestBytes) {
        throw new VerityError(
          'E_PARAM',
          `Invalid root hash string specified: ${given.length} bytes, but ${algorithm} digests are ${digestBytes} bytes.`,
          { data: { field: 'rootHash', expected: digestBytes, actual: given.length } },
        );
      }
      return given;
    },
  };
}
