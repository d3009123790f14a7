import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { compileMask } from '../../src/tokens/masks.js';

/** The reference: a regex over the same mask (fine here: short, trusted inputs). */
function reference(mask: string, value: string): boolean {
  const source = mask.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 's').test(value);
}

describe('`*`/`?` masks (SPEC §3 ids, §5 selectors)', () => {
  test('examples', () => {
    expect(compileMask('truck*')('truck 42')).toBe(true);
    expect(compileMask('truck*')('a truck')).toBe(false);
    expect(compileMask('ac?e')('acme')).toBe(true);
    expect(compileMask('ac?e')('ace')).toBe(false);
    expect(compileMask('10.0.*.1')('10.0.15.1')).toBe(true);
    expect(compileMask('a.b')('axb')).toBe(false); // only * and ? are special
    expect(compileMask('*')('')).toBe(true);
    expect(compileMask('')('')).toBe(true);
  });

  test('agrees with a regex reference on a small alphabet (property)', () => {
    const chars = fc.constantFrom('a', 'b', '.', '*', '?', '\n');
    fc.assert(fc.property(fc.string({ unit: chars, maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', 'b', '.', '*', '?', '\n'), maxLength: 10 }),
      (mask, value) => {
        expect(compileMask(mask)(value)).toBe(reference(mask, value));
      }), { seed: 3, numRuns: 5000 });
  });

  test('a mask of many stars against a long value answers quickly (no backtracking blow-up)', () => {
    const mask = `${'*a'.repeat(500)}b`;
    expect(compileMask(mask)('a'.repeat(4000))).toBe(false);
  });
});
