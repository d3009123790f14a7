// /mqtt/messages (SPEC §5): publish over REST and the retained store. The
// questions are the broker's own compiled rights (tokens/rights.ts), asked as
// an MQTT session of the token would ask them, with no client id (a
// `${clientid}` entry grants nothing over REST). The auth hook has already
// checked the REST right (ACL tokens: the method on `mqtt/messages`).
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { PublishPort, RetainedPort } from '../access/ports.js';
import { filterError, topicError, type Rights, type RightsContext } from '../tokens/index.js';
import { LIMITS } from '../tokens/types.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, resultOf } from './schemas.js';
import { byString, paged, paginate, pagingProperties, withTimeout, type PageQuery } from './select.js';

export interface MessagesRoutesOptions {
  publish: PublishPort;
  retained: RetainedPort;
  authenticate: onRequestAsyncHookHandler;
  /** Largest payload accepted, bytes (the MQTT packet limit). */
  maxPayload: number;
}

interface PublishBody {
  topic: string;
  payload?: string;
  qos?: 0 | 1;
  retain?: boolean;
  encoding?: 'utf8' | 'base64';
}

const TAGS = ['messages'];
const SECURITY = [{ FlespiToken: [] }];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/**
 * Aedes' `maxTopicLevels` (default 100): a deeper topic is refused by
 * `aedes.publish`, and qlobber throws on a deeper filter. A 400 here, not a 503 there.
 */
export const MAX_TOPIC_LEVELS = 100;

/** The topic or filter problem this API adds to the MQTT ones, or null. */
function levelsError(topic: string): string | null {
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f && ++levels > MAX_TOPIC_LEVELS) return `more than ${MAX_TOPIC_LEVELS} levels`;
  return null;
}

const publishBody = {
  type: 'object',
  additionalProperties: false,
  required: ['topic'],
  properties: {
    topic: { type: 'string', minLength: 1, maxLength: LIMITS.topic, description: 'a topic name: no wildcards, not $SYS/... nor $tokenmq/...' },
    payload: { type: 'string', description: "text (encoding 'utf8', the default) or base64; default empty" },
    qos: { type: 'integer', enum: [0, 1], description: 'default 0' },
    retain: { type: 'boolean', description: 'default false' },
    encoding: { type: 'string', enum: ['utf8', 'base64'], description: "how `payload` is written; default 'utf8'" },
  },
} as const;

const filterParams = {
  type: 'object',
  additionalProperties: false,
  required: ['filter'],
  properties: { filter: { type: 'string', minLength: 1, maxLength: LIMITS.topic, description: 'an MQTT topic filter, URL-encoded' } },
} as const;

/** The token's rights as an MQTT session of it with no client id (SPEC §3 placeholders). */
function sessionRights(request: FastifyRequest): { rights: Rights; ctx: RightsContext } {
  const auth = request.auth;
  if (!auth) throw new ApiError(401, 'unknown token');
  const ctx: RightsContext = { clientId: '', tokenId: auth.token.id, tokenIdText: auth.tokenIdText };
  return { rights: auth.rights.forSession(ctx), ctx };
}

export const messagesRoutes: FastifyPluginAsync<MessagesRoutesOptions> = async (app, opts) => {
  app.addHook('onRequest', opts.authenticate);

  /** The broker's store or Redis unreachable: 503, as the token store does. */
  async function broker<T>(log: FastifyBaseLogger, what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await withTimeout(call);
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, `${what} failed`);
      throw new ApiError(503, `${what} unavailable, try again later`);
    }
  }

  app.post<{ Body: PublishBody }>('/mqtt/messages', {
    schema: {
      tags: TAGS,
      summary: 'Publish a message',
      description: 'Same rules as an MQTT PUBLISH of this token (SPEC §3): reaches subscribers on every node.',
      security: SECURITY,
      body: publishBody,
      response: { 200: resultOf({ topic: { type: 'string' }, size: { type: 'integer' } }, 'the message published'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const { topic, payload = '', qos = 0, retain = false, encoding = 'utf8' } = request.body;
    const problem = topicError(topic) ?? levelsError(topic);
    if (problem !== null) throw new ApiError(400, `topic: ${problem}`);
    if (encoding === 'base64' && (payload.length % 4 !== 0 || !BASE64.test(payload))) throw new ApiError(400, 'payload: not base64');
    const bytes = Buffer.from(payload, encoding);
    if (bytes.length > opts.maxPayload) throw new ApiError(413, `payload: larger than ${opts.maxPayload} bytes`);
    const { rights, ctx } = sessionRights(request);
    // SPEC §3/§5: as authorizePublish would decide ($SYS and $tokenmq refused to all).
    if (!rights.canPublish(topic, ctx)) throw new ApiError(403, `token access does not allow publishing to '${topic.slice(0, 128)}'`);
    await broker(request.log, 'publish', () => opts.publish.publish({ topic, payload: bytes, qos, retain }));
    return { result: [{ topic, size: bytes.length }] };
  });

  app.get<{ Params: { filter: string }; Querystring: PageQuery }>('/mqtt/messages/:filter', {
    schema: {
      tags: TAGS,
      summary: 'Read retained messages',
      description: 'Retained messages whose topic matches the filter and that this token could receive (SPEC §5): each filtered like a delivery.',
      security: SECURITY,
      params: filterParams,
      querystring: { type: 'object', additionalProperties: false, properties: pagingProperties },
      response: {
        200: paged(resultOf({
          topic: { type: 'string' }, payload: { type: 'string', description: 'base64' }, qos: { type: 'integer' }, size: { type: 'integer' },
        }, 'the retained messages, by topic')),
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    const { filter } = request.params;
    const problem = filterError(filter) ?? levelsError(filter);
    if (problem !== null) throw new ApiError(400, `filter: ${problem}`);
    const { rights, ctx } = sessionRights(request);
    if (!rights.canSubscribe(filter, ctx)) throw new ApiError(403, `token access does not allow subscribing to '${filter.slice(0, 128)}'`);
    const found = await broker(request.log, 'retained store', () => opts.retained.list(filter));
    // SPEC §5: a token never reads a retained message it could not receive (authorizeForward's question).
    const visible = found.filter((m) => rights.canReceive(m.topic, ctx)).sort((a, b) => byString(a.topic, b.topic));
    const page = paginate(visible, request.query);
    return {
      result: page.result.map((m) => ({ topic: m.topic, payload: m.payload.toString('base64'), qos: m.qos, size: m.payload.length })),
      pagination: page.pagination,
    };
  });

  app.delete<{ Params: { filter: string } }>('/mqtt/messages/:filter', {
    schema: {
      tags: TAGS,
      summary: 'Clear retained messages',
      description: 'Clears, without delivering anything, the retained messages matching the filter that this token may publish to; others are left and not named.',
      security: SECURITY,
      params: filterParams,
      response: { 200: resultOf({ topic: { type: 'string' } }, 'the topics cleared'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const { filter } = request.params;
    const problem = filterError(filter) ?? levelsError(filter);
    if (problem !== null) throw new ApiError(400, `filter: ${problem}`);
    const { rights, ctx } = sessionRights(request);
    const found = await broker(request.log, 'retained store', () => opts.retained.list(filter));
    const topics = found.map((m) => m.topic).filter((t) => rights.canPublish(t, ctx)).sort(byString);
    if (topics.length > 0) await broker(request.log, 'retained store', () => opts.retained.clear(topics));
    request.log.info({ count: topics.length, by: request.auth?.token.id }, 'retained messages cleared');
    return { result: topics.map((topic) => ({ topic })) };
  });
};
