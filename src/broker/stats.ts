// Plain counters kept by the hooks; the metrics module reads them at scrape
// time, so the per-message paths pay one integer increment and nothing else.

/** Why a CONNECT ended as it did (label values of tokenmq_connects_total). */
export const CONNECT_RESULTS = [
  'ok', 'bad_key', 'expired', 'disabled', 'ip_denied', 'no_mqtt_rights', 'will_denied',
  'store_unavailable', 'rate_limited', 'client_id_rejected', 'token_unreadable', 'session_limit',
] as const;
export type ConnectResult = (typeof CONNECT_RESULTS)[number];

export class BrokerStats {
  readonly connects: Record<ConnectResult, number> = Object.fromEntries(CONNECT_RESULTS.map((r) => [r, 0])) as Record<ConnectResult, number>;
  publishes = 0;
  deliveries = 0;
  refusedPublishes = 0;
  refusedSubscribes = 0;
  filteredDeliveries = 0;
  storeErrors = 0;
  dropped = 0;
  /** QoS 0 deliveries not sent to WebSocket clients whose send buffer was at its cap (ws-stream.ts). */
  wsDropped = 0;
  /** Called once per CONNECT with its duration (seconds); metrics hooks a histogram here. */
  onAuthDuration: (seconds: number) => void = () => {};
}
