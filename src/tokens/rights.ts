// What one session of a token may do (SPEC §3), compiled once per access and
// per access change, then asked per message. Answers questions; knows nothing
// of Aedes or HTTP frameworks (STYLE: hooks ask, tokens answer).
//
// Two ways to compile: `compileRights(access, ctx)` substitutes the SPEC §3
// placeholders for one session (REST checks use it); `compileSharedRights(access)`
// keeps them as templates, so that one compiled object serves every session of
// every token with that access, each session asking with itself as the context
// (`canReceive(topic, session)`). `forSession` says which one a session uses.

import { CLIENT_ID_PLACEHOLDER, TOKEN_ID_PLACEHOLDER, hasPlaceholder, substitutePlaceholders, type SessionContext } from './placeholders.js';
import { MAX_TOPIC_BYTES, filterError, intersects } from './topic.js';
import { TopicTrie, type MatchContext } from './topic-trie.js';
import { ACCESS_ACL, ACCESS_MASTER, ACCESS_STANDARD, HTTP_METHODS, SESSIONS_URI, type AccessType, type TokenAccess } from './types.js';
import { compileMask } from './masks.js';

export type { SessionContext } from './placeholders.js';

/**
 * A session asking with shared rights: its client id and token id, the id
 * also as the decimal text `${token_id}` stands for (kept, not rebuilt per message).
 */
export interface RightsContext extends MatchContext {
  readonly tokenId: number;
}

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
  /**
   * Uri `mqtt/sessions` (SPEC §3, flespi's rule): `methods` cover the collection
   * and its items only; each submodule (`/mqtt/sessions/{sel}/{name}...`) has
   * its own methods here. Null for every other uri: a plain path prefix.
   */
  readonly submodules: ReadonlyMap<string, number> | null;
  /** SPEC §3 `ids`: the client ids this entry reaches; null = all. */
  readonly ids: ((clientId: string) => boolean) | null;
}

/** Whether `grant` allows method bits `wanted` on the decoded `clean` path, whose raw form is `raw`. */
function grantAllows(grant: RestGrant, wanted: number, clean: string, raw: string): boolean {
  if (!(clean === grant.path || (clean.startsWith(grant.path) && clean.charCodeAt(grant.path.length) === 0x2f))) return false;
  if (grant.submodules === null) return (grant.methods & wanted) !== 0;
  // Segments of the raw path (a URL-encoded `/` in a client id stays inside its segment):
  // ['', 'mqtt', 'sessions', sel, name, ...]. The prefix matched above, decoded, so depth is the same.
  const depth = grant.path.split('/').length;
  const segments = raw.split('/');
  // The prefix written as is: no encoded '/' shifting the segments.
  if (segments.slice(0, depth).join('/') !== grant.path) return false;
  const rest = segments.length - depth;
  // The collection or one item (a trailing '/' adds an empty segment).
  if (rest <= 1 || (rest === 2 && segments[depth + 1] === '')) return (grant.methods & wanted) !== 0;
  let name: string;
  try {
    name = decodeURIComponent(segments[depth + 1] as string);
  } catch {
    return false;
  }
  return ((grant.submodules.get(name) ?? 0) & wanted) !== 0;
}

const METHOD_BITS: ReadonlyMap<string, number> = new Map(HTTP_METHODS.map((method, i) => [method, 1 << i]));
const GET = METHOD_BITS.get('GET') as number;
const HEAD = METHOD_BITS.get('HEAD') as number;

/** SPEC §5: `GET /auth/info` and `GET /auth/check` are open to any valid token. */
const AUTH_INFO = '/auth/info';
const AUTH_CHECK = '/auth/check';
/** SPEC §5: `POST /auth/tokens` (mint a child) too; what a child may get is containment's question. */
const AUTH_TOKENS = '/auth/tokens';
const POST = METHOD_BITS.get('POST') as number;

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
  /** `subscribeFilters[i]` still holds placeholders (shared rights only). */
  private readonly subscribeTemplated: readonly boolean[];
  private readonly restGrants: readonly RestGrant[];
  /** Index in `access.acl` of each subscribe filter (`subscribeFilters[i]`) and of each publish entry. */
  private readonly subscribeIndex: readonly number[];
  private readonly publishEntries: readonly PublishEntry[];
  /** One single-filter trie per publish entry, built on the first `explain` (never on the hot path). */
  private publishTries: TopicTrie[] | null = null;
  /** Shared rights: the filters with placeholders, which a session's values must turn into valid filters. */
  private readonly templates: readonly string[];
  /** The access these rights were compiled from (shared rights: one of the equal ones). */
  readonly access: TokenAccess;
  /** Upper bounds over the templates: UTF-8 bytes without `${clientid}` (a token id counted as 16 digits), and `${clientid}`s in one. */
  private readonly templateFixedBytes: number;
  private readonly templateClientIds: number;
  /** The shared rights these were derived from for one session (`forSession`); itself otherwise. */
  readonly base: Rights;

  constructor(
    type: AccessType,
    compiled: CompiledAcl,
    access: TokenAccess,
    base: Rights | null,
  ) {
    this.type = type;
    this.unrestricted = type === ACCESS_STANDARD || type === ACCESS_MASTER;
    this.seesBrokerTopics = type === ACCESS_MASTER;
    this.hasMqtt = this.unrestricted || compiled.publishTrie.count > 0 || compiled.subscribeTrie.count > 0;
    this.publishTrie = compiled.publishTrie;
    this.subscribeTrie = compiled.subscribeTrie;
    this.subscribeFilters = compiled.subscribeFilters;
    this.subscribeTemplated = compiled.subscribeTemplated;
    this.restGrants = compiled.restGrants;
    this.subscribeIndex = compiled.subscribeIndex;
    this.publishEntries = compiled.publishEntries;
    this.templates = compiled.templates;
    this.access = access;
    let fixed = 0;
    let clientIds = 0;
    for (const t of compiled.templates) {
      const ids = t.split(CLIENT_ID_PLACEHOLDER).length - 1;
      const tokenIds = t.split(TOKEN_ID_PLACEHOLDER).length - 1;
      const rest = t.length - ids * CLIENT_ID_PLACEHOLDER.length - tokenIds * TOKEN_ID_PLACEHOLDER.length;
      fixed = Math.max(fixed, 3 * rest + 16 * tokenIds);
      clientIds = Math.max(clientIds, ids);
    }
    this.templateFixedBytes = fixed;
    this.templateClientIds = clientIds;
    this.base = base ?? this;
  }

  /**
   * The common case, decided in one pass over the client id (per CONNECT):
   * `ctx` turns every template into a valid filter when the id has no `+`, `#`,
   * `/`, NUL or surrogate, does not start with `$`, and the longest filter it
   * makes stays within MAX_TOPIC_BYTES (the templates themselves were checked at
   * compile time). Conservative: `false` only means "check each template".
   */
  private fitsEveryTemplate(ctx: SessionContext): boolean {
    const id = ctx.clientId;
    if (!(Number.isSafeInteger(ctx.tokenId) && ctx.tokenId >= 0) || id.length === 0 || id.charCodeAt(0) === DOLLAR) return false;
    if (this.templateFixedBytes + this.templateClientIds * 3 * id.length > MAX_TOPIC_BYTES) return false;
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i);
      if (c === 0x2b || c === 0x23 || c === SLASH || c === 0 || (c >= 0xd800 && c <= 0xdfff)) return false;
    }
    return true;
  }

  /** True when these rights keep placeholders: questions must then name the session (`ctx`). */
  get shared(): boolean {
    return this.templates.length > 0;
  }

  /**
   * The rights a session with `ctx` uses: these, when every placeholder entry
   * turns into a valid filter with its values (the usual case: nothing per
   * session); else rights compiled for that session alone, in which the
   * entries it cannot use are dropped (SPEC §3: a client id with `+`, `#`, `/`,
   * a leading `$` for a leading `${clientid}`, a filter grown too long).
   * The session must then ask with the same `ctx`.
   */
  forSession(ctx: SessionContext): Rights {
    if (this.templates.length === 0 || this.fitsEveryTemplate(ctx)) return this;
    for (const filter of this.templates) {
      if (substitutePlaceholders(filter, ctx) === null) return new Rights(this.type, compileAcl(this.access, ctx), this.access, this);
    }
    return this;
  }

  /**
   * PUBLISH to topic name `topic` (per message). SPEC §3: never to the broker's
   * own topics (`$SYS`, `$tokenmq`), master included; ACL: some publish entry matches.
   */
  canPublish(topic: string, ctx?: MatchContext): boolean {
    if (isBrokerTopic(topic)) return false;
    return this.unrestricted || this.publishTrie.match(topic, ctx);
  }

  /**
   * SUBSCRIBE to `filter` (SPEC §3). Master: any. Standard: any but the
   * broker's own topics (a filter whose first level is `$SYS` or `$tokenmq`;
   * `#` and `+` never reach `$` topics [MQTT-4.7.2-1]). ACL: a subscribe entry
   * must intersect it (some topic could match both), so `$SYS/...` needs an
   * entry naming `$SYS`; what is then delivered is filtered per message by `canReceive`.
   */
  canSubscribe(filter: string, ctx?: SessionContext): boolean {
    if (this.unrestricted) return this.seesBrokerTopics || !isBrokerTopic(filter);
    return this.subscribeEntry(filter, ctx) !== -1;
  }

  /** ACL: the first subscribe filter (index in `subscribeFilters`) that intersects `filter`, or -1. */
  private subscribeEntry(filter: string, ctx?: SessionContext): number {
    if (filterError(filter) !== null) return -1;
    const entries = this.subscribeFilters;
    for (let i = 0; i < entries.length; i++) {
      let entry: string | null = entries[i] as string;
      // Per SUBSCRIBE, not per message: the placeholders are filled in here.
      if (this.subscribeTemplated[i]) entry = ctx === undefined ? null : substitutePlaceholders(entry, ctx);
      if (entry !== null && intersects(entry, filter)) return i;
    }
    return -1;
  }

  /**
   * Why PUBLISH to topic `name` or SUBSCRIBE to `filter` is allowed or not
   * (`GET /auth/check`, SPEC §5): the same answer as `canPublish`/`canSubscribe`,
   * plus the index in `access.acl` of the entry that decides (the first that
   * grants; null for master/standard and for refusals). `ctx` as for those.
   */
  explain(action: 'publish' | 'subscribe', topic: string, ctx: SessionContext & MatchContext): RightsDecision {
    const broker = isBrokerTopic(topic);
    if (action === 'publish' && broker) {
      return { allowed: false, entry: null, reason: 'only the broker publishes to $SYS/... and $tokenmq/... (SPEC §3)' };
    }
    if (this.type === ACCESS_MASTER) return { allowed: true, entry: null, reason: 'master token: every topic' };
    if (this.type === ACCESS_STANDARD) {
      return broker
        ? { allowed: false, entry: null, reason: "standard token: every topic except the broker's own ($SYS, $tokenmq)" }
        : { allowed: true, entry: null, reason: "standard token: every topic except the broker's own ($SYS, $tokenmq)" };
    }
    const dollar = topic.charCodeAt(0) === DOLLAR
      ? ' (a topic beginning with $ is matched only by a filter naming that $ level, MQTT-4.7.2-1)' : '';
    if (action === 'subscribe') {
      const i = this.subscribeEntry(topic, ctx);
      if (i === -1) return { allowed: false, entry: null, reason: `no ACL entry with subscribe intersects the filter${dollar}` };
      const index = this.subscribeIndex[i] as number;
      return { allowed: true, entry: index, reason: `ACL entry ${index} allows subscribe` };
    }
    if (!this.canPublish(topic, ctx)) return { allowed: false, entry: null, reason: `no ACL entry with publish matches the topic${dollar}` };
    const tries = this.publishTries ??= this.publishEntries.map((e) => {
      const trie = new TopicTrie();
      trie.add(e.filter, e.templated);
      return trie;
    });
    for (let i = 0; i < tries.length; i++) {
      if ((tries[i] as TopicTrie).match(topic, ctx)) {
        const index = (this.publishEntries[i] as PublishEntry).index;
        return { allowed: true, entry: index, reason: `ACL entry ${index} allows publish` };
      }
    }
    return { allowed: true, entry: null, reason: 'allowed by the ACL' };
  }

  /**
   * Delivery of a message on `topic` to this session (per delivery, authorizeForward;
   * SPEC §3, §4), whatever path brought it (live, retained, queued, a subscription
   * kept from wider rights): the broker's own topics only to master and ACL entries naming them.
   */
  canReceive(topic: string, ctx?: MatchContext): boolean {
    if (this.unrestricted) return this.seesBrokerTopics || !isBrokerTopic(topic);
    return this.subscribeTrie.match(topic, ctx);
  }

  /**
   * A REST request (SPEC §3, §5). `path` is the request path (a query string is
   * ignored). Master: everything. Standard: everything outside `/platform`.
   * ACL: entries whose uri is a prefix of the path on a segment boundary, with
   * the method (HEAD comes with GET); never `/platform`. `GET /auth/info`: any
   * valid token, and so is `GET /auth/check`. Paths that a router might read differently from us (empty or
   * dot segments, bad percent-encoding) are refused to all but master.
   */
  canRest(method: string, path: string): boolean {
    const query = path.indexOf('?');
    const rawPath = query === -1 ? path : path.slice(0, query);
    const bit = METHOD_BITS.get(method.toUpperCase()) ?? 0;
    if ((rawPath === AUTH_INFO || rawPath === AUTH_CHECK) && (bit === GET || bit === HEAD)) return true;
    if (rawPath === AUTH_TOKENS && bit === POST) return true;
    if (this.type === ACCESS_MASTER) return true;
    const clean = cleanPath(rawPath);
    if (clean === null || isPlatformPath(clean)) return false;
    // SPEC §3: standard reaches all of /mqtt/* except the broker log.
    if (this.type === ACCESS_STANDARD) return !isLogsPath(clean);
    if (bit === 0) return false;
    const wanted = bit === HEAD ? HEAD | GET : bit;
    for (const grant of this.restGrants) {
      if (grantAllows(grant, wanted, clean, rawPath)) return true;
    }
    return false;
  }

  /**
   * SPEC §3 `ids`: which client ids a REST request under `/mqtt/sessions` may
   * reach, as a matcher; null when any (master, standard, or some entry granting
   * the request without `ids`). The union of the granting entries' masks.
   */
  restClientIds(method: string, path: string): ((clientId: string) => boolean) | null {
    if (this.unrestricted) return null;
    const query = path.indexOf('?');
    const rawPath = query === -1 ? path : path.slice(0, query);
    const clean = cleanPath(rawPath);
    const bit = METHOD_BITS.get(method.toUpperCase()) ?? 0;
    if (clean === null || bit === 0) return NOTHING;
    const wanted = bit === HEAD ? HEAD | GET : bit;
    const scopes: ((clientId: string) => boolean)[] = [];
    for (const grant of this.restGrants) {
      if (!grantAllows(grant, wanted, clean, rawPath)) continue;
      if (grant.ids === null) return null;
      scopes.push(grant.ids);
    }
    if (scopes.length === 0) return NOTHING;
    return scopes.length === 1 ? scopes[0] as (clientId: string) => boolean : (id) => scopes.some((scope) => scope(id));
  }
}

const NOTHING = (): boolean => false;

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

/** `/mqtt/logs` and below, in any letter case (SPEC §3: not for standard tokens). */
function isLogsPath(path: string): boolean {
  const head = path.slice(0, 11).toLowerCase();
  return head === '/mqtt/logs' || head === '/mqtt/logs/';
}

/** `/platform` and below, in any letter case (routers may be case-insensitive). */
function isPlatformPath(path: string): boolean {
  const head = path.slice(0, 10).toLowerCase();
  return head === '/platform' || head === '/platform/';
}

/** The shortest values a session can give: a template invalid with them is invalid with any. */
const PROBE: SessionContext = { clientId: 'x', tokenId: 0 };

/** `Rights.explain`: the answer, the deciding entry's index in `access.acl` (or null), and why. */
export interface RightsDecision {
  allowed: boolean;
  entry: number | null;
  reason: string;
}

/** A publish filter and the index of its entry in `access.acl`. */
interface PublishEntry {
  readonly index: number;
  readonly filter: string;
  readonly templated: boolean;
}

/** The parts of a Rights that come from the ACL entries. */
interface CompiledAcl {
  publishTrie: TopicTrie;
  subscribeTrie: TopicTrie;
  subscribeFilters: string[];
  subscribeTemplated: boolean[];
  subscribeIndex: number[];
  publishEntries: PublishEntry[];
  restGrants: RestGrant[];
  templates: string[];
}

/**
 * Compiles a token's access for one session (SPEC §3). Placeholders are
 * substituted for `ctx`; entries that cannot be (see placeholders.ts) or that
 * are malformed are dropped, never widened. An unknown access type grants
 * nothing (default deny).
 */
export function compileRights(access: TokenAccess, ctx: SessionContext): Rights {
  return new Rights(accessType(access), compileAcl(access, ctx), access, null);
}

/**
 * Compiles a token's access once for all its sessions, and for every token
 * with the same access: placeholder entries are kept as templates, filled in
 * per question from the asking session. Sessions take it through
 * `forSession(ctx)` and then ask with that `ctx`.
 */
export function compileSharedRights(access: TokenAccess): Rights {
  return new Rights(accessType(access), compileAcl(access, null), access, null);
}

function accessType(access: TokenAccess): AccessType {
  return access.type === ACCESS_STANDARD || access.type === ACCESS_MASTER ? access.type : ACCESS_ACL;
}

/** `ctx` null: placeholders stay, as templates (compileSharedRights). */
function compileAcl(access: TokenAccess, ctx: SessionContext | null): CompiledAcl {
  const out: CompiledAcl = {
    publishTrie: new TopicTrie(), subscribeTrie: new TopicTrie(), subscribeFilters: [], subscribeTemplated: [],
    subscribeIndex: [], publishEntries: [], restGrants: [], templates: [],
  };
  const type = access.type;
  if (type === ACCESS_STANDARD || type === ACCESS_MASTER) return out;
  const acl = access.acl ?? [];
  for (let index = 0; index < acl.length; index++) {
    const entry = acl[index] as (typeof acl)[number];
    if (entry.topic !== undefined) {
      if (entry.uri !== 'mqtt' || entry.actions === undefined) continue;
      const templated = ctx === null && hasPlaceholder(entry.topic);
      // A template that no client id can make valid (a misplaced wildcard, too long even
      // for a one-character id) is dropped for everyone, as substitution would drop it.
      if (templated && substitutePlaceholders(entry.topic, PROBE) === null) continue;
      const filter = ctx === null ? entry.topic : substitutePlaceholders(entry.topic, ctx);
      if (filter === null) continue;
      const publish = entry.actions.includes('publish');
      const subscribe = entry.actions.includes('subscribe');
      if (templated && (publish || subscribe)) out.templates.push(filter);
      if (publish) {
        out.publishTrie.add(filter, templated);
        out.publishEntries.push({ index, filter, templated });
      }
      if (subscribe) {
        out.subscribeTrie.add(filter, templated);
        out.subscribeFilters.push(filter);
        out.subscribeTemplated.push(templated);
        out.subscribeIndex.push(index);
      }
    } else if (entry.methods !== undefined) {
      const path = `/${entry.uri}`;
      // SPEC §3: an ACL token can never be granted /platform; '' would be everything.
      if (entry.uri === '' || isPlatformPath(path) || cleanPath(path) === null) continue;
      let methods = 0;
      for (const method of entry.methods) methods |= METHOD_BITS.get(method) ?? 0;
      const trimmed = path.endsWith('/') ? path.slice(0, -1) : path;
      // SPEC §3: a narrower uri `mqtt/sessions` splits item and submodule rights; ids limit both.
      const sessions = trimmed === `/${SESSIONS_URI}`;
      let submodules: Map<string, number> | null = null;
      if (sessions) {
        submodules = new Map();
        for (const sub of entry.submodules ?? []) {
          let bits = 0;
          for (const method of sub.methods ?? []) bits |= METHOD_BITS.get(method) ?? 0;
          submodules.set(sub.name, bits);
        }
      }
      let ids: ((clientId: string) => boolean) | null = null;
      if (sessions && entry.ids !== undefined) {
        const masks = entry.ids.filter((m) => typeof m === 'string').map(compileMask);
        ids = (id) => masks.some((mask) => mask(id));
      }
      out.restGrants.push({ path: trimmed, methods, submodules, ids });
    }
  }
  return out;
}
