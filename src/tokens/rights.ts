// What one session of a token may do (SPEC §3), compiled once per session and
// per access change, then asked per message. Answers questions; knows nothing
// of Aedes or HTTP frameworks (STYLE: hooks ask, tokens answer).

import { substitutePlaceholders, type SessionContext } from './placeholders.js';
import { filterError, intersects } from './topic.js';
import { TopicTrie } from './topic-trie.js';
import { ACCESS_ACL, ACCESS_MASTER, ACCESS_STANDARD, HTTP_METHODS, type AccessType, type TokenAccess } from './types.js';

export type { SessionContext } from './placeholders.js';

const SLASH = 0x2f;
const DOLLAR = 0x24;
const SYS = '$SYS';
const TOKENMQ = '$tokenmq';

/** True when the first level of `s` is exactly `level`. */
function firstLevelIs(s: string, level: string): boolean {
  return s.startsWith(level) && (s.length === level.length || s.charCodeAt(level.length) === SLASH);
}

/**
 * The broker's own topics (SPEC §3): a topic name or filter whose first level
 * is `$SYS` (where Aedes announces every client id and subscription) or
 * `$tokenmq` (broker events). Only the broker publishes there; only master and
 * ACL entries that name them see them. Allocation-free: asked per delivery.
 */
export function isBrokerTopic(topic: string): boolean {
  return topic.charCodeAt(0) === DOLLAR && (firstLevelIs(topic, SYS) || firstLevelIs(topic, TOKENMQ));
}

/** @deprecated the rule covers `$tokenmq` too: use `isBrokerTopic`. */
export const isSysTopic = isBrokerTopic;

/** A REST grant of an ACL entry: a path prefix on segment boundaries and a method bitmask. */
interface RestGrant {
  /** `/mqtt/sessions` for uri `mqtt/sessions`. */
  readonly path: string;
  readonly methods: number;
}

const METHOD_BITS: ReadonlyMap<string, number> = new Map(HTTP_METHODS.map((method, i) => [method, 1 << i]));
const GET = METHOD_BITS.get('GET') as number;
const HEAD = METHOD_BITS.get('HEAD') as number;

/** SPEC §5: `GET /auth/info` is open to any valid token. */
const AUTH_INFO = '/auth/info';

/**
 * One session's rights. A single class for every access type, so the hot
 * methods see one shape; `unrestricted` is true for standard and master, and
 * `seesBrokerTopics` for master only (SPEC §3: a standard token has every
 * topic except `$SYS/...` and `$tokenmq/...`).
 */
export class Rights {
  readonly type: AccessType;
  /** False when the token cannot use MQTT at all: CONNECT is refused (SPEC §3, CONNACK 5). */
  readonly hasMqtt: boolean;
  private readonly unrestricted: boolean;
  private readonly seesBrokerTopics: boolean;
  private readonly publishTrie: TopicTrie;
  private readonly subscribeTrie: TopicTrie;
  private readonly subscribeFilters: readonly string[];
  private readonly restGrants: readonly RestGrant[];

  constructor(
    type: AccessType,
    publishTrie: TopicTrie,
    subscribeTrie: TopicTrie,
    subscribeFilters: readonly string[],
    restGrants: readonly RestGrant[],
  ) {
    this.type = type;
    this.unrestricted = type === ACCESS_STANDARD || type === ACCESS_MASTER;
    this.seesBrokerTopics = type === ACCESS_MASTER;
    this.hasMqtt = this.unrestricted || publishTrie.count > 0 || subscribeTrie.count > 0;
    this.publishTrie = publishTrie;
    this.subscribeTrie = subscribeTrie;
    this.subscribeFilters = subscribeFilters;
    this.restGrants = restGrants;
  }

  /**
   * PUBLISH to topic name `topic` (per message). SPEC §3: never to the broker's
   * own topics (`$SYS`, `$tokenmq`), master included; ACL: some publish entry matches.
   */
  canPublish(topic: string): boolean {
    if (isBrokerTopic(topic)) return false;
    return this.unrestricted || this.publishTrie.match(topic);
  }

  /**
   * SUBSCRIBE to `filter` (SPEC §3). Master: any. Standard: any but the
   * broker's own topics (a filter whose first level is `$SYS` or `$tokenmq`;
   * `#` and `+` never reach `$` topics [MQTT-4.7.2-1]). ACL: a subscribe entry
   * must intersect it (some topic could match both), so `$SYS/...` needs an
   * entry naming `$SYS`; what is then delivered is filtered per message by `canReceive`.
   */
  canSubscribe(filter: string): boolean {
    if (this.unrestricted) return this.seesBrokerTopics || !isBrokerTopic(filter);
    if (filterError(filter) !== null) return false;
    for (const entry of this.subscribeFilters) {
      if (intersects(entry, filter)) return true;
    }
    return false;
  }

  /**
   * Delivery of a message on `topic` to this session (per delivery, authorizeForward;
   * SPEC §3, §4), whatever path brought it (live, retained, queued, a subscription
   * kept from wider rights): the broker's own topics only to master and ACL entries naming them.
   */
  canReceive(topic: string): boolean {
    if (this.unrestricted) return this.seesBrokerTopics || !isBrokerTopic(topic);
    return this.subscribeTrie.match(topic);
  }

  /**
   * A REST request (SPEC §3, §5). `path` is the request path (a query string is
   * ignored). Master: everything. Standard: everything outside `/platform`.
   * ACL: entries whose uri is a prefix of the path on a segment boundary, with
   * the method (HEAD comes with GET); never `/platform`. `GET /auth/info`: any
   * valid token. Paths that a router might read differently from us (empty or
   * dot segments, bad percent-encoding) are refused to all but master.
   */
  canRest(method: string, path: string): boolean {
    const query = path.indexOf('?');
    const rawPath = query === -1 ? path : path.slice(0, query);
    const bit = METHOD_BITS.get(method.toUpperCase()) ?? 0;
    if (rawPath === AUTH_INFO && (bit === GET || bit === HEAD)) return true;
    if (this.type === ACCESS_MASTER) return true;
    const clean = cleanPath(rawPath);
    if (clean === null || isPlatformPath(clean)) return false;
    if (this.type === ACCESS_STANDARD) return true;
    if (bit === 0) return false;
    const wanted = bit === HEAD ? HEAD | GET : bit;
    for (const grant of this.restGrants) {
      if ((grant.methods & wanted) === 0) continue;
      if (clean === grant.path || (clean.startsWith(grant.path) && clean.charCodeAt(grant.path.length) === 0x2f)) return true;
    }
    return false;
  }
}

/**
 * The path as a router would see it after percent-decoding, or null when it
 * is ambiguous: not absolute, `//`, `.`/`..` segments, or malformed escapes.
 * Decoding `%2F` too makes us stricter than the router, never looser.
 */
function cleanPath(path: string): string | null {
  let decoded = path;
  if (path.includes('%')) {
    try {
      decoded = decodeURIComponent(path);
    } catch {
      return null;
    }
  }
  if (decoded.charCodeAt(0) !== 0x2f) return null;
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i];
    if (segment === '.' || segment === '..' || segment === '\\') return null;
    if (segment === '' && i !== segments.length - 1) return null; // `//`; a trailing `/` is fine
  }
  return decoded.includes('\\') || decoded.includes('\0') ? null : decoded;
}

/** `/platform` and below, in any letter case (routers may be case-insensitive). */
function isPlatformPath(path: string): boolean {
  const head = path.slice(0, 10).toLowerCase();
  return head === '/platform' || head === '/platform/';
}

/**
 * Compiles a token's access for one session (SPEC §3). Placeholders are
 * substituted for `ctx`; entries that cannot be (see placeholders.ts) or that
 * are malformed are dropped, never widened. An unknown access type grants
 * nothing (default deny).
 */
export function compileRights(access: TokenAccess, ctx: SessionContext): Rights {
  const publishTrie = new TopicTrie();
  const subscribeTrie = new TopicTrie();
  const subscribeFilters: string[] = [];
  const restGrants: RestGrant[] = [];
  const type = access.type;
  if (type === ACCESS_STANDARD || type === ACCESS_MASTER) {
    return new Rights(type, publishTrie, subscribeTrie, subscribeFilters, restGrants);
  }
  for (const entry of access.acl ?? []) {
    if (entry.topic !== undefined) {
      if (entry.uri !== 'mqtt' || entry.actions === undefined) continue;
      const filter = substitutePlaceholders(entry.topic, ctx);
      if (filter === null) continue;
      if (entry.actions.includes('publish')) publishTrie.add(filter);
      if (entry.actions.includes('subscribe')) {
        subscribeTrie.add(filter);
        subscribeFilters.push(filter);
      }
    } else if (entry.methods !== undefined) {
      const path = `/${entry.uri}`;
      // SPEC §3: an ACL token can never be granted /platform; '' would be everything.
      if (entry.uri === '' || isPlatformPath(path) || cleanPath(path) === null) continue;
      let methods = 0;
      for (const method of entry.methods) methods |= METHOD_BITS.get(method) ?? 0;
      restGrants.push({ path: path.endsWith('/') ? path.slice(0, -1) : path, methods });
    }
  }
  return new Rights(ACCESS_ACL, publishTrie, subscribeTrie, subscribeFilters, restGrants);
}
