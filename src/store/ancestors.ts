// SPEC §2 `parent`: at CONNECT and on every REST call a child token is also
// checked against each ancestor's `enabled`, validity and `ips`, and at
// CONNECT its `clientids` (with the ancestor's own id for `${token_id}`). One function
// for both paths (broker/authenticate.ts and api/auth.ts call it after the
// token's own checks), so the two can never disagree.
//
// Reads each ancestor from the store (one `get` per generation; tokens with
// no parent cost nothing). Not cached: a parent disabled a moment ago must
// refuse its children at once, on every node. Live sessions need no check
// here: disabling a parent or changing its ips deletes its children (the
// store's cascade), which closes their sessions through the change feed.
//
// The ancestors read are handed back (`chain`) for the CONNECT's session
// slots: a child's sessions count toward each ancestor's `limits.sessions`
// (broker/client-ownership.ts).

import { compileClientIdMasks, type ClientIdMatcher } from '../tokens/clientids.js';
import { compileIpMasks, type IpMatcher } from '../tokens/ips.js';
import type { Token } from '../tokens/types.js';
import { isExpired } from '../tokens/validity.js';
import type { TokenStore } from './types.js';

/** Why an ancestor refuses its descendant; `ancestorId` names the first one that does. */
export interface AncestorRefusal {
  kind: 'gone' | 'expired' | 'disabled' | 'ip_denied' | 'client_id';
  ancestorId: number;
  reason: string;
}

/** Generations walked at most: ids only grow from parent to child, so a longer chain is corrupt data. */
const MAX_DEPTH = 10_000;

/** MQTT's part of the check. */
export interface AncestorOptions {
  /** The CONNECT's client id: each ancestor's `clientids` must admit it too. */
  clientId?: string;
  /** Filled with the ancestors read, parent first (for their session slots). */
  chain?: Token[];
}

/**
 * The first ancestor of `token` (parent, grandparent, ...) that does not
 * admit it from `ip` at `nowSec` (nor, given, its client id), or null when all
 * do (or it has no parent). Store errors propagate (StoreUnavailableError,
 * StoreDataError) for the caller to map.
 */
export async function checkAncestors(
  store: Pick<TokenStore, 'get'>, token: Token, ip: string, nowSec: number, opts: AncestorOptions = {},
): Promise<AncestorRefusal | null> {
  let childId = token.id;
  let id = token.parent;
  for (let depth = 0; id !== 0 && depth < MAX_DEPTH; depth++) {
    // A parent id not below its child's is no parent we made: refuse rather than loop.
    const [ancestor] = id < childId ? await store.get([id]) : [];
    if (ancestor === undefined) return { kind: 'gone', ancestorId: id, reason: `parent token ${id} no longer exists` };
    if (isExpired(ancestor, nowSec)) return { kind: 'expired', ancestorId: id, reason: `parent token ${id} expired` };
    if (!ancestor.enabled) return { kind: 'disabled', ancestorId: id, reason: `parent token ${id} disabled` };
    if (!ipMatcher(ancestor.ips).allows(ip)) return { kind: 'ip_denied', ancestorId: id, reason: `address not in the ips of parent token ${id}` };
    if (opts.clientId !== undefined && !clientIdMatcher(ancestor).allows(opts.clientId)) {
      return { kind: 'client_id', ancestorId: id, reason: `client id not in the clientids of parent token ${id}` };
    }
    opts.chain?.push(ancestor);
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

const clientIdMatchers = new Map<string, ClientIdMatcher>();

/** An ancestor's `clientids`, its own id standing for `${token_id}`; cached like the ips. */
function clientIdMatcher(ancestor: Token): ClientIdMatcher {
  if (ancestor.clientids === '') return ANY_CLIENT_ID;
  const cacheKey = `${ancestor.id}:${ancestor.clientids}`;
  let matcher = clientIdMatchers.get(cacheKey);
  if (matcher) return matcher;
  try {
    matcher = compileClientIdMasks(ancestor.clientids, ancestor.id);
  } catch {
    // Validated on write; an unreadable one admits nobody.
    matcher = { any: false, allows: () => false };
  }
  if (clientIdMatchers.size >= MAX_MATCHERS) clientIdMatchers.clear();
  clientIdMatchers.set(cacheKey, matcher);
  return matcher;
}

const ANY_CLIENT_ID: ClientIdMatcher = { any: true, allows: () => true };
