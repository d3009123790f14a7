// The TokenStore contract, run against every backend (SPEC §2, §7; STYLE:
// one interface, one contract suite). Redis tests use a fresh random prefix
// each; every store is closed after its test.

import { afterEach, describe, expect, test } from '@jest/globals';
import { StoreUnavailableError, type TokenStore } from '../../src/store/types.js';
import { TokenValidationError } from '../../src/tokens/validate.js';
import { ACCESS_ACL, ACCESS_MASTER, ACCESS_STANDARD, type TokenInput } from '../../src/tokens/types.js';
import { ChangeRecorder, StoreTracker, backends, nowSec } from './store-helpers.js';

const tracker = new StoreTracker();
afterEach(() => tracker.cleanup());

const ACL_INPUT: TokenInput = {
  info: 'truck 42',
  ttl: 86400,
  access: { type: ACCESS_ACL, acl: [{ uri: 'mqtt', topic: 'devices/42/#', actions: ['subscribe'] }] },
  ips: '10.100.15.*,192.168.56.1?',
  metadata: { customer: 'acme' },
};

describe.each(backends(tracker))('%s (TokenStore contract)', (_name, open) => {
  describe('create, get, findByKey (SPEC §2)', () => {
    test('assigns ids, returns the key only at creation, fills in defaults', async () => {
      const store = await open();
      const now = nowSec();
      const [a, b] = await store.create([ACL_INPUT, { ttl: 60 }], now);
      expect(a!.key).toMatch(/^[A-Za-z0-9]{64}$/);
      expect(b!.key).toMatch(/^[A-Za-z0-9]{64}$/);
      expect(a!.key).not.toBe(b!.key);
      expect(b!.id).toBeGreaterThan(a!.id);
      expect(a).toEqual({
        ...ACL_INPUT, id: a!.id, key: a!.key, enabled: true, expire: 0, created: now, accessed: now, parent: 0,
        clientids: '', limits: { sessions: 0, publish_rate: 0 },
      });
      expect(b).toMatchObject({
        info: '', enabled: true, expire: 0, ttl: 60, access: { type: ACCESS_STANDARD }, ips: '', metadata: {}, created: now, accessed: now,
      });
      const [stored] = await store.get([a!.id]);
      expect(stored).not.toHaveProperty('key');
      const { key: _key, ...withoutKey } = a!;
      expect(stored).toEqual(withoutKey);
    });

    test('refuses a batch with a token that has neither expire nor ttl, creating none (SPEC §2)', async () => {
      const store = await open();
      await expect(store.create([{ ttl: 60 }, { info: 'no clock' }], nowSec())).rejects.toThrow(TokenValidationError);
      expect(await store.count()).toBe(0);
      expect(await store.get('all')).toEqual([]);
    });

    test('refuses a token that is already invalid by time (SPEC §2)', async () => {
      const store = await open();
      const now = nowSec();
      await expect(store.create([{ expire: now - 10 }], now)).rejects.toThrow(TokenValidationError);
      await expect(store.create([{ expire: now }], now)).rejects.toThrow(TokenValidationError);
      expect(await store.count()).toBe(0);
    });

    test('get: order as asked, each id once, missing ids skipped; all: by ascending id', async () => {
      const store = await open();
      const [a, b, c] = await store.create([{ ttl: 60, info: 'a' }, { ttl: 60, info: 'b' }, { ttl: 60, info: 'c' }], nowSec());
      const got = await store.get([c!.id, 999999, a!.id, c!.id]);
      expect(got.map((t) => t.info)).toEqual(['c', 'a']);
      expect(await store.get([])).toEqual([]);
      expect((await store.get('all')).map((t) => t.id)).toEqual([a!.id, b!.id, c!.id]);
    });

    test('findByKey finds the token by its key, without the key; an unknown key gives null', async () => {
      const store = await open();
      const [a] = await store.create([ACL_INPUT], nowSec());
      const found = await store.findByKey(a!.key);
      expect(found).toMatchObject({ id: a!.id, info: 'truck 42' });
      expect(found).not.toHaveProperty('key');
      expect(await store.findByKey(a!.key.slice(0, 63) + (a!.key.endsWith('A') ? 'B' : 'A'))).toBeNull();
      expect(await store.findByKey('')).toBeNull();
    });

    test('keeps ACL ids and submodules, through create, findByKey and update: dropping them would widen the entry (SPEC §3)', async () => {
      const store = await open();
      const entry = { uri: 'mqtt/sessions', methods: ['GET' as const], ids: ['truck-*'], submodules: [{ name: 'subscriptions', methods: ['GET' as const, 'DELETE' as const] }] };
      const access = { type: ACCESS_ACL, acl: [entry] } as const;
      const [a] = await store.create([{ ttl: 60, access: { type: access.type, acl: [entry] } }], nowSec());
      expect((await store.findByKey(a!.key))!.access.acl).toEqual([entry]);
      const [b] = await store.create([{ ttl: 60 }], nowSec());
      await store.update([b!.id], { access: { type: access.type, acl: [entry] } }, nowSec());
      expect((await store.get([b!.id]))[0]!.access.acl).toEqual([entry]);
    });

    test('ids are never reused, not even after a delete (SPEC §2)', async () => {
      const store = await open();
      const now = nowSec();
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], now);
      await store.delete([b!.id]);
      const [c] = await store.create([{ ttl: 60 }], now);
      expect(c!.id).toBeGreaterThan(b!.id);
      expect(c!.id).not.toBe(a!.id);
    });

    test('returned objects are copies or frozen: mutating them or the input changes nothing stored', async () => {
      const store = await open();
      const input = structuredClone(ACL_INPUT);
      const [a] = await store.create([input], nowSec());
      input.metadata!.customer = 'changed input';
      input.access!.acl![0]!.topic = 'changed/#';
      a!.metadata.customer = 'changed result';
      a!.access.acl!.push({ uri: 'mqtt', topic: '#', actions: ['publish'] });
      const [got] = await store.get([a!.id]);
      got!.metadata.customer = 'changed get';
      got!.access.type = ACCESS_MASTER;
      const found = (await store.findByKey(a!.key))!;
      // findByKey may hand out a shared, frozen object (memory store): writing to it throws or changes nothing.
      try {
        found.info = 'changed find';
        (found.access.acl as unknown[]).length = 0;
      } catch (err) {
        expect(err).toBeInstanceOf(TypeError);
      }
      const [updated] = await store.update([a!.id], { metadata: { x: '1' } }, nowSec());
      updated!.metadata.x = 'changed update';
      const [again] = await store.get([a!.id]);
      expect(again).toMatchObject({ info: 'truck 42', access: ACL_INPUT.access, metadata: { x: '1' } });
    });
  });

  describe('update (SPEC §5 PUT, §7)', () => {
    test('changes only the given fields; objects are replaced whole; missing ids are skipped', async () => {
      const store = await open();
      const now = nowSec();
      const [a] = await store.create([ACL_INPUT], now);
      const updated = await store.update([a!.id, 999999], { info: 'renamed', metadata: { fleet: 'north' } }, now + 5);
      expect(updated).toHaveLength(1);
      const { key: _key, ...before } = a!;
      expect(updated[0]).toEqual({ ...before, info: 'renamed', metadata: { fleet: 'north' } });
      expect(await store.get([a!.id])).toEqual(updated);
      const [b] = await store.update([a!.id], { access: { type: ACCESS_STANDARD }, enabled: false, ips: '' }, now);
      expect(b).toMatchObject({ access: { type: ACCESS_STANDARD }, enabled: false, ips: '', info: 'renamed', ttl: 86400 });
    });

    test('refuses expire=0 and ttl=0 and leaves every token of the call untouched (SPEC §2)', async () => {
      const store = await open();
      const now = nowSec();
      const [withTtl, expireOnly] = await store.create([{ ttl: 100, info: 'ttl' }, { expire: now + 100, info: 'expire' }], now);
      const error = await store.update([withTtl!.id], { ttl: 0, info: 'x' }, now).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(TokenValidationError);
      expect((error as Error).message).toBe('expire/ttl: a token needs a non-zero expire or ttl');
      // {expire: 0} is fine for the ttl token but not for the other: all or nothing.
      await expect(store.update([withTtl!.id, expireOnly!.id], { expire: 0, info: 'y' }, now)).rejects.toThrow(TokenValidationError);
      const [a, b] = await store.get([withTtl!.id, expireOnly!.id]);
      expect(a).toMatchObject({ ttl: 100, expire: 0, info: 'ttl' });
      expect(b).toMatchObject({ ttl: 0, expire: now + 100, info: 'expire' });
    });

    test('an update that makes the token invalid by time deletes it (SPEC §2)', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const now = nowSec();
      const [byExpire, byTtl, keep] = await store.create([{ expire: now + 100 }, { ttl: 100 }, { ttl: 100 }], now);
      expect(await store.update([byExpire!.id], { expire: now - 10 }, now)).toEqual([]);
      // Last use at `now`; ttl 5 seen from now + 10 has run out.
      expect(await store.update([byTtl!.id], { ttl: 5 }, now + 10)).toEqual([]);
      for (const gone of [byExpire!, byTtl!]) {
        await events.wait(gone.id, 'deleted');
        expect(await store.get([gone.id])).toEqual([]);
        expect(await store.findByKey(gone.key)).toBeNull();
      }
      expect((await store.get('all')).map((t) => t.id)).toEqual([keep!.id]);
    });
  });

  describe('clientids and limits (SPEC §2, §5 PUT)', () => {
    test('are stored, read back by key and id, and replaced whole by an update', async () => {
      const store = await open();
      const now = nowSec();
      const [a] = await store.create([{ ttl: 60, clientids: 'dev-${token_id}-*, x?', limits: { sessions: 3, publish_rate: 0 } }], now);
      expect(a).toMatchObject({ clientids: 'dev-${token_id}-*, x?', limits: { sessions: 3, publish_rate: 0 } });
      expect(await store.findByKey(a!.key)).toMatchObject({ clientids: 'dev-${token_id}-*, x?', limits: { sessions: 3, publish_rate: 0 } });
      const [b] = await store.update([a!.id], { limits: { sessions: 0, publish_rate: 50 } }, now);
      expect(b).toMatchObject({ clientids: 'dev-${token_id}-*, x?', limits: { sessions: 0, publish_rate: 50 } });
      expect((await store.get([a!.id]))[0]).toEqual(b);
    });
  });

  describe('client id ownership records (SPEC §4)', () => {
    const claim = (clientId: string, tokenId: number, nonce: string, extra: { persistent?: boolean; override?: boolean } = {}) =>
      ({ clientId, tokenId, nonce, node: 'n1', persistent: extra.persistent ?? false, override: extra.override ?? false });

    test('one token holds a client id; another is refused, master overrides; release is compare-and-delete', async () => {
      const store = await open();
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      expect(await store.owners.claim(claim('dev', a!.id, 'n-1'))).toMatchObject({ ok: true, orphan: false });
      expect(await store.owners.claim(claim('dev', b!.id, 'n-2'))).toEqual({ ok: false, owner: a!.id });
      // Same token again (takeover): a new nonce; the old one can no longer release.
      expect(await store.owners.claim(claim('dev', a!.id, 'n-3'))).toMatchObject({ ok: true, orphan: false });
      await store.owners.release('dev', 'n-1');
      expect(await store.owners.owner('dev')).toBe(a!.id);
      await store.owners.release('dev', 'n-3');
      expect(await store.owners.owner('dev')).toBeNull();
      expect(await store.owners.claim(claim('dev', b!.id, 'n-4', { persistent: true }))).toMatchObject({ ok: true, orphan: false });
      expect(await store.owners.claim(claim('dev', a!.id, 'n-5', { override: true }))).toMatchObject({ ok: true, orphan: false });
      expect(await store.owners.owner('dev')).toBe(a!.id);
    });

    test('undo of an aborted CONNECT puts back the persistent record it replaced; with none, removes its own', async () => {
      const store = await open();
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      await store.owners.claim(claim('dev', a!.id, 'p1', { persistent: true }));
      const taken = await store.owners.claim(claim('dev', a!.id, 'c2'));
      expect(taken).toMatchObject({ ok: true });
      await store.owners.undo('dev', 'c2', taken.ok ? taken.previous : null);
      // The clean claim's release would now find nothing of its own; the persistent record stays the owner's.
      await store.owners.release('dev', 'c2');
      expect(await store.owners.owner('dev')).toBe(a!.id);
      expect(await store.owners.claim(claim('dev', b!.id, 'x'))).toMatchObject({ ok: false, owner: a!.id });
      const fresh = await store.owners.claim(claim('new', a!.id, 'f1'));
      await store.owners.undo('new', 'f1', fresh.ok ? fresh.previous : null);
      expect(await store.owners.owner('new')).toBeNull();
    });

    test('dropToken removes a token\'s records once; a record of a deleted token is an orphan anyone may claim', async () => {
      const store = await open();
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      await store.owners.claim(claim('one', a!.id, 'x1', { persistent: true }));
      await store.owners.claim(claim('two', a!.id, 'x2', { persistent: true }));
      await store.owners.claim(claim('three', b!.id, 'x3'));
      expect((await store.owners.dropToken(a!.id)).sort()).toEqual(['one', 'two']);
      expect(await store.owners.dropToken(a!.id)).toEqual([]);
      expect(await store.owners.owner('three')).toBe(b!.id);
      await store.owners.claim(claim('kept', b!.id, 'x4', { persistent: true }));
      await store.delete([b!.id]);
      expect(await store.owners.claim(claim('kept', a!.id, 'x5'))).toMatchObject({ ok: true, orphan: true });
    });
  });

  describe('session slots (SPEC §2 limits.sessions)', () => {
    test('counted per client id, takeover keeps one slot, release is compare-and-delete, dropToken clears them', async () => {
      const store = await open();
      const [a] = await store.create([{ ttl: 60 }], nowSec());
      const slot = (clientId: string, nonce: string) => ({ tokenId: a!.id, clientId, nonce, node: 'n1' });
      expect(await store.owners.claimSlot(slot('x', '1'), 2)).toEqual({ previous: null });
      expect(await store.owners.claimSlot(slot('y', '2'), 2)).not.toBeNull();
      expect(await store.owners.claimSlot(slot('z', '3'), 2)).toBeNull();
      expect(await store.owners.claimSlot(slot('x', '4'), 2)).not.toBeNull();
      await store.owners.releaseSlot(slot('x', '1'));
      expect(await store.owners.slotCount(a!.id)).toBe(2);
      await store.owners.releaseSlot(slot('x', '4'));
      expect(await store.owners.slotCount(a!.id)).toBe(1);
      expect(await store.owners.claimSlot(slot('z', '5'), 0)).not.toBeNull();
      await store.owners.dropToken(a!.id);
      expect(await store.owners.slotCount(a!.id)).toBe(0);
    });

    test('admit checks ownership (CONNACK 2) before the limit (CONNACK 5), writes nothing on refusal, counts unlimited sessions', async () => {
      const store = await open();
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      const c = (clientId: string, tokenId: number, nonce: string, extra: { persistent?: boolean; override?: boolean } = {}) =>
        ({ clientId, tokenId, nonce, node: 'n1', persistent: extra.persistent ?? false, override: extra.override ?? false });
      const slot = (clientId: string, tokenId: number, nonce: string) => ({ tokenId, clientId, nonce, node: 'n1' });
      // limit 0 = unlimited, still counted: a limit set later sees the live sessions (SPEC §2).
      expect(await store.owners.admit(c('x', a!.id, '1'), [{ tokenId: a!.id, limit: 0 }])).toEqual({ ok: true, orphan: false, ownerPrevious: null, slotPrevious: [null] });
      expect(await store.owners.admit(c('y', a!.id, '2'), [{ tokenId: a!.id, limit: 0 }])).toMatchObject({ ok: true });
      expect(await store.owners.slotCount(a!.id)).toBe(2);
      // Limit lowered below the live count: a new client id is refused, and nothing was written.
      expect(await store.owners.admit(c('z', a!.id, '3'), [{ tokenId: a!.id, limit: 1 }])).toEqual({ ok: false, refused: 'limit', tokenId: a!.id });
      expect(await store.owners.owner('z')).toBeNull();
      expect(await store.owners.slotCount(a!.id)).toBe(2);
      // A takeover of the token's own client id keeps its one slot, whatever the limit.
      const again = await store.owners.admit(c('x', a!.id, '4'), [{ tokenId: a!.id, limit: 1 }]);
      expect(again).toMatchObject({ ok: true, slotPrevious: [expect.any(String)], ownerPrevious: expect.any(String) });
      // Held by another token AND over its limit: the client id refusal wins; b gets no slot, x stays a's.
      await store.owners.admit(c('w', b!.id, '5'), [{ tokenId: b!.id, limit: 0 }]);
      expect(await store.owners.admit(c('x', b!.id, '6'), [{ tokenId: b!.id, limit: 1 }])).toEqual({ ok: false, refused: 'owner', owner: a!.id });
      expect(await store.owners.slotCount(b!.id)).toBe(1);
      expect(await store.owners.owner('x')).toBe(a!.id);
      // Master override takes the client id.
      expect(await store.owners.admit(c('y', b!.id, '7', { override: true }), [{ tokenId: b!.id, limit: 0 }])).toMatchObject({ ok: true });
      expect(await store.owners.owner('y')).toBe(b!.id);
      // endSession: compare-and-delete of slot and (clean) record; the stale claim '1' frees nothing.
      await store.owners.endSession([slot('x', a!.id, '1')], true);
      expect(await store.owners.owner('x')).toBe(a!.id);
      expect(await store.owners.slotCount(a!.id)).toBe(2);
      await store.owners.endSession([slot('x', a!.id, '4')], true);
      expect(await store.owners.owner('x')).toBeNull();
      expect(await store.owners.slotCount(a!.id)).toBe(1);
      // A persistent session's record outlives it: only the slot goes.
      await store.owners.admit(c('p', b!.id, '8', { persistent: true }), [{ tokenId: b!.id, limit: 0 }]);
      await store.owners.endSession([slot('p', b!.id, '8')], false);
      expect(await store.owners.owner('p')).toBe(b!.id);
    });
  });

  describe('session slots of a child and its ancestors (SPEC §2 parent)', () => {
    test('admit takes a slot in every count given, refuses on the first full one writing none, endSession frees them all', async () => {
      const store = await open();
      const [p, k] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      const c = (clientId: string, tokenId: number, nonce: string) => ({ clientId, tokenId, nonce, node: 'n1', persistent: false, override: false });
      const counts = [{ tokenId: k!.id, limit: 0 }, { tokenId: p!.id, limit: 2 }];
      expect(await store.owners.admit(c('parent-1', p!.id, '1'), [{ tokenId: p!.id, limit: 2 }])).toMatchObject({ ok: true });
      expect(await store.owners.admit(c('kid-1', k!.id, '2'), counts)).toEqual({ ok: true, orphan: false, ownerPrevious: null, slotPrevious: [null, null] });
      // The parent's count is full (its own session and its child's): the child's own unlimited count does not help.
      expect(await store.owners.admit(c('kid-2', k!.id, '3'), counts)).toEqual({ ok: false, refused: 'limit', tokenId: p!.id });
      expect(await store.owners.slotCount(k!.id)).toBe(1);
      expect(await store.owners.owner('kid-2')).toBeNull();
      await store.owners.endSession([{ tokenId: k!.id, clientId: 'kid-1', nonce: '2', node: 'n1' }, { tokenId: p!.id, clientId: 'kid-1', nonce: '2', node: 'n1' }], true);
      expect(await store.owners.slotCount(p!.id)).toBe(1);
      expect(await store.owners.slotCount(k!.id)).toBe(0);
      expect(await store.owners.admit(c('kid-2', k!.id, '4'), counts)).toMatchObject({ ok: true });
    });
  });

  describe('delete', () => {
    test('returns the ids that existed; the token and its key are gone', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const [a, b] = await store.create([{ ttl: 60 }, { ttl: 60 }], nowSec());
      expect(await store.delete([a!.id, 999999, a!.id])).toEqual([a!.id]);
      expect(await store.delete([a!.id])).toEqual([]);
      await events.wait(a!.id, 'deleted');
      expect(await store.get([a!.id, b!.id])).toHaveLength(1);
      expect(await store.findByKey(a!.key)).toBeNull();
      expect(await store.count()).toBe(1);
    });
  });

  describe('touch (SPEC §2 accessed)', () => {
    test('sets accessed = max(accessed, now), never back, for many tokens at once, without a change event', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const now = nowSec();
      const [a, b, c] = await store.create([{ ttl: 100 }, { expire: now + 100 }, { ttl: 100 }], now);
      await store.touch([a!.id, b!.id, 999999], now + 30);
      await store.touch([a!.id], now + 10);
      const [ta, tb, tc] = await store.get([a!.id, b!.id, c!.id]);
      expect(ta!.accessed).toBe(now + 30);
      expect(tb!.accessed).toBe(now + 30);
      expect(tc!.accessed).toBe(now);
      // A later change arrives after anything the touches could have published.
      const [sentinel] = await store.create([{ ttl: 60 }], now);
      await events.wait(sentinel!.id, 'created');
      expect(events.of(a!.id)).toEqual(['created']);
      expect(events.of(b!.id)).toEqual(['created']);
    });

    test('does not revive a token that is already invalid by time at `now`', async () => {
      const store = await open();
      const now = nowSec();
      const [a] = await store.create([{ ttl: 100 }], now);
      await store.touch([a!.id], now + 100);
      expect((await store.get([a!.id]))[0]!.accessed).toBe(now);
    });

    test('extends the life of a ttl token: the untouched twin expires, the touched one stays', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const now = nowSec();
      const [touched, untouched] = await store.create([{ ttl: 3 }, { ttl: 3 }], now);
      await store.touch([touched!.id], now + 2);
      await events.wait(untouched!.id, 'deleted', 8000);
      expect(await store.get([touched!.id])).toHaveLength(1);
      expect(await store.findByKey(touched!.key)).not.toBeNull();
    });
  });

  describe('automatic expiry (SPEC §2)', () => {
    test('a token past its expire is deleted with a `deleted` change, from every lookup', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const now = nowSec();
      const [short, long] = await store.create([{ expire: now + 1 }, { ttl: 600 }], now);
      await events.wait(short!.id, 'deleted', 8000);
      expect(await store.get([short!.id])).toEqual([]);
      expect(await store.findByKey(short!.key)).toBeNull();
      expect((await store.get('all')).map((t) => t.id)).toEqual([long!.id]);
      expect(await store.count()).toBe(1);
      expect(events.count(short!.id, 'deleted')).toBe(1);
    });

    test('a ttl token is deleted once its ttl runs out since the last use', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const [a] = await store.create([{ ttl: 1 }], nowSec());
      await events.wait(a!.id, 'deleted', 8000);
      expect(await store.findByKey(a!.key)).toBeNull();
    });

    test('a disabled token stays stored until its time runs out (SPEC §2)', async () => {
      const store = await open();
      const now = nowSec();
      const [a] = await store.create([{ ttl: 600, enabled: false }], now);
      expect((await store.findByKey(a!.key))?.enabled).toBe(false);
      expect(await store.count()).toBe(1);
    });
  });

  describe('change feed (SPEC §4 enforcement, §6)', () => {
    test('reports created, updated and deleted, in order, and stops after unsubscribe', async () => {
      const store = await open();
      const events = new ChangeRecorder(store);
      const now = nowSec();
      const [a] = await store.create([{ ttl: 60 }], now);
      await store.update([a!.id], { info: 'x' }, now);
      await store.delete([a!.id]);
      await events.wait(a!.id, 'deleted');
      expect(events.of(a!.id)).toEqual(['created', 'updated', 'deleted']);

      events.stop();
      const later = new ChangeRecorder(store);
      const [b] = await store.create([{ ttl: 60 }], now);
      await later.wait(b!.id, 'created');
      expect(events.of(b!.id)).toEqual([]);
    });

    test('listeners never run inside a store call, and one that throws does not stop the others', async () => {
      const store = await open();
      let inCall = false;
      let ranInCall = false;
      store.onChange(() => {
        if (inCall) ranInCall = true;
        throw new Error('faulty listener');
      });
      const events = new ChangeRecorder(store);
      inCall = true;
      const pending = store.create([{ ttl: 60 }], nowSec());
      inCall = false;
      const [a] = await pending;
      await events.wait(a!.id, 'created');
      expect(ranInCall).toBe(false);
    });
  });

  describe('count, hasMaster, createWithKey, createMasterIfNone (SPEC §1)', () => {
    test('count follows creates and deletes', async () => {
      const store = await open();
      expect(await store.count()).toBe(0);
      const tokens = await store.create([{ ttl: 60 }, { ttl: 60 }, { ttl: 60 }], nowSec());
      expect(await store.count()).toBe(3);
      await store.delete([tokens[0]!.id]);
      expect(await store.count()).toBe(2);
    });

    test('hasMaster follows creation, access changes and deletion of master tokens', async () => {
      const store = await open();
      const now = nowSec();
      expect(await store.hasMaster()).toBe(false);
      const [standard] = await store.create([{ ttl: 60 }], now);
      expect(await store.hasMaster()).toBe(false);
      await store.update([standard!.id], { access: { type: ACCESS_MASTER } }, now);
      expect(await store.hasMaster()).toBe(true);
      await store.update([standard!.id], { access: { type: ACCESS_STANDARD } }, now);
      expect(await store.hasMaster()).toBe(false);
      const [master] = await store.create([{ ttl: 60, access: { type: ACCESS_MASTER } }], now);
      expect(await store.hasMaster()).toBe(true);
      await store.update([master!.id], { enabled: false }, now);
      expect(await store.hasMaster()).toBe(true);
      await store.delete([master!.id]);
      expect(await store.hasMaster()).toBe(false);
    });

    test('createWithKey stores the given key once; a second call with it gives null', async () => {
      const store = await open();
      const now = nowSec();
      const key = 'Bootstrap0123456789abcdefXYZ';
      const created = await store.createWithKey({ ttl: 600, access: { type: ACCESS_MASTER } }, key, now);
      expect(created).toMatchObject({ key, ttl: 600, access: { type: ACCESS_MASTER }, created: now });
      expect(await store.createWithKey({ ttl: 600 }, key, now)).toBeNull();
      expect((await store.findByKey(key))?.id).toBe(created!.id);
      expect(await store.count()).toBe(1);
      await expect(store.createWithKey({}, 'AnotherKey0123456789', now)).rejects.toThrow(TokenValidationError);
    });

    test('createMasterIfNone creates a master only while none is stored', async () => {
      const store = await open();
      const now = nowSec();
      const first = await store.createMasterIfNone({ ttl: 600, info: 'first' }, now);
      expect(first).toMatchObject({ access: { type: ACCESS_MASTER }, info: 'first' });
      expect(first!.key).toMatch(/^[A-Za-z0-9]{64}$/);
      expect(await store.createMasterIfNone({ ttl: 600 }, now)).toBeNull();
      await store.delete([first!.id]);
      expect(await store.createMasterIfNone({ ttl: 600 }, now)).not.toBeNull();
    });
  });

  describe('lifecycle', () => {
    test('after close, calls reject with StoreUnavailableError', async () => {
      const store: TokenStore = await open();
      await store.close();
      await expect(store.get('all')).rejects.toThrow(StoreUnavailableError);
      await expect(store.findByKey('x')).rejects.toThrow(StoreUnavailableError);
      await expect(store.ping()).rejects.toThrow(StoreUnavailableError);
      await store.close();
    });
  });
});
