// Path selectors and `?fields=` (SPEC §5), shared by the route groups.
import { ApiError } from './errors.js';

/** `all`, an id or a comma list of ids (already checked by the params schema) → ids in order, each once. */
export function parseIdSelector(sel: string): number[] | 'all' {
  if (sel === 'all') return 'all';
  const ids: number[] = [];
  for (const part of sel.split(',')) {
    const id = Number(part);
    if (!Number.isSafeInteger(id)) throw new ApiError(400, `sel: '${part.slice(0, 20)}' is not a token id`);
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/**
 * SPEC §5: a session selector is `all` or ONE client id (URL-encoded): a ','
 * is part of the id, never a list (`DELETE /mqtt/sessions/a%2Cb` closes the
 * session `a,b` only). Null for all.
 */
export function parseClientIdSelector(sel: string): string | null {
  return sel === 'all' ? null : sel;
}

export { compileMask } from '../tokens/masks.js';

/** SPEC §5 paging. */
export const MAX_PAGE_LIMIT = 1000;

export interface PageQuery {
  limit?: string;
  offset?: string;
}

export const pagingProperties = {
  limit: { type: 'string', pattern: '^[0-9]{1,7}$', description: `at most this many items (1 to ${MAX_PAGE_LIMIT}, default ${MAX_PAGE_LIMIT})` },
  offset: { type: 'string', pattern: '^[0-9]{1,12}$', description: 'skip this many items (default 0)' },
} as const;

export interface Pagination {
  offset: number;
  limit: number;
  total: number;
}

/** One page of `items` (already in listing order) and its `pagination` (SPEC §5). */
export function paginate<T>(items: T[], q: PageQuery): { result: T[]; pagination: Pagination } {
  const limit = q.limit === undefined ? MAX_PAGE_LIMIT : Number(q.limit);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) throw new ApiError(400, `limit: must be between 1 and ${MAX_PAGE_LIMIT}`);
  const offset = q.offset === undefined ? 0 : Number(q.offset);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ApiError(400, 'offset: must be a non-negative integer');
  return { result: items.slice(offset, offset + limit), pagination: { offset, limit, total: items.length } };
}

/** `resultOf(...)` with the `pagination` object beside `result` (listings, SPEC §5). */
export function paged<S extends { properties: Record<string, unknown> }>(schema: S): S {
  return {
    ...schema,
    properties: {
      ...schema.properties,
      pagination: {
        type: 'object',
        additionalProperties: false,
        properties: { offset: { type: 'integer' }, limit: { type: 'integer' }, total: { type: 'integer' } },
      },
    },
  };
}

/** Code-unit order (what a client sorting strings gets), for client ids and topics. */
export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Keeps only the fields named in `fields` (a comma list, checked against
 * `known`); all fields when `fields` is undefined.
 */
export function pickFields<T extends object>(items: T[], fields: string | undefined, known: readonly string[]): Partial<T>[] {
  if (fields === undefined) return items;
  const wanted = [...new Set(fields.split(','))];
  for (const field of wanted) {
    if (!known.includes(field)) {
      throw new ApiError(400, `fields: unknown field '${field.slice(0, 64)}' (known: ${known.join(', ')})`);
    }
  }
  return items.map((item) => {
    const out: Partial<T> = {};
    for (const field of wanted) {
      if (Object.hasOwn(item, field)) (out as Record<string, unknown>)[field] = (item as Record<string, unknown>)[field];
    }
    return out;
  });
}

/**
 * How long a REST call waits for the broker's side (publish, retained store,
 * session directory) before answering 503: with Redis down, mqemitter-redis and
 * aedes-persistence-redis queue commands instead of failing, and the request
 * would hang until Redis came back.
 */
export const PORT_TIMEOUT_MS = 5000;

/** `call()`, or a rejection once `ms` have passed (the call itself runs on). */
export function withTimeout<T>(call: () => Promise<T>, ms = PORT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([call(), timeout]).finally(() => clearTimeout(timer));
}
