// What the REST API may ask of the rest of the node (SPEC §5), as narrow
// interfaces: the broker implements them, start.ts hands them to buildApi, and
// src/api never imports src/broker (nor knows Aedes). Publish, retained messages
// and subscriptions (SPEC §5, the broker API issue) are here too; the log is
// src/events/types.ts's BrokerLog.

export type Transport = 'tcp' | 'ws' | 'tls' | 'wss';

/** SPEC §5 session object. */
export interface SessionView {
  client_id: string;
  token_id: number;
  ip: string;
  transport: Transport;
  node: string;
  connected: number;
  clean: boolean;
  keepalive: number;
  subscriptions: { topic: string; qos: number }[];
  msgs_in: number;
  msgs_out: number;
  bytes_in: number;
  bytes_out: number;
}

/** Live sessions on every node, and kicks (SPEC §5, §6). */
export interface SessionDirectory {
  /** Live sessions on every node. */
  list(): Promise<SessionView[]>;
  /** How long a node may take to list another node's new session (ms; absent or 0: at once). */
  readonly listingDelayMs?: number;
  /** Closes sessions with these client ids wherever they are; resolves once the request is out. `by`: the kicking token (SPEC §8). */
  kick(clientIds: string[], reason: string, by?: number): Promise<void>;
  /** Removes subscription `filter` from these sessions on whichever node holds them (SubscriptionsPort); unset: this node only. */
  removeSubscription?(clientIds: readonly string[], filter: string): Promise<void>;
  /** SPEC §8: the sessions of a node that died, reported once (by the node that notices). */
  onNodeDown?(listener: NodeDownListener): void;
  close(): Promise<void>;
}

export type NodeDownListener = (node: string, sessions: SessionView[]) => void;

/** `GET /health` (SPEC §5): whether this node's broker runs, and what it holds. */
export interface BrokerHealth {
  readonly node: string;
  /** False once the broker is closed (or closing). */
  readonly up: boolean;
  /** Live sessions on this node. */
  readonly sessionCount: number;
}

/** What the API reports to the metrics (`GET /metrics` renders them). */
export interface RestMetrics {
  readonly contentType: string;
  render(): Promise<string>;
  /** A REST authentication attempt took `seconds`. */
  observeRestAuth(seconds: number): void;
  /** One REST request answered: route pattern, method, status. */
  countRequest(route: string, method: string, status: number): void;
}

/** A message published over REST (SPEC §5 `POST /mqtt/messages`), already authorised. */
export interface OutgoingMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
}

/** Publishes through the broker, so it reaches subscribers on every node (SPEC §5, §6). */
export interface PublishPort {
  publish(message: OutgoingMessage): Promise<void>;
}

/** A retained message as the retained store holds it. */
export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  qos: number;
}

/** The retained store (SPEC §5 `GET`/`DELETE /mqtt/messages/{filter}`): in cluster mode the shared one. */
export interface RetainedPort {
  /** Retained messages whose topic matches `filter` (the `$` rule of MQTT-4.7.2-1 applied). */
  list(filter: string): Promise<RetainedMessage[]>;
  /** Clears these topics in the retained store without delivering anything. */
  clear(topics: readonly string[]): Promise<void>;
}

/** SPEC §5 `DELETE /mqtt/sessions/{sel}/subscriptions/{filter}`. */
export interface SubscriptionsPort {
  /**
   * Removes subscription `filter` from the sessions with these client ids, on
   * whichever node holds them; resolves once the request is out.
   */
  remove(clientIds: readonly string[], filter: string): Promise<void>;
  /** The stored subscriptions of a persistent session (offline: SPEC §5 reads them from persistence); [] when none. */
  stored(clientId: string): Promise<{ topic: string; qos: number }[]>;
  /** Removes `filter` from a persistent session's stored subscriptions (its queue then takes no more for it). */
  removeStored(clientId: string, filter: string): Promise<void>;
}

/** Everything buildApi gets from the node besides the store and the gate. */
export interface ApiPorts {
  sessions: SessionDirectory;
  health: BrokerHealth;
  publish: PublishPort;
  retained: RetainedPort;
  subscriptions: SubscriptionsPort;
  /** Undefined: `/metrics` is off (404). */
  metrics?: RestMetrics;
}
