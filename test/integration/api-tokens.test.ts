// /platform/tokens (SPEC §5): create, list, change, delete; selectors and
// ?fields=; body validation (schema, then validateCreate/validatePatch).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { postLarge, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, storedTokens, type TestServer } from '../helpers/server.js';

const now = (): number => Math.floor(Date.now() / 1000);

describe.each(['memory', 'redis'] as const)('/platform/tokens with the %s store', (kind) => {
  let srv: TestServer;
  let master: string;
  let masterId: number;
  const call = (method: string, path: string, body?: unknown) => rest(srv.httpUrl, method, path, { key: master, body });

  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
    const m = await srv.token({ access: { type: 1 } });
    master = m.key;
    masterId = m.id;
  });
  afterAll(async () => {
    await srv.close();
  });

  test('POST one token returns it with its key, once; GET never shows the key', async () => {
    const res = await call('POST', '/platform/tokens', { info: 'truck 42', ttl: 86400, metadata: { customer: 'acme' } });
    expect(res.status).toBe(200);
    expect(res.body.result).toHaveLength(1);
    const created = res.body.result[0];
    expect(created).toMatchObject({
      info: 'truck 42', enabled: true, expire: 0, ttl: 86400, access: { type: 0 }, ips: '', metadata: { customer: 'acme' },
    });
    expect(created.key).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(created.created).toBeGreaterThanOrEqual(now() - 5);
    // The key works, and no listing shows it again.
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: created.key })).status).toBe(200);
    const one = await call('GET', `/platform/tokens/${created.id}`);
    expect(one.status).toBe(200);
    expect(one.body.result).toEqual([expect.objectContaining({ id: created.id, info: 'truck 42' })]);
    expect(one.text).not.toContain(created.key);
    expect(one.body.result[0]).not.toHaveProperty('key');
    const all = await call('GET', '/platform/tokens/all');
    expect(all.text).not.toContain(created.key);
    expect(all.body.result.map((t: { id: number }) => t.id)).toEqual(expect.arrayContaining([masterId, created.id]));
  });

  test('POST an array creates all of them, or none when one is invalid', async () => {
    const ok = await call('POST', '/platform/tokens', [{ ttl: 60, info: 'a' }, { expire: now() + 3600, info: 'b' }]);
    expect(ok.status).toBe(200);
    expect(ok.body.result.map((t: { info: string }) => t.info)).toEqual(['a', 'b']);
    expect(new Set(ok.body.result.map((t: { key: string }) => t.key)).size).toBe(2);

    const before = await storedTokens(srv.store);
    const bad = await call('POST', '/platform/tokens', [{ ttl: 60 }, { ttl: -1 }]);
    expect(bad.status).toBe(400);
    expect(reasonOf(bad)).toMatch(/^\[1\]\.ttl: /);
    const semantic = await call('POST', '/platform/tokens', [{ ttl: 60 }, { info: 'no clock' }]);
    expect(semantic.status).toBe(400);
    expect(reasonOf(semantic)).toMatch(/^\[1\]\.expire: expire or ttl must be non-zero/);
    expect((await call('POST', '/platform/tokens', [])).status).toBe(400);
    expect(await storedTokens(srv.store)).toEqual(before);
  });

  test.each([
    ["unknown field 'foo'", { ttl: 60, foo: 1 }],
    ['id: read-only field, set by the server', { ttl: 60, id: 5 }],
    ['key: read-only field, set by the server', { ttl: 60, key: 'x'.repeat(64) }],
    ["unknown field 'access.acl[0].extra'", { ttl: 60, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a', actions: ['publish'], extra: true }] } }],
    [/^ttl: must be integer/, { ttl: '60' }],
    [/^enabled: must be boolean/, { ttl: 60, enabled: 'true' }],
    [/^info: must NOT have more than 1024 characters/, { ttl: 60, info: 'x'.repeat(1025) }],
    [/^access\.type: must be one of 0, 1, 2/, { ttl: 60, access: { type: 3 } }],
    ['access.type: required', { ttl: 60, access: {} }],
    [/^metadata\.a: must be string/, { ttl: 60, metadata: { a: 1 } }],
    [/^metadata/, { ttl: 60, metadata: { constructor: 'x' } }],
    [/^expire: expire or ttl must be non-zero/, {}],
    [/^expire: must be in the future/, { expire: 1000 }],
    [/^ips: /, { ttl: 60, ips: '10.0.0.0/99' }],
    [/^access\.acl: only allowed with access type 2/, { ttl: 60, access: { type: 0, acl: [{ uri: 'mqtt', topic: 'a', actions: ['publish'] }] } }],
    [/^access\.acl\[0\]\.topic: /, { ttl: 60, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#/b', actions: ['publish'] }] } }],
    [/^access\.acl\[0\]: has either topic/, { ttl: 60, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a', actions: ['publish'], methods: ['GET'] }] } }],
    [/can never be granted \/platform/, { ttl: 60, access: { type: 2, acl: [{ uri: 'platform', methods: ['GET'] }] } }],
    ['body: must be a token object or an array of token objects', 'a string'],
  ])('POST is a 400 naming the field: %s', async (reason, body) => {
    const before = await storedTokens(srv.store);
    const res = await call('POST', '/platform/tokens', body);
    expect(res.status).toBe(400);
    expect(reasonOf(res)).toEqual(typeof reason === 'string' ? reason : expect.stringMatching(reason));
    expect(await storedTokens(srv.store)).toEqual(before);
  });

  test('non-JSON, an empty body and an unsupported media type are 4xx in the envelope', async () => {
    const before = await storedTokens(srv.store);
    const notJson = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: master, raw: '{"ttl": 60' });
    expect(notJson.status).toBe(400);
    expect(reasonOf(notJson)).toMatch(/not valid JSON/);
    const proto = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: master, raw: '{"ttl": 60, "__proto__": {"admin": true}}' });
    expect(proto.status).toBe(400);
    const noBody = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: master });
    expect(noBody.status).toBe(400);
    const xml = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: master, raw: '<ttl>60</ttl>', headers: { 'content-type': 'application/xml' } });
    expect(xml.status).toBe(415);
    reasonOf(xml);
    expect(await storedTokens(srv.store)).toEqual(before);
  });

  test('a 10 MB body is a 413 in the envelope and changes nothing', async () => {
    const before = await storedTokens(srv.store);
    const res = await postLarge(srv.httpUrl, '/platform/tokens', 10 * 1024 * 1024, master);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toEqual({ errors: [{ code: 413, reason: 'Request body is too large' }] });
    expect(await storedTokens(srv.store)).toEqual(before);
  });

  test('selectors: all, an id, a comma list, ordered by id (SPEC §5 listings); unknown ids are skipped', async () => {
    const created = (await call('POST', '/platform/tokens', [{ ttl: 60, info: 'x' }, { ttl: 60, info: 'y' }, { ttl: 60, info: 'z' }])).body.result as { id: number }[];
    const [x, y, z] = created.map((t) => t.id);
    const list = await call('GET', `/platform/tokens/${z},${x},${z},999999`);
    expect(list.status).toBe(200);
    expect(list.body.result.map((t: { id: number }) => t.id)).toEqual([x, z]);
    expect(list.body.pagination).toEqual({ offset: 0, limit: 1000, total: 2 });
    expect((await call('GET', `/platform/tokens/${y}`)).body.result).toHaveLength(1);
    expect((await call('GET', '/platform/tokens/999999')).body).toEqual({ result: [], pagination: { offset: 0, limit: 1000, total: 0 } });
    const bad = await call('GET', '/platform/tokens/x,1');
    expect(bad.status).toBe(400);
    expect(reasonOf(bad)).toBe("sel: must be 'all', a token id or a comma list of token ids");
    // Long lists work (up to the selector limit); beyond it, and malformed paths, answer in the envelope too.
    const many = Array.from({ length: 300 }, (_, i) => 1_000_000 + i).join(',');
    expect((await call('GET', `/platform/tokens/${many},${x}`)).body.result.map((t: { id: number }) => t.id)).toEqual([x]);
    const tooLong = await call('GET', `/platform/tokens/${'1,'.repeat(3000)}1`);
    expect(tooLong.status).toBe(414);
    reasonOf(tooLong);
    const malformed = await call('GET', '/platform/tokens/%zz');
    expect(malformed.status).toBe(400);
    expect(reasonOf(malformed)).toMatch(/malformed URL/);
  });

  test('?fields= limits the returned fields; unknown fields and parameters are a 400', async () => {
    const res = await call('GET', `/platform/tokens/${masterId}?fields=id,info,access`);
    expect(res.status).toBe(200);
    expect(res.body.result).toEqual([{ id: masterId, info: '', access: { type: 1 } }]);
    const key = await call('GET', `/platform/tokens/${masterId}?fields=id,key`);
    expect(key.status).toBe(400);
    expect(reasonOf(key)).toMatch(/^fields: unknown field 'key'/);
    const param = await call('GET', `/platform/tokens/${masterId}?bogus=1`);
    expect(param.status).toBe(400);
    expect(reasonOf(param)).toBe("unknown query parameter 'bogus'");
  });

  test('PUT changes only the fields given, and is validated like a creation', async () => {
    const [t] = (await call('POST', '/platform/tokens', { ttl: 600, info: 'old', metadata: { a: 'b' } })).body.result;
    const res = await call('PUT', `/platform/tokens/${t.id}`, { info: 'new' });
    expect(res.status).toBe(200);
    expect(res.body.result).toEqual([expect.objectContaining({ id: t.id, info: 'new', ttl: 600, metadata: { a: 'b' } })]);
    expect(res.text).not.toContain(t.key);

    const before = await storedTokens(srv.store, [t.id]);
    for (const [body, reason] of [
      [{ info: 'x', bogus: 1 }, "unknown field 'bogus'"],
      [{ created: 5 }, 'created: read-only field, set by the server'],
      [{ ttl: 0 }, /^expire: expire or ttl must be non-zero/],
      [{ expire: 1000, ttl: 0 }, /^expire: must be in the future/],
      [{ access: { type: 2, acl: [{ uri: 'mqtt', topic: '#', actions: [] }] } }, /^access\.acl\[0\]\.actions: /],
      [[{ info: 'array' }], 'body: must be object'],
    ] as const) {
      const bad = await call('PUT', `/platform/tokens/${t.id}`, body);
      expect(bad.status).toBe(400);
      expect(reasonOf(bad)).toEqual(typeof reason === 'string' ? reason : expect.stringMatching(reason));
    }
    expect(await storedTokens(srv.store, [t.id])).toEqual(before);

    // Disabling over REST refuses the token at once.
    expect((await call('PUT', `/platform/tokens/${t.id}`, { enabled: false })).status).toBe(200);
    const refused = await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
    expect(refused.status).toBe(401);
    expect(reasonOf(refused)).toBe('token disabled');
  });

  test('PUT on a comma list changes each; an empty patch changes nothing', async () => {
    const created = (await call('POST', '/platform/tokens', [{ ttl: 60 }, { ttl: 60 }])).body.result as { id: number }[];
    const ids = created.map((t) => t.id).join(',');
    const res = await call('PUT', `/platform/tokens/${ids}`, { metadata: { batch: '1' } });
    expect(res.body.result.map((t: { metadata: object }) => t.metadata)).toEqual([{ batch: '1' }, { batch: '1' }]);
    const same = await call('PUT', `/platform/tokens/${ids}`, {});
    expect(same.status).toBe(200);
    expect(same.body.result).toHaveLength(2);
  });

  test('DELETE removes the selected tokens and returns their ids', async () => {
    const created = (await call('POST', '/platform/tokens', [{ ttl: 60 }, { ttl: 60 }])).body.result as { id: number; key: string }[];
    const res = await call('DELETE', `/platform/tokens/${created[0]!.id},${created[1]!.id},999999`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ result: [{ id: created[0]!.id }, { id: created[1]!.id }] });
    expect((await call('GET', `/platform/tokens/${created[0]!.id}`)).body.result).toEqual([]);
    const gone = await rest(srv.httpUrl, 'GET', '/auth/info', { key: created[0]!.key });
    expect(reasonOf(gone)).toBe('unknown token');
  });

  test('unknown routes and methods are a 404 in the envelope', async () => {
    const res = await rest(srv.httpUrl, 'GET', '/platform/nothing');
    expect(res.status).toBe(404);
    expect(reasonOf(res)).toBe('no route GET /platform/nothing');
    expect((await call('POST', `/platform/tokens/${masterId}`, { info: 'x' })).status).toBe(404);
  });
});
