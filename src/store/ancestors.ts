// SPEC §2 `parent`: at CONNECT and on every REST call a child token is also
// checked against each ancestor's `enabled`, validity and `ips`. One function
// for both paths (broker/authenticate.ts and api/auth.ts call it after the
// token's own checks), so the two can never disagree.
//
// Reads each ancestor from the store (one `get` per generation; tokens with
// no parent cost nothing). Not cached: a parent disabled a moment ago must
// refuse its children at once, on every node. Live sessions need no check
// here: disabling a parent or changing its ips deletes its children (the
// store's cascade), which closes their sessions through the change feed.
//
// `clientids` (SPEC §2) is not checked yet: the field does not exist in this
// model at the time of writing; it belongs here once it does.

import { compileIpMasks, type IpMatcher } from '../tokens/ips.js';
import type { Token } from '../tokens/types.js';
import { isExpired } from '../tokens/validity.js';
import type { TokenStore } from './types.js';

/** Why an ancestor refuses its descendant; `ancestorId` names the first one that does. */
export interface AncestorRefusal {
  kind: 'gone' | 'expired' | 'disabled' | 'ip_denied';
  ancestorId: number;
  reason: string;
}

/** Generations walked at most: ids only grow from parent to child, so a longer chain is corrupt data. */
const MAX_DEPTH = 10_000;

/**
 * The first ancestor of `token` (parent, grandparent, ...) that does not
 * admit it from `ip` at `nowSec`, or null when all do (or it has no parent).
 * Store errors propagate (StoreUnavailableError, StoreDataError) for the caller to map.
 */
export async function checkAncestors(store: Pick<TokenStore, 'get'>, token: Token, ip: string, nowSec: number): Promise<AncestorRefusal | null> {
  let childId = token.id;
  let id = token.parent;
  for (let depth = 0; id !== 0 && depth < MAX_DEPTH; depth++) {
    // A parent id not below its child's is no parent we made: refuse rather than loop.
    const [ancestor] = id < childId ? await store.get([id]) : [];
    if (ancestor === undefined) return { kind: 'gone', ancestorId: id, reason: `parent token ${id} no longer exists` };
    if (isExpired(ancestor, nowSec)) return { kind: 'expired', ancestorId: id, reason: `parent token ${id} expired` };
    if (!ancestor.enabled) return { kind: 'disabled', ancestorId: id, reason: `parent token ${id} disabled` };
    if (!ipMatcher(ancestor.ips).allows(ip)) return { kind: 'ip_denied', ancestorId: id, reason: `address not in the ips of parent token ${id}` };
    childId = id;
    id = ancestor.parent;
  }
  return id === 0 ? null : { kind: 'gone', ancestorId: id, reason: 'the chain of parent tokens is too long' };
}

/** Compiled masks by their text (compiling is far dearer than matching); bounded. */
const matchers = new Map<string, IpMatcher>();
const MAX_MATCHERS = 1024;

function ipMatcher(ips: string): IpMatcher {
  let matcher = matchers.get(ips);
  if (matcher) return matcher;
  try {
    matcher = compileIpMasks(ips);
  } catch {
    // Stored masks were validated on write; an unreadable one admits nobody.
    matcher = { any: false, allows: () => false };
  }
  if (matchers.size >= MAX_MATCHERS) matchers.clear();
  matchers.set(ips, matcher);
  return matcher;
}
