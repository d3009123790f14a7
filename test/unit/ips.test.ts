import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { compileIpMasks, normalizeIp } from '../../src/tokens/ips.js';
import { TokenValidationError } from '../../src/tokens/errors.js';

describe('normalizeIp (SPEC §2)', () => {
  test.each([
    ['10.1.2.3', '10.1.2.3'],
    ['::ffff:10.1.2.3', '10.1.2.3'], // IPv4-mapped IPv6 is compared as IPv4
    ['::FFFF:0a01:0203', '10.1.2.3'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], // RFC 5952
    ['[2001:db8::1]', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['  10.1.2.3 ', '10.1.2.3'],
    ['not an address', 'not an address'],
  ])('%j becomes %j', (ip, expected) => {
    expect(normalizeIp(ip)).toBe(expected);
  });
});

describe('IP masks (SPEC §2 ips)', () => {
  test('an empty list allows any address', () => {
    for (const ips of ['', '  ', '\t\n']) {
      const matcher = compileIpMasks(ips);
      expect(matcher.any).toBe(true);
      expect(matcher.allows('203.0.113.9')).toBe(true);
      expect(matcher.allows('2001:db8::1')).toBe(true);
    }
  });

  test('wildcards: * is any run of characters, ? exactly one (SPEC §2 example)', () => {
    const matcher = compileIpMasks('10.100.15.*,192.168.56.1?');
    expect(matcher.any).toBe(false);
    expect(matcher.allows('10.100.15.7')).toBe(true);
    expect(matcher.allows('10.100.15.254')).toBe(true);
    expect(matcher.allows('10.100.16.7')).toBe(false);
    expect(matcher.allows('192.168.56.12')).toBe(true);
    expect(matcher.allows('192.168.56.1')).toBe(false);
    expect(matcher.allows('192.168.56.123')).toBe(false);
  });

  test('whitespace anywhere in the list is ignored', () => {
    const matcher = compileIpMasks(' 10.100.15.* ,\n 192.168.56.1 ');
    expect(matcher.allows('10.100.15.7')).toBe(true);
    expect(matcher.allows('192.168.56.1')).toBe(true);
  });

  test('CIDR for IPv4 and IPv6', () => {
    const matcher = compileIpMasks('10.0.0.0/8, 2001:db8::/32');
    expect(matcher.allows('10.255.1.2')).toBe(true);
    expect(matcher.allows('11.0.0.1')).toBe(false);
    expect(matcher.allows('2001:db8:1::5')).toBe(true);
    expect(matcher.allows('2001:db9::5')).toBe(false);
  });

  test('plain IPv6 addresses are compared in normalised form', () => {
    const matcher = compileIpMasks('2001:DB8:0:0::1');
    expect(matcher.allows('2001:db8::1')).toBe(true);
    expect(matcher.allows('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe(true);
    expect(matcher.allows('2001:db8::2')).toBe(false);
  });

  test('an IPv4-mapped IPv6 client is compared as IPv4, against every kind of mask (SPEC §2)', () => {
    for (const ips of ['10.1.2.3', '10.1.2.*', '10.0.0.0/8', '::ffff:10.1.2.3', '::ffff:10.0.0.0/104']) {
      const matcher = compileIpMasks(ips);
      expect(matcher.allows('::ffff:10.1.2.3')).toBe(true);
      expect(matcher.allows('10.1.2.3')).toBe(true);
      expect(matcher.allows('::ffff:11.1.2.3')).toBe(false);
    }
  });

  test('a non-address is refused by a non-empty list, and allows never throws', () => {
    const matcher = compileIpMasks('*');
    expect(matcher.allows('1.2.3.4')).toBe(true);
    expect(matcher.allows('')).toBe(false);
    expect(matcher.allows('localhost')).toBe(false);
    expect(compileIpMasks('10.0.0.0/8').allows('garbage')).toBe(false);
  });

  test.each([
    ['10.0.0.0/33', "ips: invalid mask '10.0.0.0/33'"],
    ['2001:db8::/129', "ips: invalid mask '2001:db8::/129'"],
    ['10.0.0.0/', "ips: invalid mask '10.0.0.0/'"],
    ['10.0.0.0/8/9', "ips: invalid mask '10.0.0.0/8/9'"],
    ['10.0.0.0/-1', "ips: invalid mask '10.0.0.0/-1'"],
    ['10.0.0.*/8', "ips: invalid mask '10.0.0.*/8'"],
    ['fe80::%eth0/64', "ips: invalid mask 'fe80::%eth0/64'"],
    ['256.0.0.1', "ips: invalid mask '256.0.0.1'"],
    ['010.0.0.1', "ips: invalid mask '010.0.0.1'"],
    ['localhost', "ips: invalid mask 'localhost'"],
    ['10.0.{1,2}.*', "ips: invalid mask '10.0.{1'"], // the comma splits it first
    ['10.0.[12].*', "ips: invalid mask '10.0.[12].*'"],
    ['!10.0.0.*', "ips: invalid mask '!10.0.0.*'"],
    ['10.0.0.1,,10.0.0.2', "ips: empty mask in '10.0.0.1,,10.0.0.2' (remove the extra comma)"],
    ['10.0.0.1,', "ips: empty mask in '10.0.0.1,' (remove the extra comma)"],
  ])('refuses the malformed list %j at compile time', (ips, message) => {
    expect(() => compileIpMasks(ips)).toThrow(TokenValidationError);
    expect(() => compileIpMasks(ips)).toThrow(message);
  });

  test('refuses a list longer than 4096 characters', () => {
    expect(() => compileIpMasks('10.0.0.1,'.repeat(500))).toThrow('ips: longer than 4096 characters');
  });
});

describe('IP masks agree with reference implementations (property)', () => {
  const octet = fc.integer({ min: 0, max: 255 });
  const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));

  /** Turns an address into a wildcard mask: some characters become `?`, some runs `*`. */
  const wildcardMask = fc
    .tuple(ipv4, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 4 }), fc.boolean()), { minLength: 1, maxLength: 3 }))
    .map(([ip, edits]) => {
      let mask = ip;
      for (const [at, length, star] of edits) {
        const start = at % mask.length;
        mask = star ? `${mask.slice(0, start)}*${mask.slice(start + length)}` : `${mask.slice(0, start)}?${mask.slice(start + 1)}`;
      }
      return { mask, source: ip };
    });

  /** Reference: `*` any run of characters, `?` exactly one. */
  function wildcardReference(mask: string, ip: string): boolean {
    const pattern = mask.replace(/[.]/g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp(`^${pattern}$`).test(ip);
  }

  test('a wildcard mask agrees with a regular-expression reference, for plain and IPv4-mapped clients', () => {
    fc.assert(
      fc.property(wildcardMask, ipv4, ({ mask, source }, other) => {
        const matcher = compileIpMasks(mask);
        return [source, other].every(
          (ip) => matcher.allows(ip) === wildcardReference(mask, ip) && matcher.allows(`::ffff:${ip}`) === wildcardReference(mask, ip),
        );
      }),
      { numRuns: 1000 },
    );
  });

  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

  test('an IPv4 CIDR mask agrees with bit arithmetic', () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 32 }), u32, fc.nat({ max: 31 }), (network, prefix, random, flip) => {
        const matcher = compileIpMasks(`${dotted(network)}/${prefix}`);
        const inside = (ip: number) => prefix === 0 || (ip ^ network) >>> (32 - prefix) === 0;
        // A random address, and one a single bit away from the network (often inside).
        const near = (network ^ (1 << flip)) >>> 0;
        return [random, near, network].every((ip) => matcher.allows(dotted(ip)) === inside(ip) && matcher.allows(`::ffff:${dotted(ip)}`) === inside(ip));
      }),
      { numRuns: 1000 },
    );
  });

  const word = fc.integer({ min: 0, max: 0xffff });
  const words = fc.array(word, { minLength: 8, maxLength: 8 });
  const toBig = (w: number[]) => w.reduce((acc, x) => (acc << 16n) | BigInt(x), 0n);
  const fullForm = (w: number[], upper: boolean) => {
    const text = w.map((x) => x.toString(16).padStart(4, '0')).join(':');
    return upper ? text.toUpperCase() : text;
  };

  test('an IPv6 CIDR mask agrees with bit arithmetic', () => {
    fc.assert(
      fc.property(words, fc.integer({ min: 0, max: 128 }), words, fc.nat({ max: 127 }), fc.boolean(), (network, prefix, random, flip, upper) => {
        const matcher = compileIpMasks(`${fullForm(network, upper)}/${prefix}`);
        const net = toBig(network);
        const shift = BigInt(128 - prefix);
        const inside = (ip: bigint) => prefix === 0 || ip >> shift === net >> shift;
        const near = [...network];
        near[7 - Math.floor(flip / 16)] = (near[7 - Math.floor(flip / 16)] as number) ^ (1 << flip % 16);
        return [random, near, network].every((ip) => {
          // Mapped IPv4 addresses are compared as IPv4; BlockList maps them back, so the answer is the same.
          return matcher.allows(fullForm(ip, !upper)) === inside(toBig(ip));
        });
      }),
      { numRuns: 1000 },
    );
  });
});
