// `GET /auth/info`, `/health`, `/metrics` (SPEC §5) and `/openapi.json`.
import type { FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify';
import type { TokenStore } from '../store/types.js';
import type { AccessGate } from '../access/gate.js';
import type { BrokerHealth, RestMetrics } from '../access/ports.js';
import { ACCESS_MASTER, filterError, isExpired, topicError } from '../tokens/index.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, TOKEN_FIELDS, fieldsQuery, resultOf } from './schemas.js';
import { pickFields } from './select.js';

export interface SystemRoutesOptions {
  store: TokenStore;
  gate: AccessGate;
  health: BrokerHealth;
  metrics?: RestMetrics;
  authenticate: onRequestAsyncHookHandler;
  /** Upper bound for the store's ping in `/health`, ms. */
  healthTimeoutMs?: number;
}

const STARTED = Date.now();

interface CheckQuery {
  topic: string;
  action: 'publish' | 'subscribe';
  client_id?: string;
  token_id?: string;
}

const checkQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['topic', 'action'],
  properties: {
    topic: { type: 'string', description: 'a topic name (publish) or filter (subscribe)' },
    action: { type: 'string', enum: ['publish', 'subscribe'] },
    client_id: { type: 'string', maxLength: 65535, description: 'the client id `${clientid}` stands for (default empty: such entries match nothing)' },
    token_id: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'master only: check this token instead' },
  },
} as const;

function pingWithin(store: TokenStore, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([Promise.resolve().then(() => store.ping()), timeout]).finally(() => clearTimeout(timer));
}

export const systemRoutes: FastifyPluginAsync<SystemRoutesOptions> = async (app, opts) => {
  const { store, health, metrics } = opts;

  app.get<{ Querystring: { fields?: string } }>('/auth/info', {
    onRequest: opts.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'The presenting token',
      description: 'Any valid token; never returns the key.',
      security: [{ FlespiToken: [] }],
      querystring: fieldsQuery,
      response: { 200: resultOf('Token', 'the token of the Authorization header'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const token = request.auth?.token;
    if (!token) throw new ApiError(401, 'unknown token');
    return { result: pickFields([token], request.query.fields, TOKEN_FIELDS) };
  });

  // SPEC §5 `GET /auth/check`: the broker's own compiled rights answer (Rights.explain), not a second matcher.
  app.get<{ Querystring: CheckQuery }>('/auth/check', {
    onRequest: opts.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'Would this token be allowed to publish or subscribe?',
      description: 'Any valid token, about itself; a master token may name another with `token_id`. '
        + '`entry` is the index of the deciding ACL entry (null for master and standard tokens, and for refusals).',
      security: [{ FlespiToken: [] }],
      querystring: checkQuery,
      response: {
        200: resultOf({ allowed: { type: 'boolean' }, entry: { type: 'integer', nullable: true }, reason: { type: 'string' } }, 'the decision'),
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    const auth = request.auth;
    if (!auth) throw new ApiError(401, 'unknown token');
    const { topic, action, client_id: clientId = '', token_id: otherId } = request.query;
    // Same validity rules as the broker applies before authorising (SPEC §4).
    const problem = action === 'publish' ? topicError(topic) : filterError(topic);
    if (problem !== null) throw new ApiError(400, `topic: ${problem}`);
    let token = auth.token;
    let rights = auth.rights;
    let tokenIdText = auth.tokenIdText;
    if (otherId !== undefined && Number(otherId) !== token.id) {
      if (token.access.type !== ACCESS_MASTER) throw new ApiError(403, 'token_id: only a master token may check another token');
      const [other] = await store.get([Number(otherId)]);
      if (!other || isExpired(other, Math.floor(Date.now() / 1000))) throw new ApiError(404, `token ${otherId} not found`);
      try {
        ({ rights, tokenIdText } = opts.gate.compile(other));
      } catch {
        throw new ApiError(409, `token ${other.id}: stored access cannot be read`);
      }
      token = other;
    }
    const ctx = { clientId, tokenId: token.id, tokenIdText };
    return { result: [rights.forSession(ctx).explain(action, topic, ctx)] };
  });

  app.get('/health', {
    schema: {
      tags: ['system'],
      summary: 'Liveness of the broker and the token store',
      description: '200 when both are up, else 503. No authentication.',
      response: {
        200: resultOf({
          status: { type: 'string' },
          node: { type: 'string' },
          store: { type: 'string' },
          sessions: { type: 'integer' },
          uptime: { type: 'integer', description: 'seconds since the API started' },
        }, 'up'),
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    if (!health.up) throw new ApiError(503, 'broker is closed');
    try {
      await pingWithin(store, opts.healthTimeoutMs ?? 2000);
    } catch (err) {
      request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'health: token store unavailable');
      throw new ApiError(503, 'token store unavailable');
    }
    return {
      result: [{
        status: 'ok',
        node: health.node,
        store: 'ok',
        sessions: health.sessionCount,
        uptime: Math.floor((Date.now() - STARTED) / 1000),
      }],
    };
  });

  // Switched off (METRICS=false): no route, so the not-found handler answers 404.
  if (metrics) {
    app.get('/metrics', {
      schema: { tags: ['system'], summary: 'Prometheus metrics', description: 'Prometheus text format. No authentication.' },
    }, async (_request, reply) => {
      const text = await metrics.render();
      return reply.type(metrics.contentType).send(text);
    });
  }

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
};
