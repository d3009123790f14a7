// redis-codec.ts SharedDecodes: key lookups share one deep-frozen `access` and
// `metadata` per stored text; a changed text decodes anew; a bad text is still
// refused every time (never cached); readers without it get their own objects.
import { describe, expect, test } from '@jest/globals';
import { HASH_FIELDS, SharedDecodes, decodeToken, encodeToken, fromValues } from '../../src/store/redis-codec.js';
import { StoreDataError } from '../../src/store/types.js';
import type { Token } from '../../src/tokens/types.js';

const TOKEN: Token = {
  id: 7, info: 'truck 7', enabled: true, expire: 0, ttl: 3600, created: 1_700_000_000, accessed: 1_700_000_100,
  access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }] }, ips: '',
  metadata: { site: 'north' }, parent: 0, clientids: '', limits: { sessions: 2, publish_rate: 0 },
};
const HASH = 'a'.repeat(64);

function stored(token: Token, changes: Partial<Record<(typeof HASH_FIELDS)[number], string>> = {}): ReturnType<typeof fromValues> {
  const values = encodeToken(token, HASH);
  for (const [field, value] of Object.entries(changes)) values[HASH_FIELDS.indexOf(field as (typeof HASH_FIELDS)[number])] = value;
  return fromValues(values);
}

describe('SharedDecodes', () => {
  test('two readings of one stored text share one deep-frozen access and metadata, equal to a plain decode', () => {
    const shared = new SharedDecodes();
    const a = decodeToken(7, stored(TOKEN), shared).token;
    const b = decodeToken(8, stored({ ...TOKEN, id: 8, info: 'other' }), shared).token;
    expect(a.access).toBe(b.access);
    expect(a.metadata).toBe(b.metadata);
    expect(a.access).toEqual(decodeToken(7, stored(TOKEN)).token.access);
    expect(Object.isFrozen(a.access.acl![0]!.actions)).toBe(true);
    expect(Object.isFrozen(a.metadata)).toBe(true);
    expect(() => { (a.access.acl as unknown[]).push({}); }).toThrow(TypeError);
    // A plain decode (get, listings) hands out its own, mutable objects.
    const plain = decodeToken(7, stored(TOKEN)).token;
    expect(plain.access).not.toBe(a.access);
    plain.access.type = 1;
    expect(decodeToken(7, stored(TOKEN), shared).token.access.type).toBe(2);
  });

  test('a changed text is decoded anew; a text that does not decode is refused every time', () => {
    const shared = new SharedDecodes();
    const a = decodeToken(7, stored(TOKEN), shared).token;
    const changed = decodeToken(7, stored({ ...TOKEN, access: { type: 1 } }), shared).token;
    expect(changed.access).toEqual({ type: 1 });
    expect(changed.access).not.toBe(a.access);
    for (let i = 0; i < 2; i++) expect(() => decodeToken(7, stored(TOKEN, { access: '{"type":9}' }), shared)).toThrow(StoreDataError);
  });

  test('bounded: past its size the oldest text goes, and reading it again still gives an equal value', () => {
    const shared = new SharedDecodes(3);
    const first = decodeToken(1, stored({ ...TOKEN, metadata: { n: '0' } }), shared).token.metadata;
    for (let n = 1; n <= 5; n++) decodeToken(1, stored({ ...TOKEN, metadata: { n: String(n) } }), shared);
    const again = decodeToken(1, stored({ ...TOKEN, metadata: { n: '0' } }), shared).token.metadata;
    expect(again).toEqual(first);
    expect(again).not.toBe(first);
  });
});
