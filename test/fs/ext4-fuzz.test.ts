/**
 * A fixed-seed slice of fuzzing for the ext4 reader (the `ext4` and `ext2` targets of test/fs/ext4-fuzz.ts): every
 * mutated seed must end in a result or a VerityError within the harness's time and allocation bounds.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Fuzzer, reproCommand, type Finding } from '../fuzz/harness.js';
import { ext4Targets } from './ext4-fuzz.js';

const SEED = 1;
const CASES = 250;

const fuzzer = new Fuzzer(SEED);
afterAll(() => fuzzer.close());

function explain(findings: Finding[]): string {
  return findings.map((f) => `${f.kind} in ${f.entry}: ${f.message}\n  ${reproCommand(f)}\n  ${f.log.join('; ')}\n${f.stack}`).join('\n');
}

describe('ext4 fuzz targets', () => {
  it('walk their seeds to the end: every entry point succeeds on the unmutated image, and the layouts name the fields', async () => {
    for (const t of ext4Targets()) {
      expect(t.layout.fields.length, t.name).toBeGreaterThan(150);
      const r = await fuzzer.run(t, -1, { bytes: t.bytes, log: ['unmutated'] });
      expect(r.findings, explain(r.findings)).toEqual([]);
      expect(Object.values(r.outcomes), `${t.name}: ${JSON.stringify(r.messages)}`).toEqual(t.entries.map(() => 'ok'));
    }
  });

  for (const t of ext4Targets()) {
    it(`${t.name}: ${CASES} mutated images end in a result or a VerityError, within bounds`, async () => {
      const findings: Finding[] = [];
      const outcomes = new Map<string, number>();
      for (let i = 0; i < CASES; i++) {
        const r = await fuzzer.run(t, i);
        findings.push(...r.findings);
        for (const o of Object.values(r.outcomes)) outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
      }
      expect(findings, explain(findings)).toEqual([]);
      // The mutations reach past the superblock checks: many cases still read files.
      expect(outcomes.get('ok') ?? 0, JSON.stringify([...outcomes])).toBeGreaterThan(CASES / 2);
    }, 120_000);
  }
});
