// Token keys (SPEC §2): 64 characters [A-Za-z0-9] from the CSPRNG, without
// modulo bias; stored only as SHA-256.

import { describe, expect, test } from '@jest/globals';
import { KEY_LENGTH, generateKey, hashKey } from '../../src/store/key.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

describe('generateKey (SPEC §2)', () => {
  test('gives 64 characters of [A-Za-z0-9], different every time', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const key = generateKey();
      expect(key).toMatch(/^[A-Za-z0-9]{64}$/);
      keys.add(key);
    }
    expect(KEY_LENGTH).toBe(64);
    expect(keys.size).toBe(2000);
  });

  test('uses every character equally often: no modulo bias (chi-square over 640,000 characters)', () => {
    const counts = new Map<string, number>(ALPHABET.split('').map((c) => [c, 0]));
    const keys = 10_000;
    for (let i = 0; i < keys; i++) for (const c of generateKey()) counts.set(c, (counts.get(c) ?? 0) + 1);
    const expected = (keys * KEY_LENGTH) / ALPHABET.length;
    let chiSquare = 0;
    for (const count of counts.values()) chiSquare += (count - expected) ** 2 / expected;
    // 61 degrees of freedom: 150 is beyond p = 1e-9 for a fair source; `byte % 62`
    // would give about 4,000 here (8 characters 25 % more likely than the rest).
    expect(counts.size).toBe(62);
    expect(chiSquare).toBeLessThan(150);
  });
});

describe('hashKey (SPEC §2, §7)', () => {
  test('is the SHA-256 of the key in lowercase hex', () => {
    expect(hashKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hashKey(generateKey())).toMatch(/^[0-9a-f]{64}$/);
  });
});
