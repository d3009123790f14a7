// Runs generated MQTT byte streams (test/helpers/mqtt-fuzz.ts) against a live
// in-process node and checks, as it goes, the properties of issue 8:
//   - the node stays up: no uncaught exception or unhandled rejection, bystanders
//     stay connected and keep receiving a heartbeat published every N streams;
//   - a stream whose CONNECT is refused changes nothing: stored tokens and the
//     retained set are identical before and after each group of refused streams,
//     and no message tagged by a refused stream reaches the `#` bystander or the
//     retained store (SPEC §4: a refused CONNECT gets no session);
//   - a refused-class stream never gets a session (unknown, disabled, ... keys);
//   - no ghost sessions: after each group the broker's registry and Aedes' client
//     table hold the bystanders only;
//   - `$` topics never reach the `#` bystander (MQTT-4.7.2-1, live path);
//   - nothing is logged at warn or above that is not expected.
// Streams run in waves; each wave runs its refused streams together (snapshot
// before and after), then its valid ones.
import mqtt, { type MqttClient } from 'mqtt';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { TokenBroker } from '../../src/broker/index.js';
import type { TokenStore } from '../../src/store/types.js';
import type { Token } from '../../src/tokens/index.js';
import {
  HEARTBEAT_TOPIC, describeStream, generateStream, runStream, streamOfAddress, taggedStream,
  type FuzzKey, type FuzzKeys, type FuzzStream, type RefusedKind, type RunTiming, type StreamResult, type ValidKind,
} from './mqtt-fuzz.js';

export interface FuzzServer {
  store: TokenStore;
  broker: TokenBroker;
  ports: { mqtt: number; ws: number; http: number };
  mqttUrl: string;
  wsUrl: string;
  httpUrl: string;
}

export interface FuzzOptions {
  seed: number;
  count: number;
  /** Streams in flight at once within a group. */
  concurrency?: number;
  /** Streams per wave (each wave: its refused streams, then its valid ones). */
  waveSize?: number;
  heartbeatEvery?: number;
  /** Stop starting new waves after this long (ms); the report says `stopped: "time"`. */
  maxMs?: number;
  maxPacketSize: number;
  /** Play only these stream indexes (replay of a failing stream). */
  only?: number[];
  timing?: RunTiming;
  logs?: LogCapture;
  progress?: (done: number, report: FuzzReport) => void;
}

export interface Violation {
  property: string;
  detail: string;
  stream?: Record<string, unknown>;
}

export interface FuzzReport {
  seed: number;
  requested: number;
  streams: number;
  ms: number;
  byClass: Record<string, number>;
  byTransport: Record<string, number>;
  byWhy: Record<string, number>;
  /** Streams that got a session (registered by the broker). */
  accepted: number;
  serverClosed: number;
  connack: Record<string, number>;
  clientErrors: number;
  refusedGroupsChecked: number;
  heartbeats: number;
  bystanderMessages: number;
  taggedMessages: number;
  retainedAtEnd: number;
  logs: Record<string, number>;
  violations: Violation[];
  stopped?: 'time';
}

// ---- log capture ------------------------------------------------------------

export interface LogRecord { level: number; msg: string; [k: string]: unknown }

export interface LogCapture {
  log: Logger;
  /** Records at or above the capture level (the first 500 kept). */
  records: LogRecord[];
  /** Count per `level:msg`. */
  counts: Map<string, number>;
}

/** A pino logger whose records at `level`+ are kept in memory (classified by the caller). */
export function captureLogs(level = 'warn'): LogCapture {
  const records: LogRecord[] = [];
  const counts = new Map<string, number>();
  const log = pino({ level }, {
    write(line: string): void {
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        rec = { level: 60, msg: `unparsable log line: ${line.slice(0, 200)}` };
      }
      const k = `${rec.level}:${rec.msg}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
      if (records.length < 500) records.push(rec);
    },
  });
  return { log, records, counts };
}

// ---- tokens -------------------------------------------------------------------------

/** Tokens the streams present: valid ones with ACLs of a few entries, and refused ones. */
export async function createFuzzTokens(store: TokenStore): Promise<FuzzKeys> {
  const now = Math.floor(Date.now() / 1000);
  const ttl = 7 * 86400;
  const acl = (entries: object[]) => ({ type: 2 as const, acl: entries as never });
  const specs: { kind: ValidKind | RefusedKind; input: object; willOk?: string; willDenied?: string }[] = [
    { kind: 'standard', input: { access: { type: 0 } }, willOk: 'fuzz/a/will', willDenied: '$SYS/fuzz/will' },
    { kind: 'standard', input: { access: { type: 0 }, info: 'fuzz standard 2' }, willOk: 'other/will' },
    { kind: 'master', input: { access: { type: 1 } }, willOk: 'fuzz/x/will' },
    {
      kind: 'acl', willOk: 'fuzz/a/will', willDenied: 'other/will',
      input: { access: acl([
        { uri: 'mqtt', topic: 'fuzz/a/#', actions: ['publish', 'subscribe'] },
        { uri: 'mqtt', topic: 'fuzz/+/b', actions: ['subscribe'] },
        { uri: 'mqtt', topic: 'fuzz/${clientid}/#', actions: ['publish', 'subscribe'] },
      ]) },
    },
    {
      kind: 'acl', willOk: 'other/will', willDenied: 'fuzz/a/will',
      input: { access: acl([
        { uri: 'mqtt', topic: 'other/#', actions: ['publish'] },
        { uri: 'mqtt', topic: 'fuzz/x/#', actions: ['subscribe'] },
        { uri: 'mqtt', topic: '$SYS/#', actions: ['subscribe'] },
      ]) },
    },
    {
      kind: 'acl', willOk: 'fuzz/a/b', willDenied: 'fuzz/a/c',
      input: { access: acl([
        { uri: 'mqtt', topic: '#', actions: ['subscribe'] },
        { uri: 'mqtt', topic: 'fuzz/a/b', actions: ['publish'] },
        { uri: 'mqtt/sessions', methods: ['GET'] },
      ]) },
    },
    { kind: 'disabled', input: { access: { type: 0 }, enabled: false } },
    { kind: 'ip_denied', input: { access: { type: 0 }, ips: '10.*, 192.168.0.0/16' } },
    { kind: 'no_mqtt', input: { access: acl([{ uri: 'mqtt/sessions', methods: ['GET'] }]) } },
  ];
  const created = await store.create(specs.map((s) => ({ ttl, info: `fuzz ${s.kind}`, ...s.input })), now);
  const keys: FuzzKeys = { valid: [], refused: [] };
  specs.forEach((s, i) => {
    const t = created[i]!;
    if (s.kind === 'disabled' || s.kind === 'ip_denied' || s.kind === 'no_mqtt') {
      keys.refused.push({ kind: s.kind, key: t.key, tokenId: t.id } satisfies FuzzKey<RefusedKind>);
    } else {
      keys.valid.push({ kind: s.kind, key: t.key, tokenId: t.id, willOk: s.willOk, willDenied: s.willDenied });
    }
  });
  return keys;
}

// ---- state snapshots ----------------------------------------------------------------

interface Snapshot {
  tokens: string;
  retained: Map<string, string>;
}

interface RetainedPacket { topic: string; payload: Buffer | string; qos: number }

async function retainedSet(broker: TokenBroker): Promise<Map<string, string>> {
  const persistence = (broker.aedes as unknown as { persistence: { createRetainedStream(p: string): AsyncIterable<RetainedPacket> } }).persistence;
  const out = new Map<string, string>();
  // '#' in the persistence's own matcher includes `$` topics (see PITFALLS): the whole set.
  for await (const p of persistence.createRetainedStream('#')) {
    out.set(p.topic, `${p.qos}:${Buffer.from(p.payload).toString('base64')}`);
  }
  return out;
}

async function snapshot(srv: FuzzServer, bystanderTokens: Set<number>): Promise<Snapshot> {
  // The bystanders' own `accessed` moves with their periodic touch: not the streams' doing.
  const tokens = (await srv.store.get('all')).map((t: Token) => (bystanderTokens.has(t.id) ? { ...t, accessed: 0 } : t));
  return { tokens: JSON.stringify(tokens), retained: await retainedSet(srv.broker) };
}

function diffRetained(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of b) if (a.get(k) !== v) out.push(`${a.has(k) ? 'changed' : 'added'} ${JSON.stringify(k.slice(0, 60))}`);
  for (const k of a.keys()) if (!b.has(k)) out.push(`removed ${JSON.stringify(k.slice(0, 60))}`);
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- the run -------------------------------------------------------------------------

interface Bystander { client: MqttClient; clientId: string; heartbeats: Set<string>; waiters: Map<string, () => void> }

async function bystander(url: string, key: string, clientId: string, filter: string, onMessage: (topic: string, payload: Buffer) => void): Promise<Bystander> {
  const client = await mqtt.connectAsync(url, { username: key, clientId, reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30 });
  const b: Bystander = { client, clientId, heartbeats: new Set(), waiters: new Map() };
  client.on('message', (topic, payload) => {
    if (topic === HEARTBEAT_TOPIC) {
      const s = payload.toString();
      b.heartbeats.add(s);
      b.waiters.get(s)?.();
    }
    onMessage(topic, payload);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return b;
}

async function pool<T>(items: T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await task(items[next++]!);
  }));
}

export async function runFuzz(srv: FuzzServer, opts: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const concurrency = opts.concurrency ?? 16;
  const waveSize = opts.waveSize ?? 48;
  const heartbeatEvery = opts.heartbeatEvery ?? 100;
  const report: FuzzReport = {
    seed: opts.seed, requested: opts.only?.length ?? opts.count, streams: 0, ms: 0, byClass: {}, byTransport: {}, byWhy: {},
    accepted: 0, serverClosed: 0, connack: {}, clientErrors: 0, refusedGroupsChecked: 0, heartbeats: 0, bystanderMessages: 0,
    taggedMessages: 0, retainedAtEnd: 0, logs: {}, violations: [],
  };
  const violate = (property: string, detail: string, stream?: FuzzStream): void => {
    if (report.violations.length < 200) report.violations.push({ property, detail, ...(stream ? { stream: describeStream(stream) } : {}) });
  };
  const inc = (o: Record<string, number>, k: string): void => { o[k] = (o[k] ?? 0) + 1; };

  // The node must stay up: any uncaught error in this process is a violation.
  const onUncaught = (err: unknown): void => violate('no_uncaught_error', `uncaught exception: ${String((err as Error)?.stack ?? err)}`);
  const onRejection = (err: unknown): void => violate('no_uncaught_error', `unhandled rejection: ${String((err as Error)?.stack ?? err)}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onRejection);

  const keys = await createFuzzTokens(srv.store);
  const [hbToken, hbAcl] = await srv.store.create([
    { ttl: 7 * 86400, info: 'fuzz bystander', access: { type: 0 } },
    { ttl: 7 * 86400, info: 'fuzz bystander acl', access: { type: 2, acl: [{ uri: 'mqtt', topic: HEARTBEAT_TOPIC, actions: ['subscribe'] }] } },
  ], Math.floor(Date.now() / 1000));
  const bystanderTokens = new Set([hbToken!.id, hbAcl!.id]);

  // The broker's side of each connection, from the moment Aedes gets it: a stream the
  // client has finished may still be in its CONNECT here (Aedes pauses reading while
  // it authenticates), so a wave is over only when these have closed too.
  const aedesHandle = srv.broker.aedes as unknown as { handle(stream: Duplex, req?: IncomingMessage): object };
  const originalHandle = aedesHandle.handle;
  const serverConns = new Set<Duplex>();
  aedesHandle.handle = (stream, req) => {
    serverConns.add(stream);
    stream.once('close', () => serverConns.delete(stream));
    return originalHandle.call(aedesHandle, stream, req);
  };

  // Which stream a session belongs to: each stream connects from its own address (streamAddress).
  const acceptedStreams = new Set<number>();
  srv.broker.registry.onChange((kind, session) => {
    if (kind !== 'added') return;
    const idx = streamOfAddress(session.conn.ip);
    if (idx !== null) acceptedStreams.add(idx);
  });

  // Messages at the `#` bystander: tags name the stream that published them.
  const tagged: { idx: number; topic: string }[] = [];
  const onBystanderMessage = (topic: string, payload: Buffer): void => {
    report.bystanderMessages++;
    if (topic.startsWith('$')) violate('dollar_topics_not_via_wildcard', `'#' subscriber received ${JSON.stringify(topic)} (MQTT-4.7.2-1)`);
    const idx = taggedStream(opts.seed, payload);
    if (idx !== null) tagged.push({ idx, topic });
  };
  const rand = Math.random().toString(36).slice(2, 10);
  const b1 = await bystander(srv.mqttUrl, hbToken!.key, `bystander-tcp-${rand}`, '#', onBystanderMessage);
  const b2 = await bystander(srv.wsUrl, hbAcl!.key, `bystander-ws-${rand}`, HEARTBEAT_TOPIC, () => {});
  const bystanders = [b1, b2];
  let finished = false;
  for (const b of bystanders) {
    b.client.on('close', () => { if (!finished) violate('bystander_stays_connected', `${b.clientId} was disconnected`); });
  }

  const streamsByIndex = new Map<number, FuzzStream>();
  const refusedIdx = new Set<number>();
  let checkedTags = 0;
  const checkTags = (): void => {
    for (; checkedTags < tagged.length; checkedTags++) {
      const t = tagged[checkedTags]!;
      report.taggedMessages++;
      if (!acceptedStreams.has(t.idx)) {
        violate('refused_stream_changes_nothing', `message of stream ${t.idx} (no session) delivered on ${JSON.stringify(t.topic.slice(0, 60))}`, streamsByIndex.get(t.idx));
      }
    }
  };
  const checkRetainedTags = (retained: Map<string, string>): void => {
    for (const [topic, v] of retained) {
      const payload = Buffer.from(v.slice(v.indexOf(':') + 1), 'base64');
      const idx = taggedStream(opts.seed, payload);
      if (idx !== null && !acceptedStreams.has(idx)) {
        violate('refused_stream_changes_nothing', `retained message of stream ${idx} (no session) on ${JSON.stringify(topic.slice(0, 60))}`, streamsByIndex.get(idx));
      }
    }
  };

  const expectedClients = new Set(bystanders.map((b) => b.clientId));
  const aedes = srv.broker.aedes as unknown as { connectedClients: number; clients: Record<string, unknown> };
  // Ghosts already reported: each is reported once, later waves compare against them.
  let knownDrift = 0;
  let knownConns = bystanders.length;
  const ghosts = (): string[] => {
    const extra = new Set<string>();
    for (const s of srv.broker.registry.all()) if (!expectedClients.has(s.clientId)) extra.add(`registry:${s.clientId}`);
    for (const id of Object.keys(aedes.clients)) if (!expectedClients.has(id)) extra.add(`aedes:${id}`);
    if (aedes.connectedClients !== expectedClients.size + knownDrift) extra.add(`aedes.connectedClients=${aedes.connectedClients}`);
    if (serverConns.size > knownConns) extra.add(`open connections=${serverConns.size}`);
    return [...extra];
  };
  /** Every stream has ended: the broker must drop back to the bystanders (no ghost sessions). */
  const quiesce = async (what: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (ghosts().length > 0) {
      if (Date.now() > deadline) {
        const g = ghosts();
        violate('no_ghost_sessions', `${what}: still held 10 s after every stream closed: ${g.slice(0, 10).join(', ')}`);
        // Carry on with these as known, so one leak is reported once.
        for (const s of srv.broker.registry.all()) expectedClients.add(s.clientId);
        for (const id of Object.keys(aedes.clients)) expectedClients.add(id);
        knownDrift = aedes.connectedClients - expectedClients.size;
        knownConns = serverConns.size;
        return;
      }
      await sleep(10);
    }
  };
  /** Settled state: two equal snapshots in a row (wills and retained writes are asynchronous). */
  const stableSnapshot = async (): Promise<Snapshot> => {
    let a = await snapshot(srv, bystanderTokens);
    for (let i = 0; i < 20; i++) {
      await sleep(15);
      const b = await snapshot(srv, bystanderTokens);
      if (b.tokens === a.tokens && diffRetained(a.retained, b.retained).length === 0) return b;
      a = b;
    }
    return a;
  };

  let hbSeq = 0;
  const heartbeat = async (): Promise<void> => {
    const payload = `hb:${++hbSeq}:${rand}`;
    const got = bystanders.map((b) => (b.heartbeats.has(payload) ? Promise.resolve(true) : new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { b.waiters.delete(payload); resolve(false); }, 10_000);
      b.waiters.set(payload, () => { clearTimeout(timer); b.waiters.delete(payload); resolve(true); });
    })));
    try {
      await b1.client.publishAsync(HEARTBEAT_TOPIC, payload, { qos: 1 });
    } catch (err) {
      violate('heartbeat', `publishing heartbeat ${hbSeq} failed: ${(err as Error).message}`);
    }
    const results = await Promise.all(got);
    results.forEach((ok, i) => { if (!ok) violate('heartbeat', `${bystanders[i]!.clientId} did not receive heartbeat ${hbSeq} within 10 s`); });
    report.heartbeats++;
  };

  const target = { host: '127.0.0.1', mqttPort: srv.ports.mqtt, wsPort: srv.ports.ws };
  const playGroup = async (group: FuzzStream[]): Promise<StreamResult[]> => {
    const results: StreamResult[] = [];
    await pool(group, concurrency, async (s) => {
      results.push(await runStream(target, s, opts.timing));
    });
    return results;
  };
  const account = (results: StreamResult[], group: FuzzStream[]): void => {
    for (const r of results) {
      const s = group.find((x) => x.index === r.index)!;
      report.streams++;
      inc(report.byClass, s.cls);
      inc(report.byTransport, s.transport);
      inc(report.byWhy, s.why);
      if (acceptedStreams.has(r.index)) report.accepted++;
      if (r.serverClosed) report.serverClosed++;
      inc(report.connack, r.connack === null ? 'none' : String(r.connack));
      if (r.error) report.clientErrors++;
    }
  };

  const indexes = opts.only ?? Array.from({ length: opts.count }, (_, i) => i);
  let lastHeartbeatAt = 0;
  let lastProgress = 0;
  for (let w = 0; w < indexes.length; w += waveSize) {
    if (opts.maxMs !== undefined && Date.now() - started > opts.maxMs) {
      report.stopped = 'time';
      break;
    }
    const wave = indexes.slice(w, w + waveSize).map((i) => generateStream(opts.seed, i, keys, { maxPacketSize: opts.maxPacketSize }));
    for (const s of wave) {
      streamsByIndex.set(s.index, s);
      if (s.cls === 'refused') refusedIdx.add(s.index);
    }
    const refused = wave.filter((s) => s.cls === 'refused');
    const valid = wave.filter((s) => s.cls === 'valid');

    if (refused.length > 0) {
      const before = await stableSnapshot();
      const results = await playGroup(refused);
      await quiesce(`after refused streams ${refused[0]!.index}..`);
      const after = await stableSnapshot();
      report.refusedGroupsChecked++;
      for (const s of refused) {
        if (acceptedStreams.has(s.index)) violate('refused_stream_gets_no_session', `stream ${s.index} (${s.why}) got a session`, s);
      }
      if (after.tokens !== before.tokens) {
        violate('refused_stream_changes_nothing', `stored tokens changed during refused streams ${refused.map((s) => s.index).join(',')}`);
      }
      const d = diffRetained(before.retained, after.retained);
      if (d.length > 0) {
        violate('refused_stream_changes_nothing', `retained set changed during refused streams ${refused.map((s) => s.index).join(',')}: ${d.slice(0, 5).join('; ')}`,
          refused.length === 1 ? refused[0] : undefined);
      }
      account(results, refused);
    }
    if (valid.length > 0) {
      const results = await playGroup(valid);
      await quiesce(`after valid streams ${valid[0]!.index}..`);
      // Disconnect-time `accessed` writes land now, not during the next refused group.
      await srv.broker.enforcement.flushTouches(true);
      account(results, valid);
    }
    checkTags();
    // A heartbeat each time the count passes a multiple of heartbeatEvery.
    if (Math.floor(report.streams / heartbeatEvery) > lastHeartbeatAt) {
      lastHeartbeatAt = Math.floor(report.streams / heartbeatEvery);
      await heartbeat();
    }
    if (opts.progress && report.streams - lastProgress >= 1000) {
      lastProgress = report.streams;
      report.ms = Date.now() - started;
      opts.progress(report.streams, report);
    }
  }

  // The end: one more heartbeat, the tags and retained set attributed, only the bystanders left.
  await heartbeat();
  await quiesce('at the end');
  checkTags();
  const final = await stableSnapshot();
  checkRetainedTags(final.retained);
  report.retainedAtEnd = final.retained.size;
  const left = srv.broker.registry.all().map((s) => s.clientId).sort();
  const want = bystanders.map((b) => b.clientId).sort();
  if (JSON.stringify(left) !== JSON.stringify(want)) violate('no_ghost_sessions', `registry at the end: ${left.slice(0, 10).join(', ')}`);

  // Still serving: fresh connections over both transports.
  for (const url of [srv.mqttUrl, srv.wsUrl]) {
    try {
      const c = await mqtt.connectAsync(url, { username: hbToken!.key, reconnectPeriod: 0, connectTimeout: 5000 });
      await c.endAsync();
    } catch (err) {
      violate('node_stays_up', `a fresh connection to ${url} failed: ${(err as Error).message}`);
    }
  }
  finished = true;
  await Promise.all(bystanders.map((b) => b.client.endAsync()));
  aedesHandle.handle = originalHandle;
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onRejection);

  if (opts.logs) {
    for (const [k, n] of opts.logs.counts) report.logs[k] = n;
    for (const r of opts.logs.records) {
      if (!expectedLog(r)) violate('no_unexpected_log', `${r.level} ${r.msg}: ${JSON.stringify(r).slice(0, 400)}`);
    }
  }
  report.ms = Date.now() - started;
  return report;
}

/** Records at warn+ that a fuzz run may legitimately produce. None so far: every one is reported. */
export function expectedLog(_r: LogRecord): boolean {
  return false;
}
