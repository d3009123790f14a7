// The address a client is judged by (SPEC §4 "Client IP"): the socket peer, or
// for a peer in TRUST_PROXY the right-most X-Forwarded-For hop that is not itself
// a trusted proxy. A header from an untrusted peer is ignored (it can be forged).
// Every address leaves here in one normal form (normalizeIp: RFC 5952 IPv6,
// IPv4-mapped IPv6 as IPv4), so `ips`, the brute-force guard, listings and logs agree.
import type { BlockList } from 'node:net';
import { isIP } from 'node:net';
import { normalizeIp } from '../tokens/index.js';

function canonicalIp(ip: string | undefined): string {
  return ip ? normalizeIp(ip) : '';
}

/**
 * Whether `ip` (any textual form: `::ffff:a.b.c.d`, bracketed, upper case)
 * is in TRUST_PROXY. Not an address, or no TRUST_PROXY: false.
 */
export function isTrusted(trusted: BlockList | undefined, ip: string): boolean {
  if (!trusted) return false;
  const address = canonicalIp(ip);
  const family = isIP(address);
  if (family === 0) return false;
  // BlockList matches IPv4 against IPv4-mapped IPv6 rules and the reverse.
  return trusted.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

const PORT = /^\d{1,5}$/;

/**
 * One X-Forwarded-For element as proxies write it: `a.b.c.d`, an IPv6 address,
 * `[v6]`, and with a port (`a.b.c.d:1234`, `[v6]:1234`, as Azure and some
 * others do). Returns the normalised address, or '' when it is none of these.
 */
export function forwardedHop(element: string): string {
  let text = element.trim();
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    const after = close === -1 ? '' : text.slice(close + 1);
    if (close === -1 || (after !== '' && !(after.startsWith(':') && PORT.test(after.slice(1))))) return '';
    text = text.slice(1, close);
  } else {
    const colon = text.indexOf(':');
    // Exactly one colon: IPv4 with a port (a bare IPv6 address has at least two).
    if (colon !== -1 && colon === text.lastIndexOf(':')) {
      if (!PORT.test(text.slice(colon + 1))) return '';
      text = text.slice(0, colon);
      if (isIP(text) !== 4) return '';
    }
  }
  const ip = canonicalIp(text);
  return isIP(ip) === 0 ? '' : ip;
}

/**
 * `peer` is the socket's remote address; `forwarded` the raw X-Forwarded-For
 * header value(s), if any (Node joins repeated headers with ", " in arrival
 * order, so a balancer's appended header is still the right-most hop).
 */
export function clientIpFrom(peer: string | undefined, forwarded: string | string[] | undefined, trusted?: BlockList): string {
  let ip = canonicalIp(peer);
  if (!forwarded || !isTrusted(trusted, ip)) return ip;
  const hops = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    // Empty list elements are ignored (RFC 9110 §5.6.1).
    if (hops[i]!.trim() === '') continue;
    const hop = forwardedHop(hops[i]!);
    // Not an address ("unknown", garbage): stop at the last hop a trusted proxy vouched for.
    if (hop === '') return ip;
    ip = hop;
    if (!isTrusted(trusted, hop)) return hop;
  }
  return ip;
}
