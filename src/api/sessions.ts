// /mqtt/sessions (SPEC §5, §6): live sessions on every node, through the
// broker's session directory (one node: its registry; cluster: the nodes'
// snapshots in Redis, kicks over pub/sub). Standard and master tokens, and ACL
// tokens with the method on `mqtt/sessions` (checked by the auth hook).
import type { FastifyBaseLogger, FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify';
import type { SessionDirectory, SessionView } from '../access/ports.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, SESSION_FIELDS, resultOf, sessionSelector, sessionsQuery } from './schemas.js';
import { parseClientIdSelector, pickFields } from './select.js';

export interface SessionsRoutesOptions {
  sessions: SessionDirectory;
  authenticate: onRequestAsyncHookHandler;
}

interface SelParams {
  sel: string;
}

interface SessionsQuery {
  fields?: string;
  token_id?: string;
}

const TAGS = ['sessions'];
const SECURITY = [{ FlespiToken: [] }];
/** Logged and shown as the reason a session ended. */
export const KICK_REASON = 'closed via REST API';

export const sessionsRoutes: FastifyPluginAsync<SessionsRoutesOptions> = async (app, opts) => {
  const { sessions: directoryPort } = opts;
  app.addHook('onRequest', opts.authenticate);

  /** A directory that cannot reach its backend (Redis down) answers 503, as the token store does. */
  async function directory<T>(log: FastifyBaseLogger, what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, `session directory: ${what} failed`);
      throw new ApiError(503, 'session directory unavailable, try again later');
    }
  }

  async function select(log: FastifyBaseLogger, sel: string, tokenId: string | undefined): Promise<SessionView[]> {
    const ids = parseClientIdSelector(sel);
    const token = tokenId === undefined ? undefined : Number(tokenId);
    const all = await directory(log, 'listing', () => directoryPort.list());
    return all.filter((s) => (ids === null || ids.has(s.client_id)) && (token === undefined || s.token_id === token));
  }

  app.get<{ Params: SelParams; Querystring: SessionsQuery }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'List live sessions on every node',
      description: "`all` or a comma list of client ids; `?token_id=N` keeps that token's sessions; `?fields=` limits the fields.",
      security: SECURITY,
      params: sessionSelector,
      querystring: sessionsQuery,
      response: { 200: resultOf('Session', 'the live sessions'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const views = await select(request.log, request.params.sel, request.query.token_id);
    return { result: pickFields(views, request.query.fields, SESSION_FIELDS) };
  });

  app.delete<{ Params: SelParams; Querystring: Omit<SessionsQuery, 'fields'> }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'Close live sessions',
      description: 'Closes the selected sessions on whichever node holds them (their wills are published); `?token_id=N` as for GET.',
      security: SECURITY,
      params: sessionSelector,
      querystring: { ...sessionsQuery, properties: { token_id: sessionsQuery.properties.token_id } },
      response: {
        200: resultOf({ client_id: { type: 'string' }, token_id: { type: 'integer' }, node: { type: 'string' } }, 'the sessions being closed'),
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    const sessions = await select(request.log, request.params.sel, request.query.token_id);
    const clientIds = [...new Set(sessions.map((s) => s.client_id))];
    if (clientIds.length > 0) await directory(request.log, 'kick', () => directoryPort.kick(clientIds, KICK_REASON, request.auth?.token.id));
    request.log.info({ clientIds, by: request.auth?.token.id }, 'sessions closed');
    return { result: sessions.map((s) => ({ client_id: s.client_id, token_id: s.token_id, node: s.node })) };
  });
};
