/**
 * The allocation bound of a fuzz case, enforced two ways:
 *
 * - every typed array, ArrayBuffer and Buffer created while the guard is installed is checked before it exists: one
 *   larger than `maxAllocation` is refused with an `AllocationBoundError` and recorded, so a size field that reaches
 *   an allocation is a finding even when the code under test catches the error and wraps it;
 * - `process.memoryUsage().arrayBuffers` is sampled while a case runs: growth over `maxGrowth` from its start (after a
 *   full collection, to forget earlier cases' garbage) is a finding too. That catches many small allocations driven
 *   by a count field, and the buffers zlib allocates where the guard cannot see.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export class AllocationBoundError extends Error {
  override readonly name = 'AllocationBoundError';
}

const TYPED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'Uint8Array', 'Uint8ClampedArray', 'Int8Array', 'Uint16Array', 'Int16Array',
  'Uint32Array', 'Int32Array', 'Float32Array', 'Float64Array', 'BigUint64Array', 'BigInt64Array',
] as const;
const BUFFER_FACTORIES = ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const;

v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as () => void;

export class AllocationGuard {
  /** The largest allocation requested since the last `reset`, in bytes. */
  largest = 0;
  /** The first refused allocation since the last `reset`. */
  violation: string | null = null;
  private restore: Array<() => void> = [];

  constructor(readonly maxAllocation: number) {}

  private check(bytes: number, what: string): void {
    this.largest = Math.max(this.largest, bytes);
    if (bytes > this.maxAllocation) {
      const message = `${what} of ${bytes} bytes requested (bound ${this.maxAllocation})`;
      this.violation ??= message;
      throw new AllocationBoundError(message);
    }
  }

  install(): void {
    if (this.restore.length > 0) return;
    const g = globalThis as unknown as Record<string, unknown>;
    for (const name of TYPED) {
      const original = g[name] as { new (...args: unknown[]): unknown; BYTES_PER_ELEMENT?: number };
      const perElement = original.BYTES_PER_ELEMENT ?? 1;
      const guard = this;
      g[name] = new Proxy(original, {
        construct(target, args, newTarget) {
          if (typeof args[0] === 'number') guard.check(args[0] * perElement, `new ${name}`);
          return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget);
        },
      });
      this.restore.push(() => (g[name] = original));
    }
    const buffer = Buffer as unknown as Record<string, (size: number, ...rest: unknown[]) => Buffer>;
    for (const name of BUFFER_FACTORIES) {
      const original = buffer[name]!;
      buffer[name] = (size: number, ...rest: unknown[]) => {
        this.check(size, `Buffer.${name}`);
        return original.call(Buffer, size, ...rest);
      };
      this.restore.push(() => (buffer[name] = original));
    }
  }

  uninstall(): void {
    for (const undo of this.restore.splice(0)) undo();
  }

  reset(): void {
    this.largest = 0;
    this.violation = null;
  }
}

/**
 * Samples `arrayBuffers` every 10 ms while a case runs. A sample over the limit is taken again after a full
 * collection, so that garbage does not count but memory the case still holds does: `stop` returns the largest live
 * growth seen.
 */
export class MemoryWatch {
  private base = 0;
  private peak = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly maxGrowth: number) {}

  start(): void {
    // Earlier cases' garbage would count against this one; a full collection costs ~5 ms, so only when it matters.
    if (process.memoryUsage().arrayBuffers > this.maxGrowth) collect();
    this.base = process.memoryUsage().arrayBuffers;
    this.peak = this.base;
    this.timer = setInterval(() => this.sample(), 10);
  }

  private sample(): void {
    let now = process.memoryUsage().arrayBuffers;
    if (now - this.base > this.maxGrowth) {
      collect();
      now = process.memoryUsage().arrayBuffers;
    }
    this.peak = Math.max(this.peak, now);
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return this.peak - this.base;
  }
}
