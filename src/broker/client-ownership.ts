// SPEC §4 client id ownership, the broker's side: a CONNECT claims its client
// id in the store (store/owners.ts) before its session exists; a client id held
// by another token's live or persistent session is refused with CONNACK 2
// (no hijacking another device's session or queue), master excepted. A clean
// session gives its claim back when it ends; a persistent one keeps it. When a
// token is deleted (or expires), the persistent sessions it owns are wiped
// through Aedes' persistence: subscriptions and queued messages.
import { randomBytes } from 'node:crypto';
import type { Aedes } from 'aedes';
import type { Logger } from 'pino';
import type { TokenStore } from '../store/types.js';
import type { Session } from './sessions.js';

/** The part of Aedes' persistence a wipe uses (aedes-persistence and aedes-persistence-redis alike). */
interface WipePersistence {
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  outgoingStream(client: { id: string }): AsyncIterable<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<unknown>;
}

export type ClaimOutcome =
  | { ok: true; nonce: string }
  | { ok: false; owner: number };

export interface OwnershipDeps {
  store: TokenStore;
  nodeId: string;
  log: Logger;
}

export class ClientOwnership {
  /** Claims of this node's sessions, for their release; a WeakMap so sessions.ts stays as it is. */
  private readonly nonces = new WeakMap<Session, string>();
  private readonly nonceBase = `${randomBytes(6).toString('hex')}:`;
  private seq = 0;
  private persistence: WipePersistence | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly deps: OwnershipDeps) {}

  /** Listens for deleted tokens (change feed, every node; the store hands each token's records to one). */
  start(aedes: Aedes): void {
    this.persistence = (aedes as unknown as { persistence: WipePersistence }).persistence;
    this.unsubscribe = this.deps.store.onChange((id, kind) => {
      if (kind === 'deleted') void this.dropToken(id);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /**
   * Claims `clientId` for `tokenId`. Rejects like the store does
   * (StoreUnavailableError: CONNACK 3). A record of a token that no longer
   * exists is taken over, and its stored session wiped first, so a new owner
   * never inherits a deleted token's queue.
   */
  async claim(clientId: string, tokenId: number, clean: boolean, master: boolean): Promise<ClaimOutcome> {
    const nonce = `${this.nonceBase}${++this.seq}`;
    const result = await this.deps.store.owners.claim({
      clientId, tokenId, nonce, node: this.deps.nodeId, persistent: !clean, override: master,
    });
    if (!result.ok) return result;
    if (result.orphan) await this.wipe(clientId);
    return { ok: true, nonce };
  }

  /** The claim is now this session's: released when it ends, if clean. */
  bind(session: Session, nonce: string): void {
    this.nonces.set(session, nonce);
  }

  /** A claim whose session never came to be (client gone mid-connect). */
  abandon(clientId: string, nonce: string, clean: boolean): void {
    if (clean) this.release(clientId, nonce);
  }

  /** A session ended: a clean one gives its client id back (unless a newer claim holds it: compare-and-delete). */
  sessionEnded(session: Session): void {
    const nonce = this.nonces.get(session);
    if (nonce === undefined || !session.clean) return;
    this.nonces.delete(session);
    this.release(session.clientId, nonce);
  }

  private release(clientId: string, nonce: string): void {
    this.deps.store.owners.release(clientId, nonce).catch((err: unknown) => {
      // Left behind: the record names a live token's clean claim of this node; a restart of the node makes it stale.
      this.deps.log.warn({ clientId, err: err instanceof Error ? err.message : String(err) }, 'could not release client id');
    });
  }

  /** SPEC §4: deleting a token deletes the persistent sessions it owns. */
  private async dropToken(tokenId: number): Promise<void> {
    try {
      const clientIds = await this.deps.store.owners.dropToken(tokenId);
      for (const clientId of clientIds) await this.wipe(clientId);
      if (clientIds.length > 0) this.deps.log.info({ tokenId, sessions: clientIds.length }, 'stored sessions of a deleted token removed');
    } catch (err) {
      this.deps.log.warn({ tokenId, err: err instanceof Error ? err.message : String(err) }, 'could not remove the stored sessions of a deleted token');
    }
  }

  /** Removes a stored session's subscriptions and queued messages, as Aedes does for a clean CONNECT. */
  private async wipe(clientId: string): Promise<void> {
    const persistence = this.persistence;
    if (persistence === null) return;
    const client = { id: clientId };
    await persistence.cleanSubscriptions(client);
    const queued: unknown[] = [];
    for await (const packet of persistence.outgoingStream(client)) queued.push(packet);
    for (const packet of queued) await persistence.outgoingClearMessageId(client, packet);
  }
}
