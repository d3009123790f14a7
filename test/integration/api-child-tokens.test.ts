// Child tokens end to end (SPEC §2 `parent`, §3 "Rights never widen by
// accident", §5 POST /auth/tokens): minting over REST, what a child may do,
// its ancestors applying at CONNECT and on REST, and the cascade that deletes
// children and closes their sessions within 1 s, on one node (memory) and
// across two nodes of a Redis cluster.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { ACCESS_ACL, ACCESS_MASTER, type AclEntry, type TokenInput } from '../../src/tokens/types.js';
import { closed, collect, connect, refusedCode } from '../helpers/mqtt.js';
import { rest } from '../helpers/rest.js';
import { startTestServer, type TestServer, secondNode } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

const nowSec = (): number => Math.floor(Date.now() / 1000);
/** SPEC §2: children per token. */
const MAX_CHILDREN = 1000;
const ENFORCE_MS = 1500; // SPEC: within 1 s; the margin absorbs a loaded machine

const sub = (topic: string): AclEntry => ({ uri: 'mqtt', topic, actions: ['subscribe'] });
const pub = (topic: string): AclEntry => ({ uri: 'mqtt', topic, actions: ['publish'] });
const acl = (...entries: AclEntry[]): TokenInput['access'] => ({ type: ACCESS_ACL, acl: entries });

// The tests check revoked keys on purpose (CONNACK 4, 401), each a failure the brute-force guard
// counts for 127.0.0.1: with the default 10 per 10 s, a fast run got the next mint refused (429).
const GUARD = { authFailLimit: 1000 };

const modes = [
  ['one node, memory store', async (): Promise<TestServer[]> => [await startTestServer({ tokenCacheMs: 0, ...GUARD })]],
  ['two nodes, Redis cluster', async (): Promise<TestServer[]> => {
    const a = await startTestServer({ store: 'redis', cluster: true, tokenCacheMs: 0, ...GUARD });
    return [a, await secondNode(a)];
  }],
] as const;

describe.each(modes)('child tokens (%s)', (_mode, start) => {
  let nodes: TestServer[];
  /** Where children are minted and managed. */
  let a: TestServer;
  /** Where their sessions live (the other node in cluster mode). */
  let b: TestServer;
  let masterKey: string;
  const clients: MqttClient[] = [];
  const open = async (key: string): Promise<MqttClient> => {
    const c = await connect(b.mqttUrl, key);
    clients.push(c);
    return c;
  };
  const mint = (key: string, body: unknown) => rest(a.httpUrl, 'POST', '/auth/tokens', { key, body });

  beforeAll(async () => {
    nodes = await start();
    a = nodes[0]!;
    b = nodes[nodes.length - 1]!;
    masterKey = (await a.token({ access: { type: ACCESS_MASTER }, ttl: 3600 })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    for (const n of nodes.reverse()) await n.close();
  });

  test('POST /auth/tokens: any valid token mints a child within its rights; key once, parent set (SPEC §5)', async () => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('devices/#'), pub('devices/+/cmd')) });
    const res = await mint(parent.key, { info: 'browser', expire: nowSec() + 900, access: acl(sub('devices/42/#')) });
    expect(res.status).toBe(200);
    const [child] = res.body.result;
    expect(child).toMatchObject({ info: 'browser', parent: parent.id, access: acl(sub('devices/42/#')) });
    expect(child.key).toMatch(/^[A-Za-z0-9]{64}$/);
    const listed = await rest(a.httpUrl, 'GET', `/platform/tokens/${child.id}`, { key: masterKey });
    expect(listed.body.result[0]).toMatchObject({ parent: parent.id });
    expect(listed.body.result[0]).not.toHaveProperty('key');
    // SPEC §5 selector `parent=N`.
    const children = await rest(a.httpUrl, 'GET', `/platform/tokens/parent=${parent.id}?fields=id,parent`, { key: masterKey });
    expect(children.body.result).toEqual([{ id: child.id, parent: parent.id }]);
    expect((await rest(a.httpUrl, 'GET', '/platform/tokens/parent=999999999', { key: masterKey })).body.result).toEqual([]);
    // The child works, with its own narrower rights.
    const c = await open(child.key);
    await expect(c.subscribeAsync('devices/42/x')).resolves.toBeDefined();
    await expect(c.subscribeAsync('devices/43/x')).rejects.toThrow();
    // A child mints a grandchild within its own rights.
    const grand = await mint(child.key, { ttl: 60, access: acl(sub('devices/42/temp')) });
    expect(grand.status).toBe(200);
    expect(grand.body.result[0].parent).toBe(child.id);
  });

  test('refuses a child wider than its parent with 403 naming the entry (SPEC §3 rights never widen)', async () => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('devices/#'), pub('devices/+/cmd')) });
    for (const [entries, index] of [
      [[sub('devices/1'), sub('#')], 1],
      [[pub('devices/#')], 0],
      [[sub('devices/1'), pub('devices/1/cmd'), pub('devices/1/other')], 2],
      [[{ uri: 'mqtt/sessions', methods: ['GET'] }], 0],
      [[sub('$SYS/#')], 0],
    ] as const) {
      const res = await mint(parent.key, { ttl: 60, access: acl(...(entries as readonly AclEntry[])) });
      expect(res.status).toBe(403);
      expect(res.body.errors[0].reason).toMatch(new RegExp(`^access\\.acl\\[${index}\\]: `));
    }
    // A standard token: every topic but the broker's own, /mqtt/* but /mqtt/logs.
    const standard = await a.token({ ttl: 3600, access: { type: 0 } });
    expect((await mint(standard.key, { ttl: 60, access: acl(sub('#'), { uri: 'mqtt/sessions', methods: ['GET'] }) })).status).toBe(200);
    expect((await mint(standard.key, { ttl: 60, access: acl(sub('$tokenmq/events/#')) })).status).toBe(403);
    expect((await mint(standard.key, { ttl: 60, access: acl({ uri: 'mqtt/logs', methods: ['GET'] }) })).status).toBe(403);
    // Never /platform, even for a master's child (the schema/validation refuses it first).
    expect((await mint(masterKey, { ttl: 60, access: acl({ uri: 'platform/tokens', methods: ['GET'] }) })).status).toBe(400);
    expect(await a.store.children(parent.id)).toEqual([]);
  });

  test('400: a child is always an ACL token, cannot outlast its parent, has no writable parent (SPEC §2, §5)', async () => {
    const end = nowSec() + 600;
    const parent = await a.token({ expire: end, ttl: 0, access: acl(sub('a/#')) });
    for (const body of [
      { ttl: 60 }, // no access: the default would be standard
      { ttl: 60, access: { type: 0 } },
      { ttl: 60, access: { type: ACCESS_MASTER } },
      { expire: end + 1, access: acl(sub('a/b')) },
      { ttl: 601, access: acl(sub('a/b')) },
      { ttl: 60, parent: 1, access: acl(sub('a/b')) },
    ]) {
      const res = await mint(parent.key, body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
    }
    expect((await mint(parent.key, { expire: end, access: acl(sub('a/b')) })).status).toBe(200);
    // A ttl parent: the child's end must not pass the parent's current one.
    const ttlParent = await a.token({ ttl: 300, access: acl(sub('a/#')) });
    expect((await mint(ttlParent.key, { ttl: 301, access: acl(sub('a/b')) })).status).toBe(400);
    expect((await mint(ttlParent.key, { ttl: 300, access: acl(sub('a/b')) })).status).toBe(200);
  });

  test('limits no looser than the parent\'s: 403 naming the field; left out, the parent\'s apply (SPEC §5 POST /auth/tokens)', async () => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('a/#')), limits: { sessions: 3, publish_rate: 10 } });
    for (const [limits, field] of [
      [{ sessions: 4, publish_rate: 10 }, 'sessions'],
      [{ sessions: 0 }, 'sessions'], // 0 = unlimited: the loosest
      [{ publish_rate: 11 }, 'publish_rate'],
      [{ sessions: 2, publish_rate: 0 }, 'publish_rate'],
    ] as const) {
      const res = await mint(parent.key, { ttl: 60, access: acl(sub('a/b')), limits });
      expect({ limits, status: res.status }).toEqual({ limits, status: 403 });
      expect(res.body.errors[0].reason).toMatch(new RegExp(`^limits\\.${field}: `));
    }
    const tighter = await mint(parent.key, { ttl: 60, access: acl(sub('a/b')), limits: { sessions: 1 } });
    expect(tighter.status).toBe(200);
    expect(tighter.body.result[0].limits).toEqual({ sessions: 1, publish_rate: 10 });
    const inherited = await mint(parent.key, { ttl: 60, access: acl(sub('a/b')) });
    expect(inherited.body.result[0].limits).toEqual({ sessions: 3, publish_rate: 10 });
    // An unlimited parent: any limits.
    const free = await a.token({ ttl: 3600, access: acl(sub('a/#')) });
    expect((await mint(free.key, { ttl: 60, access: acl(sub('a/b')), limits: { sessions: 0, publish_rate: 0 } })).status).toBe(200);
  });

  test(`at most ${MAX_CHILDREN} children per token: beyond, 403 with the reason (SPEC §2)`, async () => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('a/#')) });
    const batch = Array.from({ length: MAX_CHILDREN }, () => ({ ttl: 60, access: acl(sub('a/b')) }));
    expect((await mint(parent.key, batch)).status).toBe(200);
    const over = await mint(parent.key, { ttl: 60, access: acl(sub('a/b')) });
    expect(over.status).toBe(403);
    expect(over.body.errors[0].reason).toMatch(/children/);
    // SPEC §5 selector parent=N: delete the children, keep the parent; then there is room again.
    const deleted = await rest(a.httpUrl, 'DELETE', `/platform/tokens/parent=${parent.id}`, { key: masterKey });
    expect(deleted.body.result).toHaveLength(MAX_CHILDREN);
    expect(await a.store.children(parent.id)).toEqual([]);
    expect((await mint(parent.key, { ttl: 60, access: acl(sub('a/b')) })).status).toBe(200);
    await a.store.delete([parent.id]);
  });

  test('PUT cannot widen a child beyond its parent either, not even for master (SPEC §3 rights never widen)', async () => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('devices/#')) });
    const child = (await mint(parent.key, { ttl: 600, access: acl(sub('devices/1')) })).body.result[0];
    const other = await a.token({ ttl: 3600 });
    const wider = await rest(a.httpUrl, 'PUT', `/platform/tokens/${other.id},${child.id}`, { key: masterKey, body: { access: acl(sub('#')) } });
    expect(wider.status).toBe(403);
    expect(wider.body.errors[0].reason).toContain(`token ${child.id} is a child of token ${parent.id}: access.acl[0]`);
    expect((await a.store.get([other.id]))[0]?.access).toEqual({ type: 0 }); // all or nothing
    const std = await rest(a.httpUrl, 'PUT', `/platform/tokens/${child.id}`, { key: masterKey, body: { access: { type: 0 } } });
    expect(std.status).toBe(400);
    const narrower = await rest(a.httpUrl, 'PUT', `/platform/tokens/${child.id}`, { key: masterKey, body: { access: acl(sub('devices/1/x')) } });
    expect(narrower.status).toBe(200);
  });

  test("a child is checked against its ancestors' ips at CONNECT and on REST (SPEC §2 parent)", async () => {
    const parent = await a.token({ ttl: 3600, ips: '10.9.9.9', access: acl(sub('a/#')) });
    // Minted through the store: the parent itself cannot call from here.
    const [child] = await a.store.createChildren(parent, [{ ttl: 60, access: acl(sub('a/b')) }], nowSec());
    expect(await refusedCode(b.mqttUrl, child!.key)).toBe(5);
    const info = await rest(b.httpUrl, 'GET', '/auth/info', { key: child!.key });
    expect(info.status).toBe(401);
    expect(info.body.errors[0].reason).toBe('using token from unauthorized location');
  });

  const changes: Array<[string, (id: number) => Promise<unknown>]> = [
    ['deleting', (id) => rest(a.httpUrl, 'DELETE', `/platform/tokens/${id}`, { key: masterKey })],
    ['disabling', (id) => rest(a.httpUrl, 'PUT', `/platform/tokens/${id}`, { key: masterKey, body: { enabled: false } })],
    ['changing the access of', (id) => rest(a.httpUrl, 'PUT', `/platform/tokens/${id}`, { key: masterKey, body: { access: acl(sub('a/#'), sub('x')) } })],
    ['changing the ips of', (id) => rest(a.httpUrl, 'PUT', `/platform/tokens/${id}`, { key: masterKey, body: { ips: '127.0.0.0/8' } })],
  ];
  test.each(changes)('%s a parent deletes its children and grandchildren and closes their sessions within 1 s (SPEC §2, §5)', async (_what, change) => {
    const parent = await a.token({ ttl: 3600, access: acl(sub('a/#')) });
    const child = (await mint(parent.key, { ttl: 600, access: acl(sub('a/b/#')) })).body.result[0];
    const grand = (await mint(child.key, { ttl: 600, access: acl(sub('a/b/c')) })).body.result[0];
    const sessions = [await open(child.key), await open(grand.key)];
    const parentSession = await open(parent.key);
    const res = (await change(parent.id)) as { status: number };
    expect(res.status).toBe(200);
    await Promise.all(sessions.map((s) => closed(s, ENFORCE_MS)));
    expect(await b.store.get([child.id, grand.id])).toEqual([]);
    expect(await refusedCode(b.mqttUrl, child.key)).toBe(4);
    expect((await rest(b.httpUrl, 'GET', '/auth/info', { key: grand.key })).status).toBe(401);
    if (_what !== 'deleting' && _what !== 'disabling') {
      // The parent itself lives on: a marker round trip shows its session was not closed.
      const inbox = collect(parentSession);
      await parentSession.subscribeAsync('a/marker');
      const publisher = await connect(a.mqttUrl, masterKey);
      clients.push(publisher);
      await publisher.publishAsync('a/marker', 'm', { qos: 1 });
      expect((await inbox.next()).topic).toBe('a/marker');
    }
  });

  test('an expiring parent takes its children with it; their sessions close (SPEC §2)', async () => {
    const end = nowSec() + 2;
    const parent = await a.token({ expire: end, ttl: 0, access: acl(sub('a/#')) });
    const child = (await mint(parent.key, { expire: end, access: acl(sub('a/b')) })).body.result[0];
    const grand = (await mint(child.key, { expire: end, access: acl(sub('a/b')) })).body.result[0];
    const session = await open(grand.key);
    await closed(session, 5000);
    await eventually(async () => (await b.store.get([child.id, grand.id])).length === 0, 5000);
  });
});
