import { describe, expect, test } from '@jest/globals';
import { TokenValidationError, checkResult, validateCreate, validatePatch } from '../../src/tokens/validate.js';

const NOW = 1764300000;

/** The error `fn` throws; fails the test when it does not throw a TokenValidationError. */
function errorOf(fn: () => unknown): TokenValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TokenValidationError);
    return error as TokenValidationError;
  }
  throw new Error('expected a TokenValidationError');
}

function createError(input: unknown): TokenValidationError {
  return errorOf(() => validateCreate(input, NOW));
}

describe('validateCreate: defaults and normalisation (SPEC §2)', () => {
  test('fills in every default', () => {
    expect(validateCreate({ ttl: 60 }, NOW)).toEqual({
      info: '',
      enabled: true,
      expire: 0,
      ttl: 60,
      access: { type: 0 },
      ips: '',
      metadata: {},
      clientids: '',
      limits: { sessions: 0, publish_rate: 0 },
    });
  });

  test('keeps the SPEC §2 example token', () => {
    const input = {
      info: 'truck 42',
      enabled: true,
      expire: 0,
      ttl: 86400,
      access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/42/#', actions: ['subscribe'] }] },
      ips: '10.100.15.*,192.168.56.1?',
      metadata: { customer: 'acme' },
    };
    expect(validateCreate(input, NOW)).toEqual({ ...input, clientids: '', limits: { sessions: 0, publish_rate: 0 } });
  });

  test('returns fresh objects: later changes to the input do not reach the result', () => {
    const acl = [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }];
    const metadata = { k: 'v' };
    const input = { ttl: 60, access: { type: 2, acl }, metadata };
    const result = validateCreate(input, NOW);
    acl[0]!.actions.push('subscribe');
    acl.push({ uri: 'mqtt', topic: '#', actions: ['publish'] });
    metadata.k = 'changed';
    expect(result.access).toEqual({ type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }] });
    expect(result.metadata).toEqual({ k: 'v' });
    expect(result.access).not.toBe(input.access);
  });

  test('an ACL token without acl gets an empty one (default deny)', () => {
    expect(validateCreate({ ttl: 60, access: { type: 2 } }, NOW).access).toEqual({ type: 2, acl: [] });
  });

  test('an empty acl on a standard or master token is accepted and dropped', () => {
    expect(validateCreate({ ttl: 60, access: { type: 1, acl: [] } }, NOW).access).toEqual({ type: 1 });
  });

  test('a disabled token may be created (it is stored and refused until enabled)', () => {
    expect(validateCreate({ ttl: 60, enabled: false }, NOW).enabled).toBe(false);
  });

  test('an expire in the past is fine while a ttl keeps the new token valid', () => {
    expect(validateCreate({ expire: NOW - 10, ttl: 60 }, NOW).expire).toBe(NOW - 10);
  });

  test('REST entries are kept as given', () => {
    const entry = { uri: 'mqtt/sessions', methods: ['GET', 'DELETE'] };
    expect(validateCreate({ ttl: 60, access: { type: 2, acl: [entry] } }, NOW).access.acl).toEqual([entry]);
  });
});

describe('validateCreate: refusals name the field (SPEC §2, §5 400)', () => {
  test.each([
    [null, 'token', 'token: must be a JSON object'],
    [[], 'token', 'token: must be a JSON object'],
    ['x', 'token', 'token: must be a JSON object'],
    [{ ttl: 60, foo: 1 }, 'foo', "unknown field 'foo'"],
    [{ ttl: 60, id: 3 }, 'id', 'id: read-only field, set by the server'],
    [{ ttl: 60, key: 'k' }, 'key', 'key: read-only field, set by the server'],
    [{ ttl: 60, created: 1 }, 'created', 'created: read-only field, set by the server'],
    [{ ttl: 60, accessed: 1 }, 'accessed', 'accessed: read-only field, set by the server'],
    [{ ttl: 60, info: 5 }, 'info', 'info: must be a string'],
    [{ ttl: 60, info: 'x'.repeat(1025) }, 'info', 'info: longer than 1024 characters'],
    [{ ttl: 60, enabled: 'yes' }, 'enabled', 'enabled: must be true or false'],
    [{ ttl: -1 }, 'ttl', 'ttl: must be an integer >= 0'],
    [{ ttl: 1.5 }, 'ttl', 'ttl: must be an integer >= 0'],
    [{ ttl: '60' }, 'ttl', 'ttl: must be an integer >= 0'],
    [{ ttl: Number.NaN }, 'ttl', 'ttl: must be an integer >= 0'],
    [{ ttl: 315360001 }, 'ttl', 'ttl: must be at most 315360000'],
    [{ expire: 2 ** 32 + 1 }, 'expire', 'expire: must be at most 4294967296'],
    [{ expire: Infinity }, 'expire', 'expire: must be an integer >= 0'],
    [{}, 'expire', 'expire: expire or ttl must be non-zero: a token with neither is never valid (SPEC §2)'],
    [{ expire: 0, ttl: 0 }, 'expire', 'expire: expire or ttl must be non-zero: a token with neither is never valid (SPEC §2)'],
    [{ expire: NOW }, 'expire', `expire: must be in the future (now is ${NOW}): the token would never be valid`],
    [{ ttl: 60, ips: 7 }, 'ips', 'ips: must be a string'],
    [{ ttl: 60, ips: '10.0.0.0/33' }, 'ips', "ips: invalid mask '10.0.0.0/33'"],
  ])('%j is refused on %s', (input, field, message) => {
    const error = createError(input);
    expect(error.field).toBe(field);
    expect(error.message).toBe(message);
  });

  test('info counts characters, not UTF-16 units', () => {
    expect(validateCreate({ ttl: 60, info: '😀'.repeat(1024) }, NOW).info).toHaveLength(2048);
    expect(createError({ ttl: 60, info: '😀'.repeat(1025) }).message).toBe('info: longer than 1024 characters');
  });
});

describe('access and ACL entries (SPEC §3)', () => {
  const withAcl = (...acl: unknown[]) => ({ ttl: 60, access: { type: 2, acl } });
  const mqtt = (topic: unknown, actions: unknown = ['publish']) => ({ uri: 'mqtt', topic, actions });

  test.each([
    [{ ttl: 60, access: 2 }, 'access', 'access: must be an object like {"type": 0}'],
    [{ ttl: 60, access: {} }, 'access.type', 'access.type: required'],
    [{ ttl: 60, access: { type: 3 } }, 'access.type', 'access.type: must be 0 (standard), 1 (master) or 2 (ACL)'],
    [{ ttl: 60, access: { type: '2' } }, 'access.type', 'access.type: must be 0 (standard), 1 (master) or 2 (ACL)'],
    [{ ttl: 60, access: { type: 2, extra: 1 } }, 'access.extra', "unknown field 'access.extra'"],
    [{ ttl: 60, access: { type: 2, acl: {} } }, 'access.acl', 'access.acl: must be an array'],
    [{ ttl: 60, access: { type: 0, acl: [mqtt('a')] } }, 'access.acl', 'access.acl: only allowed with access type 2 (ACL)'],
    [withAcl('mqtt'), 'access.acl[0]', 'access.acl[0]: must be an object'],
    [withAcl({ topic: 'a', actions: ['publish'] }), 'access.acl[0].uri', 'access.acl[0].uri: required'],
    [withAcl({ uri: 'mqtt' }), 'access.acl[0]', "access.acl[0]: needs topic and actions (uri 'mqtt') or methods (REST)"],
    [withAcl({ ...mqtt('a'), qos: 1 }), 'access.acl[0].qos', "unknown field 'access.acl[0].qos'"],
    [withAcl(mqtt('a'), mqtt('b'), mqtt('c'), mqtt('a/#/b')), 'access.acl[3].topic', "access.acl[3].topic: '#' must be the last level"],
    [withAcl(mqtt('a+')), 'access.acl[0].topic', "access.acl[0].topic: '+' must occupy a whole level"],
    [withAcl(mqtt('')), 'access.acl[0].topic', 'access.acl[0].topic: must not be empty'],
    [withAcl(mqtt('a\u0000')), 'access.acl[0].topic', 'access.acl[0].topic: must not contain the NUL character'],
    [withAcl(mqtt(5)), 'access.acl[0].topic', 'access.acl[0].topic: must be a string'],
    [withAcl({ uri: 'mqtt', actions: ['publish'] }), 'access.acl[0].topic', 'access.acl[0].topic: required'],
    [withAcl({ uri: 'mqtt', topic: 'a' }), 'access.acl[0].actions', 'access.acl[0].actions: required'],
    [withAcl(mqtt('a', [])), 'access.acl[0].actions', "access.acl[0].actions: must not be empty (expected 'publish' and/or 'subscribe')"],
    [withAcl(mqtt('a', 'publish')), 'access.acl[0].actions', "access.acl[0].actions: must be an array of 'publish' and/or 'subscribe'"],
    [withAcl(mqtt('a', ['publish', 'read'])), 'access.acl[0].actions[1]', "access.acl[0].actions[1]: unknown value 'read' (expected 'publish' and/or 'subscribe')"],
    [withAcl(mqtt('a', ['publish', 'publish'])), 'access.acl[0].actions', "access.acl[0].actions: duplicate 'publish'"],
    [withAcl({ uri: 'http', topic: 'a', actions: ['publish'] }), 'access.acl[0].uri', "access.acl[0].uri: must be 'mqtt' in an entry with topic and actions"],
    [withAcl({ ...mqtt('a'), methods: ['GET'] }), 'access.acl[0]', 'access.acl[0]: has either topic and actions (MQTT rights) or methods (REST rights), not both'],
    [withAcl({ uri: 'platform/tokens', methods: ['GET'] }), 'access.acl[0].uri', 'access.acl[0].uri: ACL tokens can never be granted /platform (SPEC §3)'],
    [withAcl({ uri: 'Platform', methods: ['GET'] }), 'access.acl[0].uri', 'access.acl[0].uri: ACL tokens can never be granted /platform (SPEC §3)'],
    [withAcl({ uri: '/mqtt/sessions', methods: ['GET'] }), 'access.acl[0].uri', "access.acl[0].uri: must not start with '/' (write 'mqtt/sessions', not '/mqtt/sessions')"],
    [withAcl({ uri: '', methods: ['GET'] }), 'access.acl[0].uri', "access.acl[0].uri: must be a path like 'mqtt' or 'mqtt/sessions'"],
    [withAcl({ uri: 'mqtt/../platform', methods: ['GET'] }), 'access.acl[0].uri', "access.acl[0].uri: must be a path like 'mqtt' or 'mqtt/sessions'"],
    [withAcl({ uri: 'mqtt//sessions', methods: ['GET'] }), 'access.acl[0].uri', "access.acl[0].uri: must be a path like 'mqtt' or 'mqtt/sessions'"],
    [withAcl({ uri: 'mqtt/', methods: ['GET'] }), 'access.acl[0].uri', "access.acl[0].uri: must be a path like 'mqtt' or 'mqtt/sessions'"],
    [withAcl({ uri: 7, methods: ['GET'] }), 'access.acl[0].uri', 'access.acl[0].uri: must be a string'],
    [withAcl({ uri: 'mqtt', methods: ['get'] }), 'access.acl[0].methods[0]', "access.acl[0].methods[0]: unknown value 'get' (expected GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS)"],
    [withAcl({ uri: 'mqtt', methods: ['GET', 'GET'] }), 'access.acl[0].methods', "access.acl[0].methods: duplicate 'GET'"],
    [withAcl({ uri: 'mqtt', methods: [] }), 'access.acl[0].methods', 'access.acl[0].methods: must not be empty (expected GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS)'],
  ])('%j is refused on %s', (input, field, message) => {
    const error = createError(input);
    expect(error.field).toBe(field);
    expect(error.message).toBe(message);
  });

  test('at most 256 ACL entries (SPEC §2 limits)', () => {
    const entries = Array.from({ length: 256 }, (_, i) => mqtt(`t/${i}`));
    expect(validateCreate(withAcl(...entries), NOW).access.acl).toHaveLength(256);
    expect(createError(withAcl(...entries, mqtt('one/more'))).message).toBe('access.acl: more than 256 entries');
  });

  test('placeholders are valid filter text', () => {
    const result = validateCreate(withAcl(mqtt('devices/${clientid}/#', ['publish', 'subscribe'])), NOW);
    expect(result.access.acl?.[0]?.topic).toBe('devices/${clientid}/#');
  });
});

describe('metadata (SPEC §2: string to string, at most 64 keys)', () => {
  test.each([
    [{ ttl: 60, metadata: [] }, 'metadata', 'metadata: must be an object of strings'],
    [{ ttl: 60, metadata: { n: 1 } }, 'metadata.n', 'metadata.n: must be a string'],
    [{ ttl: 60, metadata: { v: 'x'.repeat(1025) } }, 'metadata.v', 'metadata.v: longer than 1024 characters'],
    [{ ttl: 60, metadata: { ['k'.repeat(129)]: 'v' } }, 'metadata', `metadata: key '${'k'.repeat(64)}...' longer than 128 characters`],
    [{ ttl: 60, metadata: { constructor: 'x' } }, 'metadata', "metadata: key 'constructor' is not allowed"],
    [{ ttl: 60, metadata: { prototype: 'x' } }, 'metadata', "metadata: key 'prototype' is not allowed"],
  ])('%j is refused on %s', (input, field, message) => {
    const error = createError(input);
    expect(error.field).toBe(field);
    expect(error.message).toBe(message);
  });

  test('more than 64 keys is refused', () => {
    const metadata = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    expect(createError({ ttl: 60, metadata }).message).toBe('metadata: more than 64 keys');
    delete metadata.k64;
    expect(Object.keys(validateCreate({ ttl: 60, metadata }, NOW).metadata)).toHaveLength(64);
  });

  test('a JSON body with __proto__ keys is refused and pollutes nothing', () => {
    const bodies = [
      '{"ttl": 60, "metadata": {"__proto__": {"polluted": "yes"}}}',
      '{"ttl": 60, "metadata": {"__proto__": "x"}}',
      '{"ttl": 60, "__proto__": {"polluted": "yes"}}',
      '{"ttl": 60, "access": {"type": 2, "acl": [{"uri": "mqtt", "topic": "a", "actions": ["publish"], "__proto__": {"polluted": "yes"}}]}}',
    ];
    for (const body of bodies) {
      expect(() => validateCreate(JSON.parse(body), NOW)).toThrow(TokenValidationError);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(createError(JSON.parse(bodies[1]!)).message).toBe("metadata: key '__proto__' is not allowed");
    expect(createError(JSON.parse(bodies[2]!)).message).toBe("unknown field '__proto__'");
  });

  test('inherited properties of the input are not read', () => {
    const input = Object.create({ foo: 1, ttl: 60 }) as Record<string, unknown>;
    input.expire = NOW + 10;
    expect(validateCreate(input, NOW).ttl).toBe(0);
  });
});

describe('validatePatch and checkResult (SPEC §5 PUT)', () => {
  test('returns only the fields given, without defaults', () => {
    expect(validatePatch({ enabled: false })).toEqual({ enabled: false });
    expect(validatePatch({})).toEqual({});
    expect(validatePatch({ expire: 0 })).toEqual({ expire: 0 });
  });

  test('checks each field like creation does', () => {
    expect(errorOf(() => validatePatch({ ttl: -5 })).message).toBe('ttl: must be an integer >= 0');
    expect(errorOf(() => validatePatch({ id: 1 })).message).toBe('id: read-only field, set by the server');
    expect(errorOf(() => validatePatch({ foo: 1 })).message).toBe("unknown field 'foo'");
    expect(errorOf(() => validatePatch({ ips: 'nope' })).message).toBe("ips: invalid mask 'nope'");
  });

  const stored = { expire: 0, ttl: 60, created: NOW - 1000, accessed: NOW - 10 };

  test('accepts a merged token that is still valid by time', () => {
    expect(() => checkResult(stored, NOW)).not.toThrow();
    expect(() => checkResult({ ...stored, ttl: 0, expire: NOW + 1 }, NOW)).not.toThrow();
  });

  test('refuses a merged token with neither expire nor ttl (SPEC §2)', () => {
    const error = errorOf(() => checkResult({ ...stored, ttl: 0 }, NOW));
    expect(error.field).toBe('expire');
    expect(error.message).toBe('expire: expire or ttl must be non-zero: a token with neither is never valid (SPEC §2)');
  });

  test('refuses a change that would leave the token already expired', () => {
    expect(errorOf(() => checkResult({ ...stored, ttl: 0, expire: NOW }, NOW)).message).toBe(
      `expire: must be in the future (now is ${NOW}): the change would expire the token (use DELETE to remove it)`,
    );
    const error = errorOf(() => checkResult({ ...stored, ttl: 10 }, NOW));
    expect(error.field).toBe('ttl');
    expect(error.message).toBe("ttl: has already run out since the token's last use: the change would expire the token (use DELETE to remove it)");
  });
});

describe('SPEC §3 ids and submodules', () => {
  const make = (entry: unknown) => validateCreate({ ttl: 60, access: { type: 2, acl: [entry] } }, 1000);
  const fieldOf = (entry: unknown): string => {
    try {
      make(entry);
    } catch (err) {
      if (err instanceof TokenValidationError) return err.field;
      throw err;
    }
    return 'accepted';
  };

  test('kept on a mqtt/sessions entry', () => {
    const entry = { uri: 'mqtt/sessions', methods: ['GET'], ids: ['dev-*'], submodules: [{ name: 'subscriptions', methods: ['GET', 'DELETE'] }] };
    expect(make(entry).access.acl).toEqual([entry]);
  });

  test('refused elsewhere and when malformed, naming the field', () => {
    expect(fieldOf({ uri: 'mqtt/messages', methods: ['GET'], ids: ['a'] })).toBe('access.acl[0].ids');
    expect(fieldOf({ uri: 'mqtt', topic: 'a', actions: ['publish'], ids: ['a'] })).toBe('access.acl[0]');
    expect(fieldOf({ uri: 'mqtt/sessions', methods: ['GET'], ids: [] })).toBe('access.acl[0].ids');
    expect(fieldOf({ uri: 'mqtt/sessions', methods: ['GET'], ids: [''] })).toBe('access.acl[0].ids[0]');
    expect(fieldOf({ uri: 'mqtt/sessions', methods: ['GET'], submodules: [{ name: 'other', methods: ['GET'] }] })).toBe('access.acl[0].submodules[0].name');
    expect(fieldOf({ uri: 'mqtt/sessions', methods: ['GET'], submodules: [{ name: 'subscriptions', methods: ['GET'], x: 1 }] }))
      .toMatch(/^access\.acl\[0\]\.submodules\[0\]/);
  });
});
