// Child tokens in the TokenStore contract (SPEC §2 `parent`): creation under
// a guard on the parent, the 1,000 cap, and the cascade that deletes children
// (and theirs) with a `deleted` change each, in memory and in Redis.

import { afterEach, describe, expect, test } from '@jest/globals';
import { ChildRefusedError, type TokenStore } from '../../src/store/types.js';
import { ACCESS_ACL, MAX_CHILDREN, type Token, type TokenInput } from '../../src/tokens/types.js';
import { ChangeRecorder, StoreTracker, backends, nowSec } from './store-helpers.js';

const tracker = new StoreTracker();
afterEach(() => tracker.cleanup());

const CHILD: TokenInput = { ttl: 60, access: { type: ACCESS_ACL, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }] } };

async function family(store: TokenStore): Promise<{ root: Token; child: Token; grandchild: Token; other: Token }> {
  const now = nowSec();
  const [root, other] = await store.create([{ ttl: 600, info: 'root' }, { ttl: 600, info: 'other' }], now);
  const [child] = await store.createChildren(root!, [CHILD], now);
  const [grandchild] = await store.createChildren(child!, [CHILD], now);
  return { root: root!, child: child!, grandchild: grandchild!, other: other! };
}

describe.each(backends(tracker))('%s (child tokens, SPEC §2 parent)', (_name, open) => {
  test('a child carries its parent id; other tokens 0; the parent lists it', async () => {
    const store = await open();
    const { root, child, grandchild, other } = await family(store);
    expect(root.parent).toBe(0);
    expect(child.parent).toBe(root.id);
    expect(grandchild.parent).toBe(child.id);
    expect((await store.get([child.id]))[0]?.parent).toBe(root.id);
    expect((await store.findByKey((child as Token & { key: string }).key))?.parent).toBe(root.id);
    expect(await store.children(root.id)).toEqual([child.id]);
    expect(await store.children(other.id)).toEqual([]);
  });

  test('deleting a token deletes its children and theirs, each with a deleted change (SPEC §2)', async () => {
    const store = await open();
    const { root, child, grandchild, other } = await family(store);
    const changes = new ChangeRecorder(store);
    expect(await store.delete([root.id])).toEqual([root.id]);
    await changes.wait(child.id, 'deleted');
    await changes.wait(grandchild.id, 'deleted');
    expect((await store.get('all')).map((t) => t.id)).toEqual([other.id]);
    changes.stop();
  });

  test('deleting a parent and its child together reports both as deleted, each change once', async () => {
    const store = await open();
    const { root, child, grandchild } = await family(store);
    const changes = new ChangeRecorder(store);
    expect(await store.delete([root.id, grandchild.id, child.id])).toEqual([root.id, grandchild.id, child.id]);
    await changes.wait(grandchild.id, 'deleted');
    await changes.wait(child.id, 'deleted');
    expect([changes.count(root.id, 'deleted'), changes.count(child.id, 'deleted'), changes.count(grandchild.id, 'deleted')]).toEqual([1, 1, 1]);
    changes.stop();
  });

  test.each<[string, TokenInput]>([
    ['disabling', { enabled: false }],
    ['changing access', { access: { type: ACCESS_ACL, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }] } }],
    ['changing ips', { ips: '10.0.0.1' }],
  ])('%s a parent deletes its children and theirs, not the parent (SPEC §2)', async (_what, patch) => {
    const store = await open();
    const { root, child, grandchild } = await family(store);
    const changes = new ChangeRecorder(store);
    await store.update([root.id], patch, nowSec());
    await changes.wait(grandchild.id, 'deleted');
    expect((await store.get([root.id, child.id, grandchild.id])).map((t) => t.id)).toEqual([root.id]);
    changes.stop();
  });

  test('changing other fields, or setting the same access and ips, keeps the children', async () => {
    const store = await open();
    const { root, child } = await family(store);
    await store.update([root.id], { info: 'renamed', metadata: { a: 'b' }, ttl: 900, enabled: true, ips: '', access: root.access }, nowSec());
    expect((await store.get([child.id])).length).toBe(1);
  });

  test('a token that expires takes its children with it (SPEC §2)', async () => {
    const store = await open();
    const now = nowSec();
    const [root] = await store.create([{ expire: now + 2 }], now);
    const [child] = await store.createChildren(root!, [{ expire: now + 2, access: CHILD.access }], now);
    const [grandchild] = await store.createChildren(child!, [{ ttl: 600, access: CHILD.access }], now);
    const changes = new ChangeRecorder(store);
    await changes.wait(grandchild!.id, 'deleted', 8000);
    expect(await store.get([grandchild!.id])).toEqual([]);
    changes.stop();
  });

  test('refuses a child when the stored parent changed since it was read, creating nothing', async () => {
    const store = await open();
    const now = nowSec();
    const [root] = await store.create([{ ttl: 600 }], now);
    await store.update([root!.id], { ips: '10.0.0.0/8' }, now);
    await expect(store.createChildren(root!, [CHILD], now)).rejects.toThrow(ChildRefusedError);
    await store.update([root!.id], { ips: root!.ips, enabled: false }, now);
    await expect(store.createChildren(root!, [CHILD], now)).rejects.toThrow(ChildRefusedError);
    await store.delete([root!.id]);
    await expect(store.createChildren(root!, [CHILD], now)).rejects.toThrow(ChildRefusedError);
    expect(await store.count()).toBe(0);
  });

  test(`at most ${MAX_CHILDREN} children per token; a deleted child frees its place (SPEC §2)`, async () => {
    const store = await open();
    const now = nowSec();
    const [root] = await store.create([{ ttl: 600 }], now);
    const made = await store.createChildren(root!, Array.from({ length: MAX_CHILDREN }, () => CHILD), now);
    expect(made).toHaveLength(MAX_CHILDREN);
    const refused = store.createChildren(root!, [CHILD], now);
    await expect(refused).rejects.toThrow(ChildRefusedError);
    await expect(refused).rejects.toMatchObject({ reason: 'limit' });
    await store.delete([made[0]!.id]);
    expect(await store.createChildren(root!, [CHILD], now)).toHaveLength(1);
  });
});
