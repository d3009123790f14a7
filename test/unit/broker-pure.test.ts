// Pure helpers of the broker: client IP derivation, PROXY header parsing, the
// brute-force window, and credential parsing (SPEC §4).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { clientIpFrom } from '../../src/broker/client-ip.js';
import { parseProxyHeader } from '../../src/broker/proxy-protocol.js';
import { AuthLimiter } from '../../src/broker/auth-limiter.js';
import { keyFromCredentials } from '../../src/broker/authenticate.js';
import { cidrBlockList } from '../../src/config.js';

describe('client IP (SPEC §4)', () => {
  const trusted = cidrBlockList(['10.0.0.0/8', '::1/128']);

  test('an untrusted peer is the client, whatever the header says', () => {
    expect(clientIpFrom('192.0.2.1', '203.0.113.5', trusted)).toBe('192.0.2.1');
    expect(clientIpFrom('192.0.2.1', '203.0.113.5', undefined)).toBe('192.0.2.1');
  });

  test('a trusted peer: the right-most hop that is not a trusted proxy', () => {
    expect(clientIpFrom('10.0.0.1', '203.0.113.5, 10.1.1.1, 10.2.2.2', trusted)).toBe('203.0.113.5');
    expect(clientIpFrom('10.0.0.1', 'evil-forged, 198.51.100.7', trusted)).toBe('198.51.100.7');
    expect(clientIpFrom('10.0.0.1', ['1.1.1.1', '2.2.2.2'], trusted)).toBe('2.2.2.2');
  });

  test('garbage in the header stops at the last believable address', () => {
    expect(clientIpFrom('10.0.0.1', 'not-an-ip', trusted)).toBe('10.0.0.1');
  });

  test('IPv4-mapped IPv6 peers are IPv4', () => {
    expect(clientIpFrom('::ffff:10.0.0.1', '::ffff:198.51.100.7', trusted)).toBe('198.51.100.7');
    expect(clientIpFrom('::ffff:127.0.0.1', undefined, trusted)).toBe('127.0.0.1');
  });
});

describe('PROXY protocol header', () => {
  test('v1 TCP4 and TCP6, and UNKNOWN', () => {
    const v1 = Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 5555 1883\r\nrest');
    expect(parseProxyHeader(v1)).toEqual({ state: 'done', length: v1.length - 4, ip: '198.51.100.7' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'))).toMatchObject({ state: 'done', ip: '2001:db8::1' });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toMatchObject({ state: 'done', ip: undefined });
  });

  test('v1 malformed or incomplete', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3'))).toEqual({ state: 'more' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 999.2.3.4 10.0.0.1 1 2\r\n')).state).toBe('error');
    expect(parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(200)}`)).state).toBe('error');
    expect(parseProxyHeader(Buffer.from([0x10, 0x00])).state).toBe('error');
  });

  test('v2 PROXY over IPv4, and LOCAL', () => {
    const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
    const v2 = Buffer.from([...sig, 0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 20, 10, 0, 0, 1, 0x15, 0xb3, 0x07, 0x5b, 0x10]);
    expect(parseProxyHeader(v2)).toEqual({ state: 'done', length: 28, ip: '198.51.100.20' });
    expect(parseProxyHeader(v2.subarray(0, 20))).toEqual({ state: 'more' });
    expect(parseProxyHeader(Buffer.from([...sig, 0x20, 0x00, 0x00, 0x00]))).toEqual({ state: 'done', length: 16, ip: undefined });
  });

  test('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, prefixed) => {
      const buf = Buffer.concat([prefixed ? Buffer.from('PROXY ') : Buffer.alloc(0), Buffer.from(bytes)]);
      const r = parseProxyHeader(buf);
      expect(['more', 'error', 'done']).toContain(r.state);
      if (r.state === 'done') expect(r.length).toBeLessThanOrEqual(buf.length);
    }), { numRuns: 1000 });
  });
});

describe('brute-force window (SPEC §4)', () => {
  test('blocks after `limit` failures until the window passes', () => {
    const l = new AuthLimiter(3, 10);
    for (let i = 0; i < 3; i++) {
      expect(l.blocked('a', 1000)).toBe(false);
      l.fail('a', 1000 + i);
    }
    expect(l.blocked('a', 2000)).toBe(true);
    expect(l.blocked('b', 2000)).toBe(false);
    expect(l.blocked('a', 1000 + 10_000)).toBe(false);
  });

  test('0 disables the guard', () => {
    const l = new AuthLimiter(0, 10);
    for (let i = 0; i < 100; i++) l.fail('a', i);
    expect(l.blocked('a', 100)).toBe(false);
  });

  test('memory is bounded: finished windows are pruned', () => {
    const l = new AuthLimiter(1, 1);
    for (let i = 0; i < 1000; i++) l.fail(`10.0.${i >> 8}.${i & 255}`, 0);
    l.fail('x', 5000);
    expect(l.size).toBe(1);
  });
});

describe('credentials (SPEC §4)', () => {
  test('username carries the key, optional FlespiToken prefix; empty username → password', () => {
    expect(keyFromCredentials('abc', undefined)).toBe('abc');
    expect(keyFromCredentials('FlespiToken abc', Buffer.from('zzz'))).toBe('abc');
    expect(keyFromCredentials('', Buffer.from('FlespiToken pw'))).toBe('pw');
    expect(keyFromCredentials(undefined, Buffer.from('pw'))).toBe('pw');
    expect(keyFromCredentials(undefined, undefined)).toBe('');
  });
});
