// SPEC §2 `ips`: which client addresses may use a token. Masks are compiled
// once, when a token is validated or its rights are built; a malformed mask is
// a TokenValidationError then, and `allows` never throws.
//
// `node:net` is used only for its pure helpers (isIP, BlockList): no I/O.

import { BlockList, isIP } from 'node:net';
import { Minimatch } from 'minimatch';
import { TokenValidationError } from './errors.js';
import { LIMITS } from './types.js';

export interface IpMatcher {
  /** True when the token has no masks: every address is allowed. */
  readonly any: boolean;
  /** Whether a client at `ip` may use the token. Never throws; a non-address is refused. */
  allows(ip: string): boolean;
}

// A wildcard mask holds only address characters and `*`/`?`, so none of
// minimatch's other syntax (braces, classes, extglobs, negation) can occur.
const WILDCARD_MASK = /^[0-9a-f.:*?]+$/;
const WILDCARD_OPTIONS = { nobrace: true, noext: true, noglobstar: true, nocomment: true, nonegate: true, dot: true } as const;
const PREFIX = /^\d{1,3}$/;
const WHITESPACE = /\s+/g;
const MAPPED_V4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * The canonical text of an address: IPv4 as is; IPv6 in RFC 5952 form
 * (lower case, longest zero run compressed), without brackets or zone; an
 * IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) as its IPv4 address (SPEC §2).
 * Anything that is not an IP address comes back unchanged.
 */
export function normalizeIp(ip: string): string {
  let address = ip.trim();
  if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
  const zone = address.indexOf('%');
  if (zone !== -1 && address.includes(':')) address = address.slice(0, zone);
  const family = isIP(address);
  if (family === 4) return address;
  if (family !== 6) return ip;
  // The WHATWG URL serialiser prints IPv6 hosts in RFC 5952 form.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const mapped = MAPPED_V4.exec(canonical);
  if (mapped === null) return canonical;
  const high = parseInt(mapped[1] as string, 16);
  const low = parseInt(mapped[2] as string, 16);
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

class IpMasks implements IpMatcher {
  readonly any: boolean;
  private readonly exact: Set<string>;
  private readonly wildcards: Minimatch[];
  private readonly subnets: BlockList;
  private readonly hasSubnets: boolean;

  constructor(exact: Set<string>, wildcards: Minimatch[], subnets: BlockList, hasSubnets: boolean) {
    this.any = exact.size === 0 && wildcards.length === 0 && !hasSubnets;
    this.exact = exact;
    this.wildcards = wildcards;
    this.subnets = subnets;
    this.hasSubnets = hasSubnets;
  }

  allows(ip: string): boolean {
    if (this.any) return true;
    const address = normalizeIp(ip);
    const family = isIP(address);
    if (family === 0) return false;
    if (this.exact.has(address)) return true;
    for (const mask of this.wildcards) {
      if (mask.match(address)) return true;
    }
    // BlockList also compares IPv4 with IPv4-mapped IPv6 subnets, both ways.
    return this.hasSubnets && this.subnets.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}

const ANY: IpMatcher = new IpMasks(new Set(), [], new BlockList(), false);

/**
 * Compiles a comma-separated list of masks (SPEC §2): `*`/`?` wildcards
 * (`10.100.15.*`, `192.168.56.1?`), CIDR (`10.0.0.0/8`, `2001:db8::/32`) and
 * plain IPv4/IPv6 addresses. Whitespace is ignored; the empty list allows any
 * address. Throws TokenValidationError (field `ips`) on a malformed mask.
 */
export function compileIpMasks(ips: string): IpMatcher {
  if (ips.length > LIMITS.ips) throw new TokenValidationError('ips', `longer than ${LIMITS.ips} characters`);
  const compact = ips.replace(WHITESPACE, '');
  if (compact === '') return ANY;
  const exact = new Set<string>();
  const wildcards: Minimatch[] = [];
  const subnets = new BlockList();
  let hasSubnets = false;
  for (const mask of compact.split(',')) {
    if (mask === '') throw new TokenValidationError('ips', `empty mask in '${compact}' (remove the extra comma)`);
    if (mask.includes('/')) {
      addSubnet(subnets, mask);
      hasSubnets = true;
    } else if (mask.includes('*') || mask.includes('?')) {
      const lower = mask.toLowerCase();
      if (!WILDCARD_MASK.test(lower)) throw invalidMask(mask);
      wildcards.push(new Minimatch(lower, WILDCARD_OPTIONS));
    } else {
      if (isIP(mask) === 0) throw invalidMask(mask);
      exact.add(normalizeIp(mask));
    }
  }
  return new IpMasks(exact, wildcards, subnets, hasSubnets);
}

function addSubnet(subnets: BlockList, mask: string): void {
  const slash = mask.indexOf('/');
  const network = mask.slice(0, slash);
  const prefix = mask.slice(slash + 1);
  const family = isIP(network);
  // A zone (`fe80::%eth0`) names an interface, not addresses: not a subnet.
  if (family === 0 || network.includes('%') || !PREFIX.test(prefix)) throw invalidMask(mask);
  const bits = Number(prefix);
  if (bits > (family === 4 ? 32 : 128)) throw invalidMask(mask);
  try {
    subnets.addSubnet(network, bits, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    throw invalidMask(mask);
  }
}

function invalidMask(mask: string): TokenValidationError {
  const shown = mask.length > 64 ? `${mask.slice(0, 64)}...` : mask;
  return new TokenValidationError('ips', `invalid mask '${shown}'`);
}
