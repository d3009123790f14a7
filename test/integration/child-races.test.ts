// Child tokens under races (SPEC §2 `parent`, §3 "Rights never widen by
// accident", §4 "no window"), deterministic: a store call is held while the
// parent changes, then released.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import type { TokenStore } from '../../src/store/types.js';
import { ACCESS_ACL, ACCESS_MASTER, type AclEntry, type TokenAccess, type TokenInput } from '../../src/tokens/types.js';
import { Gate, holdable, type HeldStore } from '../helpers/held-store.js';
import { closed, connect } from '../helpers/mqtt.js';
import { rest } from '../helpers/rest.js';
import { openStore, startTestServer, type TestServer } from '../helpers/server.js';

const nowSec = (): number => Math.floor(Date.now() / 1000);
const ENFORCE_MS = 1500; // SPEC: within 1 s; the margin absorbs a loaded machine
const sub = (topic: string): AclEntry => ({ uri: 'mqtt', topic, actions: ['subscribe'] });
const acl = (...entries: AclEntry[]): TokenAccess => ({ type: ACCESS_ACL, acl: entries });

/** `inner` whose createChildren waits at `gate` (when set) before it runs. */
function holdingChildren(inner: TokenStore): { store: TokenStore; hold(): Gate } {
  let gate: Gate | null = null;
  const createChildren: TokenStore['createChildren'] = async (...args) => {
    if (gate) await gate.pass();
    return inner.createChildren(...args);
  };
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'createChildren') return createChildren;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store, hold: () => (gate = new Gate()) };
}

describe.each(['memory', 'redis'] as const)('child tokens under races, %s store', (kind) => {
  let srv: TestServer;
  let held: HeldStore;
  let children: ReturnType<typeof holdingChildren>;
  let masterKey: string;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    held = holdable(await openStore(kind));
    children = holdingChildren(held.store);
    srv = await startTestServer({ store: children.store, tokenCacheMs: 0 });
    masterKey = (await srv.token({ access: { type: ACCESS_MASTER }, ttl: 3600 })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await srv.close();
  });

  test.each<[string, TokenInput]>([
    ['narrowed', { access: acl(sub('devices/2/#')) }],
    ['ips changed', { ips: '10.0.0.0/8' }],
    ['disabled', { enabled: false }],
  ])('a parent %s while its child is being minted: the child is not created (SPEC §3 rights never widen)', async (_what, patch) => {
    const parent = await srv.token({ ttl: 3600, access: acl(sub('devices/#')) });
    const gate = children.hold();
    // Checked against the parent's rights as read; held just before the store writes.
    const minting = rest(srv.httpUrl, 'POST', '/auth/tokens', { key: parent.key, body: { ttl: 60, access: acl(sub('devices/1/#')) } });
    await gate.whenReached();
    const change = await rest(srv.httpUrl, 'PUT', `/platform/tokens/${parent.id}`, { key: masterKey, body: patch });
    expect(change.status).toBe(200);
    gate.release();
    const res = await minting;
    expect(res.status).toBe(409);
    expect((await srv.store.get('all')).filter((t) => t.parent === parent.id)).toEqual([]);
  });

  test.each<[string, TokenInput | null]>([
    ['disabled', { enabled: false }],
    ['given other ips', { ips: '10.0.0.0/8' }],
    ['deleted', null],
  ])('a parent %s while its child CONNECTs: the child session ends within 1 s (SPEC §4 no window)', async (_what, patch) => {
    const parent = await srv.token({ ttl: 3600, access: acl(sub('devices/#')) });
    const [child] = await srv.store.createChildren(parent, [{ ttl: 60, access: acl(sub('devices/1/#')) }], nowSec());
    const gate = held.holdLookups();
    const outcome = connect(srv.mqttUrl, child!.key).then((client) => ({ client }), (refused: unknown) => ({ refused }));
    await gate.whenReached();
    if (patch === null) await srv.store.delete([parent.id]);
    else await srv.store.update([parent.id], patch, nowSec());
    gate.release();
    held.holdLookups().release(); // later lookups (the re-read) pass
    const result = await outcome;
    if ('client' in result) {
      clients.push(result.client);
      await closed(result.client, ENFORCE_MS);
    } else {
      // 4: the child was seen deleted (cascade); 5: the changed parent was seen first (ancestor check).
      expect([4, 5]).toContain((result.refused as { code?: number }).code);
    }
    expect(await srv.store.get([child!.id])).toEqual([]);
  });
});
