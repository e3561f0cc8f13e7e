import { InvalidArgumentError } from 'commander';

/** A decimal integer in [min, max]. No suffixes, no signs: veritysetup wraps negative u64 values (docs/format.md §6). */
export function integer(min: number, max: number) {
  return (text: string): number => {
    if (!/^\d+$/.test(text)) throw new InvalidArgumentError(`expected a non-negative decimal integer, got "${text}".`);
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be from ${min} to ${max}.`);
    return n;
  };
}

export function hashFormat(text: string): 0 | 1 {
  if (text !== '0' && text !== '1') throw new InvalidArgumentError('must be 0 (Chrome OS) or 1 (normal).');
  return Number(text) as 0 | 1;
}
