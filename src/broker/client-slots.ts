// What tokenmq keeps on an Aedes client between the steps of its CONNECT:
// the connection's info (from the listener, via `handle`) and what only
// preConnect sees of the CONNECT packet. Kept on the client object under
// symbols no other code knows, rather than in WeakMaps: two property writes
// instead of ephemeron-table inserts per connection (issue 9: connect rate),
// and nothing left once authenticate has read them (set back to undefined,
// never deleted, so that every client keeps one shape).
import type { Client, ConnectPacket } from 'aedes';
import type { ConnectionInfo } from './sessions.js';

const CONNECTION = Symbol('tokenmq.connection');
const CONNECT = Symbol('tokenmq.connect');

/** What only preConnect sees of the CONNECT packet, kept for authenticate. */
export interface ConnectMeta {
  keepalive: number;
  /** MQTT-3.1.3-8: empty client id with clean session 0 (Aedes would invent an id). */
  emptyIdPersistent: boolean;
  /** The CONNECT packet: mqtt-packet's parser keeps it for the connection's lifetime (as its `settings`). */
  packet: ConnectPacket;
}

type Slotted = Client & { [CONNECTION]?: ConnectionInfo; [CONNECT]?: ConnectMeta };

export function setConnection(client: Client, info: ConnectionInfo): void {
  (client as Slotted)[CONNECTION] = info;
}

/** The connection's info while the CONNECT is under way (a session holds it afterwards). */
export function connectionOf(client: Client): ConnectionInfo | undefined {
  return (client as Slotted)[CONNECTION];
}

export function setConnectMeta(client: Client, meta: ConnectMeta): void {
  (client as Slotted)[CONNECT] = meta;
}

/** Reads the connection info and CONNECT meta once, for authenticate, and lets go of both. */
export function takeConnect(client: Client): { conn: ConnectionInfo | undefined; meta: ConnectMeta | undefined } {
  const slotted = client as Slotted;
  const out = { conn: slotted[CONNECTION], meta: slotted[CONNECT] };
  slotted[CONNECTION] = undefined;
  slotted[CONNECT] = undefined;
  return out;
}
