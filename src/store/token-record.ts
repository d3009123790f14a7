// What both stores do to a token before persisting it: fill in defaults, copy
// so that no caller object is ever stored, and refuse a token that could never
// be valid (SPEC §2). Full validation of client input is src/tokens/validate.ts;
// these checks are the store's own guard, because a token without a deadline
// would never be deleted and one past it would vanish at once.

import { TokenValidationError, withDefaults } from '../tokens/validate.js';
import { clockProblem } from '../tokens/validity.js';
import {
  ACCESS_MASTER,
  type AclEntry,
  type Token,
  type TokenAccess,
  type TokenInput,
  type TokenPatch,
} from '../tokens/types.js';

/** The field that TokenValidationErrors about the two clocks name. */
const CLOCK_FIELD = 'expire/ttl';

/** SPEC §2: a token must have at least one non-zero of expire and ttl. */
export function noClockError(): TokenValidationError {
  return new TokenValidationError(CLOCK_FIELD, 'a token needs a non-zero expire or ttl');
}

/** A patch with only the fields it sets, objects copied. */
export function copyPatch(patch: TokenPatch): TokenPatch {
  const out: TokenPatch = {};
  if (patch.info !== undefined) out.info = patch.info;
  if (patch.enabled !== undefined) out.enabled = patch.enabled;
  if (patch.expire !== undefined) out.expire = patch.expire;
  if (patch.ttl !== undefined) out.ttl = patch.ttl;
  if (patch.access !== undefined) out.access = copyAccess(patch.access);
  if (patch.ips !== undefined) out.ips = patch.ips;
  if (patch.metadata !== undefined) out.metadata = { ...patch.metadata };
  if (patch.clientids !== undefined) out.clientids = patch.clientids;
  if (patch.limits !== undefined) out.limits = { ...patch.limits };
  return out;
}

function copyAccess(access: TokenAccess): TokenAccess {
  return access.acl === undefined ? { type: access.type } : { type: access.type, acl: access.acl.map(copyAclEntry) };
}

function copyAclEntry(entry: AclEntry): AclEntry {
  const out: AclEntry = { uri: entry.uri };
  if (entry.topic !== undefined) out.topic = entry.topic;
  if (entry.actions !== undefined) out.actions = [...entry.actions];
  if (entry.methods !== undefined) out.methods = [...entry.methods];
  if (entry.ids !== undefined) out.ids = [...entry.ids];
  if (entry.submodules !== undefined) out.submodules = entry.submodules.map((s) => ({ name: s.name, methods: [...s.methods] }));
  return out;
}

/**
 * A deep copy of a token, so that callers never hold the store's objects.
 * Written out field by field: structuredClone costs several microseconds
 * per token, and findByKey runs at every CONNECT.
 */
export function cloneToken(token: Token): Token {
  return {
    id: token.id,
    info: token.info,
    enabled: token.enabled,
    expire: token.expire,
    ttl: token.ttl,
    created: token.created,
    accessed: token.accessed,
    access: copyAccess(token.access),
    ips: token.ips,
    metadata: { ...token.metadata },
    parent: token.parent,
    clientids: token.clientids,
    limits: { sessions: token.limits.sessions, publish_rate: token.limits.publish_rate },
  };
}

/**
 * The stored form of a token in the memory store: deeply frozen, so that
 * findByKey can hand out the stored object itself (no copy per CONNECT) and no
 * caller can change it. A change makes a new object (update, touch).
 */
export function frozenToken(token: Token): Token {
  const access = token.access;
  if (access.acl !== undefined) {
    for (const entry of access.acl) {
      if (entry.actions !== undefined) Object.freeze(entry.actions);
      if (entry.methods !== undefined) Object.freeze(entry.methods);
      if (entry.ids !== undefined) Object.freeze(entry.ids);
      for (const sub of entry.submodules ?? []) Object.freeze(Object.freeze(sub).methods);
      if (entry.submodules !== undefined) Object.freeze(entry.submodules);
      Object.freeze(entry);
    }
    Object.freeze(access.acl);
  }
  Object.freeze(access);
  Object.freeze(token.metadata);
  Object.freeze(token.limits);
  return Object.freeze(token);
}

/**
 * A new token, created and accessed at `now`, child of `parent` (0: none).
 * Refuses one that is never valid (SPEC §2).
 */
export function newToken(id: number, input: TokenInput, now: number, parent = 0): Token {
  // The defaults of validateCreate, on a copy: callers keep no handle on stored objects.
  const fields = withDefaults(copyPatch(input));
  const token: Token = { id, ...fields, created: now, accessed: now, parent };
  const problem = clockProblem(token, now);
  if (problem === 'no_clock') throw noClockError();
  if (problem === 'expired') {
    throw new TokenValidationError(CLOCK_FIELD, `the token would already be invalid at creation (now is ${now})`);
  }
  return token;
}

/** SPEC §3: access type 1. */
export function isMaster(access: TokenAccess): boolean {
  return access.type === ACCESS_MASTER;
}

/** The ids a call should act on: each once, in the order given; anything but a positive integer is no id. */
export function toIdList(ids: readonly number[]): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id <= 0 || seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}

/** `now` as the whole UNIX seconds that tokens store. */
export function toSeconds(now: number): number {
  if (!Number.isFinite(now) || now < 0) throw new RangeError(`now must be UNIX seconds, got ${now}`);
  return Math.floor(now);
}
