import { describe, expect, test } from '@jest/globals';
import { isSafeClientId, substitutePlaceholders } from '../../src/tokens/placeholders.js';

const ctx = { clientId: 'truck-42', tokenId: 7 };

describe('placeholders in ACL filters (SPEC §3)', () => {
  test('substitutes ${clientid} and ${token_id}, also inside a level and more than once', () => {
    expect(substitutePlaceholders('devices/${clientid}/#', ctx)).toBe('devices/truck-42/#');
    expect(substitutePlaceholders('t/${token_id}/dev-${clientid}/${clientid}', ctx)).toBe('t/7/dev-truck-42/truck-42');
    expect(substitutePlaceholders('${clientid}/x', ctx)).toBe('truck-42/x');
  });

  test('a filter without placeholders is returned unchanged; unknown ${...} stays literal', () => {
    expect(substitutePlaceholders('a/+/#', ctx)).toBe('a/+/#');
    expect(substitutePlaceholders('a/${username}', ctx)).toBe('a/${username}');
  });

  test.each(['a/+', '+', '#', 'a/b', '', 'nul\u0000'])('a client id %j never matches a placeholder (SPEC §3)', (clientId) => {
    expect(isSafeClientId(clientId)).toBe(false);
    expect(substitutePlaceholders('devices/${clientid}/#', { clientId, tokenId: 7 })).toBeNull();
    // ...but filters without ${clientid} do not care about the client id.
    expect(substitutePlaceholders('tokens/${token_id}', { clientId, tokenId: 7 })).toBe('tokens/7');
  });

  test('a client id starting with $ is refused only where it would start the filter [MQTT-4.7.2-1]', () => {
    expect(substitutePlaceholders('${clientid}/#', { clientId: '$SYS', tokenId: 7 })).toBeNull();
    expect(substitutePlaceholders('devices/${clientid}', { clientId: '$x', tokenId: 7 })).toBe('devices/$x');
  });

  test('a client id that would push the filter past 65535 bytes drops the entry [MQTT-4.7.3-3]', () => {
    expect(substitutePlaceholders('d/${clientid}', { clientId: 'x'.repeat(65533), tokenId: 7 })).toBe(`d/${'x'.repeat(65533)}`);
    expect(substitutePlaceholders('d/${clientid}', { clientId: 'x'.repeat(65534), tokenId: 7 })).toBeNull();
  });

  test('replacement text is taken literally ($& and friends are not patterns)', () => {
    expect(substitutePlaceholders('d/${clientid}', { clientId: "$&$'$`", tokenId: 7 })).toBe("d/$&$'$`");
  });
});
