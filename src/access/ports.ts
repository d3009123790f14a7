// What the REST API may ask of the rest of the node (SPEC §5), as narrow
// interfaces: the broker implements them, start.ts hands them to buildApi, and
// src/api never imports src/broker (nor knows Aedes). Later: publish, retained,
// subscriptions and the log (the broker API issue) belong here too.

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
  /** Closes sessions with these client ids wherever they are; resolves once the request is out. `by`: the kicking token (SPEC §8). */
  kick(clientIds: string[], reason: string, by?: number): Promise<void>;
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

/** Everything buildApi gets from the node besides the store and the gate. */
export interface ApiPorts {
  sessions: SessionDirectory;
  health: BrokerHealth;
  /** Undefined: `/metrics` is off (404). */
  metrics?: RestMetrics;
}
