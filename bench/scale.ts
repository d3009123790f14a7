// Scale run (issue 9): many concurrent sessions on one node, each publishing one
// message every period to its own topic and subscribed to it, plus dashboards
// subscribed to `#` on ACL tokens. For tokenmq (memory store, ACL tokens) and
// bare Aedes as shipped, one after the other in the same run: broker RSS, CPU %,
// event-loop delay p99 (monitorEventLoopDelay in the broker process) and
// end-to-end latency p50/p99 (device → itself, device → dashboards).
// Brokers, device clients and dashboards run in separate processes.
// Prints one JSON line.
//   npm run bench:scale   (BENCH_SESSIONS=20000, BENCH_WINDOW_S=30, BENCH_PERIOD_S=10, BENCH_CLIENT_PROCS=2)
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { benchAcl, startBroker, type BrokerKind } from './brokers.js';
import {
  fileLimit, forkChild, loopbackSources, onRequest, openClients, round, selfPath, settledMemory, tell,
  type Child, type ConnectSpec, type IdleClient, runAs } from './lib-pairs.js';
import type { AclEntry } from '../src/tokens/types.js';

const REQUESTED = Number(process.env.BENCH_SESSIONS ?? 20_000);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 30);
const PERIOD_S = Number(process.env.BENCH_PERIOD_S ?? 10);
const CLIENT_PROCS = Number(process.env.BENCH_CLIENT_PROCS ?? 2);
const DASHBOARDS = 10;
const SESSIONS_PER_TOKEN = 10;
/** Descriptors the broker needs beside its sessions (listeners, dashboards, stdio, IPC). */
const FD_MARGIN = 200;
/** Latency samples kept per process (reservoir): enough for a p99. */
const SAMPLES = 100_000;
const SELF = selfPath(import.meta.url);
const LOOP_RESOLUTION_MS = 5;

/** Wall-clock ms with sub-ms precision, comparable between processes on one machine. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Keeps a uniform sample of at most SAMPLES values. */
class Reservoir {
  values: number[] = [];
  seen = 0;
  add(v: number): void {
    this.seen++;
    if (this.values.length < SAMPLES) this.values.push(v);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < SAMPLES) this.values[j] = v;
    }
  }
  reset(): void {
    this.values = [];
    this.seen = 0;
  }
}

function latencyOf(payload: Buffer | string | undefined): number {
  return Buffer.isBuffer(payload) && payload.length >= 8 ? nowMs() - payload.readDoubleBE(0) : NaN;
}

// ---- broker child ----

async function brokerChild(kind: BrokerKind, sessions: number): Promise<void> {
  const fleet: AclEntry[] = benchAcl();
  const dashboard: AclEntry[] = [{ uri: 'mqtt', topic: 'devices/#', actions: ['subscribe'] }, ...benchAcl().slice(1)];
  const tokenCount = Math.ceil(sessions / SESSIONS_PER_TOKEN);
  const tokens = kind === 'bare'
    ? [{}]
    : [
      ...Array.from({ length: tokenCount }, () => ({ ttl: 86_400, access: { type: 2 as const, acl: fleet } })),
      ...Array.from({ length: DASHBOARDS }, () => ({ ttl: 86_400, access: { type: 2 as const, acl: dashboard } })),
    ];
  const { broker, keys } = await startBroker(kind, { tokens });
  const deviceKey = (i: number): string => keys[kind === 'bare' ? 0 : Math.floor(i / SESSIONS_PER_TOKEN)]!;
  const dashboardKey = (i: number): string => keys[kind === 'bare' ? 0 : tokenCount + i]!;
  // The histogram records each sampling interval whole: the delay is what exceeds the resolution.
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  const delayMs = (ns: number): number => round(Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS), 2);
  let cpu = process.cpuUsage();
  let started = 0;
  onRequest(async (msg) => {
    if (msg.type === 'window') {
      loop.reset();
      loop.enable();
      cpu = process.cpuUsage();
      started = performance.now();
      tell({ type: 'window' });
    } else if (msg.type === 'stats') {
      loop.disable();
      const used = process.cpuUsage(cpu);
      const seconds = (performance.now() - started) / 1000;
      const rss = process.memoryUsage().rss;
      const settled = await settledMemory();
      tell({
        type: 'stats',
        sessions: broker.sessions(),
        rss_mb: round(rss / 2 ** 20, 1),
        heap_mb_after_gc: round(settled.heapUsed / 2 ** 20, 1),
        cpu_percent: round((100 * (used.user + used.system)) / 1e6 / seconds, 1),
        event_loop_delay_p50_ms: delayMs(loop.percentile(50)),
        event_loop_delay_p99_ms: delayMs(loop.percentile(99)),
        event_loop_delay_max_ms: delayMs(loop.max),
        tcp_nodelay: broker.noDelay(),
      });
    }
  });
  const devices: ConnectSpec[] = Array.from({ length: sessions }, (_, i) => ({ clientId: `dev-${i}`, username: deviceKey(i) }));
  const dashboards: ConnectSpec[] = Array.from({ length: DASHBOARDS }, (_, i) => ({ clientId: `dash-${i}`, username: dashboardKey(i) }));
  tell({ type: 'ready', port: broker.port, devices, dashboards });
}

// ---- device / dashboard client child ----

function clientChild(): void {
  let clients: IdleClient[] = [];
  const own = new Reservoir();
  const wide = new Reservoir();
  let published = 0;
  let received = 0;
  const timers: NodeJS.Timeout[] = [];
  onRequest(async (msg) => {
    if (msg.type === 'open') {
      const dashboards = msg.dashboards === true;
      const specs = msg.specs as ConnectSpec[];
      clients = await openClients(specs, {
        port: msg.port as number,
        concurrency: 100,
        localAddresses: loopbackSources(Math.ceil(specs.length / 8000) + 1),
        keepalive: 0,
        onPacket: (_client, packet) => {
          if (packet.cmd !== 'publish') return;
          received++;
          (dashboards ? wide : own).add(latencyOf(packet.payload as Buffer));
        },
      });
      // Each device subscribes to its own topic; a dashboard to everything.
      let acked = 0;
      await new Promise<void>((resolve, reject) => {
        if (clients.length === 0) resolve();
        for (const c of clients) {
          c.parser.on('packet', (p) => {
            if (p.cmd !== 'suback') return;
            if (p.granted.some((g) => (g as unknown) === 0x80)) reject(new Error(`SUBSCRIBE refused for ${c.spec.clientId}`));
            if (++acked === clients.length) resolve();
          });
          c.write({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: dashboards ? '#' : `devices/${c.spec.clientId}/data`, qos: 0 }] });
        }
      });
      tell({ type: 'opened', count: clients.length });
    } else if (msg.type === 'start') {
      // One message per device per period, spread evenly over the period.
      const periodMs = (msg.periodMs as number);
      clients.forEach((c, i) => {
        const first = setTimeout(() => {
          const send = (): void => {
            const payload = Buffer.alloc(8);
            payload.writeDoubleBE(nowMs(), 0);
            c.write({ cmd: 'publish', topic: `devices/${c.spec.clientId}/data`, payload, qos: 0, retain: false, dup: false });
            published++;
          };
          send();
          timers.push(setInterval(send, periodMs));
        }, (periodMs * i) / clients.length);
        timers.push(first);
      });
      tell({ type: 'started' });
    } else if (msg.type === 'reset') {
      own.reset();
      wide.reset();
      published = 0;
      received = 0;
      tell({ type: 'reset' });
    } else if (msg.type === 'report') {
      for (const t of timers) clearInterval(t);
      tell({ type: 'report', own: own.values, ownSeen: own.seen, wide: wide.values, wideSeen: wide.seen, published, received });
    }
  });
}

// ---- main ----

interface Report { own: number[]; ownSeen: number; wide: number[]; wideSeen: number; published: number; received: number }

/** Percentiles of the union of several reservoirs, each weighted by how many it stood for. */
function merged(parts: { values: number[]; seen: number }[]): { p50_ms: number; p99_ms: number; samples: number } {
  const weighted: [number, number][] = [];
  for (const p of parts) for (const v of p.values) if (Number.isFinite(v)) weighted.push([v, p.seen / Math.max(1, p.values.length)]);
  weighted.sort((a, b) => a[0] - b[0]);
  const total = weighted.reduce((n, [, w]) => n + w, 0);
  const at = (q: number): number => {
    let acc = 0;
    for (const [v, w] of weighted) {
      acc += w;
      if (acc >= q * total) return v;
    }
    return NaN;
  };
  return { p50_ms: round(at(0.5), 2), p99_ms: round(at(0.99), 2), samples: parts.reduce((n, p) => n + p.seen, 0) };
}

async function run(kind: BrokerKind, sessions: number): Promise<Record<string, unknown>> {
  const broker = forkChild(SELF, ['broker', kind, String(sessions)], { gc: true });
  const children: Child[] = [];
  try {
    const ready = await broker.next<{ port: number; devices: ConnectSpec[]; dashboards: ConnectSpec[] }>('ready');
    const t0 = Date.now();
    const per = Math.ceil(ready.devices.length / CLIENT_PROCS);
    for (let p = 0; p < CLIENT_PROCS; p++) children.push(forkChild(SELF, ['clients']));
    await Promise.all(children.map((c, p) => c.ask({ type: 'open', port: ready.port, specs: ready.devices.slice(p * per, (p + 1) * per) }, 'opened', 600_000)));
    const connectS = (Date.now() - t0) / 1000;
    const dash = forkChild(SELF, ['clients']);
    children.push(dash);
    await dash.ask({ type: 'open', port: ready.port, specs: ready.dashboards, dashboards: true }, 'opened');
    const periodMs = PERIOD_S * 1000;
    await Promise.all(children.slice(0, CLIENT_PROCS).map((c) => c.ask({ type: 'start', periodMs }, 'started')));
    // One full period to reach the steady rate, then the measured window.
    await sleep(periodMs);
    await Promise.all(children.map((c) => c.ask({ type: 'reset' }, 'reset')));
    await broker.ask({ type: 'window' }, 'window');
    await sleep(WINDOW_S * 1000);
    const stats = await broker.ask<Record<string, unknown>>({ type: 'stats' }, 'stats', 120_000);
    const reports = await Promise.all(children.map((c) => c.ask<Report>({ type: 'report' }, 'report', 120_000)));
    const devices = reports.slice(0, CLIENT_PROCS);
    const dashReport = reports[CLIENT_PROCS]!;
    const published = devices.reduce((n, r) => n + r.published, 0);
    const ownReceived = devices.reduce((n, r) => n + r.received, 0);
    const { type: _type, ...brokerStats } = stats;
    return {
      ...brokerStats,
      connect_s: round(connectS, 1),
      published_per_s: round(published / WINDOW_S, 0),
      deliveries_per_s: round((ownReceived + dashReport.received) / WINDOW_S, 0),
      own_delivered_ratio: round(ownReceived / Math.max(1, published), 4),
      dashboard_delivered_ratio: round(dashReport.received / Math.max(1, published * DASHBOARDS), 4),
      latency_own: merged(devices.map((r) => ({ values: r.own, seen: r.ownSeen }))),
      latency_dashboards: merged([{ values: dashReport.wide, seen: dashReport.wideSeen }]),
    };
  } finally {
    // The broker first: the sockets' TIME_WAIT then stays on its side.
    await broker.kill();
    await Promise.all(children.map((c) => c.kill()));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  const limit = await fileLimit();
  const sessions = Math.min(REQUESTED, Number.isFinite(limit) ? limit - FD_MARGIN : REQUESTED);
  const result: Record<string, unknown> = {
    bench: 'scale', node: process.version, sessions_requested: REQUESTED, sessions, open_files_limit: limit,
    ...(sessions < REQUESTED ? { note: `capped by the open-files limit (${limit}); raise the hard limit for ${REQUESTED}` } : {}),
    period_s: PERIOD_S, window_s: WINDOW_S, dashboards: DASHBOARDS, client_processes: CLIENT_PROCS,
  };
  result.tokenmq = await run('tokenmq', sessions);
  result.bare_aedes = await run('bare', sessions);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

runAs(SELF, { broker: ([kind, n]) => brokerChild(kind as BrokerKind, Number(n)), clients: () => clientChild() }, main);
