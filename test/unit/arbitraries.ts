// Shared fast-check generators for the token model's property tests: filters
// and topics over a tiny alphabet, so that random pairs overlap often and a
// brute-force enumeration of topics stays small.
import fc from 'fast-check';

/** Literal levels: the empty level and a `$` level are the interesting ones. */
export const LEVELS = ['a', 'b', '', '$x'] as const;

/** A valid MQTT filter of 1..4 levels over `levels`, `+` and a trailing `#`. */
export function filterOver(levels: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.array(fc.oneof(fc.constantFrom(...levels), fc.constant('+')), { minLength: 0, maxLength: 4 }), fc.boolean())
    .map(([parts, hash]) => (hash || parts.length === 0 ? [...parts.slice(0, 3), '#'] : parts).join('/'))
    .filter((filter) => filter !== '');
}

/** A valid topic name of 1..5 levels over `levels` (never the empty string). */
export function topicOver(levels: readonly string[]): fc.Arbitrary<string> {
  return fc
    .array(fc.constantFrom(...levels), { minLength: 1, maxLength: 5 })
    .map((parts) => parts.join('/'))
    .filter((topic) => topic !== '');
}

export const filterArb = filterOver(LEVELS);
export const topicArb = topicOver(LEVELS);

/**
 * A wider alphabet, so that trie nodes get more literal children than the small-fan-out scan holds;
 * with the broker's own first levels (SPEC §3) and a near miss of one.
 */
export const WIDE_LEVELS: readonly string[] = ['', '$x', '$SYS', '$tokenmq', '$SYSTEM', ...Array.from({ length: 20 }, (_, i) => `l${i}`)];

/** Every topic name of 1..maxDepth levels over `levels` (the empty topic excluded). */
export function allTopics(levels: readonly string[], maxDepth: number): string[] {
  const out: string[] = [];
  let layer: string[][] = [[]];
  for (let depth = 1; depth <= maxDepth; depth++) {
    const next: string[][] = [];
    for (const prefix of layer) for (const level of levels) next.push([...prefix, level]);
    for (const topic of next) {
      const name = topic.join('/');
      if (name !== '') out.push(name);
    }
    layer = next;
  }
  return out;
}
