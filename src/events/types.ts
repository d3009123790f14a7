// Events and the broker log (SPEC §8): the record shape and the two narrow
// interfaces the rest of the program sees. No I/O here: the broker emits
// through `EventSink`, the REST API reads through `BrokerLog`, and neither
// imports the other (main.ts wires them).

export const EVENT_NAMES = [
  'connected', 'disconnected', 'refused', 'kicked',
  'token_created', 'token_updated', 'token_deleted', 'token_expired',
] as const;
export type EventName = (typeof EVENT_NAMES)[number];

/** SPEC §8: one event, as published on `$tokenmq/events/<event>/<token_id>` and kept in the log. Never a key. */
export interface BrokerEvent {
  /** UNIX seconds, fractional. */
  time: number;
  event: EventName;
  node: string;
  client_id?: string;
  token_id?: number;
  ip?: string;
  transport?: string;
  reason?: string;
  /** CONNACK return code (`refused`). */
  code?: number;
  /** The token that kicked the session or changed the token. */
  by?: number;
  /** The token fields a change named (`token_updated`). */
  fields?: string[];
}

/** What a caller gives; `time` and `node` are stamped by the sink. */
export type EventInput = Omit<BrokerEvent, 'time' | 'node'>;

/** Where events go (the broker's publisher and the log). Cheap, never throws, never waits. */
export interface EventSink {
  emit(event: EventInput): void;
}

export interface LogQuery {
  /** UNIX seconds: records at or after it. */
  since?: number;
  event?: string;
  /** Records of these tokens only. */
  tokenIds?: readonly number[];
  clientId?: string;
  /** At most this many, newest first. */
  limit: number;
}

/** Raised when the log's backend cannot answer (Redis down): REST answers 503. */
export class LogUnavailableError extends Error {
  override name = 'LogUnavailableError';
}

/** SPEC §8 broker log: bounded, newest first, shared by all nodes with Redis. */
export interface BrokerLog {
  /** Queues a record; returns at once (writes are batched off the MQTT path). */
  append(record: BrokerEvent): void;
  /** Newest first. Rejects with LogUnavailableError when the backend cannot answer (within 2 s). */
  query(q: LogQuery): Promise<BrokerEvent[]>;
  /** Records dropped before reaching the log (buffer full while Redis was down). */
  readonly dropped: number;
  /** Writes what is pending (best effort) and stops. */
  close(): Promise<void>;
}

/** Whether `record` passes the filters of `q` (`limit` aside). */
export function matchesQuery(record: BrokerEvent, q: LogQuery): boolean {
  if (q.since !== undefined && record.time < q.since) return false;
  if (q.event !== undefined && record.event !== q.event) return false;
  if (q.clientId !== undefined && record.client_id !== q.clientId) return false;
  if (q.tokenIds !== undefined && (record.token_id === undefined || !q.tokenIds.includes(record.token_id))) return false;
  return true;
}
