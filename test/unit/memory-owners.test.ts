// MemoryOwners keeps its records compactly (issue 9): one map per token, no
// record object per client id. Whatever the order of claims, slots, undos,
// releases and token deletions, it must answer exactly as the plain layout it
// replaced (below, as it was), which the store contract tests pin down (SPEC §2
// limits.sessions, SPEC §4 client id ownership).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { MemoryOwners, type ClaimResult, type SessionSlot, type SlotClaim } from '../../src/store/owners.js';

/** The layout before issue 9's rework: a record object per client id, a Set and a Map per token. */
class PlainOwners {
  private readonly byClient = new Map<string, { tokenId: number; nonce: string }>();
  private readonly byToken = new Map<number, Set<string>>();
  private readonly slots = new Map<number, Map<string, string>>();

  constructor(private readonly exists: (tokenId: number) => boolean) {}

  claim(c: { clientId: string; tokenId: number; nonce: string; override: boolean }): ClaimResult {
    const cur = this.byClient.get(c.clientId);
    let orphan = false;
    const previous = cur !== undefined && cur.tokenId === c.tokenId ? cur.nonce : null;
    if (cur !== undefined && cur.tokenId !== c.tokenId) {
      const gone = !this.exists(cur.tokenId);
      if (!gone && !c.override) return { ok: false, owner: cur.tokenId };
      orphan = gone;
      this.unindex(cur.tokenId, c.clientId);
    }
    this.byClient.set(c.clientId, { tokenId: c.tokenId, nonce: c.nonce });
    let owned = this.byToken.get(c.tokenId);
    if (owned === undefined) this.byToken.set(c.tokenId, (owned = new Set()));
    owned.add(c.clientId);
    return { ok: true, orphan, previous };
  }

  undo(clientId: string, nonce: string, previous: string | null): void {
    const cur = this.byClient.get(clientId);
    if (cur === undefined || cur.nonce !== nonce) return;
    if (previous === null) return this.release(clientId, nonce);
    this.byClient.set(clientId, { tokenId: cur.tokenId, nonce: previous });
  }

  release(clientId: string, nonce: string): void {
    const cur = this.byClient.get(clientId);
    if (cur === undefined || cur.nonce !== nonce) return;
    this.byClient.delete(clientId);
    this.unindex(cur.tokenId, clientId);
  }

  dropToken(tokenId: number): string[] {
    this.slots.delete(tokenId);
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

  owner(clientId: string): number | null {
    return this.byClient.get(clientId)?.tokenId ?? null;
  }

  claimSlot(slot: SessionSlot, limit: number): SlotClaim | null {
    let held = this.slots.get(slot.tokenId);
    if (held === undefined) this.slots.set(slot.tokenId, (held = new Map()));
    const previous = held.get(slot.clientId) ?? null;
    if (previous === null && limit > 0 && held.size >= limit) return null;
    held.set(slot.clientId, slot.nonce);
    return { previous };
  }

  undoSlot(slot: SessionSlot, previous: string | null): void {
    const held = this.slots.get(slot.tokenId);
    if (held === undefined || held.get(slot.clientId) !== slot.nonce) return;
    if (previous === null) return this.releaseSlot(slot);
    held.set(slot.clientId, previous);
  }

  releaseSlot(slot: SessionSlot): void {
    const held = this.slots.get(slot.tokenId);
    if (held === undefined || held.get(slot.clientId) !== slot.nonce) return;
    held.delete(slot.clientId);
    if (held.size === 0) this.slots.delete(slot.tokenId);
  }

  slotCount(tokenId: number): number {
    return this.slots.get(tokenId)?.size ?? 0;
  }

  private unindex(tokenId: number, clientId: string): void {
    const owned = this.byToken.get(tokenId);
    if (owned === undefined) return;
    owned.delete(clientId);
    if (owned.size === 0) this.byToken.delete(tokenId);
  }
}

const TOKENS = [1, 2, 3];
const IDS = ['a', 'b', 'c'];
const NONCES = ['n1', 'n2', 'n3', 'n4'];
const token = fc.constantFrom(...TOKENS);
const id = fc.constantFrom(...IDS);
const nonce = fc.constantFrom(...NONCES);
const previous = fc.option(nonce, { nil: null });
const op = fc.oneof(
  fc.record({ kind: fc.constant('claim' as const), clientId: id, tokenId: token, nonce, override: fc.boolean() }),
  fc.record({ kind: fc.constant('undo' as const), clientId: id, nonce }),
  fc.record({ kind: fc.constant('release' as const), clientId: id, nonce }),
  fc.record({ kind: fc.constant('drop' as const), tokenId: token }),
  fc.record({ kind: fc.constant('claimSlot' as const), clientId: id, tokenId: token, nonce, limit: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant('undoSlot' as const), clientId: id, tokenId: token, nonce, previous }),
  fc.record({ kind: fc.constant('releaseSlot' as const), clientId: id, tokenId: token, nonce }),
  fc.record({ kind: fc.constant('exists' as const), tokenId: token, exists: fc.boolean() }),
);

describe('MemoryOwners (SPEC §2 limits.sessions, SPEC §4 client id ownership)', () => {
  test('answers as the plain layout under any sequence of claims, slots, undos, releases and deletions', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
      const live = new Set(TOKENS);
      const exists = (t: number): boolean => live.has(t);
      const owners = new MemoryOwners(exists);
      const plain = new PlainOwners(exists);
      // The `previous` of a claim, per (client id, nonce), as each layout handed it out (opaque to callers).
      const previousOf = new Map<string, { owners: string | null; plain: string | null }>();
      for (const o of ops) {
        const slot = (tokenId: number, clientId: string, n: string): SessionSlot => ({ tokenId, clientId, nonce: n, node: 'n' });
        switch (o.kind) {
          case 'claim': {
            const c = { clientId: o.clientId, tokenId: o.tokenId, nonce: o.nonce, node: 'n', persistent: false, override: o.override };
            const got = await owners.claim(c);
            const want = plain.claim(c);
            expect(got.ok).toBe(want.ok);
            if (got.ok && want.ok) {
              expect(got.orphan).toBe(want.orphan);
              expect(got.previous === null).toBe(want.previous === null);
              previousOf.set(`${o.clientId}/${o.nonce}`, { owners: got.previous, plain: want.previous });
            } else {
              expect(got).toEqual(want);
            }
            break;
          }
          case 'undo': {
            // Undo hands back what the claim returned (as a CONNECT that never came to be does).
            const given = previousOf.get(`${o.clientId}/${o.nonce}`) ?? { owners: null, plain: null };
            await owners.undo(o.clientId, o.nonce, given.owners);
            plain.undo(o.clientId, o.nonce, given.plain);
            break;
          }
          case 'release':
            await owners.release(o.clientId, o.nonce);
            plain.release(o.clientId, o.nonce);
            break;
          case 'drop':
            expect((await owners.dropToken(o.tokenId)).sort()).toEqual(plain.dropToken(o.tokenId).sort());
            break;
          case 'claimSlot':
            expect(await owners.claimSlot(slot(o.tokenId, o.clientId, o.nonce), o.limit)).toEqual(plain.claimSlot(slot(o.tokenId, o.clientId, o.nonce), o.limit));
            break;
          case 'undoSlot':
            await owners.undoSlot(slot(o.tokenId, o.clientId, o.nonce), o.previous);
            plain.undoSlot(slot(o.tokenId, o.clientId, o.nonce), o.previous);
            break;
          case 'releaseSlot':
            await owners.releaseSlot(slot(o.tokenId, o.clientId, o.nonce));
            plain.releaseSlot(slot(o.tokenId, o.clientId, o.nonce));
            break;
          case 'exists':
            if (o.exists) live.add(o.tokenId);
            else live.delete(o.tokenId);
            break;
        }
        for (const t of TOKENS) expect(await owners.slotCount(t)).toBe(plain.slotCount(t));
        for (const c of IDS) expect(await owners.owner(c)).toBe(plain.owner(c));
      }
    }), { numRuns: 500 });
  });
});
