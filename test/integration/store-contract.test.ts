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
      expect(a).toEqual({ ...ACL_INPUT, id: a!.id, key: a!.key, enabled: true, expire: 0, created: now, accessed: now, parent: 0 });
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
