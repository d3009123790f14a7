// /platform/tokens (SPEC §5): master only (the auth hook refuses everyone else).
// Bodies pass the JSON schema first, then validateCreate/validatePatch, which
// stay the source of truth for what a token may be.
import type { FastifyPluginAsync, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { TokenStore } from '../store/types.js';
import {
  ACCESS_MASTER,
  TokenValidationError,
  checkResult,
  containmentFailure,
  isExpired,
  validateCreate,
  validatePatch,
  type NormalizedTokenInput,
  type Token,
  type TokenAccess,
} from '../tokens/index.js';
import { ApiError } from './errors.js';
import type { TokenCache } from '../access/token-cache.js';
import {
  ERROR_RESPONSES,
  TOKEN_FIELDS,
  createBody,
  fieldsQuery,
  patchBody,
  resultOf,
  tokenSelector,
} from './schemas.js';
import { compileMask, paged, paginate, pagingProperties, parseIdSelector, pickFields, type PageQuery } from './select.js';
import type { EventInput, EventSink } from '../events/types.js';

export interface TokensRoutesOptions {
  store: TokenStore;
  /** Entries of changed or deleted tokens are dropped before the answer goes out. */
  cache: TokenCache;
  authenticate: onRequestAsyncHookHandler;
  /** SPEC §8 token events, emitted by the node that made the change. */
  events?: EventSink;
}

interface SelParams {
  sel: string;
}

interface FieldsQuery extends PageQuery {
  fields?: string;
}

/** A `field=value` selector → a predicate on tokens, or null for the other selectors. */
function fieldSelector(sel: string): ((t: Token) => boolean) | null {
  const m = FIELD_SELECTOR.exec(sel);
  if (m === null) return null;
  const field = m[1] as string;
  const matches = compileMask(m[2] as string);
  if (field === 'info') return (t) => matches(t.info);
  if (field === 'enabled') return (t) => matches(String(t.enabled));
  if (field === 'parent') return (t) => matches(String(t.parent));
  const name = field.slice('metadata.'.length);
  return (t) => Object.hasOwn(t.metadata ?? {}, name) && matches(t.metadata[name] as string);
}

const TAGS = ['tokens'];
/** SPEC §5 `field=value` selectors (the params schema admits only these fields). */
const FIELD_SELECTOR = /^(info|enabled|parent|metadata\.[^=]+)=(.*)$/s;
const SECURITY = [{ FlespiToken: [] }];

/** A listed token whose validity could not be read (SPEC §2): listed, since whether it expired is unknown. */
function clocksUnknown(t: Token): boolean {
  return t.unreadable !== undefined && (t.unreadable.includes('expire') || t.unreadable.includes('ttl'));
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

/** SPEC §3: only a master token manages master tokens (defence in depth: only master reaches /platform). */
function assertMayGrant(request: FastifyRequest, access: { type: number } | undefined): void {
  if (access?.type === ACCESS_MASTER && request.auth?.token.access.type !== ACCESS_MASTER) {
    throw new ApiError(403, 'only a master token may create or grant master access');
  }
}

/** A validation error of item `index` of an array body, named as the schema errors name it (`[2].ttl`). */
export function itemError(err: TokenValidationError, index: number): ApiError {
  if (err.field === 'token') return new ApiError(400, `[${index}]: must be a JSON object`);
  if (err.message.startsWith(err.field)) return new ApiError(400, `[${index}].${err.message}`);
  return new ApiError(400, err.message.replace(`'${err.field}'`, `'[${index}].${err.field}'`));
}

export const tokensRoutes: FastifyPluginAsync<TokensRoutesOptions> = async (app, opts) => {
  const { store, cache } = opts;
  /** SPEC §8: one event per token, `by` the presenting token; never a key. */
  const emit = (event: EventInput['event'], ids: readonly number[], request: FastifyRequest, fields?: string[]): void => {
    const by = request.auth?.token.id;
    for (const id of ids) opts.events?.emit({ event, token_id: id, ...(by === undefined ? {} : { by }), ...(fields ? { fields } : {}) });
  };
  app.addHook('onRequest', opts.authenticate);

  /** Tokens of a selector that are still valid by time (SPEC §2: expired ones no longer appear). */
  async function select(sel: string, listing = false): Promise<Token[]> {
    const now = nowSec();
    // SPEC §2: a listing shows a stored token that cannot be read with what could be (`unreadable`);
    // changes and deletions select readable tokens only.
    const read = listing && store.list ? store.list.bind(store) : store.get.bind(store);
    // SPEC §5 `field=value` (`parent=N`: the children of token N); listings ordered by id.
    const byField = fieldSelector(sel);
    const tokens = byField === null ? await read(parseIdSelector(sel)) : (await read('all')).filter(byField);
    return tokens.filter((t) => !isExpired(t, now) || clocksUnknown(t)).sort((a, b) => a.id - b.id);
  }

  /**
   * SPEC §3 "Rights never widen by accident": a child's access stays within its
   * parent's, through PUT too (a change of many tokens at once must not widen
   * the children among them). A child whose parent is gone is being deleted.
   */
  async function assertChildrenContained(tokens: Token[], access: TokenAccess): Promise<void> {
    const children = tokens.filter((t) => t.parent !== 0);
    if (children.length === 0) return;
    const parents = new Map((await store.get([...new Set(children.map((t) => t.parent))])).map((p) => [p.id, p]));
    for (const child of children) {
      const parent = parents.get(child.parent);
      if (parent === undefined) continue;
      const failure = containmentFailure(access, { access: parent.access, id: parent.id });
      if (failure === null) continue;
      const field = failure.index === -1 ? 'access.type' : `access.acl[${failure.index}]`;
      throw new ApiError(failure.index === -1 ? 400 : 403, `token ${child.id} is a child of token ${parent.id}: ${field}: ${failure.reason}`);
    }
  }

  app.post<{ Body: unknown }>('', {
    schema: {
      tags: TAGS,
      summary: 'Create tokens',
      description: 'A token object or an array of them; all or nothing. The response is the only time the keys are shown.',
      security: SECURITY,
      body: createBody,
      response: { 200: resultOf('CreatedToken', 'the created tokens, with their keys'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const body = request.body;
    const now = nowSec();
    const items = Array.isArray(body) ? body as unknown[] : [body];
    const inputs: NormalizedTokenInput[] = items.map((item, i) => {
      try {
        return validateCreate(item, now);
      } catch (err) {
        if (err instanceof TokenValidationError && Array.isArray(body)) throw itemError(err, i);
        throw err;
      }
    });
    for (const input of inputs) assertMayGrant(request, input.access);
    const created = await store.create(inputs, now);
    request.log.info({ tokenIds: created.map((t) => t.id), by: request.auth?.token.id }, 'tokens created');
    emit('token_created', created.map((t) => t.id), request);
    return { result: created };
  });

  app.get<{ Params: SelParams; Querystring: FieldsQuery }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'List tokens',
      description: '`all`, an id, a comma list of ids or `field=value` (masks with * and ?); never returns a key. '
        + '`?fields=id,info` limits the fields; `?limit=&offset=` page (ordered by id).',
      security: SECURITY,
      params: tokenSelector,
      querystring: { ...fieldsQuery, properties: { ...fieldsQuery.properties, ...pagingProperties } },
      response: { 200: paged(resultOf('Token', 'the tokens')), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const page = paginate(await select(request.params.sel, true), request.query);
    return { result: pickFields(page.result, request.query.fields, TOKEN_FIELDS), pagination: page.pagination };
  });

  // SPEC §5: PATCH wherever PUT is, with the same meaning.
  app.route<{ Params: SelParams; Body: unknown }>({
    method: ['PUT', 'PATCH'],
    url: '/:sel',
    schema: {
      tags: TAGS,
      summary: 'Change tokens',
      description: 'Partial: only the fields given change (each replaced whole). Live sessions follow at once.',
      security: SECURITY,
      params: tokenSelector,
      body: patchBody,
      response: { 200: resultOf('Token', 'the changed tokens'), ...ERROR_RESPONSES },
    },
    handler: async (request) => {
      const patch = validatePatch(request.body);
      assertMayGrant(request, patch.access);
      const tokens = await select(request.params.sel);
      if (tokens.length === 0 || Object.keys(patch).length === 0) return { result: tokens };
      const now = nowSec();
      if (patch.expire !== undefined || patch.ttl !== undefined) {
        // Refuse a change that leaves a token without a clock or already expired (it would vanish at once).
        for (const t of tokens) {
          try {
            checkResult({ ...t, expire: patch.expire ?? t.expire, ttl: patch.ttl ?? t.ttl }, now);
          } catch (err) {
            if (err instanceof TokenValidationError && tokens.length > 1) throw new ApiError(400, `token ${t.id}: ${err.message}`);
            throw err;
          }
        }
      }
      if (patch.access !== undefined) await assertChildrenContained(tokens, patch.access);
      const ids = tokens.map((t) => t.id);
      let updated: Token[];
      try {
        updated = await store.update(ids, patch, now);
      } finally {
        cache.invalidate(ids); // this node refuses a disabled token from the next request on
      }
      request.log.info({ tokenIds: updated.map((t) => t.id), fields: Object.keys(patch), by: request.auth?.token.id }, 'tokens changed');
      emit('token_updated', updated.map((t) => t.id), request, Object.keys(patch));
      return { result: updated };
    },
  });

  app.delete<{ Params: SelParams }>('/:sel', {
    schema: {
      tags: TAGS,
      summary: 'Delete tokens',
      description: 'Their live sessions are closed.',
      security: SECURITY,
      params: tokenSelector,
      response: {
        200: {
          description: 'the ids that were deleted',
          type: 'object',
          additionalProperties: false,
          properties: {
            result: {
              type: 'array',
              items: { type: 'object', additionalProperties: false, properties: { id: { type: 'integer' } } },
            },
          },
        },
        ...ERROR_RESPONSES,
      },
    },
  }, async (request) => {
    const raw = request.params.sel;
    const sel = FIELD_SELECTOR.test(raw) ? (await select(raw)).map((t) => t.id) : parseIdSelector(raw);
    const ids = sel === 'all' ? (await store.get('all')).map((t) => t.id) : sel;
    let deleted: number[] = [];
    try {
      if (ids.length > 0) deleted = await store.delete(ids);
    } finally {
      cache.invalidate(ids);
    }
    request.log.info({ tokenIds: deleted, by: request.auth?.token.id }, 'tokens deleted');
    emit('token_deleted', deleted, request);
    return { result: deleted.map((id) => ({ id })) };
  });
};
