// The token as SPEC §2 describes it. Pure data: no I/O, no library types.

/** SPEC §3 access types. */
export const ACCESS_STANDARD = 0;
export const ACCESS_MASTER = 1;
export const ACCESS_ACL = 2;
export type AccessType = typeof ACCESS_STANDARD | typeof ACCESS_MASTER | typeof ACCESS_ACL;

export type MqttAction = 'publish' | 'subscribe';
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS';

/**
 * One ACL entry. `{uri: "mqtt", topic, actions}` grants MQTT topic rights;
 * `{uri, methods}` grants REST rights on `/uri...` (prefix match).
 */
export interface AclEntry {
  uri: string;
  topic?: string;
  actions?: MqttAction[];
  methods?: HttpMethod[];
  /** SPEC §3: `mqtt/sessions` only: the client id masks (`*`, `?`) this entry reaches; absent = all. */
  ids?: string[];
  /** SPEC §3: `mqtt/sessions` only: rights on its sub-resources (`subscriptions`). */
  submodules?: AclSubmodule[];
}

/** A REST sub-resource right (SPEC §3 `submodules`). */
export interface AclSubmodule {
  name: string;
  methods: HttpMethod[];
}

/** SPEC §3: the uri that takes `ids` and `submodules`, and its submodules. */
export const SESSIONS_URI = 'mqtt/sessions';
export const SESSION_SUBMODULES: readonly string[] = ['subscriptions'];

export interface TokenAccess {
  type: AccessType;
  acl?: AclEntry[];
}

/** A stored token as returned to clients (never carries the key). */
export interface Token {
  id: number;
  info: string;
  enabled: boolean;
  /** UNIX seconds, 0 = unused. */
  expire: number;
  /** Seconds, 0 = unused. */
  ttl: number;
  /** UNIX seconds, read-only. */
  created: number;
  /** UNIX seconds, read-only. */
  accessed: number;
  access: TokenAccess;
  ips: string;
  metadata: Record<string, string>;
  /**
   * Read-only: the id of the token that minted this one through `POST /auth/tokens`
   * (SPEC §2 `parent`, §5), 0 otherwise.
   */
  parent: number;
  /** SPEC §2: client id masks (`*`, `?`, `${token_id}`), '' = any. */
  clientids: string;
  /** SPEC §2: 0 = unlimited. */
  limits: TokenLimits;
  /**
   * Listings only (SPEC §2): the fields of a stored token that could not be read; the
   * token is listed with what could be, and refused everywhere else. Absent when readable.
   */
  unreadable?: string[];
}

/** SPEC §2 `limits`. */
export interface TokenLimits {
  /** Live sessions of the token across all nodes. */
  sessions: number;
  /** PUBLISH packets per second per session. */
  publish_rate: number;
}

/** SPEC §2: a token has at most this many children. */
export const MAX_CHILDREN = 1000;

/** Token returned once, by the call that creates it. */
export interface CreatedToken extends Token {
  key: string;
}

/** Fields a client may set at creation (all optional; validated by `validateCreate`). */
export interface TokenInput {
  info?: string;
  enabled?: boolean;
  expire?: number;
  ttl?: number;
  access?: TokenAccess;
  ips?: string;
  metadata?: Record<string, string>;
  clientids?: string;
  limits?: TokenLimits;
}

/** Fields a client may change (SPEC §5 PUT). */
export type TokenPatch = TokenInput;

/** The writable fields, in a fixed order (used by stores and schemas). */
export const WRITABLE_FIELDS = ['info', 'enabled', 'expire', 'ttl', 'access', 'ips', 'metadata', 'clientids', 'limits'] as const;
export type WritableField = (typeof WRITABLE_FIELDS)[number];

/** SPEC §2 limits. */
export const LIMITS = {
  info: 1024,
  aclEntries: 256,
  metadataKeys: 64,
  metadataValue: 1024,
  ips: 4096,
  clientids: 4096,
  /** `limits.sessions` and `limits.publish_rate`. */
  sessions: 1_000_000,
  publishRate: 1_000_000,
  topic: 65535,
  /** Characters in a metadata key. */
  metadataKey: 128,
  /** Seconds: 10 years of 365 days. */
  ttl: 315360000,
  /** UNIX seconds: 2^32. */
  expire: 4294967296,
  /** Characters in a REST ACL `uri`. */
  uri: 1024,
} as const;

/** The values `AclEntry.actions` may hold, in order. */
export const MQTT_ACTIONS: readonly MqttAction[] = ['publish', 'subscribe'];
/** The values `AclEntry.methods` may hold, in order. */
export const HTTP_METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];

/** What `validateCreate` returns: every writable field present, defaults filled in. */
export type NormalizedTokenInput = Required<TokenInput>;

export type ChangeKind = 'created' | 'updated' | 'deleted';
