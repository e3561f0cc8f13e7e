import { describe, expect, it } from 'vitest';
import { RangeSet } from '../../src/core.js';

const set = (...ranges: [number, number][]) => RangeSet.of(...ranges.map(([first, count]) => ({ first, count })));
const pairs = (s: RangeSet) => s.ranges().map((r) => [r.first, r.count]);

describe('RangeSet', () => {
  it('merges consecutive and overlapping additions into one range', () => {
    const s = new RangeSet();
    for (const i of [3, 4, 5, 9, 10, 20]) s.add(i);
    s.add(20, 3);
    expect(pairs(s)).toEqual([[3, 3], [9, 2], [20, 3]]);
    expect(s.size).toBe(8);
    expect(s.has(4)).toBe(true);
    expect(s.has(6)).toBe(false);
  });

  it('refuses additions out of order rather than silently mis-merging', () => {
    const s = set([10, 1]);
    expect(() => s.add(5)).toThrow(/out of order/);
  });

  it('subtracts ranges that cut, cover and straddle', () => {
    expect(pairs(set([0, 10], [20, 10]).subtract(set([2, 3], [8, 14], [29, 5])))).toEqual([[0, 2], [5, 3], [22, 7]]);
    expect(pairs(set([0, 10]).subtract(set([0, 10])))).toEqual([]);
    expect(pairs(set([0, 10]).subtract(new RangeSet()))).toEqual([[0, 10]]);
  });

  it('unions overlapping sets', () => {
    expect(pairs(set([0, 2], [10, 2]).union(set([1, 3], [12, 1])))).toEqual([[0, 4], [10, 3]]);
  });

  it('maps blocks to their children, clipped to the level below', () => {
    expect(pairs(set([1, 1], [3, 2]).children(128, 600))).toEqual([[128, 128], [384, 216]]);
  });
});
