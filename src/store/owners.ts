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
  /** Claimed; `orphan` when it replaced the record of a token that no longer exists (its stored session is to be wiped). */
  | { ok: true; orphan: boolean }
  /** Held by another token. */
  | { ok: false; owner: number };

export interface ClientOwners {
  /** Atomic: claims the client id unless another live token holds it. */
  claim(claim: OwnerClaim): Promise<ClaimResult>;
  /** Removes the record if it is still this claim's (same nonce). */
  release(clientId: string, nonce: string): Promise<void>;
  /** Removes every record of this token; resolves to their client ids (once: a second call finds none). */
  dropToken(tokenId: number): Promise<string[]>;
  /** The token holding this client id, or null (tests, REST). */
  owner(clientId: string): Promise<number | null>;
}

interface Record {
  tokenId: number;
  nonce: string;
  persistent: boolean;
}

/** One node, in memory: a clean claim dies with the process, so there is no stale node to think of. */
export class MemoryOwners implements ClientOwners {
  private readonly byClient = new Map<string, Record>();
  private readonly byToken = new Map<number, Set<string>>();

  /** `exists`: whether a token id is stored (a record of a deleted token is an orphan). */
  constructor(private readonly exists: (tokenId: number) => boolean) {}

  async claim(c: OwnerClaim): Promise<ClaimResult> {
    const cur = this.byClient.get(c.clientId);
    let orphan = false;
    if (cur !== undefined && cur.tokenId !== c.tokenId) {
      const gone = !this.exists(cur.tokenId);
      if (!gone && !c.override) return { ok: false, owner: cur.tokenId };
      orphan = gone;
      this.unindex(cur.tokenId, c.clientId);
    }
    this.byClient.set(c.clientId, { tokenId: c.tokenId, nonce: c.nonce, persistent: c.persistent });
    let owned = this.byToken.get(c.tokenId);
    if (owned === undefined) this.byToken.set(c.tokenId, (owned = new Set()));
    owned.add(c.clientId);
    return { ok: true, orphan };
  }

  async release(clientId: string, nonce: string): Promise<void> {
    const cur = this.byClient.get(clientId);
    if (cur === undefined || cur.nonce !== nonce) return;
    this.byClient.delete(clientId);
    this.unindex(cur.tokenId, clientId);
  }

  async dropToken(tokenId: number): Promise<string[]> {
    const owned = this.byToken.get(tokenId);
    if (owned === undefined) return [];
    this.byToken.delete(tokenId);
    const out: string[] = [];
    for (const id of owned) {
      if (this.byClient.get(id)?.tokenId !== tokenId) continue;
      this.byClient.delete(id);
      out.push(id);
    }
    return out;
  }

  async owner(clientId: string): Promise<number | null> {
    return this.byClient.get(clientId)?.tokenId ?? null;
  }

  private unindex(tokenId: number, clientId: string): void {
    const owned = this.byToken.get(tokenId);
    if (owned === undefined) return;
    owned.delete(clientId);
    if (owned.size === 0) this.byToken.delete(tokenId);
  }
}
