// The address a client is judged by (SPEC §4 "Client IP"): the socket peer, or
// for a peer in TRUST_PROXY the right-most X-Forwarded-For hop that is not itself
// a trusted proxy. A header from an untrusted peer is ignored (it can be forged).
import type { BlockList } from 'node:net';
import { isIP } from 'node:net';
import { normalizeIp } from '../tokens/index.js';

function canonicalIp(ip: string | undefined): string {
  return ip ? normalizeIp(ip) : '';
}

function isTrusted(trusted: BlockList | undefined, ip: string): boolean {
  if (!trusted) return false;
  const family = isIP(ip);
  if (family === 0) return false;
  return trusted.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * `peer` is the socket's remote address; `forwarded` the raw X-Forwarded-For
 * header value(s), if any.
 */
export function clientIpFrom(peer: string | undefined, forwarded: string | string[] | undefined, trusted?: BlockList): string {
  let ip = canonicalIp(peer);
  if (!forwarded || !isTrusted(trusted, ip)) return ip;
  const hops = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = canonicalIp(hops[i]!.trim());
    if (isIP(hop) === 0) return ip; // garbage: stop at the last address we could believe
    ip = hop;
    if (!isTrusted(trusted, hop)) return hop;
  }
  return ip;
}
