// SPEC §2 `parent`: a child is also checked against each ancestor's enabled,
// validity and ips. The cascade normally deletes children before such a state
// can be seen; this checks the second fence on its own, on a fake store.
import { describe, expect, test } from '@jest/globals';
import { checkAncestors } from '../../src/store/ancestors.js';
import type { Token } from '../../src/tokens/types.js';

const NOW = 1_800_000_000;

function token(id: number, parent: number, fields: Partial<Token> = {}): Token {
  return {
    id, parent, info: '', enabled: true, expire: 0, ttl: 60, created: NOW, accessed: NOW,
    access: { type: 2, acl: [] }, ips: '', metadata: {}, clientids: '', limits: { sessions: 0, publish_rate: 0 }, ...fields,
  };
}

function storeOf(...tokens: Token[]) {
  const byId = new Map(tokens.map((t) => [t.id, t]));
  return { get: async (ids: number[] | 'all') => (ids === 'all' ? [...byId.values()] : ids.flatMap((id) => byId.get(id) ?? [])) };
}

describe('checkAncestors (SPEC §2 parent)', () => {
  const leaf = token(3, 2);

  test('no parent, or every ancestor admits: null', async () => {
    expect(await checkAncestors(storeOf(), token(1, 0), '10.0.0.1', NOW)).toBeNull();
    expect(await checkAncestors(storeOf(token(1, 0, { ips: '10.0.0.*' }), token(2, 1)), leaf, '10.0.0.1', NOW)).toBeNull();
  });

  test.each([
    ['a disabled grandparent', [token(1, 0, { enabled: false }), token(2, 1)], 'disabled', 1],
    ['an expired parent', [token(1, 0), token(2, 1, { created: NOW - 100, accessed: NOW - 100 })], 'expired', 2],
    ['a grandparent whose ips exclude the address', [token(1, 0, { ips: '192.168.0.0/16' }), token(2, 1)], 'ip_denied', 1],
    ['a deleted grandparent', [token(2, 1)], 'gone', 1],
    ['a parent id not below its child (corrupt data)', [token(2, 5), token(5, 0)], 'gone', 5],
  ])('refuses for %s, naming it', async (_what, ancestors, kind, ancestorId) => {
    const refusal = await checkAncestors(storeOf(...(ancestors as Token[])), leaf, '10.0.0.1', NOW);
    expect(refusal).toMatchObject({ kind, ancestorId });
  });
});
