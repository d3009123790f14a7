// /mqtt/sessions (SPEC §5, §6): live sessions on every node, through the
// broker's session directory (one node: its registry; cluster: the nodes'
// snapshots in Redis, kicks over pub/sub), and their subscriptions. Standard and
// master tokens, and ACL tokens with the method on `mqtt/sessions` or on its
// `subscriptions` submodule (checked by the auth hook); an ACL entry's `ids`
// (SPEC §3) limit what it reaches, checked here.
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { SessionDirectory, SessionView, SubscriptionsPort } from '../access/ports.js';
import { filterError } from '../tokens/index.js';
import { LIMITS } from '../tokens/types.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, SESSION_FIELDS, resultOf, sessionSelector, sessionsQuery } from './schemas.js';
import { byString, compileMask, paged, paginate, pagingProperties, parseClientIdSelector, pickFields, withTimeout, type PageQuery } from './select.js';

export interface SessionsRoutesOptions {
  sessions: SessionDirectory;
  subscriptions: SubscriptionsPort;
  authenticate: onRequestAsyncHookHandler;
}

interface SelParams {
  sel: string;
}

interface SessionsQuery extends PageQuery {
  fields?: string;
  token_id?: string;
  client_id?: string;
  ip?: string;
}

const TAGS = ['sessions'];
const SECURITY = [{ FlespiToken: [] }];
/** Logged and shown as the reason a session ended. */
export const KICK_REASON = 'closed via REST API';

const maskParam = (what: string) => ({ type: 'string', minLength: 1, maxLength: 1024, description: `only sessions whose ${what} matches this mask (* and ?)` }) as const;
const filterProperties = {
  token_id: sessionsQuery.properties.token_id,
  client_id: maskParam('client id'),
  ip: maskParam('IP'),
} as const;
const listQuery = { type: 'object', additionalProperties: false, properties: { ...sessionsQuery.properties, ...filterProperties, ...pagingProperties } } as const;
const kickQuery = { type: 'object', additionalProperties: false, properties: filterProperties } as const;
const subscriptionsQuery = { type: 'object', additionalProperties: false, properties: { ...filterProperties, ...pagingProperties } } as const;
const subscriptionParams = {
  type: 'object',
  additionalProperties: false,
  required: ['sel', 'filter'],
  properties: {
    sel: sessionSelector.properties.sel,
    filter: { type: 'string', minLength: 1, maxLength: LIMITS.topic, description: 'the subscription filter, URL-encoded' },
  },
} as const;

/** A query filter given: an offline session (no token, no IP) is never selected then. */
function hasFilters(q: SessionsQuery): boolean {
  return q.token_id !== undefined || q.client_id !== undefined || q.ip !== undefined;
}

export const sessionsRoutes: FastifyPluginAsync<SessionsRoutesOptions> = async (app, opts) => {
  const { sessions: directoryPort } = opts;
  app.addHook('onRequest', opts.authenticate);

  /** A directory that cannot reach its backend (Redis down) answers 503, as the token store does. */
  async function directory<T>(log: FastifyBaseLogger, what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await withTimeout(call);
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, `session directory: ${what} failed`);
      throw new ApiError(503, 'session directory unavailable, try again later');
    }
  }

  /**
   * The sessions a request selects, ordered by client id (SPEC §5): `all` or one
   * client id, the query filters, and the client ids the token's ACL entry
   * reaches (SPEC §3 `ids`): a listing leaves the others out; naming one is a 403.
   */
  async function select(request: FastifyRequest, sel: string, q: SessionsQuery): Promise<SessionView[]> {
    const id = parseClientIdSelector(sel);
    const scope = request.auth?.rights.restClientIds(request.method, request.url) ?? null;
    if (id !== null && scope !== null && !scope(id)) {
      throw new ApiError(403, `token access does not reach client id '${id.slice(0, 128)}'`);
    }
    const token = q.token_id === undefined ? undefined : Number(q.token_id);
    const clientMask = q.client_id === undefined ? null : compileMask(q.client_id);
    const ipMask = q.ip === undefined ? null : compileMask(q.ip);
    let all = await directory(request.log, 'listing', () => directoryPort.list());
    // A client id named but not listed may have connected to another node an instant ago: one
    // more look once every node has written what it had (a kick right after a connect still lands).
    if (id !== null && directoryPort.listingDelayMs && !all.some((s) => s.client_id === id)) {
      await new Promise((resolve) => setTimeout(resolve, directoryPort.listingDelayMs));
      all = await directory(request.log, 'listing', () => directoryPort.list());
    }
    return all.filter((s) => (id === null || s.client_id === id)
      && (token === undefined || s.token_id === token)
      && (clientMask === null || clientMask(s.client_id))
      && (ipMask === null || ipMask(s.ip))
      && (scope === null || scope(s.client_id)))
      .sort((a, b) => byString(a.client_id, b.client_id) || byString(a.node, b.node));
  }

  app.get<{ Params: SelParams; Querystring: SessionsQuery }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'List live sessions on every node',
      description: '`all` or one client id (URL-encoded); `?token_id=N`, `?client_id=<mask>`, `?ip=<mask>` filter; '
        + '`?fields=` limits the fields; `?limit=&offset=` page (ordered by client id).',
      security: SECURITY,
      params: sessionSelector,
      querystring: listQuery,
      response: { 200: paged(resultOf('Session', 'the live sessions')), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const views = await select(request, request.params.sel, request.query);
    const page = paginate(views, request.query);
    return { result: pickFields(page.result, request.query.fields, SESSION_FIELDS), pagination: page.pagination };
  });

  app.delete<{ Params: SelParams; Querystring: SessionsQuery }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'Close live sessions',
      description: 'Closes the selected sessions on whichever node holds them (their wills are published); filters as for GET.',
      security: SECURITY,
      params: sessionSelector,
      querystring: kickQuery,
      response: {
        200: resultOf({ client_id: { type: 'string' }, token_id: { type: 'integer' }, node: { type: 'string' } }, 'the sessions being closed'),
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    const sessions = await select(request, request.params.sel, request.query);
    const clientIds = [...new Set(sessions.map((s) => s.client_id))];
    if (clientIds.length > 0) await directory(request.log, 'kick', () => directoryPort.kick(clientIds, KICK_REASON, request.auth?.token.id));
    request.log.info({ clientIds, by: request.auth?.token.id }, 'sessions closed');
    return { result: sessions.map((s) => ({ client_id: s.client_id, token_id: s.token_id, node: s.node })) };
  });

  const subscriptionItem = { client_id: { type: 'string' }, topic: { type: 'string' }, qos: { type: 'integer' } };

  app.get<{ Params: SelParams; Querystring: SessionsQuery }>('/:sel/subscriptions', {
    schema: {
      tags: TAGS,
      summary: 'List the subscriptions of live sessions',
      description: 'Of the selected sessions, on every node (filters as for the sessions); ordered by client id, then filter.',
      security: SECURITY,
      params: sessionSelector,
      querystring: subscriptionsQuery,
      response: { 200: paged(resultOf(subscriptionItem, 'the subscriptions')), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const sessions = await select(request, request.params.sel, request.query);
    const id = parseClientIdSelector(request.params.sel);
    // SPEC §5: one client id with no live session: an offline persistent session's, from persistence.
    const views = id !== null && sessions.length === 0 && !hasFilters(request.query)
      ? [{ client_id: id, subscriptions: await directory(request.log, 'stored subscriptions', () => opts.subscriptions.stored(id)) }]
      : sessions;
    const subs = views.flatMap((s) => [...s.subscriptions].sort((a, b) => byString(a.topic, b.topic))
      .map((sub) => ({ client_id: s.client_id, topic: sub.topic, qos: sub.qos })));
    return paginate(subs, request.query);
  });

  app.delete<{ Params: SelParams & { filter: string }; Querystring: SessionsQuery }>('/:sel/subscriptions/:filter', {
    schema: {
      tags: TAGS,
      summary: 'Remove a subscription',
      description: 'Removes the subscription (the filter URL-encoded) from the selected live sessions, on whichever node holds them, '
        + 'and from their stored persistent sessions.',
      security: SECURITY,
      params: subscriptionParams,
      querystring: kickQuery,
      response: { 200: resultOf(subscriptionItem, 'the subscriptions removed'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const { filter } = request.params;
    const problem = filterError(filter);
    if (problem !== null) throw new ApiError(400, `filter: ${problem}`);
    const sessions = await select(request, request.params.sel, request.query);
    const id = parseClientIdSelector(request.params.sel);
    if (id !== null && sessions.length === 0 && !hasFilters(request.query)) {
      // SPEC §5: an offline persistent session: removed in persistence.
      const stored = await directory(request.log, 'stored subscriptions', () => opts.subscriptions.stored(id));
      const sub = stored.find((s) => s.topic === filter);
      if (sub === undefined) return { result: [] };
      await directory(request.log, 'subscription removal', () => opts.subscriptions.removeStored(id, filter));
      request.log.info({ clientId: id, by: request.auth?.token.id }, 'stored subscription removed');
      return { result: [{ client_id: id, topic: filter, qos: sub.qos }] };
    }
    const holding = sessions.filter((s) => s.subscriptions.some((sub) => sub.topic === filter));
    const clientIds = [...new Set(holding.map((s) => s.client_id))];
    if (clientIds.length > 0) {
      await directory(request.log, 'subscription removal', () => opts.subscriptions.remove(clientIds, filter));
    }
    request.log.info({ clientIds, by: request.auth?.token.id }, 'subscription removed');
    return {
      result: holding.map((s) => ({ client_id: s.client_id, topic: filter, qos: s.subscriptions.find((sub) => sub.topic === filter)?.qos ?? 0 })),
    };
  });
};
