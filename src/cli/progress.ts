import type { Progress } from '../tree/progress.js';

export interface ProgressStream {
  write(text: string): unknown;
}

function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** A one-line progress display on a terminal: bytes, percent, MB/s and ETA, redrawn at most 10 times a second. */
export function progressLine(stream: ProgressStream, label: string, now: () => number = () => performance.now()) {
  const started = now();
  let last = -Infinity;
  let drawn = false;
  return {
    update({ bytesDone, bytesTotal }: Progress): void {
      const t = now();
      if (t - last < 100 && bytesDone < bytesTotal) return;
      last = t;
      const elapsed = (t - started) / 1000;
      const rate = elapsed > 0 ? bytesDone / elapsed : 0;
      const eta = rate > 0 ? (bytesTotal - bytesDone) / rate : 0;
      const pct = bytesTotal > 0 ? Math.floor((100 * bytesDone) / bytesTotal) : 100;
      stream.write(
        `\r\x1b[2K${label}: ${size(bytesDone)} / ${size(bytesTotal)} (${pct}%), ${(rate / 1e6).toFixed(0)} MB/s, ETA ${duration(eta)}`,
      );
      drawn = true;
    },
    done(): void {
      if (drawn) stream.write('\r\x1b[2K');
    },
  };
}
