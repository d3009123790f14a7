// The REST API (SPEC §5): one Fastify instance, one encapsulated plugin per
// route group, dependencies injected. main.ts calls buildApi and listens.
import Fastify, { type FastifyBaseLogger } from 'fastify';
import swagger from '@fastify/swagger';
import type { IncomingMessage } from 'node:http';
import type { BlockList } from 'node:net';
import type { Logger } from 'pino';
import type { TokenStore } from '../store/types.js';
import type { AccessCheck, AccessGate } from '../access/gate.js';
import type { ApiPorts } from '../access/ports.js';
import { TokenCache } from '../access/token-cache.js';
import { createAuthenticator } from './auth.js';
import { ApiError, frameworkErrorHandler, installErrorHandlers } from './errors.js';
import { MAX_SELECTOR_LENGTH, addSharedSchemas } from './schemas.js';
import { sessionsRoutes } from './sessions.js';
import { systemRoutes } from './system.js';
import { tokensRoutes } from './tokens.js';
import { childTokensRoutes } from './child-tokens.js';
import { logsRoutes } from './logs.js';
import { messagesRoutes } from './messages.js';
import type { BrokerLog, EventSink } from '../events/types.js';

export { ApiError } from './errors.js';

export interface ApiDeps {
  store: TokenStore;
  /** The access gate MQTT CONNECT uses too. */
  gate: AccessGate;
  /** REST's own checks after the gate's common ones, in order (access/gate.ts step 7). */
  authChecks?: readonly AccessCheck[];
  /** What the API may ask of the broker and the metrics (access/ports.ts). */
  ports: ApiPorts;
  log: Logger;
  /** Peers whose X-Forwarded-For is believed (TRUST_PROXY). */
  trustProxy?: BlockList;
  /** Largest request body, bytes (default 1 MiB); beyond it: 413. */
  bodyLimit?: number;
  /** How long a key → token lookup is reused, ms (default 1000; 0: every request asks the store). */
  tokenCacheMs?: number;
  /** SPEC §8 broker log; undefined: the log routes are not served. */
  brokerLog?: BrokerLog;
  /** SPEC §8 token events (default: the broker's). */
  events?: EventSink;
  /** The console at `GET /` (SPEC §9); unset: no console. */
  console?: import('./console.js').ConsoleOptions;
}

const DEFAULT_BODY_LIMIT = 1024 * 1024;
const DEFAULT_TOKEN_CACHE_MS = 1000;

/**
 * Request log lines carry method, url and peer only: never headers, so the
 * Authorization key cannot reach a log (main.ts's pino `redact` is a second fence).
 */
function requestSerializer(req: IncomingMessage & { ip?: string }) {
  const url = req.url ?? '';
  return {
    method: req.method,
    url: url.length > 256 ? `${url.slice(0, 256)}...` : url,
    remoteAddress: req.ip ?? req.socket?.remoteAddress,
    remotePort: req.socket?.remotePort,
  };
}

export async function buildApi(deps: ApiDeps) {
  const logger = deps.log.child({}, { serializers: { req: requestSerializer } }) as FastifyBaseLogger;
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    routerOptions: { maxParamLength: MAX_SELECTOR_LENGTH },
    // Bodies are validated as sent: no coercion ("1" is not 1), no defaults, nothing removed,
    // so that validateCreate/validatePatch see exactly what the client sent.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    // The shutdown answer below uses the error envelope; Fastify's own does not.
    return503OnClosing: false,
    frameworkErrors: frameworkErrorHandler,
  });

  installErrorHandlers(app);
  addSharedSchemas(app);
  app.decorateRequest('auth', null);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'tokenmq REST API',
        description: 'Tokens, live MQTT sessions, health and metrics of a tokenmq broker. '
          + 'Success: {"result": [...]}; errors: {"errors": [{"code", "reason"}]}.',
        version: '0.1.0',
      },
      components: {
        securitySchemes: {
          FlespiToken: {
            type: 'apiKey',
            in: 'header',
            name: 'Authorization',
            description: "'FlespiToken <key>' (or 'Bearer <key>')",
          },
        },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Callback-style hooks on the per-request path: no promise per request.
  app.addHook('onRequest', (_request, _reply, done) => {
    done(closing ? new ApiError(503, 'server is shutting down') : undefined);
  });

  const metrics = deps.ports.metrics;
  if (metrics) {
    app.addHook('onResponse', (request, reply, done) => {
      metrics.countRequest(request.routeOptions.url ?? 'none', request.method, reply.statusCode);
      done();
    });
  }

  const cache = new TokenCache(deps.store, { ttlMs: deps.tokenCacheMs ?? DEFAULT_TOKEN_CACHE_MS });
  app.addHook('onClose', async () => cache.close());
  const auth = createAuthenticator({
    gate: deps.gate,
    checks: deps.authChecks,
    cache,
    trustProxy: deps.trustProxy,
    log: logger,
    onAuthDuration: metrics ? (seconds) => metrics.observeRestAuth(seconds) : undefined,
  });

  await app.register(tokensRoutes, { prefix: '/platform/tokens', store: deps.store, cache, authenticate: auth.hook, events: deps.events });
  await app.register(childTokensRoutes, { prefix: '/auth/tokens', store: deps.store, authenticate: auth.hook });
  if (deps.brokerLog) await app.register(logsRoutes, { log: deps.brokerLog, authenticate: auth.hook });
  await app.register(sessionsRoutes, {
    prefix: '/mqtt/sessions', sessions: deps.ports.sessions, subscriptions: deps.ports.subscriptions, authenticate: auth.hook,
  });
  await app.register(messagesRoutes, {
    publish: deps.ports.publish, retained: deps.ports.retained, authenticate: auth.hook, maxPayload: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
  });
  await app.register(systemRoutes, { store: deps.store, gate: deps.gate, health: deps.ports.health, metrics, authenticate: auth.hook });
  if (deps.console) await app.register((await import('./console.js')).consoleRoutes, deps.console);
  return app;
}
