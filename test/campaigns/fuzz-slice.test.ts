/**
 * A fixed-seed slice of `npm run fuzz` (scripts/fuzz.ts): a few hundred mutated images per target, each run through
 * inspect, verify, dump and whole reads of its data source, must end in a result or a VerityError within the time
 * and allocation bounds of test/fuzz/harness.ts. The harness itself is checked first: on the unmutated seeds every
 * entry point succeeds, and a crash, a hang, an oversized allocation and unbounded memory growth are each reported.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Fuzzer, reproCommand, type Finding } from '../fuzz/harness.js';
import { targets, type Target } from '../fuzz/targets.js';

const SEED = 1;
/** Cases per target, scaled to each target's cost (a VHDX case writes an 11 MiB file and replays its log). */
const CASES: Record<string, number> = {
  superblock: 200, gpt: 80, 'vhd-fixed': 100, 'vhd-dynamic': 80, vhdx: 40, zip: 100, 'zip-vhdx': 10, 'zip-vhd': 15, zip64: 200,
  ext4: 200, ext2: 200, fat: 300, initramfs: 300, grub: 300, pe: 300, cmdline: 300, cms: 300, x509: 300,
};

const fuzzer = new Fuzzer(SEED);
afterAll(() => fuzzer.close());

function explain(findings: Finding[]): string {
  return findings.map((f) => `${f.kind} in ${f.entry}: ${f.message}\n  ${reproCommand(f)}\n  ${f.log.join('; ')}\n${f.stack}`).join('\n');
}

describe('the fuzz harness', () => {
  it('runs every entry point of every target to success on the unmutated seed', async () => {
    for (const t of targets()) {
      const r = await fuzzer.run(t, -1, { bytes: t.bytes, log: ['unmutated'] });
      expect(r.findings, explain(r.findings)).toEqual([]);
      expect(Object.values(r.outcomes), `${t.name}: ${JSON.stringify(r.messages)}`).toEqual(t.entries.map(() => 'ok'));
    }
  });

  it('reports an exception, a hang, an oversized allocation and memory growth as findings', async () => {
    const strict = new Fuzzer(SEED, { timeLimitMs: 200, maxAllocation: 1 << 20, maxGrowth: 16 << 20 });
    try {
      const held: Uint8Array[] = [];
      const fake: Target = {
        ...targets()[0]!,
        name: 'self-test',
        entries: [
          { name: 'fine', run: async () => new Uint8Array(1 << 19) },
          { name: 'throws', run: async () => (null as unknown as { x: number }).x },
          { name: 'allocates', run: async () => new Uint8Array(2 << 20) },
          { name: 'swallows its allocation error', run: async () => { try { Buffer.alloc(4 << 20); } catch { /* hides it */ } } },
          { name: 'grows', run: async () => { for (let i = 0; i < 32; i++) held.push(new Uint8Array(1 << 20).fill(1)); } },
          { name: 'never ends', run: () => new Promise(() => {}) },
        ],
      };
      const r = await strict.run(fake, 0);
      const kinds = r.findings.map((f) => `${f.entry}: ${f.kind}`);
      expect(kinds).toEqual([
        'throws: exception',
        'allocates: exception',
        'allocates: allocation',
        'swallows its allocation error: allocation',
        'grows: memory',
        'never ends: hang',
      ]);
      expect(r.outcomes.fine).toBe('ok');
      expect(r.tainted).toBe(true);
      held.length = 0;
    } finally {
      strict.close();
    }
  });
});

describe(`fuzzing with seed ${SEED}`, () => {
  for (const t of targets()) {
    it(`${t.name}: ${CASES[t.name]} cases end in a result or a VerityError, within bounds`, async () => {
      const findings: Finding[] = [];
      for (let i = 0; i < CASES[t.name]!; i++) findings.push(...(await fuzzer.run(t, i)).findings);
      expect(findings, explain(findings)).toEqual([]);
    }, 120_000);
  }
});
