// Validation of client-supplied token fields (SPEC §2, §3, §5 "unknown fields
// are a 400"). Input is `unknown` (parsed JSON); output is always a fresh plain
// object built field by field, never the caller's objects. Only own properties
// of the input are read, and metadata keys that could reach Object.prototype
// are refused, so a body cannot pollute prototypes.

import { TokenValidationError } from './errors.js';
import { compileIpMasks } from './ips.js';
import { parseClientIdMasks } from './clientids.js';
import { filterError } from './topic.js';
import { clockProblem } from './validity.js';
import {
  ACCESS_ACL,
  ACCESS_MASTER,
  ACCESS_STANDARD,
  HTTP_METHODS,
  LIMITS,
  MQTT_ACTIONS,
  SESSIONS_URI,
  SESSION_SUBMODULES,
  type AclEntry,
  type AclSubmodule,
  type HttpMethod,
  type MqttAction,
  type NormalizedTokenInput,
  type TokenInput,
  type Token,
  type TokenAccess,
  type TokenPatch,
  type TokenLimits,
  WRITABLE_FIELDS,
} from './types.js';

export { TokenValidationError } from './errors.js';

/** Server-owned token fields: naming one in a body is an error of its own kind. */
const READ_ONLY_FIELDS: readonly string[] = ['id', 'key', 'created', 'accessed', 'parent'];
const ACCESS_FIELDS: readonly string[] = ['type', 'acl'];
const LIMITS_FIELDS: readonly string[] = ['sessions', 'publish_rate'];
const ACL_ENTRY_FIELDS: readonly string[] = ['uri', 'topic', 'actions', 'methods', 'ids', 'submodules'];
/** Keys that, assigned on a plain object, reach or shadow its prototype. */
const FORBIDDEN_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];
/** A REST ACL uri: path segments without the leading slash (`mqtt/sessions`). */
const URI_PATH = /^[A-Za-z0-9_.~-]+(?:\/[A-Za-z0-9_.~-]+)*$/;

type JsonObject = Record<string, unknown>;

/**
 * Validates a token to create (SPEC §2) and fills in defaults: info '',
 * enabled true, expire 0, ttl 0, access {type: 0}, ips '', metadata {}.
 * A token that would be invalid by time at `now` is refused.
 */
export function validateCreate(input: unknown, now: number): NormalizedTokenInput {
  const token = withDefaults(parseFields(input));
  // SPEC §2: creating a token that is already invalid is a 400. It is created and accessed now.
  checkTimes({ expire: token.expire, ttl: token.ttl, created: now, accessed: now }, now, 'creation');
  return token;
}

/** The defaults of a new token (SPEC §2), for the fields the input leaves out. Objects are not copied. */
export function withDefaults(fields: TokenInput): NormalizedTokenInput {
  return {
    info: fields.info ?? '',
    enabled: fields.enabled ?? true,
    expire: fields.expire ?? 0,
    ttl: fields.ttl ?? 0,
    access: fields.access ?? { type: ACCESS_STANDARD },
    ips: fields.ips ?? '',
    metadata: fields.metadata ?? {},
    clientids: fields.clientids ?? '',
    limits: fields.limits ?? { sessions: 0, publish_rate: 0 },
  };
}

/** Validates a change (SPEC §5 PUT): only the fields given, each checked on its own. */
export function validatePatch(input: unknown): TokenPatch {
  return parseFields(input);
}

/**
 * Checks a token after a patch was merged into it: at least one of expire/ttl
 * is in use, and the change does not leave it already expired by time at `now`
 * (that would delete it at once, maybe the caller's own master token; DELETE
 * is there for that).
 */
export function checkResult(token: Pick<Token, 'expire' | 'ttl' | 'created' | 'accessed'>, now: number): void {
  checkTimes(token, now, 'change');
}

function checkTimes(token: Pick<Token, 'expire' | 'ttl' | 'created' | 'accessed'>, now: number, what: 'creation' | 'change'): void {
  const problem = clockProblem(token, now);
  if (problem === null) return;
  if (problem === 'no_clock') {
    throw new TokenValidationError('expire', 'expire or ttl must be non-zero: a token with neither is never valid (SPEC §2)');
  }
  const outcome = what === 'creation' ? 'the token would never be valid' : 'the change would expire the token (use DELETE to remove it)';
  if (token.ttl > 0 && token.expire === 0) {
    throw new TokenValidationError('ttl', `has already run out since the token's last use: ${outcome}`);
  }
  throw new TokenValidationError('expire', `must be in the future (now is ${now}): ${outcome}`);
}

function parseFields(input: unknown): TokenPatch {
  if (!isJsonObject(input)) throw new TokenValidationError('token', 'must be a JSON object');
  checkFieldNames(input, WRITABLE_FIELDS, '');
  const out: TokenPatch = {};
  if (Object.hasOwn(input, 'info')) out.info = parseString(input.info, 'info', LIMITS.info);
  if (Object.hasOwn(input, 'enabled')) out.enabled = parseBoolean(input.enabled, 'enabled');
  if (Object.hasOwn(input, 'expire')) out.expire = parseInteger(input.expire, 'expire', LIMITS.expire);
  if (Object.hasOwn(input, 'ttl')) out.ttl = parseInteger(input.ttl, 'ttl', LIMITS.ttl);
  if (Object.hasOwn(input, 'access')) out.access = parseAccess(input.access);
  if (Object.hasOwn(input, 'ips')) out.ips = parseIps(input.ips);
  if (Object.hasOwn(input, 'metadata')) out.metadata = parseMetadata(input.metadata);
  if (Object.hasOwn(input, 'clientids')) out.clientids = parseClientIds(input.clientids);
  if (Object.hasOwn(input, 'limits')) out.limits = parseLimits(input.limits);
  return out;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every own key must be one of `allowed`; `path` prefixes nested field names. */
function checkFieldNames(object: JsonObject, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(object)) {
    if (allowed.includes(key)) continue;
    if (path === '' && READ_ONLY_FIELDS.includes(key)) throw TokenValidationError.readOnlyField(key);
    throw TokenValidationError.unknownField(path === '' ? shorten(key) : `${path}.${shorten(key)}`);
  }
}

/** Echoing client text in a message: keep it short. */
function shorten(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}...` : text;
}

/** Length in Unicode code points, as JSON Schema's maxLength counts. */
function charCount(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

function parseString(value: unknown, field: string, maxChars: number): string {
  if (typeof value !== 'string') throw new TokenValidationError(field, 'must be a string');
  if (value.length > maxChars && charCount(value) > maxChars) {
    throw new TokenValidationError(field, `longer than ${maxChars} characters`);
  }
  return value;
}

function parseBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new TokenValidationError(field, 'must be true or false');
  return value;
}

function parseInteger(value: unknown, field: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new TokenValidationError(field, 'must be an integer >= 0');
  }
  if (value > max) throw new TokenValidationError(field, `must be at most ${max}`);
  return value === 0 ? 0 : value; // no -0
}

function parseAccess(value: unknown): TokenAccess {
  if (!isJsonObject(value)) throw new TokenValidationError('access', 'must be an object like {"type": 0}');
  checkFieldNames(value, ACCESS_FIELDS, 'access');
  if (!Object.hasOwn(value, 'type')) throw new TokenValidationError('access.type', 'required');
  const type = value.type;
  if (type !== ACCESS_STANDARD && type !== ACCESS_MASTER && type !== ACCESS_ACL) {
    throw new TokenValidationError('access.type', 'must be 0 (standard), 1 (master) or 2 (ACL)');
  }
  const acl = Object.hasOwn(value, 'acl') ? value.acl : [];
  if (!Array.isArray(acl)) throw new TokenValidationError('access.acl', 'must be an array');
  if (type !== ACCESS_ACL) {
    // SPEC §3: standard and master rights are fixed; an ACL would be silently ignored.
    if (acl.length > 0) throw new TokenValidationError('access.acl', 'only allowed with access type 2 (ACL)');
    return { type };
  }
  if (acl.length > LIMITS.aclEntries) {
    throw new TokenValidationError('access.acl', `more than ${LIMITS.aclEntries} entries`);
  }
  const entries: AclEntry[] = [];
  for (let i = 0; i < acl.length; i++) entries.push(parseAclEntry(acl[i], `access.acl[${i}]`));
  return { type: ACCESS_ACL, acl: entries };
}

function parseAclEntry(value: unknown, path: string): AclEntry {
  if (!isJsonObject(value)) throw new TokenValidationError(path, 'must be an object');
  checkFieldNames(value, ACL_ENTRY_FIELDS, path);
  if (!Object.hasOwn(value, 'uri')) throw new TokenValidationError(`${path}.uri`, 'required');
  const uri = value.uri;
  if (typeof uri !== 'string') throw new TokenValidationError(`${path}.uri`, 'must be a string');
  const isTopicEntry = Object.hasOwn(value, 'topic') || Object.hasOwn(value, 'actions');
  const isRestEntry = Object.hasOwn(value, 'methods');
  if (isTopicEntry && isRestEntry) {
    throw new TokenValidationError(path, 'has either topic and actions (MQTT rights) or methods (REST rights), not both');
  }
  if (!isRestEntry && (Object.hasOwn(value, 'ids') || Object.hasOwn(value, 'submodules'))) {
    throw new TokenValidationError(path, `ids and submodules belong to a REST entry (uri '${SESSIONS_URI}', with methods)`);
  }
  if (isTopicEntry) {
    if (uri !== 'mqtt') throw new TokenValidationError(`${path}.uri`, "must be 'mqtt' in an entry with topic and actions");
    return { uri: 'mqtt', topic: parseFilter(value.topic, `${path}.topic`), actions: parseActions(value.actions, `${path}.actions`) };
  }
  if (isRestEntry) {
    const entry: AclEntry = { uri: parseUri(uri, `${path}.uri`), methods: parseMethods(value.methods, `${path}.methods`) };
    parseSessionScope(value, entry, path);
    return entry;
  }
  throw new TokenValidationError(path, "needs topic and actions (uri 'mqtt') or methods (REST)");
}

/** SPEC §3 `ids` and `submodules` of a `mqtt/sessions` entry (absent: all ids, no submodule). */
function parseSessionScope(value: Record<string, unknown>, entry: AclEntry, path: string): void {
  const hasIds = Object.hasOwn(value, 'ids');
  const hasSubs = Object.hasOwn(value, 'submodules');
  if (!hasIds && !hasSubs) return;
  if (entry.uri !== SESSIONS_URI) throw new TokenValidationError(hasIds ? `${path}.ids` : `${path}.submodules`, `only an entry with uri '${SESSIONS_URI}' takes it`);
  if (hasIds) {
    const ids = value.ids;
    if (!Array.isArray(ids) || ids.length === 0) throw new TokenValidationError(`${path}.ids`, 'must be a non-empty array of client id masks');
    if (ids.length > LIMITS.aclEntries) throw new TokenValidationError(`${path}.ids`, `more than ${LIMITS.aclEntries} masks`);
    ids.forEach((id: unknown, i) => {
      if (typeof id !== 'string' || id.length === 0 || id.length > LIMITS.uri) {
        throw new TokenValidationError(`${path}.ids[${i}]`, `must be a client id mask of 1 to ${LIMITS.uri} characters`);
      }
    });
    entry.ids = [...new Set(ids as string[])];
  }
  if (hasSubs) {
    const subs = value.submodules;
    if (!Array.isArray(subs)) throw new TokenValidationError(`${path}.submodules`, 'must be an array');
    const out: AclSubmodule[] = [];
    subs.forEach((sub: unknown, i) => {
      const field = `${path}.submodules[${i}]`;
      if (!isJsonObject(sub)) throw new TokenValidationError(field, 'must be an object');
      checkFieldNames(sub, ['name', 'methods'], field);
      if (typeof sub.name !== 'string' || !SESSION_SUBMODULES.includes(sub.name)) {
        throw new TokenValidationError(`${field}.name`, `must be one of ${SESSION_SUBMODULES.join(', ')}`);
      }
      if (out.some((o) => o.name === sub.name)) throw new TokenValidationError(`${field}.name`, `duplicate '${sub.name}'`);
      out.push({ name: sub.name, methods: parseMethods(sub.methods, `${field}.methods`) });
    });
    entry.submodules = out;
  }
}

function parseFilter(value: unknown, field: string): string {
  if (value === undefined) throw new TokenValidationError(field, 'required');
  if (typeof value !== 'string') throw new TokenValidationError(field, 'must be a string');
  const problem = filterError(value);
  if (problem !== null) throw new TokenValidationError(field, problem);
  return value;
}

function parseActions(value: unknown, field: string): MqttAction[] {
  return parseChoices(value, field, MQTT_ACTIONS, "'publish' and/or 'subscribe'");
}

function parseMethods(value: unknown, field: string): HttpMethod[] {
  return parseChoices(value, field, HTTP_METHODS, HTTP_METHODS.join(', '));
}

/** A non-empty array of distinct values, each one of `choices`. */
function parseChoices<T extends string>(value: unknown, field: string, choices: readonly T[], expected: string): T[] {
  if (value === undefined) throw new TokenValidationError(field, 'required');
  if (!Array.isArray(value)) throw new TokenValidationError(field, `must be an array of ${expected}`);
  if (value.length === 0) throw new TokenValidationError(field, `must not be empty (expected ${expected})`);
  const out: T[] = [];
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    const choice = choices.find((c) => c === item);
    if (choice === undefined) {
      const shown = typeof item === 'string' ? `'${shorten(item)}'` : JSON.stringify(item) ?? String(item);
      throw new TokenValidationError(`${field}[${i}]`, `unknown value ${shown} (expected ${expected})`);
    }
    if (out.includes(choice)) throw new TokenValidationError(field, `duplicate '${choice}'`);
    out.push(choice);
  }
  return out;
}

function parseUri(uri: string, field: string): string {
  if (uri.length > LIMITS.uri) throw new TokenValidationError(field, `longer than ${LIMITS.uri} characters`);
  if (/^platform/i.test(uri)) throw new TokenValidationError(field, 'ACL tokens can never be granted /platform (SPEC §3)');
  if (uri.startsWith('/')) throw new TokenValidationError(field, "must not start with '/' (write 'mqtt/sessions', not '/mqtt/sessions')");
  if (!URI_PATH.test(uri) || uri.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new TokenValidationError(field, "must be a path like 'mqtt' or 'mqtt/sessions'");
  }
  return uri;
}

function parseIps(value: unknown): string {
  const ips = parseString(value, 'ips', LIMITS.ips);
  compileIpMasks(ips); // throws TokenValidationError('ips', ...) on a malformed mask
  return ips;
}

function parseClientIds(value: unknown): string {
  const text = parseString(value, 'clientids', LIMITS.clientids);
  parseClientIdMasks(text); // throws TokenValidationError('clientids', ...) on an unknown placeholder
  return text;
}

/** SPEC §2: `{"sessions": N, "publish_rate": M}`, each 0 or absent = unlimited; replaced whole by a PUT. */
function parseLimits(value: unknown): TokenLimits {
  if (!isJsonObject(value)) throw new TokenValidationError('limits', 'must be an object like {"sessions": 10, "publish_rate": 100}');
  checkFieldNames(value, LIMITS_FIELDS, 'limits');
  return {
    sessions: Object.hasOwn(value, 'sessions') ? parseInteger(value.sessions, 'limits.sessions', LIMITS.sessions) : 0,
    publish_rate: Object.hasOwn(value, 'publish_rate') ? parseInteger(value.publish_rate, 'limits.publish_rate', LIMITS.publishRate) : 0,
  };
}

function parseMetadata(value: unknown): Record<string, string> {
  if (!isJsonObject(value)) throw new TokenValidationError('metadata', 'must be an object of strings');
  const keys = Object.keys(value);
  if (keys.length > LIMITS.metadataKeys) throw new TokenValidationError('metadata', `more than ${LIMITS.metadataKeys} keys`);
  const out: Record<string, string> = {};
  for (const key of keys) {
    if (FORBIDDEN_KEYS.includes(key)) throw new TokenValidationError('metadata', `key '${key}' is not allowed`);
    if (charCount(key) > LIMITS.metadataKey) {
      throw new TokenValidationError('metadata', `key '${shorten(key)}' longer than ${LIMITS.metadataKey} characters`);
    }
    out[key] = parseString(value[key], `metadata.${shorten(key)}`, LIMITS.metadataValue);
  }
  return out;
}
