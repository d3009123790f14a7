// MQTT byte-stream fuzzing (issue 8): a seeded generator of client byte streams
// (valid packets built with mqtt-packet, then mutated, truncated, split and
// packed) and a runner that plays one stream over TCP or WebSocket. Used by
// test/integration/broker-fuzz.test.ts and bench/fuzz.ts through
// test/helpers/fuzz-harness.ts. Every stream is a pure function of (seed,
// index), so one failing stream can be replayed alone.
import mqttPacket from 'mqtt-packet';
import { connect as netConnect, type Socket } from 'node:net';
import { WebSocket } from 'ws';

// ---- seeded PRNG -------------------------------------------------------------

/** sfc32 seeded through splitmix32 from (seed, stream): small, fast, reproducible. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    let s = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  float(): number {
    return this.u32() / 4294967296;
  }

  /** 0 ≤ n < max. */
  int(max: number): number {
    return Math.floor(this.float() * max);
  }

  /** lo ≤ n ≤ hi. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((s, [, w]) => s + w, 0);
    let r = this.float() * total;
    for (const [item, w] of items) {
      r -= w;
      if (r < 0) return item;
    }
    return items[items.length - 1]![0];
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  alnum(n: number): string {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let s = '';
    for (let i = 0; i < n; i++) s += chars[this.int(chars.length)];
    return s;
  }
}

// ---- the tokens a stream may present -------------------------------------------

/** Keys of tokens the harness created; `valid` ones are accepted at CONNECT, `refused` ones never. */
export type ValidKind = 'standard' | 'acl' | 'master';
export type RefusedKind = 'disabled' | 'ip_denied' | 'no_mqtt';

export interface FuzzKey<K extends string> {
  kind: K;
  key: string;
  tokenId: number;
  /** A will topic this token may publish to (valid keys). */
  willOk?: string;
  /** A valid topic name this token may not publish to (will refused, CONNACK 5). */
  willDenied?: string;
}

export interface FuzzKeys {
  valid: FuzzKey<ValidKind>[];
  refused: FuzzKey<RefusedKind>[];
}

// ---- what a stream is ------------------------------------------------------------

export type StreamClass = 'refused' | 'valid';
export type StreamTransport = 'tcp' | 'ws' | 'ws-http';

/** One write: a TCP write or one WebSocket frame. */
export interface Frame {
  bytes: Buffer;
  /** WebSocket: a text frame (its bytes as latin1 text, so possibly invalid MQTT and UTF-8). */
  text?: boolean;
  /** WebSocket: a fragment with FIN unset; the next frame continues the message. */
  more?: boolean;
  /** Wait before the next frame: -1 none, 0 a macrotask, n ms. */
  pauseMs: number;
}

export interface FuzzStream {
  index: number;
  /** 'refused': its CONNECT must be refused, so nothing it sends may change state. */
  cls: StreamClass;
  transport: StreamTransport;
  /** Why a refused stream must be refused, or which key a valid one presents. */
  why: string;
  /** WebSocket subprotocols offered. */
  protocols: string[];
  frames: Frame[];
  ending: 'linger' | 'end' | 'destroy';
  /** Payload prefix of every PUBLISH and will of this stream (attribution). */
  tag: string;
  /** What was built and mutated, for a report. */
  notes: string[];
}

/**
 * Payload prefix naming the stream that published a message: `fz:<index>:<check>:`.
 * The check (a hash of seed and index) makes a tag that a bit flip altered
 * unattributable, rather than attributed to another stream.
 */
export function streamTag(seed: number, index: number): string {
  return `fz:${index}:${new Rng(seed ^ 0x5bd1e995, index).u32().toString(16).padStart(8, '0')}:`;
}

/** The stream index a payload names, or null when it carries no intact tag. */
export function taggedStream(seed: number, payload: Buffer): number | null {
  const m = /^fz:(\d{1,9}):[0-9a-f]{8}:/.exec(payload.subarray(0, 32).toString('latin1'));
  if (!m) return null;
  const index = Number(m[1]);
  return m[0] === streamTag(seed, index) ? index : null;
}
export const HEARTBEAT_TOPIC = 'fuzz/hb';
const CLIENT_ID_POOL = 16;

// ---- packet building ------------------------------------------------------------

const MAX_BYTES = 268_435_455;

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0 && out.length < 4);
  return Buffer.from(out);
}

/** Fixed header + remaining-length field size of a generated packet. */
function headerLength(packet: Buffer): number {
  let i = 1;
  while (i < packet.length && i < 5 && (packet[i]! & 0x80) !== 0) i++;
  return Math.min(packet.length, i + 1);
}

function gen(packet: object, v5: boolean): Buffer | null {
  try {
    return mqttPacket.generate(packet as mqttPacket.Packet, v5 ? { protocolVersion: 5 } : undefined);
  } catch {
    return null;
  }
}

function deepTopic(levels: number): string {
  return Array.from({ length: levels }, (_, i) => `l${i}`).join('/');
}

function topicPool(clientId: string): string[] {
  return [
    'fuzz/a/b', 'fuzz/a/c', 'fuzz/x/b', 'fuzz/x/y', `fuzz/${clientId}/data`, 'other/t', 'other/will',
    '$SYS/fz', '$tokenmq/events/connected/1', '$foo/bar', 'a', '/', '//', '/fuzz/a', 'fuzz/a/+', 'fuzz/#', '#', '+',
    '', 'fuzz/\u0000/nul', 'fuzz/ü/é', 'fuzz/a/b/'.repeat(3), `fuzz/${'x'.repeat(2000)}`, deepTopic(130),
    'constructor', '__proto__', 'fuzz/__proto__/x',
  ];
}

function filterPool(clientId: string): string[] {
  return [
    '#', '+', '+/#', '+/+/+', 'fuzz/#', 'fuzz/+/b', 'fuzz/a/b', 'fuzz/a/#', `fuzz/${clientId}/#`, 'other/#',
    '$SYS/#', '$tokenmq/#', '$foo/#', '$+/#', 'fuzz/a/#/b', 'a+', 'fuzz/#/', '', 'fuzz/\u0000', deepTopic(130),
    `fuzz/${'y'.repeat(3000)}`, '$share/g/fuzz/#', HEARTBEAT_TOPIC, 'constructor', '__proto__/#',
  ];
}

interface ConnectPlan {
  protocolId: string;
  protocolVersion: number;
  clientId: string;
  clean: boolean;
  keepalive: number;
  username?: string;
  password?: Buffer;
  will?: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean };
}

function connectPacket(plan: ConnectPlan): Buffer {
  const packet = {
    cmd: 'connect', protocolId: plan.protocolId, protocolVersion: plan.protocolVersion, clientId: plan.clientId,
    clean: plan.clean, keepalive: plan.keepalive, username: plan.username, password: plan.password, will: plan.will,
  };
  // mqtt-packet refuses some combinations (e.g. a password without a username in 3.1.1): build them by hand.
  return gen(packet, plan.protocolVersion === 5) ?? handConnect(plan);
}

function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(Math.min(b.length, 0xffff));
  return Buffer.concat([len, b.subarray(0, 0xffff)]);
}

function handConnect(plan: ConnectPlan): Buffer {
  let flags = plan.clean ? 0x02 : 0;
  const parts: Buffer[] = [str(plan.clientId)];
  if (plan.will) {
    flags |= 0x04 | (plan.will.qos << 3) | (plan.will.retain ? 0x20 : 0);
    parts.push(str(plan.will.topic), str(plan.will.payload));
  }
  if (plan.username !== undefined) {
    flags |= 0x80;
    parts.push(str(plan.username));
  }
  if (plan.password !== undefined) {
    flags |= 0x40;
    parts.push(str(plan.password));
  }
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(plan.keepalive & 0xffff);
  const body = Buffer.concat([str(plan.protocolId), Buffer.from([plan.protocolVersion & 0xff, flags]), keepalive, ...parts]);
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body]);
}

/** A key that is not any token's: near misses of a real one, and plain unknown ones. */
function unknownKey(rng: Rng, real: string): string {
  switch (rng.int(5)) {
    case 0: {
      const i = rng.int(real.length);
      const c = real[i] === 'A' ? 'B' : 'A';
      return real.slice(0, i) + c + real.slice(i + 1);
    }
    case 1: return real.slice(0, real.length - 1);
    case 2: return `${real}x`;
    case 3: return real.toLowerCase() === real ? real.toUpperCase() : real.toLowerCase();
    default: return rng.alnum(64);
  }
}

function malformedKey(rng: Rng): string {
  return rng.pick([
    '', ' ', 'FlespiToken ', 'FlespiToken', 'not a key!', rng.bytes(rng.range(1, 80)).toString('latin1'),
    'x'.repeat(rng.pick([63, 65, 4096, 20_000])), '\u0000'.repeat(64), 'é'.repeat(64), `Bearer ${rng.alnum(64)}`,
  ]);
}

/** Post-CONNECT packets of one stream: every type a client may send, some a client may not. */
function randomOps(rng: Rng, count: number, clientId: string, tag: string, v5: boolean, notes: string[]): Buffer[] {
  const out: Buffer[] = [];
  const qos2Ids: number[] = [];
  const topics = topicPool(clientId);
  const filters = filterPool(clientId);
  const payload = (): Buffer => Buffer.concat([Buffer.from(tag), rng.bytes(rng.pick([0, 1, 8, 64, 300]))]);
  const mid = (): number => rng.chance(0.05) ? 0 : rng.range(1, 65535);
  for (let i = 0; i < count; i++) {
    const op = rng.weighted([
      ['publish', 10], ['subscribe', 5], ['unsubscribe', 2], ['puback', 1], ['pubrec', 1], ['pubrel', 2], ['pubcomp', 1],
      ['pingreq', 2], ['disconnect', 0.6], ['connect', 0.4], ['reserved', 0.3], ['auth', 0.2], ['suback', 0.2],
    ] as const);
    let p: Buffer | null = null;
    if (op === 'publish') {
      const qos = rng.pick([0, 0, 1, 1, 2] as const);
      const messageId = qos > 0 ? mid() : undefined;
      if (qos === 2 && messageId) qos2Ids.push(messageId);
      const topic = rng.pick(topics);
      const retain = rng.chance(0.3);
      // An empty retained payload deletes a retained message: sometimes, on purpose.
      const body = retain && rng.chance(0.1) ? Buffer.alloc(0) : payload();
      p = gen({ cmd: 'publish', topic, payload: body, qos, retain, dup: rng.chance(0.1), messageId }, v5);
      notes.push(`publish q${qos}${retain ? ' retain' : ''} ${JSON.stringify(topic.slice(0, 40))}`);
    } else if (op === 'subscribe') {
      const subs = Array.from({ length: rng.range(1, 3) }, () => ({ topic: rng.pick(filters), qos: rng.pick([0, 1, 2, 2, 3]) }));
      p = gen({ cmd: 'subscribe', messageId: mid(), subscriptions: subs }, v5);
      notes.push(`subscribe ${subs.map((s) => JSON.stringify(s.topic.slice(0, 30))).join(',')}`);
    } else if (op === 'unsubscribe') {
      p = gen({ cmd: 'unsubscribe', messageId: mid(), unsubscriptions: [rng.pick(filters)] }, v5);
      notes.push('unsubscribe');
    } else if (op === 'pubrel') {
      const id = qos2Ids.length > 0 && rng.chance(0.7) ? rng.pick(qos2Ids) : mid();
      p = gen({ cmd: 'pubrel', messageId: id }, v5);
      notes.push(`pubrel ${id}`);
    } else if (op === 'puback' || op === 'pubrec' || op === 'pubcomp') {
      p = gen({ cmd: op, messageId: mid() }, v5);
      notes.push(op);
    } else if (op === 'pingreq') {
      p = gen({ cmd: 'pingreq' }, v5);
      notes.push('pingreq');
    } else if (op === 'disconnect') {
      p = gen({ cmd: 'disconnect' }, v5);
      notes.push('disconnect');
    } else if (op === 'connect') {
      p = connectPacket({ protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 10 });
      notes.push('second connect');
    } else if (op === 'suback') {
      p = gen({ cmd: 'suback', messageId: mid(), granted: [0] }, false);
      notes.push('suback (server-only packet)');
    } else if (op === 'auth') {
      p = Buffer.from([0xf0, 0x00]);
      notes.push('auth (type 15)');
    } else {
      p = Buffer.from([rng.pick([0x00, 0x0f, 0x01]), 0x00]);
      notes.push('reserved type 0');
    }
    if (p) out.push(p);
  }
  return out;
}

/** One mutation of a packet; the note says which. */
function mutate(rng: Rng, p: Buffer, notes: string[], maxPacket: number): Buffer {
  const kind = rng.weighted([
    ['bitflip', 5], ['truncate', 3], ['badLength', 1], ['oversize', 1], ['lengthLie', 2], ['typeSwap', 1], ['garbage', 1], ['dup', 1],
  ] as const);
  const copy = Buffer.from(p);
  switch (kind) {
    case 'bitflip': {
      const n = rng.range(1, 3);
      for (let i = 0; i < n && copy.length > 0; i++) {
        const at = rng.int(copy.length);
        copy[at] = copy[at]! ^ (1 << rng.int(8));
      }
      notes.push(`  ^ bitflip x${n}`);
      return copy;
    }
    case 'truncate': {
      const at = rng.int(Math.max(1, copy.length));
      notes.push(`  ^ truncated at ${at}/${copy.length}`);
      return copy.subarray(0, at);
    }
    case 'badLength':
      notes.push('  ^ remaining length of 5 bytes');
      return Buffer.concat([copy.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]), copy.subarray(headerLength(copy))]);
    case 'oversize': {
      const n = rng.pick([maxPacket + 1, 2 * maxPacket, MAX_BYTES, 16_384]);
      notes.push(`  ^ announces ${n} bytes`);
      return Buffer.concat([copy.subarray(0, 1), varint(n), copy.subarray(headerLength(copy))]);
    }
    case 'lengthLie': {
      const body = copy.subarray(headerLength(copy));
      const n = Math.max(0, body.length + rng.pick([-3, -1, 1, 2, 7, 100]));
      notes.push(`  ^ length ${n} for ${body.length}`);
      return Buffer.concat([copy.subarray(0, 1), varint(n), body]);
    }
    case 'typeSwap':
      copy[0] = rng.int(256);
      notes.push(`  ^ first byte 0x${copy[0]!.toString(16)}`);
      return copy;
    case 'garbage':
      notes.push('  ^ garbage after');
      return Buffer.concat([copy, rng.bytes(rng.range(1, 64))]);
    case 'dup':
      notes.push('  ^ sent twice');
      return Buffer.concat([copy, copy]);
  }
}

/** Splits a stream's packets into writes: packed, one per packet, random cuts, byte by byte. */
function frame(rng: Rng, packets: Buffer[], ws: boolean, notes: string[]): Frame[] {
  const all = Buffer.concat(packets);
  const mode = rng.weighted([['packed', 3], ['perPacket', 4], ['randomCuts', 4], ['bytewise', all.length <= 400 ? 1 : 0]] as const);
  notes.push(`framing ${mode}`);
  const pieces: Buffer[] = [];
  if (mode === 'packed') pieces.push(all);
  else if (mode === 'perPacket') {
    // Sometimes pack a few packets into one write, sometimes split one packet across two.
    for (const p of packets) {
      const last = pieces[pieces.length - 1];
      if (last && rng.chance(0.2)) pieces[pieces.length - 1] = Buffer.concat([last, p]);
      else if (p.length > 1 && rng.chance(0.2)) {
        const at = rng.range(1, p.length - 1);
        pieces.push(p.subarray(0, at), p.subarray(at));
      } else pieces.push(p);
    }
  } else if (mode === 'randomCuts') {
    let at = 0;
    while (at < all.length) {
      const n = Math.min(all.length - at, rng.pick([1, 2, 3, 7, 16, 64, 500, 4096]));
      pieces.push(all.subarray(at, at + n));
      at += n;
    }
  } else {
    for (let i = 0; i < all.length; i++) pieces.push(all.subarray(i, i + 1));
  }
  const frames: Frame[] = [];
  for (const bytes of pieces) {
    if (bytes.length === 0) continue;
    const pause = rng.weighted([[-1, 6], [0, 3], [1, 1], [5, 0.3]] as const);
    const f: Frame = { bytes, pauseMs: pieces.length > 200 ? -1 : pause };
    if (ws && rng.chance(0.03)) f.text = true;
    if (ws && rng.chance(0.08)) f.more = true;
    frames.push(f);
  }
  // A fragmented WebSocket message is normally completed; sometimes it is left open.
  const last = frames[frames.length - 1];
  if (last?.more && rng.chance(0.8)) last.more = false;
  return frames;
}

export interface GenerateOptions {
  maxPacketSize: number;
  /** Probability that a stream is of the refused class. */
  refusedShare?: number;
}

/** The stream number `index` of run `seed`: a pure function of both. */
export function generateStream(seed: number, index: number, keys: FuzzKeys, opts: GenerateOptions): FuzzStream {
  const rng = new Rng(seed, index);
  const cls: StreamClass = rng.chance(opts.refusedShare ?? 0.35) ? 'refused' : 'valid';
  const tag = streamTag(seed, index);
  const notes: string[] = [];
  let transport: StreamTransport = rng.chance(0.4) ? 'ws' : 'tcp';
  const protocols = rng.weighted([[['mqtt'], 8], [['mqttv3.1'], 1], [['mqtt', 'mqttv3.1'], 1], [[], 1]] as const).slice();
  const clientId = rng.weighted([
    [`fz-${rng.int(CLIENT_ID_POOL)}`, 4], [`fz-${seed}-${index}`, 5], ['', 1], [rng.bytes(8).toString('latin1'), 0.5],
  ] as const);
  const pooled = /^fz-\d+$/.test(clientId);
  const packets: Buffer[] = [];
  let why: string;
  // A refused stream's CONNECT is mutated only when no mutation can make it acceptable
  // (a bit flip can turn a near-miss key or a bad protocol level into a valid one).
  let connectMutable = false;

  const validKey = rng.pick(keys.valid);
  const plan: ConnectPlan = {
    protocolId: 'MQTT', protocolVersion: 4, clientId, clean: pooled ? rng.chance(0.5) : true,
    keepalive: rng.pick([0, 1, 10, 60, 65535]), username: validKey.key,
  };
  if (rng.chance(0.15)) {
    plan.protocolId = 'MQIsdp';
    plan.protocolVersion = 3;
    if (plan.clientId.length > 23) plan.clientId = plan.clientId.slice(0, 23);
  }
  // Credentials forms of SPEC §4: FlespiToken prefix, key in the password.
  const form = rng.weighted([['username', 6], ['prefix', 1], ['password', 1], ['both', 1]] as const);
  const place = (key: string): void => {
    if (form === 'prefix') plan.username = `FlespiToken ${key}`;
    else if (form === 'password') {
      plan.username = '';
      plan.password = Buffer.from(key);
    } else if (form === 'both') {
      plan.username = key;
      plan.password = rng.bytes(rng.range(0, 20));
    } else plan.username = key;
  };

  if (cls === 'refused') {
    const r = rng.weighted([
      ['unknown_key', 3], ['malformed_key', 2], ['no_credentials', 1], ['refused_token', 3], ['will_denied', 1],
      ['will_sys', 0.5], ['empty_id_persistent', 1], ['protocol_v5', 1], ['v31_long_id', 0.5], ['bad_protocol', 0.5],
      ['not_connect_first', 1], ['garbage_first', 0.7], ['ws_http', 0.5],
    ] as const);
    why = r;
    if (r === 'unknown_key') place(unknownKey(rng, validKey.key));
    else if (r === 'malformed_key') {
      place(malformedKey(rng));
      connectMutable = true;
    } else if (r === 'no_credentials') {
      delete plan.username;
      delete plan.password;
      connectMutable = true;
    } else if (r === 'refused_token') {
      const k = rng.pick(keys.refused);
      why = `token ${k.kind}`;
      place(k.key);
    } else if (r === 'will_denied') {
      const k = rng.pick(keys.valid.filter((x) => x.willDenied));
      place(k.key);
      plan.will = { topic: k.willDenied!, payload: Buffer.from(`${tag}will`), qos: rng.pick([0, 1, 2] as const), retain: rng.chance(0.5) };
    } else if (r === 'will_sys') {
      place(validKey.key);
      plan.will = { topic: '$SYS/fuzz/will', payload: Buffer.from(`${tag}will`), qos: 0, retain: true };
    } else if (r === 'empty_id_persistent') {
      place(validKey.key);
      plan.clientId = '';
      plan.clean = false;
    } else if (r === 'protocol_v5') {
      plan.protocolVersion = 5;
    } else if (r === 'v31_long_id') {
      plan.protocolId = 'MQIsdp';
      plan.protocolVersion = 3;
      plan.clientId = `fz-${seed}-${index}-${'z'.repeat(24)}`;
    } else if (r === 'bad_protocol') {
      plan.protocolId = rng.pick(['MQTX', 'mqtt', '', 'MQIsdp\u0000', 'MQTT'.repeat(50)]);
      plan.protocolVersion = rng.pick([4, 3, 0, 2, 6, 255]);
      if (plan.protocolId === 'mqtt' && plan.protocolVersion === 4) plan.protocolVersion = 6;
    } else if (r === 'ws_http') {
      transport = 'ws-http';
    }
    if (transport === 'ws-http') {
      const http = rng.pick([
        'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
        'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAA\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
        'GET /other HTTP/1.1\r\n\r\n', 'POST /mqtt HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello', 'GET / HTTP/1.1\r\nHost: x\r\nX: ' + 'y'.repeat(20000) + '\r\n\r\n',
        '',
      ]);
      packets.push(Buffer.from(http, 'latin1'), rng.bytes(rng.range(0, 200)));
      notes.push(`http to the WebSocket port (${http.slice(0, 20).replace(/\r\n/g, ' ')})`);
    } else if (r === 'not_connect_first') {
      // A PUBLISH (retained, tagged) before a CONNECT with a valid key: the first packet must be CONNECT [MQTT-3.1.0-1].
      const first = randomOps(rng, rng.range(1, 3), plan.clientId, tag, false, notes).filter((p) => (p[0]! >> 4) !== 1);
      packets.push(...first, gen({ cmd: 'publish', topic: 'fuzz/a/b', payload: Buffer.from(`${tag}early`), qos: 0, retain: true }, false)!);
      notes.push('retained publish before CONNECT');
      packets.push(connectPacket(plan));
      notes.push('valid CONNECT after');
    } else if (r === 'garbage_first') {
      place(rng.alnum(64));
      connectMutable = true;
      packets.push(rng.bytes(rng.range(1, 40)));
      notes.push('garbage first');
    }
    if (transport !== 'ws-http' && r !== 'not_connect_first') {
      // mqtt-packet writes 'MQTT' for an empty protocol name: a bad one is written by hand.
      let c = r === 'bad_protocol' ? handConnect(plan) : connectPacket(plan);
      notes.push(`CONNECT ${plan.protocolId}/${plan.protocolVersion} (${why}) id=${JSON.stringify(plan.clientId.slice(0, 30))} clean=${plan.clean}${plan.will ? ` will=${plan.will.topic}` : ''}`);
      if (connectMutable && rng.chance(0.15)) c = mutate(rng, c, notes, opts.maxPacketSize);
      packets.push(c);
    }
  } else {
    why = validKey.kind;
    place(validKey.key);
    if (rng.chance(0.3) && validKey.willOk) {
      plan.will = { topic: validKey.willOk, payload: Buffer.from(`${tag}will`), qos: rng.pick([0, 1, 2] as const), retain: rng.chance(0.4) };
    }
    let c = connectPacket(plan);
    notes.push(`CONNECT ${plan.protocolId}/${plan.protocolVersion} (${why}) id=${JSON.stringify(plan.clientId.slice(0, 30))} clean=${plan.clean}${plan.will ? ` will=${plan.will.topic}` : ''}`);
    if (rng.chance(0.05)) c = mutate(rng, c, notes, opts.maxPacketSize);
    packets.push(c);
  }

  // What follows the CONNECT: must change nothing when the CONNECT was refused.
  if (transport !== 'ws-http') {
    const v5 = plan.protocolVersion === 5 || rng.chance(0.05);
    const ops = randomOps(rng, rng.weighted([[0, 1], [rng.range(1, 4), 4], [rng.range(5, 14), 3]] as const), plan.clientId, tag, v5, notes);
    for (const op of ops) {
      if (rng.chance(0.1)) packets.push(mutate(rng, op, notes, opts.maxPacketSize));
      else packets.push(op);
    }
    if (rng.chance(0.05)) {
      packets.push(rng.bytes(rng.range(1, 64)));
      notes.push('trailing garbage');
    }
  }

  const frames = frame(rng, packets, transport === 'ws', notes);
  const ending = rng.weighted([['linger', 6], ['end', 2], ['destroy', 2]] as const);
  return { index, cls, transport, why, protocols, frames, ending, tag, notes };
}

// ---- playing a stream ----------------------------------------------------------------

/**
 * The loopback source address of stream `index` (127.1.0.0 and up, one per stream):
 * the broker's session names its stream by its IP, which no later stream reuses,
 * where a source port may be reused as soon as the stream's socket is gone.
 */
export function streamAddress(index: number): string {
  return `127.${1 + ((index >>> 16) & 127)}.${(index >>> 8) & 255}.${index & 255}`;
}

/** The stream index of a source address from `streamAddress`, or null. */
export function streamOfAddress(ip: string): number | null {
  const m = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m || Number(m[1]) < 1) return null;
  return ((Number(m[1]) - 1) << 16) | (Number(m[2]) << 8) | Number(m[3]);
}

export interface StreamTarget {
  host: string;
  mqttPort: number;
  wsPort: number;
}

export interface StreamResult {
  index: number;
  /** First return code of a CONNACK the broker sent, if one was read. */
  connack: number | null;
  /** The broker closed the connection before the stream's own ending. */
  serverClosed: boolean;
  bytesIn: number;
  ms: number;
  error: string | null;
}

export interface RunTiming {
  /** Linger: a quiet period that counts as "the broker is done answering". */
  idleMs: number;
  /** Linger: longest wait for the broker after the last write. */
  lingerMaxMs: number;
}

const DEFAULT_TIMING: RunTiming = { idleMs: 40, lingerMaxMs: 400 };

function pause(ms: number): Promise<void> {
  if (ms < 0) return Promise.resolve();
  return new Promise((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

/** Watches incoming bytes: the CONNACK code, and quiet periods. */
class Incoming {
  bytes = 0;
  connack: number | null = null;
  private head = Buffer.alloc(0);
  lastData = Date.now();

  onData(d: Buffer): void {
    this.bytes += d.length;
    this.lastData = Date.now();
    if (this.connack === null && this.head.length < 4) {
      this.head = Buffer.concat([this.head, d]).subarray(0, 4);
      if (this.head.length >= 4 && this.head[0] === 0x20 && this.head[1] === 0x02) this.connack = this.head[3]!;
    }
  }
}

/** Waits for `closed`, at most until the broker has been quiet for idleMs or lingerMaxMs passed. */
async function linger(isClosed: () => boolean, incoming: Incoming, closedP: Promise<void>, t: RunTiming): Promise<void> {
  const start = Date.now();
  while (!isClosed() && Date.now() - start < t.lingerMaxMs) {
    const quiet = Date.now() - incoming.lastData;
    if (quiet >= t.idleMs && Date.now() - start >= t.idleMs) return;
    await Promise.race([closedP, pause(Math.max(5, t.idleMs - quiet))]);
  }
}

/** Plays one stream from its own source address (`streamAddress`) and closes it. */
export async function runStream(target: StreamTarget, s: FuzzStream, timing: RunTiming = DEFAULT_TIMING): Promise<StreamResult> {
  const started = Date.now();
  const result: StreamResult = { index: s.index, connack: null, serverClosed: false, bytesIn: 0, ms: 0, error: null };
  try {
    if (s.transport === 'ws') await runWs(target, s, timing, result);
    else await runTcp(target, s, timing, result);
  } catch (err) {
    result.error = (err as Error).message;
  }
  result.ms = Date.now() - started;
  return result;
}

function runTcp(target: StreamTarget, s: FuzzStream, t: RunTiming, result: StreamResult): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const port = s.transport === 'ws-http' ? target.wsPort : target.mqttPort;
    const socket: Socket = netConnect({ host: target.host, port, localAddress: streamAddress(s.index) });
    socket.setNoDelay(true);
    const incoming = new Incoming();
    let closed = false;
    let ending = false;
    const closedP = new Promise<void>((res) => socket.once('close', () => {
      closed = true;
      if (!ending) result.serverClosed = true;
      res();
    }));
    const giveUp = setTimeout(() => { socket.destroy(); reject(new Error('tcp connect timed out')); }, 5000);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => incoming.onData(d));
    socket.once('connect', () => {
      clearTimeout(giveUp);
      void (async () => {
        for (const f of s.frames) {
          if (closed) break;
          socket.write(f.bytes);
          await pause(f.pauseMs);
        }
        if (s.ending === 'linger') await linger(() => closed, incoming, closedP, t);
        ending = true;
        if (s.ending === 'destroy') socket.destroy();
        else {
          socket.end();
          await Promise.race([closedP, pause(300)]);
          socket.destroy();
        }
        await closedP;
        result.connack = incoming.connack;
        result.bytesIn = incoming.bytes;
        resolve();
      })().catch(reject);
    });
  });
}

function runWs(target: StreamTarget, s: FuzzStream, t: RunTiming, result: StreamResult): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`ws://${target.host}:${target.wsPort}/mqtt`, s.protocols, { handshakeTimeout: 5000, localAddress: streamAddress(s.index) });
    let opened = false;
    const incoming = new Incoming();
    let closed = false;
    let ending = false;
    const closedP = new Promise<void>((res) => ws.once('close', () => {
      closed = true;
      if (!ending) result.serverClosed = true;
      res();
    }));
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      result.error = `websocket handshake answered ${res.statusCode}`;
      ws.terminate();
    });
    ws.on('message', (d) => { if (Buffer.isBuffer(d)) incoming.onData(d); });
    ws.once('open', () => {
      opened = true;
      void (async () => {
        for (const f of s.frames) {
          if (closed || ws.readyState !== WebSocket.OPEN) break;
          const data = f.text ? f.bytes.toString('latin1') : f.bytes;
          ws.send(data, { binary: !f.text, fin: !f.more });
          await pause(f.pauseMs);
        }
        if (s.ending === 'linger') await linger(() => closed, incoming, closedP, t);
        ending = true;
        if (s.ending === 'destroy') ws.terminate();
        else {
          ws.close(1000);
          await Promise.race([closedP, pause(300)]);
          ws.terminate();
        }
        await closedP;
        result.connack = incoming.connack;
        result.bytesIn = incoming.bytes;
        resolve();
      })().catch(reject);
    });
    void closedP.then(() => {
      // Refused at the handshake: never opened.
      if (!opened) resolve();
    });
  });
}

/** A stream as text: what it is and its first bytes per frame (for a violation report and replay). */
export function describeStream(s: FuzzStream, maxFrames = 12): Record<string, unknown> {
  return {
    index: s.index, cls: s.cls, transport: s.transport, why: s.why, ending: s.ending, protocols: s.protocols,
    notes: s.notes.slice(0, 40),
    frames: s.frames.slice(0, maxFrames).map((f) => `${f.text ? 'T' : ''}${f.more ? '+' : ''}${f.bytes.subarray(0, 96).toString('hex')}${f.bytes.length > 96 ? `…(${f.bytes.length})` : ''}`),
    frameCount: s.frames.length,
    bytes: s.frames.reduce((n, f) => n + f.bytes.length, 0),
  };
}
