// PROXY protocol v1 (text) and v2 (binary) as HAProxy documents them, for load
// balancers in front of the TCP listener (SPEC §4 "Client IP"). Hand-written:
// the header is small, and the npm parsers do not handle reading it off a live
// socket before Aedes takes the stream.
import type { Socket } from 'node:net';
import { isIP } from 'node:net';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
const V1_MAX = 107; // spec: the whole v1 line fits in 107 bytes
const V2_MAX = 16 + 2048;

export type ProxyParse =
  | { state: 'more' }
  | { state: 'error'; reason: string }
  /** `ip` is undefined for LOCAL/UNKNOWN (health checks): use the socket peer. */
  | { state: 'done'; length: number; ip: string | undefined };

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Parses a PROXY header at the start of `buf`; pure. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (startsWith(buf, V2_SIGNATURE)) {
    if (buf.length < 16) return { state: 'more' };
    const verCmd = buf[12]!;
    if (verCmd >> 4 !== 2) return { state: 'error', reason: 'PROXY v2: bad version' };
    const len = buf.readUInt16BE(14);
    if (16 + len > V2_MAX) return { state: 'error', reason: 'PROXY v2: header too long' };
    if (buf.length < 16 + len) return { state: 'more' };
    const cmd = verCmd & 0x0f;
    const family = buf[13]! >> 4;
    if (cmd === 0) return { state: 'done', length: 16 + len, ip: undefined }; // LOCAL
    if (cmd !== 1) return { state: 'error', reason: 'PROXY v2: bad command' };
    if (family === 1 && len >= 12) {
      return { state: 'done', length: 16 + len, ip: Array.from(buf.subarray(16, 20)).join('.') };
    }
    if (family === 2 && len >= 36) {
      const groups: string[] = [];
      for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
      return { state: 'done', length: 16 + len, ip: groups.join(':') };
    }
    return { state: 'done', length: 16 + len, ip: undefined }; // UNSPEC / unix sockets
  }
  if (startsWith(buf, V1_PREFIX)) {
    const end = buf.indexOf('\r\n');
    if (end === -1) return buf.length >= V1_MAX ? { state: 'error', reason: 'PROXY v1: no CRLF' } : { state: 'more' };
    const parts = buf.subarray(0, end).toString('latin1').split(' ');
    if (parts[1] === 'UNKNOWN') return { state: 'done', length: end + 2, ip: undefined };
    const [, proto, src, dst, sport, dport] = parts;
    const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
    if (parts.length !== 6 || !family || isIP(src ?? '') !== family || isIP(dst ?? '') !== family
      || !/^\d{1,5}$/.test(sport ?? '') || !/^\d{1,5}$/.test(dport ?? '')) {
      return { state: 'error', reason: 'PROXY v1: malformed header' };
    }
    return { state: 'done', length: end + 2, ip: src };
  }
  return { state: 'error', reason: 'PROXY header expected' };
}

/**
 * Reads the PROXY header off a fresh socket and puts the bytes after it back,
 * so the MQTT parser sees an untouched stream. Rejects on a bad or missing header.
 */
export function readProxyHeader(socket: Socket, timeoutMs = 5000): Promise<string | undefined> {
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
