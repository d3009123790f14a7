// Rights.explain (SPEC §5 `GET /auth/check`): the same answer as the broker's
// canPublish/canSubscribe, with the index of the deciding ACL entry.
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { compileSharedRights } from '../../src/tokens/rights.js';
import type { AclEntry, TokenAccess } from '../../src/tokens/types.js';

const acl = (...entries: AclEntry[]): TokenAccess => ({ type: 2, acl: entries });
const topic = (t: string, ...actions: ('publish' | 'subscribe')[]): AclEntry => ({ uri: 'mqtt', topic: t, actions });
const ctxOf = (clientId: string, tokenId = 42) => ({ clientId, tokenId, tokenIdText: String(tokenId) });

function explain(access: TokenAccess, action: 'publish' | 'subscribe', t: string, clientId = 'dev1', tokenId = 42) {
  const ctx = ctxOf(clientId, tokenId);
  return compileSharedRights(access).forSession(ctx).explain(action, t, ctx);
}

describe('Rights.explain (SPEC §5 /auth/check)', () => {
  const access = acl(
    { uri: 'mqtt/sessions', methods: ['GET'] },
    topic('devices/${clientid}/#', 'publish'),
    topic('fleet/+/status', 'subscribe'),
    topic('tokens/${token_id}/in', 'publish', 'subscribe'),
    topic('$SYS/broker/#', 'subscribe'),
    topic('devices/#', 'publish'),
  );

  test('publish: the first entry that matches decides, its index in access.acl', () => {
    expect(explain(access, 'publish', 'devices/dev1/temp')).toEqual({ allowed: true, entry: 1, reason: 'ACL entry 1 allows publish' });
    expect(explain(access, 'publish', 'devices/other/temp')).toMatchObject({ allowed: true, entry: 5 });
    expect(explain(access, 'publish', 'fleet/1/status')).toMatchObject({ allowed: false, entry: null });
  });

  test('subscribe: the first entry that intersects the filter decides', () => {
    expect(explain(access, 'subscribe', 'fleet/#')).toMatchObject({ allowed: true, entry: 2 });
    expect(explain(access, 'subscribe', 'devices/dev1/x')).toMatchObject({ allowed: false, entry: null });
  });

  test('placeholders: ${clientid} from client_id, ${token_id} from the token; unsafe client ids never match', () => {
    expect(explain(access, 'publish', 'tokens/42/in')).toMatchObject({ allowed: true, entry: 3 });
    expect(explain(access, 'publish', 'tokens/43/in')).toMatchObject({ allowed: false });
    expect(explain(access, 'subscribe', 'tokens/42/in', 'x', 42)).toMatchObject({ allowed: true, entry: 3 });
    // No client id: `${clientid}` entries grant nothing; the broad entry 5 still does.
    expect(explain(access, 'publish', 'devices/dev1/t', '')).toMatchObject({ allowed: true, entry: 5 });
    expect(explain(acl(topic('devices/${clientid}/#', 'publish')), 'publish', 'devices/a/t', 'a/+')).toMatchObject({ allowed: false, entry: null });
  });

  test('$ topics: publishing to $SYS is refused for every type; subscribing needs an entry naming it; # never reaches $ (MQTT-4.7.2-1)', () => {
    expect(explain(access, 'publish', '$SYS/broker/x')).toMatchObject({ allowed: false, entry: null, reason: expect.stringMatching(/only the broker/) });
    expect(explain({ type: 1 }, 'publish', '$tokenmq/events')).toMatchObject({ allowed: false });
    expect(explain(access, 'subscribe', '$SYS/broker/clients')).toMatchObject({ allowed: true, entry: 4 });
    const all = acl(topic('#', 'publish', 'subscribe'));
    expect(explain(all, 'publish', '$app/x')).toMatchObject({ allowed: false, reason: expect.stringMatching(/MQTT-4\.7\.2-1/) });
    expect(explain(all, 'subscribe', '$SYS/#')).toMatchObject({ allowed: false });
    expect(explain(acl(topic('$app/#', 'publish')), 'publish', '$app/x')).toMatchObject({ allowed: true, entry: 0 });
  });

  test('master and standard: entry null, the reason names the type', () => {
    expect(explain({ type: 1 }, 'subscribe', '$SYS/#')).toEqual({ allowed: true, entry: null, reason: 'master token: every topic' });
    expect(explain({ type: 0 }, 'publish', 'a/b')).toMatchObject({ allowed: true, entry: null, reason: expect.stringMatching(/^standard token/) });
    expect(explain({ type: 0 }, 'subscribe', '$SYS/#')).toMatchObject({ allowed: false, entry: null, reason: expect.stringMatching(/^standard token/) });
  });

  test('always agrees with canPublish / canSubscribe (property)', () => {
    const level = fc.constantFrom('a', 'b', '+', '${clientid}', '${token_id}', '$SYS', '$x');
    const filter = fc.array(level, { minLength: 1, maxLength: 4 }).chain((ls) => fc.boolean().map((h) => (h ? [...ls, '#'] : ls).join('/')));
    const topicName = fc.array(fc.constantFrom('a', 'b', 'c1', '42', '$SYS', '$x'), { minLength: 1, maxLength: 4 }).map((ls) => ls.join('/'));
    const entry = fc.record({ f: filter, p: fc.boolean(), s: fc.boolean() })
      .map(({ f, p, s }) => topic(f, ...(p || !s ? ['publish' as const] : []), ...(s ? ['subscribe' as const] : [])));
    fc.assert(fc.property(fc.array(entry, { maxLength: 5 }), topicName, fc.constantFrom('c1', '', 'a/b'), (entries, t, cid) => {
      const ctx = ctxOf(cid, 42);
      const rights = compileSharedRights(acl(...entries)).forSession(ctx);
      const pub = rights.explain('publish', t, ctx);
      expect(pub.allowed).toBe(rights.canPublish(t, ctx));
      const sub = rights.explain('subscribe', t, ctx);
      expect(sub.allowed).toBe(rights.canSubscribe(t, ctx));
      for (const d of [pub, sub]) expect(d.allowed ? d.entry !== null : d.entry === null).toBe(true);
    }));
  });
});
