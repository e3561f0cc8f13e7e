/**
 * Sets of block indices kept as sorted, merged half-open ranges, so a report of a million consecutive bad blocks
 * costs one entry. Memory grows with the number of separate damaged ranges, not with the image size.
 */

export interface BlockRange {
  first: number;
  count: number;
}

export class RangeSet {
  /** Flat [start0, end0, start1, end1, …], sorted, non-overlapping, non-adjacent; ends exclusive. */
  private readonly bounds: number[] = [];

  /** Adds [first, first + count). Indices must arrive in non-decreasing order of `first` (as a scan finds them). */
  add(first: number, count = 1): void {
    if (count <= 0) return;
    const n = this.bounds.length;
    const end = first + count;
    if (n > 0 && first < this.bounds[n - 2]!) throw new RangeError('RangeSet.add: indices out of order');
    if (n > 0 && first <= this.bounds[n - 1]!) {
      this.bounds[n - 1] = Math.max(this.bounds[n - 1]!, end);
    } else {
      this.bounds.push(first, end);
    }
  }

  get isEmpty(): boolean {
    return this.bounds.length === 0;
  }

  /** Number of indices in the set. */
  get size(): number {
    let total = 0;
    for (let i = 0; i < this.bounds.length; i += 2) total += this.bounds[i + 1]! - this.bounds[i]!;
    return total;
  }

  has(index: number): boolean {
    for (let i = 0; i < this.bounds.length; i += 2) {
      if (index < this.bounds[i]!) return false;
      if (index < this.bounds[i + 1]!) return true;
    }
    return false;
  }

  ranges(): BlockRange[] {
    const out: BlockRange[] = [];
    for (let i = 0; i < this.bounds.length; i += 2) out.push({ first: this.bounds[i]!, count: this.bounds[i + 1]! - this.bounds[i]! });
    return out;
  }

  static of(...ranges: BlockRange[]): RangeSet {
    const s = new RangeSet();
    for (const r of [...ranges].sort((a, b) => a.first - b.first)) s.add(r.first, r.count);
    return s;
  }

  union(other: RangeSet): RangeSet {
    return RangeSet.of(...this.ranges(), ...other.ranges());
  }

  /** The indices of `this` that are not in `other`. */
  subtract(other: RangeSet): RangeSet {
    const out = new RangeSet();
    const cut = other.ranges();
    let k = 0;
    for (const { first, count } of this.ranges()) {
      let start = first;
      const end = first + count;
      while (k < cut.length && cut[k]!.first + cut[k]!.count <= start) k++;
      let j = k;
      while (start < end && j < cut.length && cut[j]!.first < end) {
        const c = cut[j]!;
        if (c.first > start) out.add(start, c.first - start);
        start = Math.max(start, c.first + c.count);
        j++;
      }
      if (start < end) out.add(start, end - start);
    }
    return out;
  }

  /** Maps each index i to the children [i*fanout, (i+1)*fanout) clipped to `childCount` (a tree level below). */
  children(fanout: number, childCount: number): RangeSet {
    const out = new RangeSet();
    for (const { first, count } of this.ranges()) {
      const start = first * fanout;
      const end = Math.min((first + count) * fanout, childCount);
      if (start < end) out.add(start, end - start);
    }
    return out;
  }
}
