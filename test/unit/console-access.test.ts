// The console hides what a token may not do and checks ACL filters before
// sending them (SPEC §9): its browser copy of the rules (src/console/access.js)
// must agree with the server's (src/tokens), or it would hide what is allowed
// or refuse a filter the server takes.
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { canRest, filterProblem } from '../../src/console/access.js';
import { filterError } from '../../src/tokens/topic.js';
import { compileRights } from '../../src/tokens/rights.js';
import type { TokenAccess } from '../../src/tokens/types.js';

describe('console ACL editor: topic filters (SPEC §3, MQTT 4.7)', () => {
  test('filterProblem gives the server filterError answer and reason for any string', () => {
    const char = fc.constantFrom('a', '/', '+', '#', '$', ' ', '\u0000', '\u00e9', '\ud83d\ude00', '\ud800', '\udc00');
    fc.assert(fc.property(fc.array(char, { maxLength: 10 }).map((cs) => cs.join('')), (filter) => {
      expect(filterProblem(filter)).toBe(filterError(filter));
    }), { numRuns: 5000 });
    for (const filter of ['x'.repeat(65535), 'x'.repeat(65536), '\u00e9'.repeat(32768), '#', '+/+/#', 'a/#/b', 'a+']) {
      expect([filter.slice(0, 8), filterProblem(filter)]).toEqual([filter.slice(0, 8), filterError(filter)]);
    }
  });
});

describe('console views: REST rights of an ACL token (SPEC §3)', () => {
  test('canRest agrees with the server for ACL entries on /mqtt paths (no submodules)', () => {
    const entry = fc.record({
      uri: fc.constantFrom('mqtt', 'mqtt/', 'mqtt/sessions', 'mqtt/sess', 'mqtt/messages', 'mqtt/logs', '/mqtt', '', 'platform', 'platform/tokens'),
      methods: fc.subarray(['GET', 'POST', 'PUT', 'DELETE']),
    });
    const path = fc.constantFrom('/mqtt/sessions/all', '/mqtt/sessions/dev-1', '/mqtt/sessions', '/mqtt/messages/%23', '/mqtt/logs', '/mqtt', '/platform/tokens/all');
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE');
    fc.assert(fc.property(fc.array(entry, { maxLength: 3 }), path, method, (acl, p, m) => {
      const access = { type: 2, acl } as TokenAccess;
      const server = compileRights(access, { clientId: '', tokenId: 1 }).canRest(m, p);
      expect([acl, p, m, canRest({ access }, m, p)]).toEqual([acl, p, m, server]);
    }), { numRuns: 3000 });
  });

  test('master may do everything; standard everything outside /platform', () => {
    for (const p of ['/mqtt/sessions/all', '/platform/tokens/all']) {
      expect(canRest({ access: { type: 1 } }, 'GET', p)).toBe(true);
    }
    expect(canRest({ access: { type: 0 } }, 'DELETE', '/mqtt/sessions/x')).toBe(true);
    expect(canRest({ access: { type: 0 } }, 'GET', '/platform/tokens/all')).toBe(false);
  });
});
