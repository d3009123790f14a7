// PROXY protocol v1 (text) and v2 (binary) as HAProxy documents them
// (haproxy.org/download/2.8/doc/proxy-protocol.txt), for load balancers in
// front of the TCP listener (SPEC §1, §4 "Client IP"). Hand-written: the header
// is small, and the npm parsers do not handle reading it off a live socket
// before Aedes takes the stream.
//
// Only the header of a peer in TRUST_PROXY is ever read (transports.ts checks
// the peer first); this module parses, it does not decide whom to believe.
import type { Socket } from 'node:net';
import { isIP } from 'node:net';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
/** proxy-protocol.txt §2.1: "a receiver ... must not read more than 107 characters" (CRLF included). */
export const V1_MAX = 107;
/**
 * Largest v2 address block + TLVs we accept. The format allows 65535; what load
 * balancers send (addresses, ALPN, SNI, unique id, SSL facts, AWS/Azure ids) fits
 * in a few hundred bytes. A larger announced length is refused before it is read.
 */
export const V2_MAX_PAYLOAD = 2048;
/** Default time a trusted peer gets to finish its header (a load balancer sends it at once). */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

const V2_CMD_LOCAL = 0x0;
const V2_CMD_PROXY = 0x1;
const V2_AF_UNSPEC = 0x0;
const V2_AF_INET = 0x1;
const V2_AF_INET6 = 0x2;
const V2_AF_UNIX = 0x3;
/** UNSPEC, then TCP and UDP over IPv4, IPv6 and unix sockets. */
const V2_FAMILY_PROTOCOLS = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);
const PORT = /^(?:0|[1-9]\d{0,4})$/;

export type ProxyParse =
  | { state: 'more' }
  | { state: 'error'; reason: string }
  /**
   * `ip` is undefined when the header carries no client address: v2 LOCAL (the
   * balancer's own health check), v2 UNSPEC/UNIX and v1 UNKNOWN. The spec says the
   * receiver then uses the real connection endpoints: the socket peer.
   */
  | { state: 'done'; length: number; ip: string | undefined };

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function validPort(text: string | undefined): boolean {
  return text !== undefined && PORT.test(text) && Number(text) <= 65535;
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return { state: 'more' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { state: 'error', reason: 'PROXY v2: bad version' };
  const len = buf.readUInt16BE(14);
  // Refused as soon as it is announced: never buffer up to 64 KiB for a header.
  if (len > V2_MAX_PAYLOAD) return { state: 'error', reason: 'PROXY v2: header too long' };
  const cmd = verCmd & 0x0f;
  if (cmd !== V2_CMD_LOCAL && cmd !== V2_CMD_PROXY) return { state: 'error', reason: 'PROXY v2: bad command' };
  const famProto = buf[13]!;
  const family = famProto >> 4;
  if (cmd === V2_CMD_PROXY) {
    // §2.2: only these family/protocol bytes exist; "other values ... must be rejected as invalid".
    if (!V2_FAMILY_PROTOCOLS.has(famProto)) return { state: 'error', reason: 'PROXY v2: bad address family' };
    // The announced length must hold the addresses of the announced family.
    const needed = family === V2_AF_INET ? 12 : family === V2_AF_INET6 ? 36 : family === V2_AF_UNIX ? 216 : 0;
    if (len < needed) return { state: 'error', reason: 'PROXY v2: address block too short' };
  }
  if (buf.length < 16 + len) return { state: 'more' };
  const length = 16 + len;
  // LOCAL: "the receiver must accept this connection as valid and must use the real
  // connection endpoints and discard the protocol block including the family" (health checks).
  if (cmd === V2_CMD_LOCAL || family === V2_AF_UNSPEC || family === V2_AF_UNIX) return { state: 'done', length, ip: undefined };
  if (family === V2_AF_INET) return { state: 'done', length, ip: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}` };
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
  return { state: 'done', length, ip: groups.join(':') };
}

function parseV1(buf: Buffer): ProxyParse {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end === -1) return buf.length >= V1_MAX ? { state: 'error', reason: 'PROXY v1: no CRLF within 107 bytes' } : { state: 'more' };
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  // "PROXY UNKNOWN" may be followed by anything up to the CRLF, which the receiver ignores.
  if (parts[1] === 'UNKNOWN') return { state: 'done', length: end + 2, ip: undefined };
  const [, proto, src, dst, sport, dport] = parts;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (parts.length !== 6 || !family || isIP(src ?? '') !== family || isIP(dst ?? '') !== family
    || !validPort(sport) || !validPort(dport)) {
    return { state: 'error', reason: 'PROXY v1: malformed header' };
  }
  return { state: 'done', length: end + 2, ip: src };
}

/** Parses a PROXY header at the start of `buf`; pure, never throws. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (startsWith(buf, V2_SIGNATURE)) return parseV2(buf);
  if (startsWith(buf, V1_PREFIX)) return parseV1(buf);
  return { state: 'error', reason: 'PROXY header expected' };
}

/**
 * Reads the PROXY header off a fresh socket (it may arrive in any number of
 * segments) and puts the bytes after it back, so the MQTT parser sees an
 * untouched stream. Rejects on a bad, oversized or missing header, and when
 * the header is not complete within `timeoutMs` (a slow-loris holding a socket).
 */
export function readProxyHeader(socket: Socket, timeoutMs = PROXY_HEADER_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error('PROXY header timeout')), timeoutMs);
    function finish(err: Error | null, ip?: string, rest?: Buffer): void {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (err) return reject(err);
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(ip);
    }
    function onClose(): void {
      finish(new Error('closed before PROXY header'));
    }
    function onReadable(): void {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        const parsed = parseProxyHeader(buf);
        if (parsed.state === 'more') continue;
        if (parsed.state === 'error') return finish(new Error(parsed.reason));
        return finish(null, parsed.ip, buf.subarray(parsed.length));
      }
    }
    socket.on('readable', onReadable);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}
