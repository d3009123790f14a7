// Start-up master token (SPEC §1), against both stores, and for Redis with
// several nodes starting together on one prefix.

import { afterEach, describe, expect, test } from '@jest/globals';
import { MasterKeyError, MASTER_TTL, ensureMasterToken } from '../../src/store/bootstrap.js';
import { ACCESS_MASTER, ACCESS_STANDARD } from '../../src/tokens/types.js';
import { holdable } from '../helpers/held-store.js';
import { StoreTracker, backends, nowSec, openRedisStore } from './store-helpers.js';

const tracker = new StoreTracker();
afterEach(() => tracker.cleanup());

const MASTER_KEY = 'OperatorChosenMasterKey0123456789';

describe.each(backends(tracker))('ensureMasterToken with %s (SPEC §1)', (_name, open) => {
  test('with MASTER_TOKEN: creates a master with exactly that key, then leaves it as it is', async () => {
    const store = await open();
    const now = nowSec();
    const first = await ensureMasterToken(store, { masterKey: MASTER_KEY, now });
    expect(first).toEqual({ created: true, id: expect.any(Number) });
    const token = await store.findByKey(MASTER_KEY);
    expect(token).toMatchObject({ id: first.id, ttl: MASTER_TTL, info: 'bootstrap master (MASTER_TOKEN)', access: { type: ACCESS_MASTER } });

    await store.update([first.id!], { info: 'renamed by the operator' }, now);
    const second = await ensureMasterToken(store, { masterKey: MASTER_KEY, now: now + 50 });
    expect(second).toEqual({ created: false, id: first.id });
    expect(await store.findByKey(MASTER_KEY)).toMatchObject({ info: 'renamed by the operator', accessed: now + 50 });
    expect(await store.count()).toBe(1);
  });

  test('with MASTER_TOKEN whose token is deleted between the lookup and the touch: a master with that key exists after start-up', async () => {
    const store = await open();
    const now = nowSec();
    const first = await ensureMasterToken(store, { masterKey: MASTER_KEY, now });
    // The lookup has read the token; it is deleted before start-up writes `accessed`.
    const racing = holdable(store);
    const gate = racing.holdLookups();
    const second = ensureMasterToken(racing.store, { masterKey: MASTER_KEY, now: now + 1 });
    await gate.whenReached();
    await store.delete([first.id!]);
    gate.release();
    const result = await second;
    const token = await store.findByKey(MASTER_KEY);
    expect(token).toMatchObject({ access: { type: ACCESS_MASTER }, enabled: true });
    expect(result).toEqual({ created: true, id: token!.id });
  });

  test('with MASTER_TOKEN naming a token that is no longer an enabled master: left alone, with a warning', async () => {
    const store = await open();
    const now = nowSec();
    const { id } = await ensureMasterToken(store, { masterKey: MASTER_KEY, now });
    await store.update([id!], { access: { type: ACCESS_STANDARD } }, now);
    const again = await ensureMasterToken(store, { masterKey: MASTER_KEY, now });
    expect(again).toMatchObject({ created: false, id, warning: expect.stringContaining(`token ${id}`) });
    expect(again.warning).not.toContain(MASTER_KEY);
    expect((await store.findByKey(MASTER_KEY))?.access.type).toBe(ACCESS_STANDARD);
  });

  test('without MASTER_TOKEN: the first start creates a master and returns its key once', async () => {
    const store = await open();
    const now = nowSec();
    const first = await ensureMasterToken(store, { now });
    expect(first.created).toBe(true);
    expect(first.key).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(await store.findByKey(first.key!)).toMatchObject({ id: first.id, ttl: MASTER_TTL, info: 'bootstrap master', access: { type: ACCESS_MASTER } });
    expect(await ensureMasterToken(store, { now })).toEqual({ created: false });
    expect(await ensureMasterToken(store, { masterKey: '', now })).toEqual({ created: false });
    expect(await store.count()).toBe(1);
  });

  test.each([
    ['too short', 'Short123'],
    ['too long', 'a'.repeat(257)],
    ['with other characters', 'has-a-dash-0123456789'],
    ['with spaces', 'has spaces 0123456789'],
  ])('refuses a MASTER_TOKEN %s, without echoing it', async (_what, masterKey) => {
    const store = await open();
    const error = await ensureMasterToken(store, { masterKey, now: nowSec() }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(MasterKeyError);
    expect((error as Error).message).toMatch(/^MASTER_TOKEN /);
    expect((error as Error).message).not.toContain(masterKey);
    expect(await store.count()).toBe(0);
  });
});

describe('ensureMasterToken on several Redis nodes starting together (SPEC §1, §6)', () => {
  test('with MASTER_TOKEN: one token, every node gets its id', async () => {
    const prefix = tracker.prefix();
    const nodes = await Promise.all([1, 2, 3, 4].map(() => openRedisStore({ prefix }).then((s) => tracker.track(s))));
    const results = await Promise.all(nodes.map((store) => ensureMasterToken(store, { masterKey: MASTER_KEY, now: nowSec() })));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(await nodes[0]!.count()).toBe(1);
  });

  test('without MASTER_TOKEN: one master and one printed key', async () => {
    const prefix = tracker.prefix();
    const nodes = await Promise.all([1, 2, 3, 4].map(() => openRedisStore({ prefix }).then((s) => tracker.track(s))));
    const results = await Promise.all(nodes.map((store) => ensureMasterToken(store, { now: nowSec() })));
    expect(results.filter((r) => r.key !== undefined)).toHaveLength(1);
    expect(await nodes[0]!.count()).toBe(1);
  });
});
