// The private parts of Aedes 1.2 (and of its mqtt-packet parser and
// persistence) that tokenmq reads or replaces, typed in one place. Aedes does
// not export them and may change them in any release: an upgrade starts here
// (and in aedes-fixes.ts, whose workarounds are about these same internals).
// Every cast from an Aedes object to its internals goes through a function below.
import type { Aedes, Client } from 'aedes';

/** mqtt-packet's Parser as Aedes holds it per client (`client._parser`). */
export interface ParserInternals {
  _parseLength(): boolean;
  _emitError(err: Error): void;
  packet: { length: number };
  /** Set by Aedes: the client this parser reads for. */
  client?: Client;
}

interface StoredSubscriptionPersistence {
  removeSubscriptions?: (client: unknown, topics: string[]) => Promise<unknown>;
  subscriptionsByClient?: (client: { id: string }) => Promise<{ topic: string }[]>;
}

/** An Aedes client's private state. */
export interface ClientInternals {
  /** The will of the CONNECT being handled (set before `authenticate`). */
  _will?: { topic: string } | null;
  /** The will packet Aedes publishes when the session ends abnormally (same object it hands authorizePublish). */
  will?: unknown;
  /** Live subscriptions by filter. */
  subscriptions?: Record<string, { qos?: number }>;
  _parser?: ParserInternals;
  clean: boolean;
  broker?: { persistence?: StoredSubscriptionPersistence };
  unsubscribe(packet: { unsubscriptions: string[] }, done?: (err?: Error) => void): void;
}

export function clientInternals(client: Client): ClientInternals {
  return client as unknown as ClientInternals;
}

/** The will topic of a CONNECT in progress, if it has a will. */
export function connectWill(client: Client): { topic: string } | null | undefined {
  return clientInternals(client)._will;
}

/** Whether `packet` is the will Aedes holds for this client (authorizePublish). */
export function isClientWill(client: Client, packet: unknown): boolean {
  return packet === clientInternals(client).will;
}

/** A client's live subscriptions (filter → options); empty when none. */
export function subscriptionsOf(client: Client): Record<string, { qos?: number }> {
  return clientInternals(client).subscriptions ?? {};
}

export function parserOf(client: Client): ParserInternals | undefined {
  return clientInternals(client)._parser;
}

interface TableClient {
  id: string;
  closed: boolean;
  will?: unknown;
}

/** Aedes' table of connected clients and its registration steps. */
export interface AedesTable {
  clients: Record<string, TableClient>;
  registerClient(client: TableClient): void;
  unregisterClient(client: TableClient): void;
  _finishRegisterClient(client: TableClient): void;
  persistence: {
    putWill(client: unknown, packet: unknown): Promise<unknown>;
    delWill(client: { id: string; brokerId: string }): Promise<unknown>;
  };
}

export function clientTableOf(aedes: Aedes): AedesTable {
  return aedes as unknown as AedesTable;
}

export type { TableClient };
