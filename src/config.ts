// Settings of SPEC §1: config/default.json, overridden by environment variables.
// A bad value stops start-up with one line naming the variable (see main.ts).
import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { isKeyShaped } from './tokens/index.js';

export interface Config {
  host: string;
  mqttPort: number;
  wsPort: number;
  httpPort: number;
  /** TLS listeners run only when both tlsCert and tlsKey are set. */
  mqttsPort: number;
  wssPort: number;
  tlsCert: string;
  tlsKey: string;
  /** Empty: memory store, single node. */
  redisUrl: string;
  redisPrefix: string;
  masterToken: string;
  /** CIDR list; empty trusts no proxy. */
  trustProxy: string[];
  proxyProtocol: boolean;
  /** Disable Nagle on MQTT/MQTTS sockets; off by default, like Mosquitto and bare Aedes. */
  tcpNoDelay: boolean;
  authFailLimit: number;
  authFailWindow: number;
  /** Largest MQTT packet accepted, bytes. */
  maxPacketSize: number;
  /** Records kept in the broker log (SPEC §8); 0 keeps none. */
  logRetention: number;
  logLevel: string;
  metrics: boolean;
  /** Name of this node in session listings; defaults to a random id. */
  nodeId: string;
  /** SPEC §1, §9: the MQTT-over-WebSocket URL the console uses; empty: the page's host with WS_PORT. */
  consoleWsUrl: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
  }
}

type Kind = 'port' | 'string' | 'bool' | 'uint' | 'level' | 'cidrs' | 'url' | 'key' | 'nodeid' | 'wsurl';

/** Setting → its environment variable and how to read it. */
const SETTINGS: Record<keyof Config, { env: string; kind: Kind }> = {
  host: { env: 'HOST', kind: 'string' },
  mqttPort: { env: 'MQTT_PORT', kind: 'port' },
  wsPort: { env: 'WS_PORT', kind: 'port' },
  httpPort: { env: 'HTTP_PORT', kind: 'port' },
  mqttsPort: { env: 'MQTTS_PORT', kind: 'port' },
  wssPort: { env: 'WSS_PORT', kind: 'port' },
  tlsCert: { env: 'TLS_CERT', kind: 'string' },
  tlsKey: { env: 'TLS_KEY', kind: 'string' },
  redisUrl: { env: 'REDIS_URL', kind: 'url' },
  redisPrefix: { env: 'REDIS_PREFIX', kind: 'string' },
  masterToken: { env: 'MASTER_TOKEN', kind: 'key' },
  trustProxy: { env: 'TRUST_PROXY', kind: 'cidrs' },
  proxyProtocol: { env: 'PROXY_PROTOCOL', kind: 'bool' },
  tcpNoDelay: { env: 'TCP_NODELAY', kind: 'bool' },
  authFailLimit: { env: 'AUTH_FAIL_LIMIT', kind: 'uint' },
  authFailWindow: { env: 'AUTH_FAIL_WINDOW', kind: 'uint' },
  maxPacketSize: { env: 'MAX_PACKET_SIZE', kind: 'uint' },
  logRetention: { env: 'LOG_RETENTION', kind: 'uint' },
  logLevel: { env: 'LOG_LEVEL', kind: 'level' },
  metrics: { env: 'METRICS', kind: 'bool' },
  nodeId: { env: 'NODE_ID', kind: 'nodeid' },
  consoleWsUrl: { env: 'CONSOLE_WS_URL', kind: 'wsurl' },
};

// Control characters (C0 and DEL), built from code points so that no control character sits in the source.
const CONTROL_CLASS = `[${String.fromCharCode(0)}-${String.fromCharCode(0x1f)}${String.fromCharCode(0x7f)}]`;
const NODE_ID_CONTROL = new RegExp(CONTROL_CLASS);
const NODE_ID_CONTROL_ALL = new RegExp(CONTROL_CLASS, 'g');

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function parse(name: string, kind: Kind, raw: unknown): unknown {
  const text = typeof raw === 'string' ? raw.trim() : raw;
  switch (kind) {
    case 'port': {
      const n = typeof text === 'number' ? text : /^\d+$/.test(String(text)) ? Number(text) : NaN;
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(name, `'${String(raw)}' is not a port (0-65535; 0 = ephemeral)`);
      return n;
    }
    case 'uint': {
      const n = typeof text === 'number' ? text : /^\d+$/.test(String(text)) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(name, `'${String(raw)}' is not a non-negative integer`);
      return n;
    }
    case 'bool': {
      if (typeof text === 'boolean') return text;
      const s = String(text).toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
      throw new ConfigError(name, `'${String(raw)}' is not a boolean (true/false)`);
    }
    case 'level': {
      const s = String(text).toLowerCase();
      if (!LEVELS.includes(s)) throw new ConfigError(name, `'${String(raw)}' is not one of ${LEVELS.join(', ')}`);
      return s;
    }
    case 'cidrs':
      return parseCidrList(name, Array.isArray(text) ? text.join(',') : String(text ?? ''));
    case 'url': {
      const s = String(text ?? '');
      if (s && !/^rediss?:\/\/[^\s]+$/.test(s)) throw new ConfigError(name, `'${s}' is not a redis:// or rediss:// URL`);
      return s;
    }
    case 'key': {
      const s = String(text ?? '');
      // Never echo the value: it is a secret.
      if (s && !isKeyShaped(s)) throw new ConfigError(name, 'must be 16 to 256 characters [A-Za-z0-9]');
      return s;
    }
    case 'nodeid': {
      // The node id is Aedes' broker id: aedes-persistence-redis reads it back out of
      // `will:<node>:<client>` and `outgoing:<client>:<node>:<n>` keys by splitting on `:`
      // (a dead node's wills would never go out), and Aedes names `$SYS/<node>/heartbeat`
      // and matches `$SYS/+/heartbeat`: with a `/`, `+` or `#` in it the other nodes would
      // think this one dead and publish its live clients' wills.
      const s = String(text ?? '');
      if (/[:/+#\s]/.test(s) || NODE_ID_CONTROL.test(s)) {
        throw new ConfigError(name, `'${s.replace(NODE_ID_CONTROL_ALL, '?')}' must not contain ':', '/', '+', '#', spaces or control characters`);
      }
      return s;
    }
    case 'wsurl': {
      // It goes into the console's Content-Security-Policy (connect-src): a bare ws(s) URL, nothing that could end the directive.
      const s = String(text ?? '');
      if (s && !/^wss?:\/\/[A-Za-z0-9.\-[\]:]+(\/[A-Za-z0-9._~\-/]*)?$/.test(s)) {
        throw new ConfigError(name, `'${s.replace(NODE_ID_CONTROL_ALL, '?')}' is not a ws:// or wss:// URL`);
      }
      return s;
    }
    case 'string':
      return String(text ?? '');
  }
}

/** Checks a comma list of CIDRs or addresses; returns the trimmed entries. */
export function parseCidrList(name: string, text: string): string[] {
  const entries = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const entry of entries) {
    const [addr = '', bits, extra] = entry.split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    // A zone (`fe80::1%eth0`) names an interface, not addresses: BlockList would silently ignore it.
    if (!family || !okBits || extra !== undefined || addr.includes('%')) {
      throw new ConfigError(name, `'${entry}' is not an IP address or CIDR`);
    }
  }
  return entries;
}

/**
 * A BlockList holding the CIDRs. BlockList matches IPv4 addresses against
 * IPv4-mapped IPv6 rules (`::ffff:10.0.0.0/104`) and the reverse by itself.
 */
export function cidrBlockList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr = '', bits] = entry.split('/');
    const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
    const prefix = bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits);
    list.addSubnet(addr, prefix, family);
  }
  return list;
}

export function defaultConfigPath(): string {
  return new URL('../../config/default.json', import.meta.url).pathname;
}

/**
 * Reads the defaults file and applies the environment. Throws ConfigError
 * naming the first bad variable (or file key).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, file = defaultConfigPath()): Config {
  let defaults: Record<string, unknown>;
  try {
    defaults = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(file, `cannot read defaults: ${(err as Error).message}`);
  }
  for (const key of Object.keys(defaults)) {
    if (!Object.hasOwn(SETTINGS, key)) throw new ConfigError(file, `unknown setting '${key}'`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, { env: variable, kind }] of Object.entries(SETTINGS)) {
    const fromEnv = env[variable];
    if (fromEnv !== undefined) out[key] = parse(variable, kind, fromEnv);
    else out[key] = parse(`${key} in ${file}`, kind, defaults[key] ?? '');
  }
  const config = out as unknown as Config;
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) {
    throw new ConfigError(config.tlsCert ? 'TLS_KEY' : 'TLS_CERT', 'TLS needs both TLS_CERT and TLS_KEY');
  }
  // SPEC §1: a PROXY header names any address it likes; only a listed load balancer may send one.
  if (config.proxyProtocol && config.trustProxy.length === 0) {
    throw new ConfigError('PROXY_PROTOCOL', 'needs TRUST_PROXY (the CIDRs of the load balancers allowed to send PROXY headers)');
  }
  return config;
}
