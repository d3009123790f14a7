// Client id ownership and session slots in Redis when owner commands leave in
// batches (store/redis-owners.ts TurnBatch, issue 10): a release asked before a
// claim still runs first (SPEC §2 limits.sessions), releases sent together stay
// compare-and-delete each (SPEC §4: a late disconnect never frees a newer
// session's client id or slot), a release pending while Redis is paused meets a
// CONNECT on another node and the outcome is the same whichever runs first, and
// a command asked behind a stuck batch still fails fast (SPEC §7 CONNACK 3).
// Several stores on one prefix stand for several nodes.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import type { RedisStore } from '../../src/store/redis-store.js';
import type { OwnerClaim, SessionSlot, SlotLimit } from '../../src/store/owners.js';
import { StoreUnavailableError } from '../../src/store/types.js';
import { ACCESS_ACL, ACCESS_MASTER } from '../../src/tokens/types.js';
import { StoreTracker, nowSec, openRedisStore, redisUrl, withTimeout } from './store-helpers.js';

const tracker = new StoreTracker();
let admin: Redis;

beforeAll(() => {
  admin = new Redis(redisUrl());
});
afterEach(async () => {
  await admin.call('CLIENT', 'UNPAUSE').catch(() => {});
  await tracker.cleanup();
});
afterAll(() => admin.quit());

async function nodes(n: number): Promise<{ prefix: string; stores: RedisStore[] }> {
  const prefix = tracker.prefix();
  const stores: RedisStore[] = [];
  for (let i = 0; i < n; i++) stores.push(tracker.track(await openRedisStore({ prefix })));
  return { prefix, stores };
}

const claim = (clientId: string, tokenId: number, nonce: string, node: string, persistent = false): OwnerClaim =>
  ({ clientId, tokenId, nonce, node, persistent, override: false });
const slotsOf = (tokenIds: number[], clientId: string, nonce: string, node: string): SessionSlot[] =>
  tokenIds.map((tokenId) => ({ tokenId, clientId, nonce, node }));
const limits = (...pairs: [number, number][]): SlotLimit[] => pairs.map(([tokenId, limit]) => ({ tokenId, limit }));

/** The store's command connection (one per node). */
const connectionOf = (store: RedisStore): Redis => (store as unknown as { client: Redis }).client;

/** The Redis client ids of the stores' connections (asked before a pause: a held connection answers nothing). */
const idsOf = (...stores: RedisStore[]): Promise<string[]> => Promise.all(stores.map(async (s) => String(await connectionOf(s).client('ID'))));

/** Resolves once each of these connections has a command held by CLIENT PAUSE (flag `b` in CLIENT LIST). */
async function held(ids: string[]): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const list = String(await admin.call('CLIENT', 'LIST', 'ID', ...ids));
    const blocked = list.split('\n').filter((line) => / flags=\w*b/.test(line)).length;
    if (blocked === ids.length) return;
    if (Date.now() > deadline) throw new Error(`commands not held by the pause after 5 s: ${list}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('owner commands in batches (Redis, issue 10)', () => {
  test('a release asked in the same turn before a CONNECT\'s claim frees the slot first (SPEC §2 limits.sessions 1)', async () => {
    const { stores: [a] } = await nodes(1);
    const [t] = await a!.create([{ ttl: 60, limits: { sessions: 1, publish_rate: 0 } }], nowSec());
    expect(await a!.owners.admit(claim('first', t!.id, 'a1', 'n1'), limits([t!.id, 1]))).toMatchObject({ ok: true });
    // The device goes and comes back with another client id at once: both asked in one turn.
    const ended = a!.owners.endSession(slotsOf([t!.id], 'first', 'a1', 'n1'), true);
    const next = a!.owners.admit(claim('second', t!.id, 'a2', 'n1'), limits([t!.id, 1]));
    await ended;
    expect(await next).toMatchObject({ ok: true });
    expect(await a!.owners.owner('first')).toBeNull();
    expect(await a!.owners.slotCount(t!.id)).toBe(1);
  });

  test('releases sent in one script free only their own claims: a late one leaves the newer session of another node (SPEC §4, §2)', async () => {
    const { stores: [a, b] } = await nodes(2);
    const [parent, other] = await a!.create([{ ttl: 60, limits: { sessions: 2, publish_rate: 0 } }, { ttl: 60 }], nowSec());
    const child = 1_000_000 + parent!.id; // slots count any token id; the child's own count and its parent's
    // Node A: a child's session (two slots), a plain one, and one taken over by node B since.
    expect(await a!.owners.admit(claim('kid', child, 'k1', 'A'), limits([child, 0], [parent!.id, 2]))).toMatchObject({ ok: true });
    expect(await a!.owners.admit(claim('plain', other!.id, 'p1', 'A'), limits([other!.id, 0]))).toMatchObject({ ok: true });
    expect(await a!.owners.admit(claim('moved', parent!.id, 'm1', 'A'), limits([parent!.id, 2]))).toMatchObject({ ok: true });
    expect(await b!.owners.admit(claim('moved', parent!.id, 'm2', 'B'), limits([parent!.id, 2]))).toMatchObject({ ok: true, ownerPrevious: 'm1|A|0' });
    // A's three releases, asked in one turn: one END_SESSIONS call; 'moved' is late.
    await Promise.all([
      a!.owners.endSession(slotsOf([child, parent!.id], 'kid', 'k1', 'A'), true),
      a!.owners.endSession(slotsOf([parent!.id], 'moved', 'm1', 'A'), true),
      a!.owners.endSession(slotsOf([other!.id], 'plain', 'p1', 'A'), true),
    ]);
    expect(await a!.owners.owner('kid')).toBeNull();
    expect(await a!.owners.owner('plain')).toBeNull();
    expect(await a!.owners.slotCount(child)).toBe(0);
    expect(await a!.owners.slotCount(other!.id)).toBe(0);
    // B's session keeps its client id and its slot: one of the parent's two is still taken.
    expect(await a!.owners.owner('moved')).toBe(parent!.id);
    expect(await a!.owners.slotCount(parent!.id)).toBe(1);
    expect(await a!.owners.admit(claim('x', parent!.id, 'x1', 'A'), limits([parent!.id, 2]))).toMatchObject({ ok: true });
    expect(await a!.owners.admit(claim('y', parent!.id, 'y1', 'A'), limits([parent!.id, 2]))).toEqual({ ok: false, refused: 'limit', tokenId: parent!.id });
    // And B's own release still frees it.
    await b!.owners.endSession(slotsOf([parent!.id], 'moved', 'm2', 'B'), true);
    expect(await a!.owners.owner('moved')).toBeNull();
    expect(await a!.owners.slotCount(parent!.id)).toBe(1);
  });

  test('a release pending while Redis is paused and a takeover from another node: the newer session holds, whichever runs first (SPEC §4, §2)', async () => {
    const { stores: [a, b] } = await nodes(2);
    const [t] = await a!.create([{ ttl: 60, limits: { sessions: 1, publish_rate: 0 } }], nowSec());
    expect(await a!.owners.admit(claim('dev', t!.id, 'a1', 'A'), limits([t!.id, 1]))).toMatchObject({ ok: true });
    const ids = await idsOf(a!, b!);
    await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE');
    // A's session ends (its release waits in Redis), then the device is back on node B.
    const released = a!.owners.endSession(slotsOf([t!.id], 'dev', 'a1', 'A'), true);
    const taken = b!.owners.admit(claim('dev', t!.id, 'b1', 'B'), limits([t!.id, 1]));
    await held(ids);
    await admin.call('CLIENT', 'UNPAUSE');
    await withTimeout(released, 5000, 'the release');
    expect(await withTimeout(taken, 5000, 'the takeover')).toMatchObject({ ok: true });
    expect(await a!.owners.owner('dev')).toBe(t!.id);
    expect(await a!.owners.slotCount(t!.id)).toBe(1);
    // limits.sessions 1 still counts B's session, and B's release (not A's) frees it.
    expect(await a!.owners.admit(claim('other', t!.id, 'o1', 'A'), limits([t!.id, 1]))).toEqual({ ok: false, refused: 'limit', tokenId: t!.id });
    await b!.owners.endSession(slotsOf([t!.id], 'dev', 'b1', 'B'), true);
    expect(await a!.owners.owner('dev')).toBeNull();
    expect(await a!.owners.slotCount(t!.id)).toBe(0);
  });

  test('with Redis paused, a claim asked behind a batch in flight fails within the command timeout, not after the batch before it (SPEC §7 CONNACK 3)', async () => {
    const { stores: [a] } = await nodes(1);
    const [t] = await a!.create([{ ttl: 60 }], nowSec());
    const ids = await idsOf(a!);
    await admin.call('CLIENT', 'PAUSE', '8000', 'WRITE');
    const stuck = a!.owners.endSession(slotsOf([t!.id], 'gone', 'g1', 'A'), true).catch((err: unknown) => err);
    await held(ids);
    const started = Date.now();
    const refused = await withTimeout(
      a!.owners.admit(claim('dev', t!.id, 'd1', 'A'), limits([t!.id, 0])).then(() => null, (err: unknown) => err),
      7000, 'the claim to fail');
    const elapsed = Date.now() - started;
    expect(refused).toBeInstanceOf(StoreUnavailableError);
    // The store's command timeout is 2 s; waiting for the stuck batch's own timeout first would take 4 s.
    expect(elapsed).toBeLessThan(3500);
    expect(await stuck).toBeInstanceOf(StoreUnavailableError);
  });

  test('a client id that its token claims again keeps it listed for that token\'s deletion (SPEC §4)', async () => {
    const { stores: [a] } = await nodes(1);
    const [t] = await a!.create([{ ttl: 60 }], nowSec());
    expect(await a!.owners.admit(claim('keep', t!.id, 'k1', 'A', true), limits([t!.id, 0]))).toMatchObject({ ok: true });
    await a!.owners.endSession(slotsOf([t!.id], 'keep', 'k1', 'A'), false);
    expect(await a!.owners.admit(claim('keep', t!.id, 'k2', 'A', true), limits([t!.id, 0]))).toMatchObject({ ok: true, ownerPrevious: 'k1|A|1' });
    expect(await a!.owners.dropToken(t!.id)).toEqual(['keep']);
    expect(await a!.owners.owner('keep')).toBeNull();
  });

  test('after the store reconnects, the next claim writes the node\'s liveness again (a restarted Redis may have lost it; SPEC §6)', async () => {
    const { prefix, stores: [a] } = await nodes(1);
    const [t] = await a!.create([{ ttl: 60 }], nowSec());
    const live = `${prefix}owner-node:A`;
    expect(await a!.owners.admit(claim('one', t!.id, 'o1', 'A'), limits([t!.id, 0]))).toMatchObject({ ok: true });
    expect(await admin.exists(live)).toBe(1);
    await admin.del(live);
    const client = connectionOf(a!);
    const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
    await admin.call('CLIENT', 'KILL', 'ID', ...(await idsOf(a!)));
    await withTimeout(ready, 5000, 'the store to reconnect');
    expect(await a!.owners.admit(claim('two', t!.id, 't1', 'A'), limits([t!.id, 0]))).toMatchObject({ ok: true });
    expect(await admin.pttl(live)).toBeGreaterThan(0);
  });
});

describe('a CONNECT whose token turns out unreadable after its claim (Redis, SPEC §2, §4)', () => {
  test('the lookup answers only once the claim it made is given back: the client id is free on every node when the refusal comes', async () => {
    const { prefix, stores: [a, b] } = await nodes(2);
    const [t, other] = await a!.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
    // Lua admits it (enabled, no parent, access and limits decode); the node cannot read it (SPEC §2 unreadable).
    await admin.hset(`${prefix}token:${t!.id}`, 'metadata', '["not", "an object"]');
    // Hold the give-back, to see whether the answer waits for it.
    let letGo: () => void = () => {};
    const gate = new Promise<void>((resolve) => { letGo = resolve; });
    let undoAsked!: () => void;
    const undoReached = new Promise<void>((resolve) => { undoAsked = resolve; });
    const undo = a!.owners.undo.bind(a!.owners);
    a!.owners.undo = async (...args: Parameters<typeof undo>) => {
      undoAsked();
      await gate;
      return undo(...args);
    };
    let settled = false;
    const answer = a!.findByKeyAndAdmit!(t!.key, { clientId: 'dev', nonce: 'u1', node: 'A', persistent: false })
      .then(() => null, (err: unknown) => err)
      .finally(() => { settled = true; });
    await withTimeout(undoReached, 5000, 'the give-back to be asked');
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    letGo();
    expect(await answer).toBeInstanceOf(Error);
    // Node B, at once: no trace of the refused CONNECT's claim.
    expect(await b!.owners.owner('dev')).toBeNull();
    expect(await b!.owners.slotCount(t!.id)).toBe(0);
    expect(await b!.owners.admit(claim('dev', other!.id, 'o1', 'B'), limits([other!.id, 0]))).toMatchObject({ ok: true });
  });
});

describe('store close (Redis, SPEC §1 clean shutdown)', () => {
  test('releases asked just before the store closes are applied before it quits: no client id or slot left behind', async () => {
    const { stores: [a, b] } = await nodes(2);
    const [t] = await a!.create([{ ttl: 60, limits: { sessions: 1, publish_rate: 0 } }], nowSec());
    expect(await a!.owners.admit(claim('bye', t!.id, 'b1', 'A'), limits([t!.id, 1]))).toMatchObject({ ok: true });
    const released = a!.owners.endSession(slotsOf([t!.id], 'bye', 'b1', 'A'), true).then(() => 'released', (err: unknown) => err);
    await a!.close();
    expect(await released).toBe('released');
    expect(await b!.owners.owner('bye')).toBeNull();
    expect(await b!.owners.slotCount(t!.id)).toBe(0);
  });
});

describe('the master override at CONNECT follows the token\'s access (Redis, SPEC §4)', () => {
  test('a master takes over a client id another token holds; once its access is no longer master, it is refused', async () => {
    const { stores: [a] } = await nodes(1);
    const acl = { type: ACCESS_ACL as typeof ACCESS_ACL, acl: [{ uri: 'mqtt', topic: 'x/#', actions: ['publish' as const] }] };
    const [holder, boss] = await a!.create([{ ttl: 60 }, { ttl: 60, access: { type: ACCESS_MASTER } }], nowSec());
    for (const cid of ['held-1', 'held-2']) {
      expect(await a!.owners.admit(claim(cid, holder!.id, `h-${cid}`, 'A'), limits([holder!.id, 0]))).toMatchObject({ ok: true });
    }
    const first = await a!.findByKeyAndAdmit!(boss!.key, { clientId: 'held-1', nonce: 'b1', node: 'A', persistent: false });
    expect(first.admission).toMatchObject({ ok: true });
    expect(await a!.owners.owner('held-1')).toBe(boss!.id);
    await a!.update([boss!.id], { access: acl }, nowSec());
    const second = await a!.findByKeyAndAdmit!(boss!.key, { clientId: 'held-2', nonce: 'b2', node: 'A', persistent: false });
    expect(second.token?.access).toEqual(acl);
    expect(second.admission).toEqual({ ok: false, refused: 'owner', owner: holder!.id });
    expect(await a!.owners.owner('held-2')).toBe(holder!.id);
  });
});

describe('find-and-admit probes the broker\'s keys in the same round trip (offline-queue.ts)', () => {
  test('probed: one flag per key, in order; absent when nothing was probed or no claim ran', async () => {
    const { prefix, stores: [a] } = await nodes(1);
    const [t] = await a!.create([{ ttl: 3600, access: { type: ACCESS_ACL, acl: [{ uri: 'mqtt', topic: '#' }] } }], nowSec());
    const req = (nonce: string, probeKeys?: string[]) => ({ clientId: `probe-${nonce}`, nonce, node: 'A', persistent: false, probeKeys });
    const keys = [`${prefix}aedes:outgoing:x`, `${prefix}aedes:client:x`];
    expect(await a!.findByKeyAndAdmit!(t!.key, req('n1', keys))).toMatchObject({ admission: { ok: true }, probed: [false, false] });
    await admin.hset(keys[1]!, 'a/b', '1');
    expect(await a!.findByKeyAndAdmit!(t!.key, req('n2', keys))).toMatchObject({ admission: { ok: true }, probed: [false, true] });
    await admin.rpush(keys[0]!, 'p');
    expect(await a!.findByKeyAndAdmit!(t!.key, req('n3', keys))).toMatchObject({ probed: [true, true] });
    await admin.del(keys[1]!);
    expect(await a!.findByKeyAndAdmit!(t!.key, req('n4', keys))).toMatchObject({ probed: [true, false] });
    expect((await a!.findByKeyAndAdmit!(t!.key, req('n5'))).probed).toBeUndefined();
    // A disabled token: no claim attempted, nothing probed.
    await a!.update([t!.id], { enabled: false }, nowSec());
    expect((await a!.findByKeyAndAdmit!(t!.key, req('n6', keys))).probed).toBeUndefined();
    await admin.del(keys[0]!);
  });
});
