// Client id ownership (SPEC §4): which token holds a client id, so that no
// other token can take over a device's live session or its stored persistent
// session (subscriptions, queued messages). aedes-persistence-redis records no
// owner, and stores nothing for a `clean: false` session without
// subscriptions, so tokenmq keeps its own record: client id → token id, the
// claim's nonce, the node that claimed it and whether the session persists.
//
// A record is set by every admitted CONNECT (live sessions, clean or not), kept
// when a persistent session ends, and removed when a clean session ends (by
// compare-and-delete of its nonce: a late disconnect of a session taken over
// never frees its successor's record) or when its token is deleted.

/** One CONNECT's claim of its client id. */
export interface OwnerClaim {
  clientId: string;
  tokenId: number;
  /** Unique per claim: what a later release must present. */
  nonce: string;
  /** The node holding the session (Redis: a clean claim of a dead node is stale). */
  node: string;
  /** `clean: false`: the record outlives the connection. */
  persistent: boolean;
  /** Master (SPEC §4): takes the client id over whoever holds it. */
  override: boolean;
}

export type ClaimResult =
  /**
   * Claimed; `orphan` when it replaced the record of a token that no longer
   * exists (its stored session is to be wiped); `previous`: the same token's
   * record it replaced (opaque, for `undo`), null when there was none.
   */
  | { ok: true; orphan: boolean; previous: string | null }
  /** Held by another token. */
  | { ok: false; owner: number };

export interface ClientOwners {
  /** Atomic: claims the client id unless another live token holds it. */
  claim(claim: OwnerClaim): Promise<ClaimResult>;
  /** Removes the record if it is still this claim's (same nonce). */
  release(clientId: string, nonce: string): Promise<void>;
  /**
   * Takes back a claim whose session never came to be: the record goes back to
   * `previous` (what the claim replaced), or away when there was none, if it is
   * still this claim's. So an aborted CONNECT neither frees a persistent
   * session's record nor leaves one a live session can no longer release.
   */
  undo(clientId: string, nonce: string, previous: string | null): Promise<void>;
  /** Removes every record of this token; resolves to their client ids (once: a second call finds none). */
  dropToken(tokenId: number): Promise<string[]>;
  /** The token holding this client id, or null (tests, REST). */
  owner(clientId: string): Promise<number | null>;

  /**
   * SPEC §2 `limits.sessions`: takes one of the token's session slots for this
   * client id, atomically across nodes. Granted when the client id already
   * holds one (a takeover of the token's own session does not count twice) or
   * when fewer than `limit` are held (0 = unlimited, still counted, so that a
   * limit set later sees the live sessions). The slot then names this claim
   * (`nonce`), so a late release of a session taken over frees nothing.
   */
  claimSlot(slot: SessionSlot, limit: number): Promise<SlotClaim | null>;
  /** Frees the slot if it still names this claim (compare-and-delete). */
  releaseSlot(slot: SessionSlot): Promise<void>;
  /** Takes back a slot claim whose session never came to be (as `undo`). */
  undoSlot(slot: SessionSlot, previous: string | null): Promise<void>;
  /** Slots held by the token (tests). */
  slotCount(tokenId: number): Promise<number>;

  /**
   * One CONNECT's claims at once (Redis: one script, so one round trip per
   * CONNECT): the client id's ownership as `claim`, then a session slot as
   * `claimSlot` in each of `slots` (the token's own count, then each
   * ancestor's: SPEC §2 a child's sessions count toward each ancestor's
   * `limits.sessions`). SPEC §2 order: a client id held by another token
   * refuses before any limit does. A refusal writes nothing, so there is
   * nothing to undo. A slot is taken even when its limit is 0 (unlimited): a
   * limit set later on a token with live sessions must see them (SPEC §2
   * "Lowering a limit below the live count refuses new CONNECTs").
   */
  admit(claim: OwnerClaim, slots: readonly SlotLimit[]): Promise<AdmitResult>;
  /**
   * A session ended (one round trip): frees its slots (all of one client id,
   * nonce and node) and, when `releaseOwner` (a clean session), its client id
   * record, each only if it still names this claim (compare-and-delete).
   */
  endSession(slots: readonly SessionSlot[], releaseOwner: boolean): Promise<void>;
  /**
   * In-process stores: `admit` and `endSession` answered at once (no promise per
   * CONNECT and DISCONNECT: issue 9, the CONNECT path's cost). Same contract.
   */
  admitNow?(claim: OwnerClaim, slots: readonly SlotLimit[]): AdmitResult;
  endSessionNow?(slots: readonly SessionSlot[], releaseOwner: boolean): void;
}

/** A token's session count that a CONNECT takes a slot of, and its `limits.sessions` (0 = unlimited). */
export interface SlotLimit {
  tokenId: number;
  limit: number;
}

/** A CONNECT's claim as the store's find-and-admit takes it (the token's id, limit and override come from the store). */
export interface AdmitRequest {
  clientId: string;
  nonce: string;
  node: string;
  persistent: boolean;
  /**
   * Keys (of the caller's own data in the same Redis) whose existence to report
   * in the same round trip: find-and-admit answers `probed`, one flag per key
   * (the broker asks whether a clean CONNECT's client id has an offline queue,
   * stored subscriptions, a stored will). Opaque to the store.
   */
  probeKeys?: readonly string[];
}

export type AdmitResult =
  /** All claimed; `orphan`/`ownerPrevious` as ClaimResult, `slotPrevious` as SlotClaim's, one per slot in order. */
  | { ok: true; orphan: boolean; ownerPrevious: string | null; slotPrevious: (string | null)[] }
  /** SPEC §4: held by another token (CONNACK 2). */
  | { ok: false; refused: 'owner'; owner: number }
  /** SPEC §2: the `limits.sessions` of this token (`tokenId`: it or an ancestor) are all taken (CONNACK 5). */
  | { ok: false; refused: 'limit'; tokenId: number };

/** A granted slot: `previous` is the holder it replaced (a takeover), null when it was free. */
export interface SlotClaim {
  previous: string | null;
}

/** One live session's hold on a token's session count. */
export interface SessionSlot {
  tokenId: number;
  clientId: string;
  nonce: string;
  /** Redis: a slot of a node that stopped renewing its liveness is freed when the count is full. */
  node: string;
}

/**
 * What one token holds of a client id: the nonce of its record of the client id
 * (`owner`) and of its session slot (`slot`), either null. Most of the time both
 * are one claim's: then the nonce string alone stands for the pair (no object).
 */
class Pair {
  constructor(readonly owner: string | null, readonly slot: string | null) {}
}
type Held = string | Pair;

const ownerOf = (held: Held | undefined): string | null => held === undefined ? null : typeof held === 'string' ? held : held.owner;
const slotOf = (held: Held | undefined): string | null => held === undefined ? null : typeof held === 'string' ? held : held.slot;

/** One token's client id records and session slots (one map for both), and its slot count. */
class TokenHold {
  readonly held = new Map<string, Held>();
  slots = 0;
  constructor(readonly tokenId: number) {}
}

/**
 * One node, in memory: a clean claim dies with the process, so there is no stale node to think of
 * (nor a `persistent` flag to keep: nothing here reads it).
 *
 * Issue 9, memory per idle session: per client id, one entry in `byClient` (its owner token's
 * hold, shared) and one in that token's map (the nonce). No record object, no Set or Map per
 * client id, nothing else per token but its one map.
 */
export class MemoryOwners implements ClientOwners {
  /** Client id → the hold of the token owning its record. Invariant: that hold has an `owner` nonce for it. */
  private readonly byClient = new Map<string, TokenHold>();
  /** A token's hold, while it holds anything. */
  private readonly byToken = new Map<number, TokenHold>();

  /** `exists`: whether a token id is stored (a record of a deleted token is an orphan). */
  constructor(private readonly exists: (tokenId: number) => boolean) {}

  async claim(c: OwnerClaim): Promise<ClaimResult> {
    return this.claimNow(c);
  }

  private claimNow(c: OwnerClaim): ClaimResult {
    const cur = this.byClient.get(c.clientId);
    let orphan = false;
    // Opaque to callers (undo hands it back): the nonce of the same token's record it replaces.
    const previous = cur !== undefined && cur.tokenId === c.tokenId ? JSON.stringify({ nonce: ownerOf(cur.held.get(c.clientId)) }) : null;
    if (cur !== undefined && cur.tokenId !== c.tokenId) {
      const gone = !this.exists(cur.tokenId);
      if (!gone && !c.override) return { ok: false, owner: cur.tokenId };
      orphan = gone;
      this.setOwner(cur, c.clientId, null);
    }
    const hold = this.hold(c.tokenId);
    this.setOwner(hold, c.clientId, c.nonce);
    this.byClient.set(c.clientId, hold);
    return { ok: true, orphan, previous };
  }

  async undo(clientId: string, nonce: string, previous: string | null): Promise<void> {
    const hold = this.byClient.get(clientId);
    if (hold === undefined || ownerOf(hold.held.get(clientId)) !== nonce) return;
    if (previous === null) return this.releaseNow(clientId, nonce);
    this.setOwner(hold, clientId, (JSON.parse(previous) as { nonce: string }).nonce);
  }

  async release(clientId: string, nonce: string): Promise<void> {
    this.releaseNow(clientId, nonce);
  }

  private releaseNow(clientId: string, nonce: string): void {
    const hold = this.byClient.get(clientId);
    if (hold === undefined || ownerOf(hold.held.get(clientId)) !== nonce) return;
    this.byClient.delete(clientId);
    this.setOwner(hold, clientId, null);
  }

  async dropToken(tokenId: number): Promise<string[]> {
    const hold = this.byToken.get(tokenId);
    if (hold === undefined) return [];
    this.byToken.delete(tokenId); // its slots with it
    const out: string[] = [];
    for (const [id, held] of hold.held) {
      if (ownerOf(held) === null) continue;
      this.byClient.delete(id);
      out.push(id);
    }
    return out;
  }

  async owner(clientId: string): Promise<number | null> {
    return this.byClient.get(clientId)?.tokenId ?? null;
  }

  async admit(c: OwnerClaim, slots: readonly SlotLimit[]): Promise<AdmitResult> {
    return this.admitNow(c, slots);
  }

  admitNow(c: OwnerClaim, slots: readonly SlotLimit[]): AdmitResult {
    // Every check before any write: nothing to undo on refusal. All of it runs before any other caller.
    const cur = this.byClient.get(c.clientId);
    if (cur !== undefined && cur.tokenId !== c.tokenId && !c.override && this.exists(cur.tokenId)) {
      return { ok: false, refused: 'owner', owner: cur.tokenId };
    }
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i] as SlotLimit;
      if (!this.slotFree(s.tokenId, c.clientId, s.limit)) return { ok: false, refused: 'limit', tokenId: s.tokenId };
    }
    const o = this.claimNow(c);
    if (!o.ok) throw new Error('owners: claim refused after its checks passed');
    const slotPrevious: (string | null)[] = [];
    for (let i = 0; i < slots.length; i++) {
      const taken = this.claimSlotNow((slots[i] as SlotLimit).tokenId, c.clientId, c.nonce, 0);
      if (taken === null) throw new Error('owners: claim refused after its checks passed');
      slotPrevious.push(taken.previous);
    }
    return { ok: true, orphan: o.orphan, ownerPrevious: o.previous, slotPrevious };
  }

  async endSession(slots: readonly SessionSlot[], releaseOwner: boolean): Promise<void> {
    this.endSessionNow(slots, releaseOwner);
  }

  endSessionNow(slots: readonly SessionSlot[], releaseOwner: boolean): void {
    for (let i = 0; i < slots.length; i++) this.releaseSlotNow(slots[i] as SessionSlot);
    const first = slots[0];
    if (releaseOwner && first !== undefined) this.releaseNow(first.clientId, first.nonce);
  }

  private slotFree(tokenId: number, clientId: string, limit: number): boolean {
    const hold = this.byToken.get(tokenId);
    return limit <= 0 || hold === undefined || slotOf(hold.held.get(clientId)) !== null || hold.slots < limit;
  }

  async claimSlot(slot: SessionSlot, limit: number): Promise<SlotClaim | null> {
    return this.claimSlotNow(slot.tokenId, slot.clientId, slot.nonce, limit);
  }

  private claimSlotNow(tokenId: number, clientId: string, nonce: string, limit: number): SlotClaim | null {
    const hold = this.hold(tokenId);
    const previous = slotOf(hold.held.get(clientId));
    if (previous === null && limit > 0 && hold.slots >= limit) {
      if (hold.held.size === 0) this.byToken.delete(tokenId);
      return null;
    }
    this.setSlot(hold, clientId, nonce);
    if (previous === null) hold.slots++;
    return { previous };
  }

  async undoSlot(slot: SessionSlot, previous: string | null): Promise<void> {
    const hold = this.byToken.get(slot.tokenId);
    if (hold === undefined || slotOf(hold.held.get(slot.clientId)) !== slot.nonce) return;
    if (previous === null) return this.releaseSlotNow(slot);
    this.setSlot(hold, slot.clientId, previous);
  }

  async releaseSlot(slot: SessionSlot): Promise<void> {
    this.releaseSlotNow(slot);
  }

  private releaseSlotNow(slot: SessionSlot): void {
    const hold = this.byToken.get(slot.tokenId);
    if (hold === undefined || slotOf(hold.held.get(slot.clientId)) !== slot.nonce) return;
    hold.slots--;
    this.setSlot(hold, slot.clientId, null);
  }

  async slotCount(tokenId: number): Promise<number> {
    return this.byToken.get(tokenId)?.slots ?? 0;
  }

  private hold(tokenId: number): TokenHold {
    let hold = this.byToken.get(tokenId);
    if (hold === undefined) this.byToken.set(tokenId, (hold = new TokenHold(tokenId)));
    return hold;
  }

  private setOwner(hold: TokenHold, clientId: string, owner: string | null): void {
    this.put(hold, clientId, owner, slotOf(hold.held.get(clientId)));
  }

  private setSlot(hold: TokenHold, clientId: string, slot: string | null): void {
    this.put(hold, clientId, ownerOf(hold.held.get(clientId)), slot);
  }

  private put(hold: TokenHold, clientId: string, owner: string | null, slot: string | null): void {
    if (owner === null && slot === null) {
      hold.held.delete(clientId);
      if (hold.held.size === 0 && this.byToken.get(hold.tokenId) === hold) this.byToken.delete(hold.tokenId);
    } else {
      hold.held.set(clientId, owner !== null && owner === slot ? owner : new Pair(owner, slot));
    }
  }
}
