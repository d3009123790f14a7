// The broker log over REST (SPEC §5, §8): `GET /mqtt/logs` (master, or ACL
// with GET on `mqtt/logs`; standard tokens are refused by their rights, SPEC §3)
// and `GET /platform/tokens/{sel}/logs` (master). The log arrives as a narrow
// interface (src/events/types.ts): this module knows nothing of the broker.
import type { FastifyBaseLogger, FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify';
import { EVENT_NAMES, LogUnavailableError, type BrokerEvent, type BrokerLog, type LogQuery } from '../events/types.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, tokenSelector } from './schemas.js';
import { parseIdSelector } from './select.js';

export interface LogsRoutesOptions {
  log: BrokerLog;
  authenticate: onRequestAsyncHookHandler;
}

export const MAX_LOG_LIMIT = 1000;

interface LogsQuery {
  since?: string;
  event?: string;
  token_id?: string;
  client_id?: string;
  limit?: string;
}

const EVENT_PROPERTIES = {
  time: { type: 'number', description: 'UNIX seconds, fractional' },
  event: { type: 'string', enum: [...EVENT_NAMES] },
  node: { type: 'string' },
  client_id: { type: 'string' },
  token_id: { type: 'integer' },
  ip: { type: 'string' },
  transport: { type: 'string' },
  reason: { type: 'string' },
  code: { type: 'integer', description: 'CONNACK return code' },
  by: { type: 'integer', description: 'the token that kicked the session or changed the token' },
  fields: { type: 'array', items: { type: 'string' }, description: 'the token fields changed' },
} as const;

const logsResult = {
  description: 'log records, newest first',
  type: 'object',
  additionalProperties: false,
  properties: {
    result: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['time', 'event', 'node'], properties: EVENT_PROPERTIES } },
  },
} as const;

const filterProperties = {
  since: { type: 'string', maxLength: 32, pattern: '^[0-9]{1,12}(\\.[0-9]{1,12})?$', description: 'UNIX seconds: records at or after it' },
  event: { type: 'string', enum: [...EVENT_NAMES], description: 'only this event' },
  client_id: { type: 'string', minLength: 1, maxLength: 65535, description: 'only this client id (exact)' },
  limit: { type: 'string', pattern: '^[0-9]{1,6}$', description: `at most this many records (1 to ${MAX_LOG_LIMIT}, default ${MAX_LOG_LIMIT})` },
} as const;

const logsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...filterProperties,
    token_id: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'only records of this token' },
  },
} as const;

const tokenLogsQuery = { type: 'object', additionalProperties: false, properties: filterProperties } as const;

const SECURITY = [{ FlespiToken: [] }];

function toQuery(q: LogsQuery, tokenIds: readonly number[] | undefined): LogQuery {
  const limit = q.limit === undefined ? MAX_LOG_LIMIT : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LOG_LIMIT) {
    throw new ApiError(400, `limit: must be between 1 and ${MAX_LOG_LIMIT}`);
  }
  const out: LogQuery = { limit };
  if (q.since !== undefined) out.since = Number(q.since);
  if (q.event !== undefined) out.event = q.event;
  if (q.client_id !== undefined) out.clientId = q.client_id;
  if (tokenIds !== undefined) out.tokenIds = tokenIds;
  return out;
}

export const logsRoutes: FastifyPluginAsync<LogsRoutesOptions> = async (app, opts) => {
  const brokerLog = opts.log;
  app.addHook('onRequest', opts.authenticate);

  async function read(log: FastifyBaseLogger, q: LogQuery): Promise<{ result: BrokerEvent[] }> {
    try {
      return { result: await brokerLog.query(q) };
    } catch (err) {
      if (!(err instanceof LogUnavailableError)) throw err;
      log.warn({ err: err.message }, 'broker log unavailable');
      throw new ApiError(503, 'broker log unavailable, try again later');
    }
  }

  app.get<{ Querystring: LogsQuery }>('/mqtt/logs', {
    schema: {
      tags: ['logs'],
      summary: 'Read the broker log',
      description: 'Events of every node (SPEC §8), newest first. Filters: `since`, `event`, `token_id`, `client_id`; `limit` at most 1000.',
      security: SECURITY,
      querystring: logsQuery,
      response: { 200: logsResult, ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const q = request.query;
    return read(request.log, toQuery(q, q.token_id === undefined ? undefined : [Number(q.token_id)]));
  });

  app.get<{ Params: { sel: string }; Querystring: LogsQuery }>('/platform/tokens/:sel/logs', {
    schema: {
      tags: ['tokens', 'logs'],
      summary: 'Read the broker log records of tokens',
      description: "`all`, a token id or a comma list of ids (deleted tokens' records included); filters as for `GET /mqtt/logs`.",
      security: SECURITY,
      params: tokenSelector,
      querystring: tokenLogsQuery,
      response: { 200: logsResult, ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const ids = parseIdSelector(request.params.sel);
    return read(request.log, toQuery(request.query, ids === 'all' ? undefined : ids));
  });
};
