// SPEC §3 "Rights never widen by accident": is a child token's access
// contained in its parent's effective access? Pure; asked by POST /auth/tokens.
//
// Each child entry, for each of its actions (or REST methods), must be covered
// by ONE parent entry with that action: no union of several parent entries is
// taken, which keeps the rule checkable and explainable (the 403 names the
// first child entry that is not covered).
//
// Topic filters are compared level by level, for every client id and both
// token ids at once:
// - the parent's `${token_id}` is its own id, known here, so it is substituted
//   first; the child's `${token_id}` is the child's id, not known yet and never
//   the parent's: such a level is covered only by `+` or `#`;
// - a level holding `${clientid}` is covered only by the same text (the same
//   client id fills both), `+` or `#`; a literal level never by `${clientid}`
//   (another client id would not match it);
// - [MQTT-4.7.2-1]: a parent `+` or `#` first level covers no child first level
//   that may begin with `$`.

import { CLIENT_ID_PLACEHOLDER, TOKEN_ID_PLACEHOLDER } from './placeholders.js';
import { ACCESS_ACL, ACCESS_MASTER, ACCESS_STANDARD, SESSIONS_URI, type AclEntry, type HttpMethod, type TokenAccess, type TokenLimits } from './types.js';
import { compileMask } from './masks.js';

/** The parent as containment sees it: its access and its id (what its `${token_id}` stands for). */
export interface ParentAccess {
  access: TokenAccess;
  id: number;
}

/** Why a child access is not contained: the first entry not covered, and what of it. */
export interface ContainmentFailure {
  /** Index in `child.acl`, or -1 when the child is not an ACL token. */
  index: number;
  reason: string;
}

/**
 * Null when every entry of `child` is covered by the parent's effective
 * rights; else the first entry that is not. A child is always an ACL token
 * (SPEC §2 `parent`): any other type is refused here too.
 */
export function containmentFailure(child: TokenAccess, parent: ParentAccess): ContainmentFailure | null {
  if (child.type !== ACCESS_ACL) return { index: -1, reason: 'a child token is always an ACL token (access.type 2)' };
  const acl = child.acl ?? [];
  for (let i = 0; i < acl.length; i++) {
    const reason = entryFailure(acl[i] as AclEntry, parent);
    if (reason !== null) return { index: i, reason };
  }
  return null;
}

/** Why one child entry is not covered, or null. */
function entryFailure(entry: AclEntry, parent: ParentAccess): string | null {
  if (entry.topic !== undefined) {
    for (const action of entry.actions ?? []) {
      if (!topicCovered(entry.topic, action, parent)) return `${action} on '${entry.topic}' is not within the parent token's rights`;
    }
    return null;
  }
  for (const method of entry.methods ?? []) {
    if (!restCovered(entry, method, null, parent.access)) return `${method} on /${entry.uri}${idsText(entry)} is not within the parent token's rights`;
  }
  for (const sub of entry.submodules ?? []) {
    for (const method of sub.methods ?? []) {
      if (!restCovered(entry, method, sub.name, parent.access)) {
        return `${method} on submodule '${sub.name}' of /${entry.uri}${idsText(entry)} is not within the parent token's rights`;
      }
    }
  }
  return null;
}

function idsText(entry: AclEntry): string {
  return entry.ids === undefined ? '' : ` for ids ${JSON.stringify(entry.ids).slice(0, 200)}`;
}

/**
 * SPEC §3 `ids`: does every client id the child's masks reach fall within the
 * parent's? Conservative (a sound subset of mask inclusion): no parent `ids`;
 * or each child mask equal to a parent mask, matched by a parent mask when it
 * has no wildcard, or under a parent mask `<literal prefix>*` it begins with.
 */
function idsCovered(child: readonly string[] | undefined, parent: readonly string[] | undefined): boolean {
  if (parent === undefined) return true;
  if (child === undefined) return false;
  const wild = (m: string) => m.includes('*') || m.includes('?');
  return child.every((c) => parent.some((p) => {
    if (p === c || p === '*') return true;
    if (!wild(c)) return compileMask(p)(c);
    const prefix = p.slice(0, -1);
    return p.endsWith('*') && !wild(prefix) && c.startsWith(prefix);
  }));
}

function topicCovered(filter: string, action: 'publish' | 'subscribe', parent: ParentAccess): boolean {
  const type = parent.access.type;
  if (type === ACCESS_MASTER) return true;
  if (type === ACCESS_STANDARD) return !mayReachBrokerTopics(filter);
  for (const entry of parent.access.acl ?? []) {
    if (entry.topic === undefined || entry.uri !== 'mqtt' || !(entry.actions ?? []).includes(action)) continue;
    if (filterCovers(entry.topic, parent.id, filter)) return true;
  }
  return false;
}

/**
 * SPEC §3: a standard token has every topic but `$SYS/...` and `$tokenmq/...`.
 * A child filter stays within that unless its first level can be one of them.
 */
function mayReachBrokerTopics(filter: string): boolean {
  const slash = filter.indexOf('/');
  const first = slash === -1 ? filter : filter.slice(0, slash);
  if (first === '+' || first === '#') return false; // [MQTT-4.7.2-1]
  if (!hasPlaceholder(first)) return first === '$SYS' || first === '$tokenmq';
  return mayBeginWithDollar(first);
}

function hasPlaceholder(level: string): boolean {
  return level.includes(CLIENT_ID_PLACEHOLDER) || level.includes(TOKEN_ID_PLACEHOLDER);
}

/**
 * Can this first level (not `+` or `#`) yield a level beginning with `$`?
 * A leading `${clientid}` never does (substitution refuses a `$` client id
 * there), a leading `${token_id}` is digits; otherwise its first character decides.
 */
function mayBeginWithDollar(level: string): boolean {
  if (level.startsWith(CLIENT_ID_PLACEHOLDER) || level.startsWith(TOKEN_ID_PLACEHOLDER)) return false;
  return level.charCodeAt(0) === 0x24;
}

/**
 * Does the parent filter match every topic the child filter can match, for
 * every client id (the same for both), the parent's `${token_id}` being
 * `parentId` and the child's an unknown other id? Both filters valid.
 */
export function filterCovers(parentFilter: string, parentId: number, childFilter: string): boolean {
  const p = parentFilter.split(TOKEN_ID_PLACEHOLDER).join(String(parentId)).split('/');
  const c = childFilter.split('/');
  for (let i = 0; ; i++) {
    if (i === p.length) return i === c.length;
    const pl = p[i] as string;
    if (pl === '#') return i !== 0 || !(c[0] !== '+' && c[0] !== '#' && mayBeginWithDollar(c[0] as string));
    // The child's topics end at level i-1: only a parent going on with exactly `/#` matches them (handled above).
    if (i === c.length) return false;
    const cl = c[i] as string;
    // Only a parent `#` covers a child `#`, or `+/#` as the whole filter: a first level `#` and `+/#`
    // match the same topics (no topic has zero levels). Deeper, `x/#` also matches `x`, `x/+/#` does not.
    if (cl === '#') return i === 0 && pl === '+' && p.length === 2 && p[1] === '#';
    if (pl === '+') {
      if (i === 0 && cl !== '+' && mayBeginWithDollar(cl)) return false; // [MQTT-4.7.2-1]
      continue;
    }
    // A literal or a `${clientid}` template: the same text, filled with the same client id.
    // A child `${token_id}` never equals it: the parent's was substituted, the child's id differs.
    if (cl === '+' || cl !== pl || cl.includes(TOKEN_ID_PLACEHOLDER)) return false;
  }
}

/** Path segments of a REST uri (`mqtt/sessions/` → ['mqtt', 'sessions']). */
function segments(uri: string): string[] {
  return uri.split('/').filter((s, i, all) => s !== '' || i !== all.length - 1);
}

/** True when `prefix` is `path` or a parent of it, on segment boundaries. */
function segmentPrefix(prefix: string[], path: string[]): boolean {
  if (prefix.length > path.length) return false;
  return prefix.every((s, i) => s === path[i]);
}

/** A method granted by a parent entry's methods; HEAD comes with GET (Rights.canRest). */
function methodGranted(method: HttpMethod, granted: readonly HttpMethod[]): boolean {
  return granted.includes(method) || (method === 'HEAD' && granted.includes('GET'));
}

/**
 * SPEC §3: REST entries covered by uri prefix and methods. Standard reaches
 * `/mqtt/*` except `/mqtt/logs`; master everything but `/platform`, which no
 * ACL token, hence no child, ever reaches. A child GET also grants HEAD, which
 * any parent granting GET grants too.
 */
function restCovered(entry: AclEntry, method: HttpMethod, submodule: string | null, parent: TokenAccess): boolean {
  const path = segments(entry.uri);
  if (path.length === 0 || (path[0] ?? '').toLowerCase() === 'platform') return false;
  if (parent.type === ACCESS_MASTER) return true;
  if (parent.type === ACCESS_STANDARD) {
    // `mqtt` alone would include /mqtt/logs, and anything that is an ancestor of it too.
    return path[0] === 'mqtt' && path.length >= 2 && path[1] !== 'logs';
  }
  const childIsSessions = path.join('/') === SESSIONS_URI;
  for (const p of parent.acl ?? []) {
    if (p.topic !== undefined || p.methods === undefined) continue;
    const parentPath = segments(p.uri);
    if (!segmentPrefix(parentPath, path)) continue;
    if (parentPath.join('/') === SESSIONS_URI) {
      // SPEC §3 (flespi's rule): item and submodule rights are separate, and `ids` limit both.
      // A child uri below `mqtt/sessions` mixes the two: never covered by this entry.
      if (!childIsSessions || !idsCovered(entry.ids, p.ids)) continue;
      const granted = submodule === null ? p.methods : p.submodules?.find((s) => s.name === submodule)?.methods ?? [];
      if (methodGranted(method, granted)) return true;
    } else if (methodGranted(method, p.methods)) {
      // A broader uri (`mqtt`): a path prefix, every submodule and client id included.
      return true;
    }
  }
  return false;
}

/** The limits of SPEC §2, in the order POST /auth/tokens checks them. */
const LIMIT_FIELDS = ['sessions', 'publish_rate'] as const satisfies readonly (keyof TokenLimits)[];

export type ChildLimits = { ok: true; limits: TokenLimits } | { ok: false; field: keyof TokenLimits; reason: string };

/**
 * SPEC §5 `POST /auth/tokens`: a child's `limits` are no looser than its
 * parent's; 0 (unlimited) is the loosest. A field the request left out
 * (`given` lacks it) takes the parent's value, so a child of a limited token
 * is limited alike without restating it; a looser value given is refused.
 * Either way the child's sessions also count toward each ancestor's
 * `limits.sessions` at CONNECT (SPEC §2 `parent`).
 */
export function childLimits(child: TokenLimits, given: ReadonlySet<string>, parent: TokenLimits): ChildLimits {
  const out: TokenLimits = { ...child };
  for (const field of LIMIT_FIELDS) {
    const mine = given.has(field) ? child[field] : parent[field];
    const theirs = parent[field];
    if (theirs > 0 && (mine === 0 || mine > theirs)) {
      return { ok: false, field, reason: `a child token's limits.${field} cannot be looser than its parent's (${theirs}; 0 is unlimited)` };
    }
    out[field] = mine;
  }
  return { ok: true, limits: out };
}
