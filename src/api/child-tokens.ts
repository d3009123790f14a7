// `POST /auth/tokens` (SPEC §5): any valid token mints child tokens (SPEC §2
// `parent`). The body is the one of POST /platform/tokens; each child is an
// ACL token whose every entry is covered by the presenting token's effective
// rights (SPEC §3 "Rights never widen by accident", src/tokens/containment.ts),
// valid no longer than the presenter is now. The store creates them only while
// the presenter is still stored as it was read (so a change of its access or
// ips, which deletes its children, cannot miss one made under the old rights)
// and keeps at most MAX_CHILDREN.
//
// A parent with a ttl: the child's deadline at creation must not pass the
// parent's current one (max(created, accessed) + ttl). The parent may be kept
// alive later by use; the child keeps its own clock. Whenever the parent ends
// (expiry, delete, disable, access or ips change) its children are deleted by
// the store, and until then every use of a child checks its ancestors
// (store/ancestors.ts), so a child never outlives its parent.
//
// `limits` (SPEC §5 "no looser"): each of the child's limits within the
// parent's, a field left out taking the parent's value (tokens/containment.ts
// childLimits); a looser one is 403 naming the field. `clientids` is not
// compared as masks: a child's client id must match its own `clientids` AND
// every ancestor's at CONNECT (SPEC §2 `parent`, store/ancestors.ts), so a
// wider child mask never admits more than its parent's.
import type { FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify';
import { ChildRefusedError, type TokenStore } from '../store/types.js';
import {
  MAX_CHILDREN,
  TokenValidationError,
  childLimits,
  containmentFailure,
  deadline,
  validateCreate,
  type NormalizedTokenInput,
} from '../tokens/index.js';
import { ApiError } from './errors.js';
import { ERROR_RESPONSES, createBody, resultOf } from './schemas.js';
import { itemError } from './tokens.js';

export interface ChildTokensRoutesOptions {
  store: TokenStore;
  authenticate: onRequestAsyncHookHandler;
}

export const childTokensRoutes: FastifyPluginAsync<ChildTokensRoutesOptions> = async (app, opts) => {
  const { store } = opts;
  app.addHook('onRequest', opts.authenticate);

  app.post<{ Body: unknown }>('', {
    schema: {
      tags: ['tokens'],
      summary: 'Mint child tokens',
      description: 'Any valid token. Like POST /platform/tokens, but each token is an ACL token (access.type 2) whose rights '
        + 'are contained in the presenting token\'s, valid no longer than it, with `limits` no looser (left out: the parent\'s); the presenting token becomes its `parent`. '
        + `At most ${MAX_CHILDREN} children per token. Deleting, disabling or changing the access or ips of a parent deletes its children.`,
      security: [{ FlespiToken: [] }],
      body: createBody,
      response: { 200: resultOf('CreatedToken', 'the created child tokens, with their keys'), ...ERROR_RESPONSES },
    },
  }, async (request) => {
    const auth = request.auth;
    if (auth === null) throw new ApiError(401, 'missing token'); // the hook ran: never here
    const parent = auth.token;
    const body = request.body;
    const now = Math.floor(Date.now() / 1000);
    const items = Array.isArray(body) ? body as unknown[] : [body];
    const at = (i: number): string => (Array.isArray(body) ? `[${i}].` : '');
    const parentEnd = deadline(parent);
    const inputs: NormalizedTokenInput[] = items.map((item, i) => {
      let input: NormalizedTokenInput;
      try {
        input = validateCreate(item, now);
      } catch (err) {
        if (err instanceof TokenValidationError && Array.isArray(body)) throw itemError(err, i);
        throw err;
      }
      const failure = containmentFailure(input.access, { access: parent.access, id: parent.id });
      if (failure !== null) {
        if (failure.index === -1) throw new ApiError(400, `${at(i)}access.type: ${failure.reason}`);
        // SPEC §5: 403 naming the entry that is not contained.
        throw new ApiError(403, `${at(i)}access.acl[${failure.index}]: ${failure.reason}`);
      }
      const limits = childLimits(input.limits, givenLimits(item), parent.limits);
      if (!limits.ok) throw new ApiError(403, `${at(i)}limits.${limits.field}: ${limits.reason}`);
      input.limits = limits.limits;
      const childEnd = deadline({ expire: input.expire, ttl: input.ttl, created: now, accessed: now });
      if (childEnd > parentEnd) {
        throw new ApiError(400, `${at(i)}expire/ttl: a child token cannot outlast its parent `
          + `(the parent is valid until ${parentEnd}, this token would be until ${childEnd})`);
      }
      return input;
    });
    let created;
    try {
      created = await store.createChildren(parent, inputs, now);
    } catch (err) {
      if (!(err instanceof ChildRefusedError)) throw err;
      if (err.reason === 'limit') throw new ApiError(403, `too many children: ${err.message}`);
      throw new ApiError(409, err.message);
    }
    request.log.info({ tokenIds: created.map((t) => t.id), parent: parent.id }, 'child tokens created');
    return { result: created };
  });
};

/** The `limits` fields a request body item sets (the rest take the parent's values). */
function givenLimits(item: unknown): Set<string> {
  const limits = typeof item === 'object' && item !== null ? (item as { limits?: unknown }).limits : undefined;
  return new Set(typeof limits === 'object' && limits !== null ? Object.keys(limits) : []);
}
