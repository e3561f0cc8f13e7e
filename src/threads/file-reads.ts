/**
 * Positional reads of file spans (ByteSource.fileSpans) by descriptor: what the hash pool's threads do so that the
 * calling thread does not read the data (and the calling thread itself, for batches too small to send). Descriptors
 * belong to the process, so every thread reads the file the source opened; a positional read moves no shared file
 * position, so threads reading the same descriptor at once do not disturb each other.
 */
import { readSync } from 'node:fs';
import { VerityError } from '../errors.js';
import type { FileSpan } from '../io/source.js';

/** Fills `dst` with the bytes of `spans` in order (they must cover exactly `dst.length` bytes). */
export function readSpans(spans: readonly FileSpan[], dst: Uint8Array): void {
  const total = spans.reduce((n, span) => n + span.length, 0);
  if (total !== dst.length) {
    throw new VerityError('E_INTERNAL', `File spans cover ${total} bytes where ${dst.length} were to be read.`);
  }
  let done = 0;
  for (const span of spans) {
    for (let got = 0; got < span.length; ) {
      let n: number;
      try {
        n = readSync(span.fd, dst, done + got, span.length - got, span.at + got);
      } catch (e) {
        throw new VerityError('E_IO', `Cannot read ${span.path}: ${(e as Error).message}`, {
          cause: e,
          data: { path: span.path, offset: span.at + got },
        });
      }
      if (n <= 0) {
        throw new VerityError(
          'E_TRUNCATED',
          `${span.path} ended early: needed ${span.length} bytes at offset ${span.at}, got ${got}.`,
          { data: { path: span.path, offset: span.at + got } },
        );
      }
      got += n;
    }
    done += span.length;
  }
}
