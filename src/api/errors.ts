// The one error shape of the REST API (SPEC §5): `{"errors": [{"code", "reason"}]}`
// on every path, 404 and 500 included. Routes throw; this module formats.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StoreUnavailableError } from '../store/types.js';
import { TokenValidationError } from '../tokens/index.js';

/** An error with an HTTP status and a reason meant for the client. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(readonly statusCode: number, reason: string, readonly headers?: Record<string, string>) {
    super(reason);
  }
}

export interface ErrorBody {
  errors: { code: number; reason: string }[];
}

export function errorBody(code: number, reason: string): ErrorBody {
  return { errors: [{ code, reason }] };
}

/** What a path or query parameter that fails its pattern should look like. */
const PATTERN_REASONS: Record<string, string> = {
  sel: "must be 'all', a token id or a comma list of token ids",
  fields: 'must be a comma list of field names',
  token_id: 'must be a token id',
};

/** Fields the server owns: naming one in a body gets the same reason as validateCreate gives. */
const READ_ONLY_FIELDS: readonly string[] = ['id', 'key', 'created', 'accessed'];

/** Echoing client text in a reason: keep it short. */
function shorten(text: string, max = 64): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

interface AjvError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
  /** Set on errors about an object's key (propertyNames). */
  propertyName?: string;
}

/** `/access/acl/3/topic` → `access.acl[3].topic`, as TokenValidationError names fields. */
function fieldPath(instancePath: string): string {
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out === '' ? shorten(part) : `.${shorten(part)}`;
  }
  return out;
}

function join(base: string, name: string): string {
  return base === '' ? shorten(name) : `${base}.${shorten(name)}`;
}

/**
 * A schema validation error as a reason naming the field. Bodies may be a
 * token or an array of tokens (POST: an `anyOf`); the branch that does not
 * fit the body's actual type is not reported.
 */
export function validationReason(errors: AjvError[], context: string, data: unknown): string {
  // POST bodies are `anyOf: [token, array of tokens]`: report the branch that fits the body's type.
  const either = errors.some((e) => e.keyword === 'anyOf');
  const bodyIsArray = Array.isArray(data);
  const bodyIsObject = typeof data === 'object' && data !== null && !bodyIsArray;
  const relevant = errors.filter((e) => {
    if (e.keyword === 'anyOf') return false;
    if (either && e.instancePath === '' && e.keyword === 'type') {
      if (e.params.type === 'array' && bodyIsObject) return false;
      if (e.params.type === 'object' && bodyIsArray) return false;
    }
    return true;
  });
  const first = relevant[0] ?? errors[0];
  if (!first) return `${context}: invalid`;
  if (either && !bodyIsArray && !bodyIsObject) return 'body: must be a token object or an array of token objects';
  const path = fieldPath(first.instancePath);
  if (first.keyword === 'additionalProperty' || first.keyword === 'additionalProperties') {
    const name = String(first.params.additionalProperty ?? '');
    if (context === 'body' && (path === '' || /^\[\d+\]$/.test(path)) && READ_ONLY_FIELDS.includes(name)) {
      return `${path === '' ? '' : `${path}.`}${TokenValidationError.readOnlyField(name).message}`;
    }
    if (context === 'querystring') return `unknown query parameter '${shorten(name)}'`;
    return `unknown field '${context === 'body' ? join(path, name) : `${context}.${shorten(name)}`}'`;
  }
  if (first.keyword === 'required') {
    const missing = String(first.params.missingProperty ?? '');
    return `${context === 'body' ? join(path, missing) : missing}: required`;
  }
  const subject = context === 'body' ? (path === '' ? 'body' : path) : path === '' ? context : path;
  if (first.keyword === 'pattern' && context !== 'body' && PATTERN_REASONS[path] !== undefined) {
    return `${path}: ${PATTERN_REASONS[path]}`;
  }
  if (typeof first.propertyName === 'string') {
    const problem = first.keyword === 'not' ? 'is not allowed' : first.message ?? 'is not allowed';
    return `${subject}: key '${shorten(first.propertyName)}' ${problem}`;
  }
  if (first.keyword === 'enum' && Array.isArray(first.params.allowedValues)) {
    return `${subject}: must be one of ${first.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${subject}: ${first.message ?? 'invalid'}`;
}

/**
 * For Fastify's `frameworkErrors` option: errors its router raises before any
 * handler runs (malformed percent-encoding, a too long path parameter).
 */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : typeof error.statusCode === 'number' ? error.statusCode : 400;
  const reason = error.code === 'FST_ERR_MAX_PARAM_LENGTH'
    ? 'path parameter too long'
    : error.code === 'FST_ERR_BAD_URL' ? 'malformed URL (bad percent-encoding)' : 'bad request';
  request.log.info({ code: error.code, status }, 'request refused by the router');
  void reply.code(status).type('application/json; charset=utf-8').send(errorBody(status, reason));
}

/** Installs the error and not-found handlers on the root instance (children inherit them). */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) => {
    const { status, reason, headers } = classify(error, request);
    if (status >= 500 && status !== 503) {
      request.log.error({ err: error }, 'request failed');
    } else if (status === 503) {
      request.log.warn({ reason }, 'service unavailable');
    }
    if (headers) void reply.headers(headers);
    return reply.code(status).type('application/json; charset=utf-8').send(errorBody(status, reason));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    return reply.code(404).send(errorBody(404, `no route ${request.method} ${shorten(path, 128)}`));
  });
}

function classify(error: FastifyError | Error, request: FastifyRequest): { status: number; reason: string; headers?: Record<string, string> } {
  if (error instanceof ApiError) return { status: error.statusCode, reason: error.message, headers: error.headers };
  if (error instanceof TokenValidationError) return { status: 400, reason: error.message };
  if (error instanceof StoreUnavailableError) return { status: 503, reason: 'token store unavailable, try again later' };
  const fe = error as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (Array.isArray(fe.validation)) {
    const context = fe.validationContext ?? 'body';
    const data = context === 'body' ? request.body : context === 'params' ? request.params : request.query;
    return { status: 400, reason: validationReason(fe.validation, context, data) };
  }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  // Fastify's own client errors (bad JSON, 413, 415, ...) carry safe, fixed messages.
  if (status >= 400 && status < 500 && typeof fe.code === 'string' && fe.code.startsWith('FST_')) {
    return { status, reason: fe.message };
  }
  if (status >= 400 && status < 500) return { status, reason: 'bad request' };
  return { status: 500, reason: 'internal server error' };
}
