// SPEC §2 `clientids` masks and `limits` validation (src/tokens, pure).
import { describe, expect, test } from '@jest/globals';
import { compileClientIdMasks } from '../../src/tokens/clientids.js';
import { TokenValidationError, validateCreate, validatePatch } from '../../src/tokens/validate.js';

const NOW = 1_764_300_000;

describe('clientids masks (SPEC §2)', () => {
  test('empty admits every client id', () => {
    const m = compileClientIdMasks(' , ', 7);
    expect(m.any).toBe(true);
    expect(m.allows('')).toBe(true);
    expect(m.allows('anything at all')).toBe(true);
  });

  test('* and ? are wildcards, ${token_id} is the token id, the rest is literal and matched whole', () => {
    const m = compileClientIdMasks('truck-${token_id}-*, sensor-??, exact.id(1)+[x]', 42);
    expect(m.any).toBe(false);
    expect(m.allows('truck-42-a')).toBe(true);
    expect(m.allows('truck-42-')).toBe(true);
    expect(m.allows('truck-43-a')).toBe(false);
    expect(m.allows('truck-${token_id}-a')).toBe(false);
    expect(m.allows('sensor-01')).toBe(true);
    expect(m.allows('sensor-1')).toBe(false);
    expect(m.allows('sensor-0123')).toBe(false);
    expect(m.allows('exact.id(1)+[x]')).toBe(true);
    expect(m.allows('exactXid(1)+[x]')).toBe(false);
    expect(m.allows('xtruck-42-a')).toBe(false);
  });

  test('? is one character, also outside the BMP; * spans newlines', () => {
    const m = compileClientIdMasks('a?b, n*', 1);
    expect(m.allows('a😀b')).toBe(true);
    expect(m.allows('n\nx')).toBe(true);
  });

  test('an unknown placeholder is a 400 naming clientids; anything else is accepted', () => {
    expect(() => validateCreate({ ttl: 60, clientids: 'dev-${clientid}' }, NOW)).toThrow(TokenValidationError);
    expect(validateCreate({ ttl: 60, clientids: 'dev-${token_id}, \\^$.|' }, NOW).clientids).toBe('dev-${token_id}, \\^$.|');
    expect(() => validatePatch({ clientids: 5 })).toThrow(TokenValidationError);
  });
});

describe('limits (SPEC §2)', () => {
  test('absent or partial limits are 0 (unlimited)', () => {
    expect(validateCreate({ ttl: 60 }, NOW).limits).toEqual({ sessions: 0, publish_rate: 0 });
    expect(validatePatch({ limits: { sessions: 2 } }).limits).toEqual({ sessions: 2, publish_rate: 0 });
    expect(validatePatch({ limits: {} }).limits).toEqual({ sessions: 0, publish_rate: 0 });
  });

  test.each([
    [{ sessions: -1 }], [{ sessions: 1.5 }], [{ publish_rate: '5' }], [{ other: 1 }], [[]], ['x'], [null], [{ sessions: 2_000_000 }],
  ])('refuses %j', (limits) => {
    expect(() => validatePatch({ limits })).toThrow(TokenValidationError);
  });
});
