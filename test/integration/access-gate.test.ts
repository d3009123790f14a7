// One access gate for MQTT and REST (SPEC §4, §5): the same token is refused
// for the same cause on both, and `GET /auth/check` answers from the rights the
// broker enforces.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { connect, refusedCode } from '../helpers/mqtt.js';
import { reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const now = (): number => Math.floor(Date.now() / 1000);
const WRONG_KEY = 'Z'.repeat(64);

describe.each(['memory', 'redis'] as const)('MQTT and REST refuse alike, %s store (SPEC §4, §5)', (kind) => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
  });
  afterAll(async () => {
    await srv.close();
  });

  const both = async (key: string) => ({
    connack: await refusedCode(srv.mqttUrl, key),
    http: await rest(srv.httpUrl, 'GET', '/auth/info', { key }),
  });

  test('unknown key: CONNACK 4 and 401 unknown token', async () => {
    const r = await both(WRONG_KEY);
    expect(r.connack).toBe(4);
    expect(r.http.status).toBe(401);
    expect(reasonOf(r.http)).toBe('unknown token');
  });

  test('disabled token: CONNACK 5 and 401 token disabled', async () => {
    const t = await srv.token({ enabled: false });
    const r = await both(t.key);
    expect(r.connack).toBe(5);
    expect(r.http.status).toBe(401);
    expect(reasonOf(r.http)).toBe('token disabled');
  });

  test('address outside ips: CONNACK 5 and 401 with the SPEC reason', async () => {
    const t = await srv.token({ ips: '10.1.2.*' });
    const r = await both(t.key);
    expect(r.connack).toBe(5);
    expect(r.http.status).toBe(401);
    expect(reasonOf(r.http)).toBe('using token from unauthorized location');
  });

  test('expired token (not swept yet or swept): CONNACK 4 and 401', async () => {
    const [t] = await srv.store.create([{ ttl: 50 }], now() - 100);
    if (!t) return; // a store may refuse to create what is already invalid
    const r = await both(t.key);
    expect(r.connack).toBe(4);
    expect(r.http.status).toBe(401);
    expect(['token expired', 'unknown token']).toContain(reasonOf(r.http));
  });
});

describe('the brute-force guard is one for both (SPEC §4)', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ authFailLimit: 2, authFailWindow: 60 });
  });
  afterAll(async () => {
    await srv.close();
  });

  test('failures over MQTT and REST add up; then CONNACK 5 and 429 even for a valid key', async () => {
    const valid = await srv.token();
    expect(await refusedCode(srv.mqttUrl, WRONG_KEY)).toBe(4);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: WRONG_KEY })).status).toBe(401);
    expect(await refusedCode(srv.mqttUrl, valid.key)).toBe(5);
    const r = await rest(srv.httpUrl, 'GET', '/auth/info', { key: valid.key });
    expect(r.status).toBe(429);
  });
});

describe('GET /auth/check (SPEC §5)', () => {
  let srv: TestServer;
  let master: { id: number; key: string };
  let acl: { id: number; key: string };
  const check = (key: string, query: string) => rest(srv.httpUrl, 'GET', `/auth/check?${query}`, { key });
  beforeAll(async () => {
    srv = await startTestServer();
    master = await srv.token({ access: { type: 1 } });
    // No REST entry at all: /auth/check is open to any valid token.
    acl = await srv.token({
      access: {
        type: 2,
        acl: [
          { uri: 'mqtt', topic: 'devices/${clientid}/#', actions: ['publish'] },
          { uri: 'mqtt', topic: 'fleet/+/status', actions: ['subscribe'] },
          { uri: 'mqtt', topic: 'tok/${token_id}', actions: ['publish'] },
        ],
      },
    });
  });
  afterAll(async () => {
    await srv.close();
  });

  test('an ACL token asks about itself: deciding entry, placeholders from client_id and its id', async () => {
    const a = await check(acl.key, 'topic=devices/d1/t&action=publish&client_id=d1');
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ result: [{ allowed: true, entry: 0, reason: 'ACL entry 0 allows publish' }] });
    expect((await check(acl.key, 'topic=devices/d1/t&action=publish&client_id=d2')).body.result[0]).toMatchObject({ allowed: false, entry: null });
    expect((await check(acl.key, 'topic=devices/d1/t&action=publish')).body.result[0]).toMatchObject({ allowed: false });
    expect((await check(acl.key, `topic=tok/${acl.id}&action=publish`)).body.result[0]).toMatchObject({ allowed: true, entry: 2 });
    expect((await check(acl.key, 'topic=fleet/%23&action=subscribe')).body.result[0]).toMatchObject({ allowed: true, entry: 1 });
    expect((await check(acl.key, '&topic=%24SYS/%23&action=subscribe')).body.result[0]).toMatchObject({ allowed: false, entry: null });
  });

  test('the answer is what the broker does with a live session', async () => {
    const client = await connect(srv.mqttUrl, acl.key, { clientId: 'd7' });
    try {
      const filters = ['fleet/#', 'devices/d7/#', 'fleet/a/status', '#'];
      let codes: number[];
      try {
        codes = (await client.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
      } catch (err) {
        // MQTT.js rejects when any filter is refused; the SUBACK rides on the error (PITFALLS).
        codes = (err as { packet: { granted: number[] } }).packet.granted;
      }
      const answers = await Promise.all(filters.map((f) => check(acl.key, `topic=${encodeURIComponent(f)}&action=subscribe&client_id=d7`)));
      expect(codes.map((c) => c !== 128)).toEqual(answers.map((a) => a.body.result[0].allowed));
      expect(codes.map((c) => c !== 128)).toEqual([true, false, true, true]);
    } finally {
      await client.endAsync();
    }
  });

  test('master and standard: entry null and the type named; $SYS publish refused to master too', async () => {
    expect((await check(master.key, 'topic=%24SYS/x&action=subscribe')).body.result[0]).toEqual({ allowed: true, entry: null, reason: 'master token: every topic' });
    expect((await check(master.key, 'topic=%24SYS/x&action=publish')).body.result[0]).toMatchObject({ allowed: false, entry: null });
    const std = await srv.token({ access: { type: 0 } });
    expect((await check(std.key, 'topic=%24SYS/%23&action=subscribe')).body.result[0]).toMatchObject({ allowed: false, reason: expect.stringMatching(/standard/) });
  });

  test('a master may check another token with token_id; nobody else may', async () => {
    const a = await check(master.key, `topic=devices/d1/t&action=publish&client_id=d1&token_id=${acl.id}`);
    expect(a.body.result[0]).toMatchObject({ allowed: true, entry: 0 });
    const b = await check(acl.key, `topic=a&action=publish&token_id=${master.id}`);
    expect(b.status).toBe(403);
    expect((await check(master.key, 'topic=a&action=publish&token_id=999999')).status).toBe(404);
  });

  test('bad input is a 400 with a clear reason, and never crashes', async () => {
    const cases: [string, RegExp][] = [
      ['action=publish', /topic: required/],
      ['topic=a', /action: required/],
      ['topic=a&action=delete', /action: must be one of/],
      ['topic=a/%23&action=publish', /topic: /],
      ['topic=&action=publish', /topic: /],
      ['topic=a/%23/b&action=subscribe', /topic: /],
      ['topic=a&action=publish&token_id=x', /token_id: /],
      ['topic=a&action=publish&extra=1', /unknown query parameter 'extra'/],
    ];
    for (const [q, reason] of cases) {
      const r = await check(acl.key, q);
      expect([q, r.status]).toEqual([q, 400]);
      expect(reasonOf(r)).toMatch(reason);
    }
    expect((await rest(srv.httpUrl, 'GET', '/health')).status).toBe(200);
  });

  test('the route is in the OpenAPI document', async () => {
    const doc = await rest(srv.httpUrl, 'GET', '/openapi.json');
    expect(doc.body.paths['/auth/check'].get.parameters.map((p: { name: string }) => p.name).sort())
      .toEqual(['action', 'client_id', 'token_id', 'topic']);
  });
});
