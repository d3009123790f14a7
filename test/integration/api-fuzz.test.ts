// Bad input (SPEC §5 "request bodies are validated by JSON schema"): generated
// bodies (wrong types, huge strings, deep nesting, prototype-pollution keys,
// non-JSON text, oversize bodies) sent to POST and PUT over real HTTP never
// produce a 5xx, always answer in the envelope, never change stored tokens when
// refused, and are accepted exactly when validateCreate/validatePatch (the
// source of truth) accept them.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { MAX_CREATE_BATCH } from '../../src/api/schemas.js';
import { checkResult, validateCreate, validatePatch, type Token } from '../../src/tokens/index.js';
import { rest, type RestResponse } from '../helpers/rest.js';
import { startTestServer, storedTokens, type TestServer } from '../helpers/server.js';

const now = (): number => Math.floor(Date.now() / 1000);
const BODY_LIMIT = 1024 * 1024;

type Body = { kind: 'json'; value: unknown } | { kind: 'raw'; text: string; contentType: string };

// ---- generators --------------------------------------------------------------

const anyJson = fc.jsonValue({ maxDepth: 3 });
const evilKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'id', 'key', 'created', 'accessed', 'toString', 'hasOwnProperty');
const hugeString = fc.integer({ min: 1025, max: 300_000 }).map((n) => 'x'.repeat(n));
const shortString = fc.string({ maxLength: 12, unit: 'grapheme' });

/** Mostly `valid`, sometimes `invalid`: both outcomes get exercised. */
function mostly<T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>): fc.Arbitrary<T | U> {
  return fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: invalid, weight: 1 });
}

const validTopic = fc.constantFrom('a/#', '+/b', '#', 'devices/${token_id}/#', '${clientid}/in', 'x');
const badTopic = fc.oneof(fc.constantFrom('a/#/b', '', 'a+', 'a\u0000b', '#/x'), hugeString, anyJson);
const subset = <T>(values: T[]) => fc.uniqueArray(fc.constantFrom(...values), { minLength: 1, maxLength: values.length });
const validAclEntry = fc.oneof(
  fc.record({ uri: fc.constant('mqtt'), topic: validTopic, actions: subset(['publish', 'subscribe']) }),
  fc.record({ uri: fc.constantFrom('mqtt', 'mqtt/sessions'), methods: subset(['GET', 'DELETE', 'POST']) }),
);
const badAclEntry = fc.oneof(
  fc.record({
    uri: fc.oneof(fc.constantFrom('mqtt', 'platform', 'PLATFORM/tokens', '/mqtt', 'mqtt/../platform', ''), shortString, anyJson),
    topic: fc.oneof(validTopic, badTopic),
    actions: fc.oneof(fc.array(fc.constantFrom('publish', 'subscribe', 'PUBLISH', 'x'), { maxLength: 3 }), anyJson),
    methods: fc.oneof(fc.array(fc.constantFrom('GET', 'get', 'FOO'), { maxLength: 3 }), anyJson),
  }, { requiredKeys: [] }),
  anyJson,
);
const access = mostly(
  fc.oneof(
    fc.constantFrom({ type: 0 }, { type: 1 }, { type: 0, acl: [] }),
    fc.record({ type: fc.constant(2), acl: fc.array(mostly(validAclEntry, badAclEntry), { maxLength: 3 }) }),
  ),
  fc.oneof(
    fc.record({ type: fc.constantFrom(3, -1, '2', 2.5, null), acl: fc.oneof(fc.array(validAclEntry, { maxLength: 2 }), anyJson) }, { requiredKeys: [] }),
    fc.record({ type: fc.constantFrom(0, 1), acl: fc.array(validAclEntry, { minLength: 1, maxLength: 2 }) }),
    anyJson,
  ),
);
const tokenLike = fc.record({
  info: mostly(shortString, fc.oneof(hugeString, anyJson)),
  enabled: mostly(fc.boolean(), anyJson),
  expire: mostly(fc.oneof(fc.constant(0), fc.integer({ min: now() + 3600, max: 4294967296 })), fc.oneof(fc.integer(), fc.double(), anyJson)),
  ttl: mostly(fc.integer({ min: 60, max: 315360000 }), fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constant(315360001), fc.double(), anyJson)),
  access,
  ips: mostly(fc.constantFrom('', '10.*', '127.0.0.1', '10.0.0.0/8', '::1', '10.1.2.3?, 192.168.*'), fc.oneof(fc.constantFrom('10.0.0.0/99', 'abc', '1.2.3.4.5'), hugeString, anyJson)),
  metadata: mostly(
    fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/), shortString, { maxKeys: 4 }),
    fc.oneof(fc.dictionary(fc.oneof(shortString, evilKey), fc.oneof(shortString, anyJson), { maxKeys: 5 }), anyJson),
  ),
}, { requiredKeys: [] });

/** A token-like object, sometimes with one extra key (unknown, read-only, or a prototype key as an own property). */
const extraKey = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 4 },
  { arbitrary: fc.tuple(fc.oneof(evilKey, shortString), anyJson), weight: 1 },
);
const tokenWithExtra = fc.tuple(tokenLike, extraKey)
  .map(([token, extra]) => {
    const out: Record<string, unknown> = { ...token };
    if (extra) Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true, configurable: true, writable: true });
    return out;
  });

const deepNesting = fc.tuple(fc.integer({ min: 100, max: 150_000 }), fc.constantFrom('array', 'object', 'field')).map(([n, shape]): Body => {
  let text: string;
  if (shape === 'array') text = `${'['.repeat(n)}${']'.repeat(n)}`;
  else if (shape === 'object') text = `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  else text = `{"ttl":60,"metadata":${'{"m":'.repeat(n)}"x"${'}'.repeat(n)}}`;
  return { kind: 'raw', text, contentType: 'application/json' };
});

const rawText = fc.oneof(
  fc.string({ maxLength: 200, unit: 'binary' }),
  fc.constantFrom('', '{', '{"ttl": 60', 'null', 'true', '[]', '{"__proto__": {"polluted": true}, "ttl": 60}',
    '{"constructor": {"prototype": {"polluted": true}}, "ttl": 60}', '{"ttl": 60, "metadata": {"__proto__": "x"}}',
    '{"ttl": 1e400}', '{"ttl": 60,}', '\u0000', '{"ttl": 60}garbage'),
).map((text): Body => ({ kind: 'raw', text, contentType: 'application/json' }));

const otherMediaType = fc.tuple(shortString, fc.constantFrom('text/plain', 'application/xml', 'application/x-www-form-urlencoded'))
  .map(([text, contentType]): Body => ({ kind: 'raw', text, contentType }));

const oversize = fc.integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT + 200_000 })
  .map((n): Body => ({ kind: 'json', value: { ttl: 60, info: 'x'.repeat(n) } }));

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { arbitrary: tokenWithExtra.map((value): Body => ({ kind: 'json', value })), weight: 10 },
  { arbitrary: fc.array(tokenWithExtra, { maxLength: 3 }).map((value): Body => ({ kind: 'json', value })), weight: 2 },
  { arbitrary: anyJson.map((value): Body => ({ kind: 'json', value })), weight: 2 },
  { arbitrary: deepNesting, weight: 1 },
  { arbitrary: rawText, weight: 2 },
  { arbitrary: otherMediaType, weight: 1 },
  { arbitrary: oversize, weight: 1 },
);

// ---- what the source of truth says ---------------------------------------------

function accepts(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

/** True when a time field sits within 2 s of `now`: the API may judge it a second later. */
function nearNow(value: unknown, base: number, t: number): boolean {
  return typeof value === 'number' && value > 0 && Math.abs(base + value - t) <= 2;
}

function timeSensitive(value: unknown, target: Token | undefined, t: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const items = Array.isArray(value) ? value : [value];
  return items.some((item) => {
    if (typeof item !== 'object' || item === null) return false;
    const { expire, ttl } = item as { expire?: unknown; ttl?: unknown };
    return nearNow(expire, 0, t) || (target !== undefined && nearNow(ttl, Math.max(target.created, target.accessed), t));
  });
}

function createAccepted(value: unknown, t: number): boolean {
  if (Array.isArray(value)) {
    return value.length >= 1 && value.length <= MAX_CREATE_BATCH && value.every((item) => accepts(() => validateCreate(item, t)));
  }
  return accepts(() => validateCreate(value, t));
}

function patchAccepted(value: unknown, target: Token, t: number): boolean {
  if (Array.isArray(value)) return false;
  return accepts(() => {
    const patch = validatePatch(value);
    if (patch.expire !== undefined || patch.ttl !== undefined) {
      checkResult({ ...target, expire: patch.expire ?? target.expire, ttl: patch.ttl ?? target.ttl }, t);
    }
  });
}

// ---- the test ----------------------------------------------------------------------

/** Stored tokens without `accessed`, which the master's own requests move (SPEC §2). */
function send(srv: TestServer, method: string, path: string, key: string, body: Body): Promise<RestResponse> {
  if (body.kind === 'raw') return rest(srv.httpUrl, method, path, { key, raw: body.text, headers: { 'content-type': body.contentType } });
  return rest(srv.httpUrl, method, path, { key, raw: JSON.stringify(body.value) ?? 'null' });
}

function expectEnvelope(res: RestResponse): void {
  expect(res.status).toBeLessThan(500);
  if (res.status >= 400) {
    expect(res.body).toEqual({ errors: [{ code: res.status, reason: expect.any(String) }] });
  } else {
    expect(Array.isArray(res.body.result)).toBe(true);
  }
}

const BASE = { info: 'fuzz target', enabled: true, expire: 0, ttl: 3600, access: { type: 0 as const }, ips: '', metadata: {} };

describe.each([['memory', 250], ['redis', 100]] as const)('generated bodies with the %s store', (kind, numRuns) => {
  let srv: TestServer;
  let master: string;
  let targetId: number;

  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
    master = (await srv.token({ access: { type: 1 } })).key;
    targetId = (await srv.token(BASE)).id;
  });
  afterAll(async () => {
    await srv.close();
  });

  test(`POST and PUT never 5xx and never change tokens when refused (${numRuns} runs)`, async () => {
    await fc.assert(fc.asyncProperty(bodyArb, async (body) => {
      const before = await storedTokens(srv.store);
      const [target] = await srv.store.get([targetId]);
      const t = now();
      const json = body.kind === 'json' && JSON.stringify(body.value) !== undefined
        && Buffer.byteLength(JSON.stringify(body.value)) <= BODY_LIMIT;

      const created = await send(srv, 'POST', '/platform/tokens', master, body);
      expectEnvelope(created);
      if (json && !timeSensitive(body.value, undefined, t)) {
        expect(created.status === 200).toBe(createAccepted(body.value, t));
      }
      if (created.status === 200) {
        await srv.store.delete(created.body.result.map((c: { id: number }) => c.id));
      } else {
        expect(await storedTokens(srv.store)).toEqual(before);
      }

      const changed = await send(srv, 'PUT', `/platform/tokens/${targetId}`, master, body);
      expectEnvelope(changed);
      if (json && target && !timeSensitive(body.value, target, t)) {
        expect(changed.status === 200).toBe(patchAccepted(body.value, target, t));
      }
      if (changed.status === 200) {
        // Put the target back as it was, so that the next run starts from the same place.
        const [restored] = await srv.store.update([targetId], BASE, now());
        if (!restored) targetId = (await srv.token(BASE)).id;
      } else {
        expect(await storedTokens(srv.store)).toEqual(before);
      }
      // Nothing reached a prototype.
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype).not.toHaveProperty('admin');
    }), { numRuns });
  }, 120_000);
});
