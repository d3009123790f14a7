// How a token is laid out in its Redis hash `{p}token:{id}` (one field per
// token field, plus `hash`, the key's SHA-256) and how it is read back.
// Reading never trusts the data: anything under our prefix may have been
// written by another program or an older version, and a token that decodes to
// the wrong shape could crash the broker when its rights are compiled. So each
// field is checked and a StoreDataError names the token and the field.

import {
  HTTP_METHODS,
  MQTT_ACTIONS,
  type AccessType,
  type AclEntry,
  type HttpMethod,
  type MqttAction,
  type Token,
  type TokenAccess,
  type TokenLimits,
  type TokenPatch,
} from '../tokens/types.js';
import { KEY_HASH } from './key.js';
import { StoreDataError } from './types.js';

/** The stored fields, in the order the create script takes them. */
export const HASH_FIELDS = ['info', 'enabled', 'expire', 'ttl', 'created', 'accessed', 'access', 'ips', 'metadata', 'hash', 'parent', 'clientids', 'limits'] as const;
export type HashField = (typeof HASH_FIELDS)[number];

/** Integers as Redis keeps them: decimal digits only (no sign, exponent or fraction). */
const UNSIGNED = /^\d{1,15}$/;

/** The values of HASH_FIELDS for a token, in that order. */
export function encodeToken(token: Token, keyHash: string): string[] {
  return [
    token.info,
    token.enabled ? '1' : '0',
    String(token.expire),
    String(token.ttl),
    String(token.created),
    String(token.accessed),
    JSON.stringify(token.access),
    token.ips,
    JSON.stringify(token.metadata),
    keyHash,
    String(token.parent),
    token.clientids,
    JSON.stringify(token.limits),
  ];
}

/** The fields a patch sets, as flat [field, value, ...] pairs. */
export function encodePatch(patch: TokenPatch): string[] {
  const out: string[] = [];
  if (patch.info !== undefined) out.push('info', patch.info);
  if (patch.enabled !== undefined) out.push('enabled', patch.enabled ? '1' : '0');
  if (patch.expire !== undefined) out.push('expire', String(patch.expire));
  if (patch.ttl !== undefined) out.push('ttl', String(patch.ttl));
  if (patch.access !== undefined) out.push('access', JSON.stringify(patch.access));
  if (patch.ips !== undefined) out.push('ips', patch.ips);
  if (patch.metadata !== undefined) out.push('metadata', JSON.stringify(patch.metadata));
  if (patch.clientids !== undefined) out.push('clientids', patch.clientids);
  if (patch.limits !== undefined) out.push('limits', JSON.stringify(patch.limits));
  return out;
}

/** Reads one stored field; undefined when it is missing. */
export type FieldSource = (field: HashField) => string | undefined;

/** Fields from HGETALL (ioredis turns it into an object). */
export function fromRecord(record: Record<string, string>): FieldSource {
  return (field) => (Object.hasOwn(record, field) ? record[field] : undefined);
}

/**
 * Fields from `HMGET key ...HASH_FIELDS`, as the scripts return them: values
 * only, in HASH_FIELDS order (half the reply of HGETALL, on the CONNECT path).
 */
export function fromValues(values: unknown): FieldSource {
  const list: readonly unknown[] = Array.isArray(values) ? values : [];
  return (field) => {
    const value = list[HASH_FIELDS.indexOf(field)];
    return typeof value === 'string' ? value : undefined;
  };
}

export interface DecodedToken {
  token: Token;
  /** SHA-256 of the token's key. */
  hash: string;
}

/**
 * How each token field is read from its hash, and (listings, SPEC §2) what it
 * shows when it cannot be: a value that grants nothing (disabled, no clocks, no
 * rights, no addresses). Module-level functions: a CONNECT decodes without a
 * closure per field.
 */
const TOKEN_FIELDS: readonly { name: Exclude<keyof Token, 'id' | 'unreadable'>; read(r: FieldReader): unknown; fallback(): unknown }[] = [
  { name: 'info', read: (r) => r.string('info'), fallback: () => '' },
  { name: 'enabled', read: (r) => r.flag('enabled'), fallback: () => false },
  { name: 'expire', read: (r) => r.integer('expire'), fallback: () => 0 },
  { name: 'ttl', read: (r) => r.integer('ttl'), fallback: () => 0 },
  { name: 'created', read: (r) => r.integer('created'), fallback: () => 0 },
  { name: 'accessed', read: (r) => r.integer('accessed'), fallback: () => 0 },
  { name: 'access', read: (r) => r.json('access', decodeAccess), fallback: () => ({ type: 2, acl: [] }) },
  { name: 'ips', read: (r) => r.string('ips'), fallback: () => '' },
  { name: 'metadata', read: (r) => r.json('metadata', decodeMetadata), fallback: () => ({}) },
  // Absent in tokens stored before these fields existed: their defaults.
  { name: 'parent', read: (r) => (r.optional('parent') === undefined ? 0 : r.integer('parent')), fallback: () => 0 },
  { name: 'clientids', read: (r) => r.optional('clientids') ?? '', fallback: () => '' },
  {
    name: 'limits',
    read: (r) => (r.optional('limits') === undefined ? { sessions: 0, publish_rate: 0 } : r.json('limits', decodeLimits)),
    fallback: () => ({ sessions: 0, publish_rate: 0 }),
  },
];

/** The token's fields in TOKEN_FIELDS order; `unreadable` given: a field that does not decode takes its fallback and is named there. */
function readFields(id: number, read: FieldReader, unreadable?: string[]): Token {
  const token: Record<string, unknown> = { id };
  for (const field of TOKEN_FIELDS) {
    if (unreadable === undefined) {
      token[field.name] = field.read(read);
      continue;
    }
    try {
      token[field.name] = field.read(read);
    } catch (err) {
      if (!(err instanceof StoreDataError)) throw err;
      unreadable.push(field.name);
      token[field.name] = field.fallback();
    }
  }
  return token as unknown as Token;
}

/**
 * Decoded `access` and `metadata` shared between readings of the same stored
 * text, deep-frozen (issue 9: a CONNECT in Redis mode parsed and checked its
 * token's ACL every time; and a shared object lets the gate and enforcement
 * compare and compile by identity). For read-only readers: findByKey's, which
 * TokenStore allows to hand out shared, frozen objects. Bounded; the oldest text
 * goes first.
 */
export class SharedDecodes {
  private readonly byText = new Map<string, unknown>();
  constructor(private readonly max = 4096) {}

  get<T>(field: HashField, text: string, decode: () => T): T {
    const key = `${field}\n${text}`;
    const known = this.byText.get(key); // decoded values are objects: never undefined
    if (known !== undefined) return known as T;
    const value = deepFreeze(decode());
    if (this.byText.size >= this.max) this.byText.delete(this.byText.keys().next().value as string);
    this.byText.set(key, value);
    return value;
  }
}

const SHARED_FIELDS: ReadonlySet<HashField> = new Set(['access', 'metadata']);

function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}

/**
 * A token from its hash fields; StoreDataError naming the id and field when they do not decode.
 * `shared`: its `access` and `metadata` may be shared, frozen objects (SharedDecodes).
 */
export function decodeToken(id: number, fields: FieldSource, shared?: SharedDecodes): DecodedToken {
  const read = new FieldReader(id, fields, shared);
  const token = readFields(id, read);
  const hash = read.string('hash');
  if (!KEY_HASH.test(hash)) throw read.error('hash', 'is not a SHA-256 in hex');
  return { token, hash };
}

/**
 * SPEC §2 "GET /platform/tokens still lists it with what could be read": a
 * token for a listing, each field read on its own; what does not decode is
 * named in `unreadable` (TOKEN_FIELDS fallbacks). A token that decodes has no
 * `unreadable`. For listings only: every other reader uses decodeToken and
 * refuses the token.
 */
export function decodeForListing(id: number, fields: FieldSource): Token {
  try {
    return decodeToken(id, fields).token;
  } catch (err) {
    if (!(err instanceof StoreDataError)) throw err;
  }
  const unreadable: string[] = [];
  const token = readFields(id, new FieldReader(id, fields), unreadable);
  // The key hash is never listed; a bad one alone still makes the token unreadable.
  if (unreadable.length === 0) unreadable.push('key');
  token.unreadable = unreadable;
  return token;
}

/** Reasons for a bad field; `FieldReader` adds the token id and field name. */
class Malformed extends Error {}

class FieldReader {
  constructor(
    private readonly id: number,
    private readonly fields: FieldSource,
    private readonly shared?: SharedDecodes,
  ) {}

  error(field: HashField, problem: string): StoreDataError {
    return new StoreDataError(`token ${this.id}: stored field '${field}' ${problem}`, this.id);
  }

  optional(field: HashField): string | undefined {
    return this.fields(field);
  }

  string(field: HashField): string {
    const value = this.fields(field);
    if (value === undefined) throw this.error(field, 'is missing');
    return value;
  }

  flag(field: HashField): boolean {
    const value = this.string(field);
    if (value === '1') return true;
    if (value === '0') return false;
    throw this.error(field, `is not 0 or 1: ${quote(value)}`);
  }

  integer(field: HashField): number {
    const value = this.string(field);
    if (!UNSIGNED.test(value)) throw this.error(field, `is not a non-negative integer: ${quote(value)}`);
    return Number(value);
  }

  json<T>(field: HashField, decode: (value: unknown) => T): T {
    const text = this.string(field);
    if (this.shared !== undefined && SHARED_FIELDS.has(field)) return this.shared.get(field, text, () => this.parse(field, text, decode));
    return this.parse(field, text, decode);
  }

  private parse<T>(field: HashField, text: string, decode: (value: unknown) => T): T {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw this.error(field, `is not valid JSON: ${quote(text)}`);
    }
    try {
      return decode(value);
    } catch (err) {
      if (err instanceof Malformed) throw this.error(field, err.message);
      throw err;
    }
  }
}

/** Stored text in an error message: short, so a huge garbled value does not flood the logs. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Only the shape compileRights relies on is checked; unknown properties are dropped. */
function decodeAccess(value: unknown): TokenAccess {
  if (!isObject(value)) throw new Malformed('is not an object');
  const type = value.type;
  if (type !== 0 && type !== 1 && type !== 2) throw new Malformed(`has an unknown access type ${JSON.stringify(type)}`);
  if (value.acl === undefined) return { type: type as AccessType };
  if (!Array.isArray(value.acl)) throw new Malformed('has an acl that is not an array');
  const acl = value.acl.map((entry: unknown, i: number) => decodeAclEntry(entry, i));
  return { type: type as AccessType, acl };
}

function decodeAclEntry(value: unknown, i: number): AclEntry {
  if (!isObject(value) || typeof value.uri !== 'string') throw new Malformed(`has acl[${i}] without a string uri`);
  const entry: AclEntry = { uri: value.uri };
  if (value.topic !== undefined) {
    if (typeof value.topic !== 'string') throw new Malformed(`has acl[${i}].topic that is not a string`);
    entry.topic = value.topic;
  }
  if (value.actions !== undefined) entry.actions = decodeChoices(value.actions, MQTT_ACTIONS, `acl[${i}].actions`);
  if (value.methods !== undefined) entry.methods = decodeChoices(value.methods, HTTP_METHODS, `acl[${i}].methods`);
  // SPEC §3 `ids` and `submodules` narrow an entry: never dropped (that would widen it); malformed: unreadable.
  if (value.ids !== undefined) {
    if (!Array.isArray(value.ids) || !value.ids.every((id: unknown) => typeof id === 'string')) throw new Malformed(`has acl[${i}].ids that is not an array of strings`);
    entry.ids = [...value.ids as string[]];
  }
  if (value.submodules !== undefined) {
    if (!Array.isArray(value.submodules)) throw new Malformed(`has acl[${i}].submodules that is not an array`);
    entry.submodules = value.submodules.map((sub: unknown, j: number) => {
      if (!isObject(sub) || typeof sub.name !== 'string') throw new Malformed(`has acl[${i}].submodules[${j}] without a string name`);
      return { name: sub.name, methods: decodeChoices(sub.methods, HTTP_METHODS, `acl[${i}].submodules[${j}].methods`) };
    });
  }
  return entry;
}

function decodeChoices<T extends MqttAction | HttpMethod>(value: unknown, choices: readonly T[], path: string): T[] {
  if (!Array.isArray(value)) throw new Malformed(`has ${path} that is not an array`);
  return value.map((item: unknown) => {
    const choice = choices.find((c) => c === item);
    if (choice === undefined) throw new Malformed(`has ${path} with an unknown value ${JSON.stringify(item)}`);
    return choice;
  });
}

function decodeLimits(value: unknown): TokenLimits {
  if (!isObject(value)) throw new Malformed('is not an object');
  const count = (name: 'sessions' | 'publish_rate'): number => {
    const n = value[name] ?? 0;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new Malformed(`has ${name} that is not an integer >= 0`);
    return n;
  };
  return { sessions: count('sessions'), publish_rate: count('publish_rate') };
}

function decodeMetadata(value: unknown): Record<string, string> {
  if (!isObject(value)) throw new Malformed('is not an object');
  const entries = Object.entries(value);
  for (const [key, item] of entries) {
    if (typeof item !== 'string') throw new Malformed(`has a value that is not a string under ${JSON.stringify(key)}`);
  }
  // fromEntries defines own properties, so a stored "__proto__" key cannot reach the prototype.
  return Object.fromEntries(entries) as Record<string, string>;
}
