// Pure helpers of the broker: client IP derivation, PROXY header parsing, the
// brute-force window, and credential parsing (SPEC §4).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { clientIpFrom } from '../../src/access/client-ip.js';
import { parseProxyHeader } from '../../src/broker/proxy-protocol.js';
import { AuthLimiter } from '../../src/access/auth-limiter.js';
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

  test('TRUST_PROXY matches a peer in any of its forms: IPv6, IPv4-mapped, mapped rules', () => {
    const hdr = '198.51.100.7';
    expect(clientIpFrom('::1', hdr, trusted)).toBe(hdr);
    expect(clientIpFrom('0:0:0:0:0:0:0:1', hdr, trusted)).toBe(hdr);
    expect(clientIpFrom('::ffff:127.0.0.2', hdr, cidrBlockList(['127.0.0.2/32']))).toBe(hdr);
    expect(clientIpFrom('127.0.0.2', hdr, cidrBlockList(['::ffff:127.0.0.0/104']))).toBe(hdr);
    expect(clientIpFrom('::ffff:127.0.0.3', hdr, cidrBlockList(['127.0.0.2/32']))).toBe('127.0.0.3');
    expect(clientIpFrom('::2', hdr, trusted)).toBe('::2');
  });

  test('X-Forwarded-For hops with ports or IPv6 brackets are addresses (SPEC §4)', () => {
    expect(clientIpFrom('10.0.0.1', '198.51.100.7:4711', trusted)).toBe('198.51.100.7');
    expect(clientIpFrom('10.0.0.1', '[2001:DB8::7]:443', trusted)).toBe('2001:db8::7');
    expect(clientIpFrom('10.0.0.1', '[2001:db8::7]', trusted)).toBe('2001:db8::7');
    expect(clientIpFrom('10.0.0.1', ' 203.0.113.5 ,\t10.1.1.1:80 ', trusted)).toBe('203.0.113.5');
    // A trusted proxy's own hop with a port is still recognised as trusted.
    expect(clientIpFrom('10.0.0.1', '203.0.113.5, 10.1.1.1:8080', trusted)).toBe('203.0.113.5');
    // Empty list elements are skipped; garbage stops at the last believable address.
    expect(clientIpFrom('10.0.0.1', '203.0.113.5,, ', trusted)).toBe('203.0.113.5');
    for (const bad of ['198.51.100.7:', '198.51.100.7:http', '[2001:db8::7', '[2001:db8::7]x', 'unknown', '1.2.3.4:5:6']) {
      expect(clientIpFrom('10.0.0.1', bad, trusted)).toBe('10.0.0.1');
    }
  });

  test('the client address is always in normal form, whatever the header spelling', () => {
    fc.assert(fc.property(fc.ipV6(), (v6) => {
      const ip = clientIpFrom('10.0.0.1', `[${v6.toUpperCase()}]:1`, trusted);
      expect(ip).toBe(clientIpFrom(v6, undefined, undefined));
    }), { numRuns: 300 });
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

  test('v1 limits: 107 bytes with the CRLF, ports up to 65535', () => {
    const long = Buffer.from(`PROXY TCP6 ${'1:2:3:4:5:6:7:8'} ${'1:2:3:4:5:6:7:8'} 1 2${' '.repeat(80)}\r\n`);
    expect(long.length).toBeGreaterThan(107);
    expect(parseProxyHeader(long).state).toBe('error');
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 99999 1883\r\n')).state).toBe('error');
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 65535 1883\r\n')).state).toBe('done');
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:198.51.100.7 ::1 1 2\r\n'))).toMatchObject({ state: 'done', ip: '::ffff:198.51.100.7' });
  });

  test('any prefix of a valid header asks for more (a header split across segments)', () => {
    const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
    const headers = [
      Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 5555 1883\r\n'),
      Buffer.from([...sig, 0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 20, 10, 0, 0, 1, 0x15, 0xb3, 0x07, 0x5b]),
    ];
    for (const h of headers) {
      for (let n = 0; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n))).toEqual({ state: 'more' });
      expect(parseProxyHeader(h)).toMatchObject({ state: 'done', length: h.length });
    }
  });

  test('v2 PROXY over IPv4, and LOCAL', () => {
    const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
    const v2 = Buffer.from([...sig, 0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 20, 10, 0, 0, 1, 0x15, 0xb3, 0x07, 0x5b, 0x10]);
    expect(parseProxyHeader(v2)).toEqual({ state: 'done', length: 28, ip: '198.51.100.20' });
    expect(parseProxyHeader(v2.subarray(0, 20))).toEqual({ state: 'more' });
    expect(parseProxyHeader(Buffer.from([...sig, 0x20, 0x00, 0x00, 0x00]))).toEqual({ state: 'done', length: 16, ip: undefined });
  });

  test('v2: IPv6, UNSPEC keeps the peer, and malformed or oversized headers are refused', () => {
    const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
    const v6src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    const v6 = Buffer.from([...sig, 0x21, 0x21, 0x00, 0x24, ...v6src, ...new Array(16).fill(0), 0, 1, 0, 2]);
    expect(parseProxyHeader(v6)).toMatchObject({ state: 'done', length: 52, ip: '2001:db8:0:0:0:0:0:7' });
    // PROXY command with UNSPEC family: no address to believe, the peer stays the client.
    expect(parseProxyHeader(Buffer.from([...sig, 0x21, 0x00, 0x00, 0x00]))).toEqual({ state: 'done', length: 16, ip: undefined });
    // TCP over IPv4 announcing fewer than the 12 address bytes it must carry.
    expect(parseProxyHeader(Buffer.from([...sig, 0x21, 0x11, 0x00, 0x04, 198, 51, 100, 20])).state).toBe('error');
    // A huge announced length is refused from the 16-byte preamble alone, before it is read.
    expect(parseProxyHeader(Buffer.from([...sig, 0x21, 0x11, 0xff, 0xff])).state).toBe('error');
    expect(parseProxyHeader(Buffer.from([...sig, 0x22, 0x11, 0x00, 0x0c])).state).toBe('error');
    expect(parseProxyHeader(Buffer.from([...sig, 0x11, 0x11, 0x00, 0x0c])).state).toBe('error');
    expect(parseProxyHeader(Buffer.from([...sig, 0x21, 0x41, 0x00, 0x0c])).state).toBe('error');
    expect(parseProxyHeader(Buffer.from([...sig, 0x21, 0x13, 0x00, 0x0c])).state).toBe('error');
    // LOCAL discards the address block whatever its family says.
    expect(parseProxyHeader(Buffer.from([...sig, 0x20, 0x11, 0x00, 0x0c, ...new Array(12).fill(0)]))).toEqual({ state: 'done', length: 28, ip: undefined });
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

  test('IPv6 addresses are counted per /64 (SPEC §4)', () => {
    const l = new AuthLimiter(3, 10);
    l.fail('2001:db8:1:2::1', 0);
    l.fail('2001:db8:1:2:ffff:ffff:ffff:ffff', 1);
    l.fail('2001:DB8:1:2:0:0:0:abcd', 2);
    expect(l.blocked('2001:db8:1:2::9', 3)).toBe(true);
    expect(l.blocked('[2001:db8:1:2::9]', 3)).toBe(true);
    expect(l.blocked('2001:db8:1:3::1', 3)).toBe(false);
    expect(l.blocked('2001:db8:1::1', 3)).toBe(false);
    expect(l.size).toBe(1);
    // Compressed zeros inside the /64 and at its edge.
    const m = new AuthLimiter(2, 10);
    m.fail('2001:db8::1', 0);
    m.fail('2001:db8:0:0:1::', 0);
    expect(m.blocked('2001:db8:0:0:ffff::1', 1)).toBe(true);
    expect(m.blocked('2001:db8:0:1::', 1)).toBe(false);
  });

  test('an IPv4-mapped IPv6 address counts as its IPv4 address (SPEC §2, §4)', () => {
    const l = new AuthLimiter(2, 10);
    l.fail('::ffff:192.0.2.1', 0);
    l.fail('::FFFF:c000:201', 0);
    expect(l.blocked('192.0.2.1', 1)).toBe(true);
    expect(l.blocked('::ffff:192.0.2.1', 1)).toBe(true);
    expect(l.blocked('192.0.2.2', 1)).toBe(false);
  });

  test('at most 100,000 tracked addresses under a spray of 250,000; a fresh attacker is still blocked (SPEC §4)', () => {
    const l = new AuthLimiter(3, 60);
    for (let i = 0; i < 250_000; i++) l.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1000);
    expect(l.size).toBeLessThanOrEqual(100_000);
    for (let i = 0; i < 3; i++) {
      expect(l.blocked('198.51.100.66', 2000)).toBe(false);
      l.fail('198.51.100.66', 2000);
    }
    expect(l.blocked('198.51.100.66', 2000)).toBe(true);
    expect(l.size).toBeLessThanOrEqual(100_000);
    // IPv6 spray from distinct /64s is bounded alike.
    for (let i = 0; i < 150_000; i++) l.fail(`2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`, 3000);
    expect(l.size).toBeLessThanOrEqual(100_000);
  });

  test('randomized: agrees with a plain model of windows forgotten oldest first', () => {
    const addr = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', '::ffff:1.2.3.4', '1.2.3.4', '2001:db8::1', '2001:db8::2');
    const op = fc.record({ fail: fc.boolean(), ip: addr, dt: fc.integer({ min: 0, max: 4000 }) });
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const l = new AuthLimiter(2, 10, 3);
      const key = (ip: string) => (ip.includes('1.2.3.4') ? '1.2.3.4' : ip.startsWith('2001') ? 'v6' : ip);
      const model: { key: string; start: number; failures: number }[] = []; // oldest first
      let now = 0;
      for (const { fail, ip, dt } of ops) {
        now += dt;
        const k = key(ip);
        const i = model.findIndex((w) => w.key === k);
        if (fail) {
          for (let j = model.length - 1; j >= 0; j--) if (now - model[j]!.start >= 10_000) model.splice(j, 1);
          const w = model.find((x) => x.key === k);
          if (w) w.failures++;
          else {
            if (model.length >= 3) model.shift();
            model.push({ key: k, start: now, failures: 1 });
          }
          l.fail(ip, now);
        } else {
          const w = i === -1 ? undefined : model[i]!;
          const expired = w !== undefined && now - w.start >= 10_000;
          if (expired) model.splice(i, 1);
          expect(l.blocked(ip, now)).toBe(w !== undefined && !expired && w.failures >= 2);
        }
        expect(l.size).toBe(model.length);
      }
    }), { numRuns: 500 });
  });

  test('the oldest window is forgotten first; a window that restarts is young again', () => {
    const l = new AuthLimiter(2, 10, 3);
    l.fail('a', 0);
    l.fail('b', 1000);
    l.fail('c', 2000);
    l.fail('a', 10_000); // a's first window is over: a new one starts, the youngest
    l.fail('d', 10_500); // at the bound: b (window from 1000) goes, not a
    expect(l.size).toBeLessThanOrEqual(3);
    l.fail('a', 10_600);
    expect(l.blocked('a', 10_700)).toBe(true);
    l.fail('b', 10_800);
    expect(l.blocked('b', 10_900)).toBe(false); // b started afresh: one failure
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
