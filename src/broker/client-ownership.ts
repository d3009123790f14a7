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
import type { AdmitRequest, AdmitResult, SessionSlot, TokenStore } from '../store/types.js';
import type { SlotLimit } from '../store/owners.js';
import type { Session } from './sessions.js';

/** The part of Aedes' persistence a wipe uses (aedes-persistence and aedes-persistence-redis alike). */
interface WipePersistence {
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  outgoingStream(client: { id: string }): AsyncIterable<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<unknown>;
}

/** What an admitted CONNECT holds until its session ends (or is given up). */
export interface Claim {
  readonly clientId: string;
  readonly clean: boolean;
  /** The nonce of all its claims. */
  readonly nonce: string;
  /** One per counted token: its own, then each ancestor's (SPEC §2 parent). */
  readonly slots: readonly SessionSlot[];
  /** What the claims replaced (undo), slotPrevious one per slot. */
  readonly ownerPrevious: string | null;
  readonly slotPrevious: readonly (string | null)[];
}

export type Admission =
  | { ok: true; claim: Claim }
  | { ok: false; code: 2 | 5; reason: 'client_id_rejected' | 'session_limit'; message: string };

const HELD_BY_OTHER: Admission = { ok: false, code: 2, reason: 'client_id_rejected', message: 'client id held by another token' };
const LIMIT_REACHED: Admission = { ok: false, code: 5, reason: 'session_limit', message: 'token limits.sessions reached' };

export interface OwnershipDeps {
  store: TokenStore;
  nodeId: string;
  log: Logger;
}

export class ClientOwnership {
  /**
   * Nonces are this fixed-length random prefix (48 bits, as before) and a base-36 sequence
   * number, joined into one flat string: a template literal of 13+ characters is a V8 cons
   * string (two more objects), and every session keeps its nonce (issue 9: 56 -> 32 bytes).
   */
  private readonly nonceBase = randomBytes(6).toString('base64url');
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
   * SPEC §2 and §4 for one CONNECT, the last checks before its session exists:
   * the client id's ownership, then a slot of the token's `limits.sessions`,
   * checked and claimed in one store call (owners.ts `admit`). Refusals in SPEC
   * order: client id (CONNACK 2) before limits (CONNACK 5).
   * Rejects like the store does (StoreUnavailableError: CONNACK 3). A record of
   * a token that no longer exists is taken over, and its stored session wiped
   * first, so a new owner never inherits a deleted token's queue.
   */
  admit(clientId: string, tokenId: number, clean: boolean, master: boolean, counts: readonly SlotLimit[]): Admission | Promise<Admission> {
    const req = this.request(clientId, clean);
    const claim = { clientId, nonce: req.nonce, node: req.node, persistent: req.persistent, tokenId, override: master };
    const owners = this.deps.store.owners;
    const slotTokens = counts.map((c) => c.tokenId);
    // One store call (Redis: one script) checks and claims all; a refusal wrote nothing.
    // An in-process store answers at once: no promise unless a wipe is due (issue 9).
    if (owners.admitNow !== undefined) return this.admitted(req, slotTokens, owners.admitNow(claim, counts));
    return owners.admit(claim, counts).then((admitted) => this.admitted(req, slotTokens, admitted));
  }

  /** A CONNECT's claim request, for `admit` or the store's find-and-admit (one round trip with the lookup). */
  request(clientId: string, clean: boolean): AdmitRequest {
    return { clientId, nonce: [this.nonceBase, (++this.seq).toString(36)].join(''), node: this.deps.nodeId, persistent: !clean };
  }

  /**
   * What the store answered for `req` as an Admission: its claim, in the slots of
   * `slotTokens` (the token's own, then its ancestors'), after wiping the stored
   * session of a deleted token whose record it took over. Answered at once unless a wipe is due.
   */
  admitted(req: AdmitRequest, slotTokens: readonly number[], admitted: AdmitResult): Admission | Promise<Admission> {
    if (!admitted.ok) return admitted.refused === 'owner' ? HELD_BY_OTHER : LIMIT_REACHED;
    const claim = this.claimOf(req, slotTokens, admitted);
    if (!admitted.orphan) return { ok: true, claim };
    return this.wipe(req.clientId).then(() => ({ ok: true, claim }), (err: unknown) => {
      void this.abandon(claim);
      throw err;
    });
  }

  /** The claim a granted admission made (to bind to its session, or to give back). */
  claimOf(req: AdmitRequest, slotTokens: readonly number[], admitted: AdmitResult & { ok: true }): Claim {
    const { clientId, nonce, node } = req;
    const slots = slotTokens.map((tokenId): SessionSlot => ({ tokenId, clientId, nonce, node }));
    return { clientId, clean: !req.persistent, nonce, slots, ownerPrevious: admitted.ownerPrevious, slotPrevious: admitted.slotPrevious };
  }

  /**
   * The claim is now this session's: released when it ends. The session keeps
   * only the nonce and any ancestors (what the undo needed is dropped).
   */
  bind(session: Session, claim: Claim): void {
    session.claimNonce = claim.nonce;
    session.claimAncestors = claim.slots.length > 1 ? claim.slots.slice(1).map((slot) => slot.tokenId) : null;
  }

  /** Claims whose session never came to be (client gone mid-connect): put back what they replaced. */
  abandon(claim: Claim): Promise<void> {
    const undone = claim.slots.map((slot, i) => this.undoSlot(slot, claim.slotPrevious[i] ?? null));
    undone.push(this.deps.store.owners.undo(claim.clientId, claim.nonce, claim.ownerPrevious)
      .catch((err: unknown) => this.failed('undo', claim.clientId, err)));
    // Resolves once every undo answered (a failed one is logged): never rejects.
    return Promise.all(undone).then(() => {});
  }

  /**
   * A session ended: its slot is freed and, when clean, its client id given
   * back (unless a newer claim holds them: compare-and-delete).
   */
  sessionEnded(session: Session): void {
    const nonce = session.claimNonce;
    if (nonce === null) return;
    session.claimNonce = null;
    const { clientId } = session;
    const node = this.deps.nodeId;
    const slots: SessionSlot[] = [{ tokenId: session.tokenId, clientId, nonce, node }];
    for (const tokenId of session.claimAncestors ?? []) slots.push({ tokenId, clientId, nonce, node });
    const owners = this.deps.store.owners;
    if (owners.endSessionNow === undefined) {
      owners.endSession(slots, session.clean).catch((err: unknown) => this.failed('release', clientId, err));
      return;
    }
    try {
      owners.endSessionNow(slots, session.clean);
    } catch (err) {
      this.failed('release', clientId, err);
    }
  }

  private undoSlot(slot: SessionSlot, previous: string | null): Promise<void> {
    return this.deps.store.owners.undoSlot(slot, previous).catch((err: unknown) => this.failed('slot undo', slot.clientId, err));
  }

  private failed(what: string, clientId: string, err: unknown): void {
    // Left behind: a claim of a live node; it goes stale when the node stops (store/redis-owners.ts).
    this.deps.log.warn({ clientId, err: err instanceof Error ? err.message : String(err) }, `client id claim: ${what} failed`);
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
