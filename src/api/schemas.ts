// JSON schemas of the REST API (SPEC §5): validation of params, query and
// bodies, serialisation of responses and the OpenAPI document, written once.
//
// Bodies: the schemas describe the shape that src/tokens/validate.ts accepts,
// with the same limits, and are never stricter: validateCreate/validatePatch
// stay the source of truth and run after them. `additionalProperties: false`
// everywhere, so an unknown field is a 400 naming the field.
import type { FastifyInstance } from 'fastify';
import { HTTP_METHODS, LIMITS, MQTT_ACTIONS } from '../tokens/types.js';

/** Tokens created by one POST. */
export const MAX_CREATE_BATCH = 1000;
/** Longest selector (`1,2,3...` or client ids) in a path. */
export const MAX_SELECTOR_LENGTH = 4096;

/** Metadata keys that could reach Object.prototype; validate.ts refuses them too. */
const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype'];

const aclEntryInput = {
  type: 'object',
  additionalProperties: false,
  required: ['uri'],
  description: "MQTT topic rights ({uri: 'mqtt', topic, actions}) or REST rights ({uri, methods}) (SPEC §3)",
  properties: {
    uri: { type: 'string', maxLength: LIMITS.uri },
    topic: { type: 'string', maxLength: LIMITS.topic, description: 'MQTT topic filter; ${clientid} and ${token_id} placeholders' },
    actions: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: [...MQTT_ACTIONS] } },
    methods: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: [...HTTP_METHODS] } },
    ids: { type: 'array', minItems: 1, items: { type: 'string' }, description: "uri 'mqtt/sessions' only: client id masks (* and ?) it reaches (SPEC §3)" },
    submodules: {
      type: 'array',
      description: "uri 'mqtt/sessions' only: rights on sub-resources, e.g. {name: 'subscriptions', methods: ['GET']} (SPEC §3)",
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'methods'],
        properties: { name: { type: 'string' }, methods: { type: 'array', items: { type: 'string', enum: [...HTTP_METHODS] } } },
      },
    },
  },
} as const;

const accessInput = {
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: { type: 'integer', enum: [0, 1, 2], description: '0 standard, 1 master, 2 ACL' },
    acl: { type: 'array', maxItems: LIMITS.aclEntries, items: aclEntryInput },
  },
} as const;

/** POST items and PUT bodies: every field optional (validateCreate fills in defaults). */
const tokenInput = {
  $id: 'TokenInput',
  type: 'object',
  additionalProperties: false,
  description: 'Writable token fields (SPEC §2). A new token needs a non-zero expire or ttl.',
  properties: {
    info: { type: 'string', maxLength: LIMITS.info },
    enabled: { type: 'boolean' },
    expire: { type: 'integer', minimum: 0, maximum: LIMITS.expire, description: 'UNIX seconds, 0 = unused' },
    ttl: { type: 'integer', minimum: 0, maximum: LIMITS.ttl, description: 'seconds since last use, 0 = unused' },
    access: accessInput,
    ips: { type: 'string', maxLength: LIMITS.ips, description: 'comma list of masks (* and ?), CIDRs; empty = any' },
    metadata: {
      type: 'object',
      maxProperties: LIMITS.metadataKeys,
      propertyNames: { type: 'string', maxLength: LIMITS.metadataKey, not: { enum: FORBIDDEN_KEYS } },
      additionalProperties: { type: 'string', maxLength: LIMITS.metadataValue },
    },
    clientids: { type: 'string', maxLength: LIMITS.clientids, description: 'comma list of client id masks (* and ?, ${token_id}); empty = any' },
    limits: {
      type: 'object',
      additionalProperties: false,
      description: '0 or absent = unlimited; replaced whole',
      properties: {
        sessions: { type: 'integer', minimum: 0, maximum: LIMITS.sessions, description: 'live sessions across all nodes' },
        publish_rate: { type: 'integer', minimum: 0, maximum: LIMITS.publishRate, description: 'PUBLISH packets per second per session' },
      },
    },
  },
} as const;

const aclEntry = {
  type: 'object',
  additionalProperties: false,
  properties: {
    uri: { type: 'string' },
    topic: { type: 'string' },
    actions: { type: 'array', items: { type: 'string' } },
    methods: { type: 'array', items: { type: 'string' } },
    ids: { type: 'array', items: { type: 'string' } },
    submodules: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false,
        properties: { name: { type: 'string' }, methods: { type: 'array', items: { type: 'string' } } },
      },
    },
  },
} as const;

const tokenProperties = {
  id: { type: 'integer' },
  info: { type: 'string' },
  enabled: { type: 'boolean' },
  expire: { type: 'integer' },
  ttl: { type: 'integer' },
  created: { type: 'integer' },
  accessed: { type: 'integer' },
  access: {
    type: 'object',
    additionalProperties: false,
    properties: { type: { type: 'integer' }, acl: { type: 'array', items: aclEntry } },
  },
  ips: { type: 'string' },
  metadata: { type: 'object', additionalProperties: { type: 'string' } },
  parent: { type: 'integer', description: 'read-only: the token that minted this one (POST /auth/tokens), 0 otherwise' },
  clientids: { type: 'string' },
  limits: {
    type: 'object',
    additionalProperties: false,
    properties: { sessions: { type: 'integer' }, publish_rate: { type: 'integer' } },
  },
  unreadable: {
    type: 'array', items: { type: 'string' },
    description: 'SPEC §2: only on a stored token that cannot be read: the fields that could not (it is listed with the rest, and refused everywhere)',
  },
} as const;

/** A stored token as listed: never a key. */
const token = {
  $id: 'Token',
  type: 'object',
  additionalProperties: false,
  properties: tokenProperties,
} as const;

/** The response to POST: the one time the key is shown. */
const createdToken = {
  $id: 'CreatedToken',
  type: 'object',
  additionalProperties: false,
  properties: { ...tokenProperties, key: { type: 'string', description: 'shown once, never again' } },
} as const;

/** SPEC §5 session object. */
const session = {
  $id: 'Session',
  type: 'object',
  additionalProperties: false,
  properties: {
    client_id: { type: 'string' },
    token_id: { type: 'integer' },
    ip: { type: 'string' },
    transport: { type: 'string', enum: ['tcp', 'ws', 'tls', 'wss'] },
    node: { type: 'string' },
    connected: { type: 'integer' },
    clean: { type: 'boolean' },
    keepalive: { type: 'integer' },
    subscriptions: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, properties: { topic: { type: 'string' }, qos: { type: 'integer' } } },
    },
    msgs_in: { type: 'integer' },
    msgs_out: { type: 'integer' },
    bytes_in: { type: 'integer' },
    bytes_out: { type: 'integer' },
  },
} as const;

const errorSchema = {
  $id: 'Error',
  type: 'object',
  additionalProperties: false,
  required: ['errors'],
  properties: {
    errors: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['code', 'reason'],
        properties: { code: { type: 'integer' }, reason: { type: 'string' } },
      },
    },
  },
} as const;

/** Registers the shared schemas on the root instance (they become OpenAPI components). */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of [tokenInput, token, createdToken, session, errorSchema]) app.addSchema(schema);
}

export const TOKEN_FIELDS = Object.keys(tokenProperties);
export const SESSION_FIELDS = Object.keys(session.properties);

/** `{"result": [...]}` of items matching `$ref`. */
/** The success envelope `{"result": [...]}` of a named schema (`'Token'`) or of inline item properties. */
export function resultOf(items: string | Record<string, unknown>, description: string) {
  return {
    description,
    type: 'object',
    additionalProperties: false,
    properties: {
      result: {
        type: 'array',
        items: typeof items === 'string' ? { $ref: `${items}#` } : { type: 'object', additionalProperties: false, properties: items },
      },
    },
  };
}

/** Error responses for the OpenAPI document (and their serialisation). */
export const ERROR_RESPONSES = {
  '4xx': { $ref: 'Error#' },
  '5xx': { $ref: 'Error#' },
} as const;

export const tokenSelector = {
  type: 'object',
  additionalProperties: false,
  required: ['sel'],
  properties: {
    sel: {
      type: 'string',
      maxLength: MAX_SELECTOR_LENGTH,
      pattern: '^(all|[0-9]{1,16}(,[0-9]{1,16})*|(info|enabled|parent|metadata\\.[^=]{1,128})=.*)$',
      description: "'all', a token id, a comma list of ids, or field=value on info, enabled, parent or metadata.<name> "
        + "with * and ? wildcards in the value (? URL-encoded as %3F), e.g. parent=7, info=truck*",
    },
  },
} as const;

export const sessionSelector = {
  type: 'object',
  additionalProperties: false,
  required: ['sel'],
  properties: {
    sel: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_SELECTOR_LENGTH,
      description: "'all' or ONE MQTT client id, URL-encoded (a ',' is part of the id)",
    },
  },
} as const;

const fieldsParam = {
  type: 'string',
  maxLength: 512,
  pattern: '^[a-z_]+(,[a-z_]+)*$',
  description: 'comma list of the fields to return',
} as const;

export const fieldsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { fields: fieldsParam },
} as const;

export const sessionsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    fields: fieldsParam,
    token_id: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'only sessions of this token' },
  },
} as const;

export const createBody = {
  description: 'A token object, or an array of them (all or nothing)',
  anyOf: [
    { $ref: 'TokenInput#' },
    { type: 'array', minItems: 1, maxItems: MAX_CREATE_BATCH, items: { $ref: 'TokenInput#' } },
  ],
} as const;

export const patchBody = { $ref: 'TokenInput#' } as const;
