// redis-codec.ts decodeForListing: SPEC §2 "GET /platform/tokens still lists it with what could be read".
import { describe, expect, test } from '@jest/globals';
import { HASH_FIELDS, decodeForListing, decodeToken, encodeToken, fromValues } from '../../src/store/redis-codec.js';
import { StoreDataError } from '../../src/store/types.js';
import type { Token } from '../../src/tokens/types.js';

const TOKEN: Token = {
  id: 7, info: 'truck 7', enabled: true, expire: 0, ttl: 3600, created: 1_700_000_000, accessed: 1_700_000_100,
  access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }] }, ips: '10.0.0.0/8',
  metadata: { site: 'north' }, parent: 0, clientids: '', limits: { sessions: 2, publish_rate: 0 },
};
const HASH = 'a'.repeat(64);

function stored(changes: Partial<Record<(typeof HASH_FIELDS)[number], string>>): string[] {
  const values = encodeToken(TOKEN, HASH);
  for (const [field, value] of Object.entries(changes)) values[HASH_FIELDS.indexOf(field as (typeof HASH_FIELDS)[number])] = value;
  return values;
}

describe('decodeForListing (SPEC §2)', () => {
  test('a token that decodes is listed as decodeToken reads it, without `unreadable`', () => {
    expect(decodeForListing(7, fromValues(stored({})))).toEqual(decodeToken(7, fromValues(stored({}))).token);
    expect(decodeForListing(7, fromValues(stored({}))).unreadable).toBeUndefined();
  });

  test('fields that do not decode are named and take values that grant nothing; the rest is as stored', () => {
    const fields = fromValues(stored({ access: '{not json', enabled: 'yes', limits: '[1]', expire: '-5' }));
    expect(() => decodeToken(7, fields)).toThrow(StoreDataError);
    const listed = decodeForListing(7, fields);
    expect(listed.unreadable).toEqual(['enabled', 'expire', 'access', 'limits']);
    expect(listed).toMatchObject({ id: 7, info: 'truck 7', enabled: false, expire: 0, ttl: 3600, access: { type: 2, acl: [] }, ips: '10.0.0.0/8', metadata: { site: 'north' } });
  });

  test('a bad key hash alone: listed whole, named `key` (the hash itself is never listed)', () => {
    const listed = decodeForListing(7, fromValues(stored({ hash: 'nope' })));
    expect(listed.unreadable).toEqual(['key']);
    expect(listed.info).toBe('truck 7');
    expect(JSON.stringify(listed)).not.toContain('nope');
  });

  test('missing fields are unreadable too; a token of nothing but garbage still lists by its id', () => {
    const listed = decodeForListing(9, () => undefined);
    expect(listed.id).toBe(9);
    expect(listed.unreadable).toEqual(['info', 'enabled', 'expire', 'ttl', 'created', 'accessed', 'access', 'ips', 'metadata']);
    expect(listed.enabled).toBe(false);
  });
});
