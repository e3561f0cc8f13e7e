/**
 * Runs fuzz cases in this process. A case is (seed, target, index): its input is a mutation of the target's seed
 * image drawn from a PRNG seeded with all three, so any case reproduces alone, in any order. Each entry point of the
 * target runs on the input and must return a result that passes its checks or throw a VerityError (not E_INTERNAL),
 * within the time limit and the allocation bounds (guard.ts). Anything else is a finding.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../support/rng.js';
import { AllocationGuard, MemoryWatch } from './guard.js';
import { mutate } from './mutate.js';
import { acceptable, fixture, type Target } from './targets.js';

export interface Bounds {
  /** Per entry point, in milliseconds. */
  timeLimitMs: number;
  /** The largest single allocation, in bytes. */
  maxAllocation: number;
  /** The largest live growth of `arrayBuffers` during an entry point, in bytes. */
  maxGrowth: number;
}

export const DEFAULT_BOUNDS: Bounds = { timeLimitMs: 2000, maxAllocation: 64 << 20, maxGrowth: 128 << 20 };

export type FindingKind = 'exception' | 'hang' | 'allocation' | 'memory' | 'bad-result';

export interface Finding {
  seed: number;
  target: string;
  index: number;
  entry: string;
  kind: FindingKind;
  message: string;
  stack: string;
  /** The mutations that made the input. */
  log: string[];
  /** The file as written (wrapped, for a target that wraps its image). */
  input: Uint8Array;
}

export interface CaseResult {
  /** Per entry point: 'ok', or the code of the VerityError it ended with. */
  outcomes: Record<string, string>;
  /** Per entry point that ended in a VerityError, its message. */
  messages: Record<string, string>;
  findings: Finding[];
  /** Wall time of the slowest entry point, in milliseconds. */
  slowestMs: number;
  /** True after a hang: the abandoned call may still be running, so the process should not be trusted further. */
  tainted: boolean;
}

/** A 32-bit seed for case `index` of `target` (FNV-1a over the three, then murmur3's finaliser). */
export function caseSeed(seed: number, target: string, index: number): number {
  let h = 0x811c9dc5;
  for (const ch of `${seed >>> 0}/${target}/${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function caseInput(seed: number, target: Target, index: number): { bytes: Uint8Array; log: string[] } {
  return mutate(target.bytes, target.layout, new Rng(caseSeed(seed, target.name, index)));
}

class Timeout extends Error {}

/** Where cases write their files: tmpfs when there is one, as each case writes its input (up to ~12 MiB). */
export const FUZZ_TMP = process.platform === 'linux' ? '/dev/shm' : tmpdir();

export class Fuzzer {
  readonly guard: AllocationGuard;
  private readonly watch: MemoryWatch;
  private readonly dir: string;
  private readonly companions = new Set<string>();

  constructor(
    readonly seed: number,
    readonly bounds: Bounds = DEFAULT_BOUNDS,
  ) {
    this.guard = new AllocationGuard(bounds.maxAllocation);
    this.watch = new MemoryWatch(bounds.maxGrowth);
    mkdirSync(FUZZ_TMP, { recursive: true });
    this.dir = mkdtempSync(join(FUZZ_TMP, `verity-fuzz-${process.pid}-`));
  }

  close(): void {
    this.guard.uninstall();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs the entry points of `target` on `input` (by default, case `index`'s mutation of the seed). */
  async run(target: Target, index: number, input = caseInput(this.seed, target, index)): Promise<CaseResult> {
    for (const name of target.companions) {
      if (!this.companions.has(name)) writeFileSync(join(this.dir, name), fixture(name));
      this.companions.add(name);
    }
    const written = target.wrap ? target.wrap(input.bytes) : input.bytes;
    writeFileSync(join(this.dir, target.seed), written);
    const path = (name: string) => join(this.dir, name);
    const result: CaseResult = { outcomes: {}, messages: {}, slowestMs: 0, findings: [], tainted: false };
    const found = (entry: string, kind: FindingKind, message: string, stack = '') =>
      result.findings.push({ seed: this.seed, target: target.name, index, entry, kind, message, stack, log: input.log, input: written });

    for (const entry of target.entries) {
      this.guard.reset();
      this.watch.start();
      this.guard.install();
      let timer: NodeJS.Timeout | undefined;
      const started = performance.now();
      try {
        await Promise.race([
          entry.run(path),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Timeout()), this.bounds.timeLimitMs))),
        ]);
        result.outcomes[entry.name] = 'ok';
      } catch (e) {
        if (e instanceof Timeout) {
          found(entry.name, 'hang', `did not end within ${this.bounds.timeLimitMs} ms`);
          result.tainted = true;
        } else if (acceptable(e)) {
          result.outcomes[entry.name] = e.code;
          result.messages[entry.name] = e.message;
        } else {
          const err = e as Error;
          const kind = err?.name === 'BadResult' ? 'bad-result' : 'exception';
          found(entry.name, kind, `${err?.name ?? typeof e}: ${err?.message ?? String(e)}`, err?.stack ?? '');
        }
      } finally {
        clearTimeout(timer);
        this.guard.uninstall();
        result.slowestMs = Math.max(result.slowestMs, performance.now() - started);
      }
      const growth = this.watch.stop();
      if (this.guard.violation) found(entry.name, 'allocation', this.guard.violation);
      if (growth > this.bounds.maxGrowth) found(entry.name, 'memory', `arrayBuffers grew by ${growth} bytes (bound ${this.bounds.maxGrowth})`);
      if (result.tainted) break;
    }
    return result;
  }
}

/** The command that runs one case again (and writes its input for triage). */
export function reproCommand(f: Pick<Finding, 'seed' | 'target' | 'index'>): string {
  return `npm run fuzz -- --seed ${f.seed} --target ${f.target} --case ${f.index}`;
}
