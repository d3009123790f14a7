// `GET /auth/info`, `/health`, `/metrics` (SPEC §5) and `/openapi.json`.
import type { FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify';
import type { TokenStore } from '../store/types.js';
import type { AccessGate } from '../access/gate.js';
import type { BrokerHealth, RestMetrics } from '../access/ports.js';
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
