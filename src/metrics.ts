// Prometheus metrics (SPEC §5 `GET /metrics`). The broker keeps plain counters
// (broker/stats.ts); they are read here at scrape time, so the per-message
// paths pay nothing for metrics. One prom-client Registry per call: tests and
// several brokers in one process never share metric state.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CONNECT_RESULTS, type TokenBroker } from './broker/index.js';
import type { TokenStore } from './store/types.js';

export interface MetricsDeps {
  broker: TokenBroker;
  store: TokenStore;
  /** Node.js process metrics (CPU, memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
  /** Upper bound for the store's count() during a scrape, ms (default 1000). */
  storeTimeoutMs?: number;
  /** SPEC §8: records the broker log had to drop (buffer full while Redis was down). */
  brokerLog?: { readonly dropped: number };
}

export interface Metrics {
  readonly registry: Registry;
  /** Content-Type of `render()`'s text. */
  readonly contentType: string;
  render(): Promise<string>;
  /** A REST authentication attempt took `seconds` (MQTT ones come from the broker's stats). */
  observeRestAuth(seconds: number): void;
  /** One REST request answered: route pattern (e.g. `/platform/tokens/:sel`), method, status. */
  countRequest(route: string, method: string, status: number): void;
}

const PREFIX = 'tokenmq_';
const AUTH_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** A counter whose value is read from elsewhere at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name: PREFIX + name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function createMetrics(deps: MetricsDeps): Metrics {
  const { broker, store } = deps;
  const stats = broker.stats;
  const registry = new Registry();
  // Unprefixed (process_*, nodejs_*), as the usual Node.js dashboards expect them.
  if (deps.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  new Gauge({
    name: `${PREFIX}sessions`,
    help: 'Live MQTT sessions on this node, by transport',
    labelNames: ['transport'] as const,
    registers: [registry],
    collect() {
      for (const [transport, count] of Object.entries(broker.registry.countByTransport())) this.set({ transport }, count);
    },
  });

  new Counter({
    name: `${PREFIX}connects_total`,
    help: 'MQTT CONNECT attempts by result (ok or the refusal cause)',
    labelNames: ['result'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const result of CONNECT_RESULTS) this.inc({ result }, stats.connects[result]);
    },
  });

  mirroredCounter(registry, 'publishes_total', 'PUBLISH packets accepted from clients', () => stats.publishes);
  mirroredCounter(registry, 'deliveries_total', 'Messages delivered to subscribers', () => stats.deliveries);
  mirroredCounter(registry, 'filtered_deliveries_total', 'Deliveries withheld because the receiver may not read the topic', () => stats.filteredDeliveries);
  mirroredCounter(registry, 'refused_publishes_total', 'PUBLISH packets refused (connection closed, MQTT-3.3.5-2)', () => stats.refusedPublishes);
  mirroredCounter(registry, 'refused_subscribes_total', 'Subscriptions refused (SUBACK 0x80)', () => stats.refusedSubscribes);
  mirroredCounter(registry, 'sessions_dropped_total', 'Sessions closed by the broker (revocation, expiry, kick)', () => stats.dropped);
  mirroredCounter(registry, 'ws_dropped_total', 'QoS 0 deliveries dropped for WebSocket clients that read too slowly (send buffer at its cap)', () => stats.wsDropped);
  const brokerLog = deps.brokerLog;
  if (brokerLog) {
    mirroredCounter(registry, 'log_dropped_total', 'Broker log records dropped before reaching the log (buffer full while Redis was down)', () => brokerLog.dropped);
  }
  mirroredCounter(registry, 'store_errors_total', 'Token store operations that failed (broker and REST API)', () => stats.storeErrors);

  // Two unlabelled histograms: observe() without labels is prom-client's cheap path (REST auth runs per request).
  const mqttAuth = new Histogram({
    name: `${PREFIX}auth_duration_seconds`,
    help: 'Time to authenticate a MQTT CONNECT (token lookup and checks)',
    buckets: AUTH_BUCKETS,
    registers: [registry],
  });
  const restAuth = new Histogram({
    name: `${PREFIX}rest_auth_duration_seconds`,
    help: 'Time to authenticate and authorise a REST request (token lookup and checks)',
    buckets: AUTH_BUCKETS,
    registers: [registry],
  });
  stats.onAuthDuration = (seconds) => mqttAuth.observe(seconds);

  // One count() per scrape, shared by the two gauges that report it.
  let counting: Promise<number | null> | null = null;
  const countTokens = (): Promise<number | null> => {
    counting ??= withTimeout(Promise.resolve().then(() => store.count()), deps.storeTimeoutMs ?? 1000)
      .catch(() => null)
      .finally(() => { counting = null; });
    return counting;
  };
  new Gauge({
    name: `${PREFIX}store_up`,
    help: '1 when the token store answered the token count of this scrape, else 0',
    registers: [registry],
    async collect() {
      this.set((await countTokens()) === null ? 0 : 1);
    },
  });
  // A failed count keeps the last known value (stale); store_up tells.
  new Gauge({
    name: `${PREFIX}tokens`,
    help: 'Stored tokens (not yet expired), as of the last successful count',
    registers: [registry],
    async collect() {
      const count = await countTokens();
      if (count !== null) this.set(count);
    },
  });

  // Counted in a plain map per request, copied into the counter at scrape time.
  const requestCounts = new Map<string, { labels: { route: string; method: string; status: string }; count: number }>();
  new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'REST requests answered, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, count } of requestCounts.values()) this.inc(labels, count);
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    observeRestAuth: (seconds) => restAuth.observe(seconds),
    countRequest(route, method, status) {
      const id = `${status} ${method} ${route}`;
      const entry = requestCounts.get(id);
      if (entry) entry.count++;
      else requestCounts.set(id, { labels: { route, method, status: String(status) }, count: 1 });
    },
  };
}
