import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { compileRights } from '../../src/tokens/rights.js';
import { intersects, matches } from '../../src/tokens/topic.js';
import { ACCESS_ACL, ACCESS_MASTER, ACCESS_STANDARD, type AclEntry, type MqttAction, type TokenAccess } from '../../src/tokens/types.js';
import { WIDE_LEVELS, filterArb, filterOver, topicArb, topicOver } from './arbitraries.js';

const ctx = { clientId: 'truck-42', tokenId: 7 };

function acl(...entries: AclEntry[]): TokenAccess {
  return { type: ACCESS_ACL, acl: entries };
}

function topicEntry(topic: string, ...actions: MqttAction[]): AclEntry {
  return { uri: 'mqtt', topic, actions };
}

describe('standard and master tokens (SPEC §3)', () => {
  test.each([
    ['standard', ACCESS_STANDARD],
    ['master', ACCESS_MASTER],
  ] as const)('a %s token may publish, subscribe and receive on any topic', (_name, type) => {
    const rights = compileRights({ type }, ctx);
    expect(rights.hasMqtt).toBe(true);
    expect(rights.canPublish('anything/at/all')).toBe(true);
    expect(rights.canPublish('$share-like/x')).toBe(true);
    expect(rights.canSubscribe('#')).toBe(true);
    expect(rights.canReceive('devices/42/x')).toBe(true);
  });

  test.each([
    ['standard', ACCESS_STANDARD],
    ['master', ACCESS_MASTER],
    ['ACL', ACCESS_ACL],
  ] as const)('refuses PUBLISH to $SYS and $tokenmq for a %s token (SPEC §3)', (_name, type) => {
    const acl = type === ACCESS_ACL ? [topicEntry('$SYS/#', 'publish'), topicEntry('$tokenmq/#', 'publish'), topicEntry('#', 'publish')] : undefined;
    const rights = compileRights({ type, acl }, ctx);
    expect(rights.canPublish('$SYS/broker/uptime')).toBe(false);
    expect(rights.canPublish('$SYS')).toBe(false);
    expect(rights.canPublish('$tokenmq/events/connected/7')).toBe(false);
    expect(rights.canPublish('$tokenmq')).toBe(false);
  });

  test('a standard token may not subscribe to nor receive $SYS or $tokenmq; other $ topics it may (SPEC §3)', () => {
    const standard = compileRights({ type: ACCESS_STANDARD }, ctx);
    for (const filter of ['$SYS/#', '$SYS', '$SYS/+/new/clients', '$tokenmq/#', '$tokenmq/events/+/7', '$tokenmq']) {
      expect([filter, standard.canSubscribe(filter)]).toEqual([filter, false]);
    }
    for (const topic of ['$SYS/broker/new/clients', '$SYS', '$tokenmq/events/connected/7', '$tokenmq']) {
      expect([topic, standard.canReceive(topic)]).toEqual([topic, false]);
    }
    expect(standard.canSubscribe('$app/#')).toBe(true);
    expect(standard.canSubscribe('$SYSTEM/x')).toBe(true); // the first level is the rule, not a prefix
    expect(standard.canSubscribe('#')).toBe(true); // `#` never reaches `$` topics [MQTT-4.7.2-1]
    expect(standard.canReceive('$app/status')).toBe(true);
    expect(standard.canReceive('$tokenmqx/a')).toBe(true);
    expect(standard.canPublish('$app/status')).toBe(true);
  });

  test('a master token subscribes to and receives $SYS and $tokenmq (SPEC §3)', () => {
    const master = compileRights({ type: ACCESS_MASTER }, ctx);
    for (const filter of ['$SYS/#', '$tokenmq/#', '$tokenmq/events/+/7', '#']) expect(master.canSubscribe(filter)).toBe(true);
    for (const topic of ['$SYS/broker/new/clients', '$tokenmq/events/connected/7', '$app/x']) expect(master.canReceive(topic)).toBe(true);
  });

  test('an unknown access type grants nothing (default deny)', () => {
    const rights = compileRights({ type: 9 as unknown as 0 }, ctx);
    expect(rights.hasMqtt).toBe(false);
    expect(rights.canPublish('a')).toBe(false);
    expect(rights.canSubscribe('a')).toBe(false);
    expect(rights.canReceive('a')).toBe(false);
    expect(rights.canRest('GET', '/mqtt/sessions/all')).toBe(false);
  });
});

describe('ACL tokens: MQTT rights (SPEC §3)', () => {
  const dashboard = compileRights(acl(topicEntry('devices/42/#', 'subscribe')), ctx);

  test('grants SUBSCRIBE to # when an entry allows devices/42/# (SPEC §3 dashboard example)', () => {
    expect(dashboard.canSubscribe('#')).toBe(true);
    expect(dashboard.canSubscribe('devices/+/status')).toBe(true);
  });

  test('delivers exactly devices/42/... to that # subscription (SPEC §3 dashboard example)', () => {
    expect(dashboard.canReceive('devices/42/x')).toBe(true);
    expect(dashboard.canReceive('devices/42')).toBe(true);
    expect(dashboard.canReceive('devices/43/x')).toBe(false);
    expect(dashboard.canReceive('test/x')).toBe(false);
  });

  test('refuses SUBSCRIBE that intersects no ACL entry (SPEC §3)', () => {
    expect(dashboard.canSubscribe('test/x')).toBe(false);
    expect(dashboard.canSubscribe('devices/43/#')).toBe(false);
    expect(dashboard.canSubscribe('$SYS/#')).toBe(false); // [MQTT-4.7.2-1]
  });

  test('refuses an invalid SUBSCRIBE filter', () => {
    expect(dashboard.canSubscribe('devices/#/x')).toBe(false);
  });

  test('a subscribe entry grants no PUBLISH, and a publish entry grants no SUBSCRIBE', () => {
    expect(dashboard.canPublish('devices/42/x')).toBe(false);
    const sensor = compileRights(acl(topicEntry('devices/42/#', 'publish')), ctx);
    expect(sensor.canPublish('devices/42/temp')).toBe(true);
    expect(sensor.canPublish('devices/43/temp')).toBe(false);
    expect(sensor.canSubscribe('devices/42/#')).toBe(false);
    expect(sensor.canReceive('devices/42/temp')).toBe(false);
  });

  test('$SYS and $tokenmq need an entry naming that $ level (SPEC §3)', () => {
    const events = compileRights(acl(topicEntry('$tokenmq/events/#', 'subscribe'), topicEntry('#', 'subscribe'), topicEntry('+/#', 'subscribe')), ctx);
    expect(events.canSubscribe('$tokenmq/events/+/7')).toBe(true);
    expect(events.canReceive('$tokenmq/events/connected/7')).toBe(true);
    expect(events.canSubscribe('$SYS/#')).toBe(false);
    expect(events.canReceive('$SYS/broker/new/clients')).toBe(false);
    expect(events.canSubscribe('$tokenmq/other')).toBe(false);
  });

  test('a # entry does not reach $ topics; a $ entry does [MQTT-4.7.2-1]', () => {
    const wide = compileRights(acl(topicEntry('#', 'publish', 'subscribe')), ctx);
    expect(wide.canReceive('$SYS/broker/uptime')).toBe(false);
    expect(wide.canPublish('$app/x')).toBe(false);
    const sys = compileRights(acl(topicEntry('$SYS/#', 'subscribe'), topicEntry('$app/+', 'publish')), ctx);
    expect(sys.canSubscribe('$SYS/broker/#')).toBe(true);
    expect(sys.canReceive('$SYS/broker/uptime')).toBe(true);
    expect(sys.canPublish('$app/x')).toBe(true);
  });

  test('a token with no mqtt topic entry has no MQTT rights: CONNECT is refused (SPEC §3)', () => {
    expect(compileRights(acl({ uri: 'mqtt/sessions', methods: ['GET'] }), ctx).hasMqtt).toBe(false);
    expect(compileRights(acl(), ctx).hasMqtt).toBe(false);
    expect(compileRights({ type: ACCESS_ACL }, ctx).hasMqtt).toBe(false);
    expect(dashboard.hasMqtt).toBe(true);
  });

  test('a filter with thousands of levels does not overflow the stack', () => {
    const deep = Array.from({ length: 30000 }, () => 'a').join('/');
    const rights = compileRights(acl(topicEntry(deep, 'publish'), topicEntry('+/+/#', 'publish')), ctx);
    expect(rights.canPublish(deep)).toBe(true);
    expect(rights.canPublish(`${deep}/b`)).toBe(true);
    expect(rights.canPublish('a')).toBe(false);
  });

  test('many literal children at one level are found (Map fan-out)', () => {
    const entries = Array.from({ length: 256 }, (_, i) => topicEntry(`devices/${i}/+`, 'publish'));
    const rights = compileRights(acl(...entries), ctx);
    expect(rights.canPublish('devices/0/x')).toBe(true);
    expect(rights.canPublish('devices/255/x')).toBe(true);
    expect(rights.canPublish('devices/256/x')).toBe(false);
    expect(rights.canPublish('devices/25/x/y')).toBe(false);
  });
});

describe('ACL placeholders (SPEC §3)', () => {
  const own = acl(topicEntry('devices/${clientid}/#', 'publish', 'subscribe'), topicEntry('tokens/${token_id}/+', 'publish'));

  test('substitutes ${clientid} and ${token_id} for the session', () => {
    const rights = compileRights(own, ctx);
    expect(rights.canPublish('devices/truck-42/gps')).toBe(true);
    expect(rights.canPublish('devices/truck-43/gps')).toBe(false);
    expect(rights.canPublish('tokens/7/x')).toBe(true);
    expect(rights.canPublish('tokens/8/x')).toBe(false);
    expect(rights.canPublish('devices/${clientid}/gps')).toBe(false);
  });

  test.each(['a/+', '+', '#', 'x/#', 'a/b', '', 'a\u0000b'])(
    'a client id %j never matches a placeholder: the entry is dropped, not widened (SPEC §3)',
    (clientId) => {
      const rights = compileRights(own, { clientId, tokenId: 7 });
      expect(rights.canPublish('devices/a/b/c')).toBe(false);
      expect(rights.canPublish('devices/a/x')).toBe(false);
      expect(rights.canSubscribe('devices/#')).toBe(false);
      expect(rights.canPublish('tokens/7/x')).toBe(true); // the other entry is unaffected
    },
  );

  test('a client id starting with $ cannot turn ${clientid}/# into a $SYS filter', () => {
    const rights = compileRights(acl(topicEntry('${clientid}/#', 'subscribe')), { clientId: '$SYS', tokenId: 1 });
    expect(rights.canSubscribe('$SYS/#')).toBe(false);
    expect(rights.canReceive('$SYS/broker/uptime')).toBe(false);
    expect(rights.hasMqtt).toBe(false);
  });

  test('a client id that spells a placeholder stays literal', () => {
    const rights = compileRights(own, { clientId: '${token_id}', tokenId: 7 });
    expect(rights.canPublish('devices/${token_id}/x')).toBe(true);
    expect(rights.canPublish('devices/7/x')).toBe(false);
  });
});

describe('REST rights (SPEC §3, §5)', () => {
  test('master may do everything, including /platform', () => {
    const master = compileRights({ type: ACCESS_MASTER }, ctx);
    expect(master.canRest('POST', '/platform/tokens')).toBe(true);
    expect(master.canRest('DELETE', '/mqtt/sessions/all')).toBe(true);
  });

  test('standard may use /mqtt/* and nothing under /platform', () => {
    const standard = compileRights({ type: ACCESS_STANDARD }, ctx);
    expect(standard.canRest('GET', '/mqtt/sessions/all')).toBe(true);
    expect(standard.canRest('DELETE', '/mqtt/sessions/a,b')).toBe(true);
    expect(standard.canRest('GET', '/platform/tokens/all')).toBe(false);
    expect(standard.canRest('GET', '/platform')).toBe(false);
    expect(standard.canRest('GET', '/PLATFORM/tokens/all')).toBe(false);
  });

  test.each(['/mqtt/logs', '/mqtt/logs?limit=1', '/mqtt/logs/', '/MQTT/Logs', '/mqtt/%6Cogs', '/mqtt/logs/x'])(
    'standard tokens may not read the broker log: %j (SPEC §3 "all of /mqtt/* except /mqtt/logs")',
    (path) => {
      const standard = compileRights({ type: ACCESS_STANDARD }, ctx);
      expect(standard.canRest('GET', path)).toBe(false);
      expect(standard.canRest('GET', '/mqtt/logsx')).toBe(true);
      expect(compileRights({ type: ACCESS_MASTER }, ctx).canRest('GET', path)).toBe(true);
    },
  );

  test.each(['/%70latform/tokens/all', '//platform/tokens', '/mqtt/../platform/tokens', '/mqtt/%2e%2e/platform/tokens', '/mqtt/%zz', 'platform/tokens'])(
    'refuses the ambiguous path %j to a standard token',
    (path) => {
      expect(compileRights({ type: ACCESS_STANDARD }, ctx).canRest('GET', path)).toBe(false);
    },
  );

  test('ACL: a uri covers its path and everything below it on a segment boundary, per method', () => {
    const rights = compileRights(acl({ uri: 'mqtt/sessions', methods: ['GET'] }), ctx);
    expect(rights.canRest('GET', '/mqtt/sessions')).toBe(true);
    expect(rights.canRest('GET', '/mqtt/sessions/all')).toBe(true);
    expect(rights.canRest('GET', '/mqtt/sessions/all?token_id=7')).toBe(true);
    expect(rights.canRest('HEAD', '/mqtt/sessions/all')).toBe(true); // HEAD comes with GET
    expect(rights.canRest('DELETE', '/mqtt/sessions/all')).toBe(false);
    expect(rights.canRest('GET', '/mqtt/sessionsx')).toBe(false);
    expect(rights.canRest('GET', '/mqtt')).toBe(false);
  });

  test('ACL: GET on mqtt/logs reads the broker log (SPEC §5)', () => {
    expect(compileRights(acl({ uri: 'mqtt/logs', methods: ['GET'] }), ctx).canRest('GET', '/mqtt/logs?limit=5')).toBe(true);
    expect(compileRights(acl({ uri: 'mqtt', methods: ['GET'] }), ctx).canRest('GET', '/mqtt/logs')).toBe(true);
    expect(compileRights(acl({ uri: 'mqtt/sessions', methods: ['GET'] }), ctx).canRest('GET', '/mqtt/logs')).toBe(false);
  });

  test('ACL: uri mqtt covers all of /mqtt/* (SPEC §3)', () => {
    const rights = compileRights(acl({ uri: 'mqtt', methods: ['GET', 'DELETE'] }), ctx);
    expect(rights.canRest('GET', '/mqtt/sessions/all')).toBe(true);
    expect(rights.canRest('DELETE', '/mqtt/sessions/c1')).toBe(true);
    expect(rights.canRest('POST', '/mqtt/sessions/c1')).toBe(false);
    expect(rights.canRest('GET', '/mqttx')).toBe(false);
  });

  test('ACL tokens are never granted /platform, even by a stored entry (SPEC §3)', () => {
    const rights = compileRights(acl({ uri: 'platform', methods: ['GET'] }, { uri: 'Platform/tokens', methods: ['GET'] }, { uri: '', methods: ['GET'] }), ctx);
    expect(rights.canRest('GET', '/platform/tokens/all')).toBe(false);
    expect(rights.canRest('GET', '/Platform/tokens/all')).toBe(false);
    expect(rights.canRest('GET', '/mqtt/sessions/all')).toBe(false);
  });

  test('GET /auth/info is allowed for any valid token (SPEC §5)', () => {
    for (const access of [acl(), { type: ACCESS_STANDARD }, { type: ACCESS_MASTER }] as TokenAccess[]) {
      const rights = compileRights(access, ctx);
      expect(rights.canRest('GET', '/auth/info')).toBe(true);
    }
    expect(compileRights(acl(), ctx).canRest('DELETE', '/auth/info')).toBe(false);
  });
});

/** SPEC §3, written independently of rights.ts: the first level is `$SYS` or `$tokenmq`. */
function brokerLevel(topicOrFilter: string): boolean {
  const first = topicOrFilter.split('/')[0];
  return first === '$SYS' || first === '$tokenmq';
}

describe('the broker\'s own topics: $SYS and $tokenmq (SPEC §3, property)', () => {
  const wideTopic = topicOver(WIDE_LEVELS);
  const wideFilter = filterOver(WIDE_LEVELS);
  const standard = compileRights({ type: ACCESS_STANDARD }, ctx);
  const master = compileRights({ type: ACCESS_MASTER }, ctx);

  test('standard: every topic but the broker\'s own, to publish, subscribe and receive; master: all but publishing there', () => {
    fc.assert(
      fc.property(wideTopic, wideFilter, (topic, filter) =>
        standard.canPublish(topic) === !brokerLevel(topic) &&
        standard.canReceive(topic) === !brokerLevel(topic) &&
        standard.canSubscribe(filter) === !brokerLevel(filter) &&
        master.canPublish(topic) === !brokerLevel(topic) &&
        master.canReceive(topic) &&
        master.canSubscribe(filter)),
      { numRuns: 2000 },
    );
  });
});

describe('compiled matcher agrees with a linear scan of the entries (property)', () => {
  const actionsArb = fc.subarray<MqttAction>(['publish', 'subscribe'], { minLength: 1 });
  const entriesArb = fc.array(fc.tuple(filterArb, actionsArb), { maxLength: 40 });
  type Entries = [string, MqttAction[]][];
  const withAction = (entries: Entries, action: MqttAction) =>
    entries.filter(([, actions]) => actions.includes(action)).map(([filter]) => filter);

  /** SPEC §3 as a linear scan: the reference the compiled trie must agree with. */
  function agreesWithScan(entries: Entries, topics: string[]): boolean {
    const rights = compileRights(acl(...entries.map(([filter, actions]) => topicEntry(filter, ...actions))), ctx);
    const publish = withAction(entries, 'publish');
    const subscribe = withAction(entries, 'subscribe');
    return topics.every(
      (topic) =>
        rights.canPublish(topic) === (!brokerLevel(topic) && publish.some((f) => matches(f, topic))) &&
        rights.canReceive(topic) === subscribe.some((f) => matches(f, topic)),
    );
  }

  test('canPublish and canReceive equal "some entry with the action matches" (SPEC §3)', () => {
    fc.assert(fc.property(entriesArb, fc.array(topicArb, { minLength: 1, maxLength: 10 }), agreesWithScan), { numRuns: 1000 });
  });

  test('canPublish and canReceive agree with the scan for up to 256 entries over a wide alphabet (SPEC §3)', () => {
    const wideEntries = fc.array(fc.tuple(filterOver(WIDE_LEVELS), actionsArb), { maxLength: 256, size: 'max' });
    fc.assert(fc.property(wideEntries, fc.array(topicOver(WIDE_LEVELS), { minLength: 1, maxLength: 10 }), agreesWithScan), {
      numRuns: 1000,
    });
  });

  test('hasMqtt is true iff there is a topic entry (SPEC §3)', () => {
    fc.assert(
      fc.property(entriesArb, (entries) => {
        const rights = compileRights(acl(...entries.map(([filter, actions]) => topicEntry(filter, ...actions))), ctx);
        return rights.hasMqtt === entries.length > 0;
      }),
      { numRuns: 1000 },
    );
  });

  test('canSubscribe equals "some subscribe entry intersects the filter" (SPEC §3)', () => {
    fc.assert(
      fc.property(entriesArb, filterArb, (entries, filter) => {
        const rights = compileRights(acl(...entries.map(([f, actions]) => topicEntry(f, ...actions))), ctx);
        return rights.canSubscribe(filter) === withAction(entries, 'subscribe').some((f) => intersects(f, filter));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('SPEC §3 ids and submodules of mqtt/sessions', () => {
  const ctx = { clientId: 'x', tokenId: 1 };
  const rights = (...entries: AclEntry[]) => compileRights(acl(...entries), ctx);

  test('SPEC §3 example: GET on the sessions, GET and DELETE on their subscriptions', () => {
    const r = rights({ uri: 'mqtt/sessions', methods: ['GET'], submodules: [{ name: 'subscriptions', methods: ['GET', 'DELETE'] }] });
    expect(r.canRest('GET', '/mqtt/sessions/all')).toBe(true);
    expect(r.canRest('DELETE', '/mqtt/sessions/all')).toBe(false);
    expect(r.canRest('GET', '/mqtt/sessions/all/subscriptions')).toBe(true);
    expect(r.canRest('DELETE', '/mqtt/sessions/a/subscriptions/x%2Fy')).toBe(true);
    expect(r.canRest('POST', '/mqtt/sessions/a/subscriptions')).toBe(false);
  });

  test('a method on the item does not grant it on the submodule, nor the reverse (flespi rule)', () => {
    const items = rights({ uri: 'mqtt/sessions', methods: ['GET', 'DELETE'] });
    expect(items.canRest('GET', '/mqtt/sessions/all/subscriptions')).toBe(false);
    expect(items.canRest('DELETE', '/mqtt/sessions/a/subscriptions/t')).toBe(false);
    // an encoded '/' in a client id stays one segment: `a/subscriptions` is an item
    expect(items.canRest('GET', '/mqtt/sessions/a%2Fsubscriptions')).toBe(true);
    const subsOnly = rights({ uri: 'mqtt/sessions', methods: ['HEAD'], submodules: [{ name: 'subscriptions', methods: ['GET'] }] });
    expect(subsOnly.canRest('GET', '/mqtt/sessions/all')).toBe(false);
    expect(subsOnly.canRest('GET', '/mqtt/sessions/all/subscriptions')).toBe(true);
    // an encoded '/' may not shift the segments towards a submodule
    expect(subsOnly.canRest('GET', '/mqtt%2Fsessions/all/x/subscriptions')).toBe(false);
  });

  test('the broad uri `mqtt` covers every /mqtt path, submodules included', () => {
    const r = rights({ uri: 'mqtt', methods: ['GET'] });
    expect(r.canRest('GET', '/mqtt/sessions/all/subscriptions')).toBe(true);
    expect(r.restClientIds('GET', '/mqtt/sessions/all')).toBeNull();
  });

  test('ids: the union of the masks of the entries that grant the request', () => {
    const r = rights(
      { uri: 'mqtt/sessions', methods: ['GET'], ids: ['dev-*'] },
      { uri: 'mqtt/sessions', methods: ['GET', 'DELETE'], ids: ['tool?'] },
    );
    const get = r.restClientIds('GET', '/mqtt/sessions/all')!;
    expect(['dev-1', 'tool1', 'tool', 'x'].map(get)).toEqual([true, true, false, false]);
    const del = r.restClientIds('DELETE', '/mqtt/sessions/all')!;
    expect(['dev-1', 'tool1'].map(del)).toEqual([false, true]);
    expect(compileRights({ type: ACCESS_STANDARD }, ctx).restClientIds('GET', '/mqtt/sessions/all')).toBeNull();
  });
});
