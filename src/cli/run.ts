// `tokenmq` (SPEC §9): the REST API from a shell. Tables by default, `--json`
// for scripts; a non-zero exit code with the API's reason on error. The key
// comes only from TOKENMQ_KEY (a flag would show in `ps` and shell history).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { ApiClient, CliError, EXIT } from './client.js';
import { formatTable, type Column } from './table.js';

const USAGE = `Usage: tokenmq [--url URL] [--json] <command> ...

  tokens list [SEL] [--limit N] [--offset N]          SEL: all (default), ids, or field=value
  tokens create [--info T] [--ttl S] [--expire T] [--access standard|master|acl]
                [--acl JSON] [--ips MASKS] [--clientids MASKS] [--body JSON|@file]
  tokens update SEL [same options] [--enable|--disable]
  tokens delete SEL
  tokens logs SEL [--since T] [--event E] [--limit N]
  sessions list [SEL] [--token-id N] [--client-id MASK] [--ip MASK] [--limit N] [--offset N]
  sessions kick SEL [--token-id N]                    SEL: all or a client id
  publish TOPIC PAYLOAD [--qos 0|1] [--retain] [--base64]
  check TOPIC --action publish|subscribe [--client-id C] [--token-id N]

  --url     the REST API (default: TOKENMQ_URL, else http://127.0.0.1:8080)
  --json    print the API's JSON answer
  The key is read from TOKENMQ_KEY. Exit codes: 0 ok, 1 refused by the API,
  2 bad usage, 3 API unreachable.`;

const OPTIONS = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  limit: { type: 'string' },
  offset: { type: 'string' },
  info: { type: 'string' },
  ttl: { type: 'string' },
  expire: { type: 'string' },
  access: { type: 'string' },
  acl: { type: 'string' },
  ips: { type: 'string' },
  clientids: { type: 'string' },
  body: { type: 'string' },
  enable: { type: 'boolean' },
  disable: { type: 'boolean' },
  since: { type: 'string' },
  event: { type: 'string' },
  'token-id': { type: 'string' },
  'client-id': { type: 'string' },
  ip: { type: 'string' },
  qos: { type: 'string' },
  retain: { type: 'boolean' },
  base64: { type: 'boolean' },
  action: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

const ACCESS_TYPES: Record<string, number> = { standard: 0, master: 1, acl: 2 };
const ACCESS_NAMES = ['standard', 'master', 'acl'];

function usage(message: string): never {
  throw new CliError(EXIT.usage, `${message}\n\n${USAGE}`);
}

function uint(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) usage(`--${name}: '${text}' is not a whole number`);
  return Number(text);
}

function json(name: string, text: string): unknown {
  const source = text.startsWith('@') ? readFileSync(text.slice(1), 'utf8') : text;
  try {
    return JSON.parse(source);
  } catch (err) {
    return usage(`--${name}: not JSON (${(err as Error).message})`);
  }
}

/** A token body from the options (SPEC §2 fields); --body is the base the others override. */
function tokenBody(v: Values): Record<string, unknown> {
  const body: Record<string, unknown> = v.body === undefined ? {} : (json('body', v.body) as Record<string, unknown>);
  if (typeof body !== 'object' || body === null) usage('--body: must be a JSON object or array');
  if (v.info !== undefined) body.info = v.info;
  if (v.ttl !== undefined) body.ttl = uint('ttl', v.ttl);
  if (v.expire !== undefined) body.expire = uint('expire', v.expire);
  if (v.ips !== undefined) body.ips = v.ips;
  if (v.clientids !== undefined) body.clientids = v.clientids;
  if (v.enable && v.disable) usage('--enable and --disable together');
  if (v.enable) body.enabled = true;
  if (v.disable) body.enabled = false;
  if (v.access !== undefined || v.acl !== undefined) {
    const type = v.access === undefined ? ACCESS_TYPES.acl : ACCESS_TYPES[v.access.toLowerCase()];
    if (type === undefined) usage(`--access: '${v.access}' is not standard, master or acl`);
    body.access = { type, ...(v.acl === undefined ? {} : { acl: json('acl', v.acl) }) };
  }
  return body;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function time(unix: unknown): string {
  return typeof unix === 'number' && unix > 0 ? new Date(unix * 1000).toISOString().replace(/\.\d+Z$/, 'Z') : '-';
}

const TOKEN_COLUMNS: Column[] = [
  { title: 'ID', get: (t) => t.id },
  { title: 'INFO', get: (t) => t.info },
  { title: 'ACCESS', get: (t) => ACCESS_NAMES[(t.access as { type: number })?.type] ?? '?' },
  { title: 'ENABLED', get: (t) => (t.enabled ? 'yes' : 'no') },
  { title: 'EXPIRE', get: (t) => time(t.expire) },
  { title: 'TTL', get: (t) => t.ttl },
  { title: 'ACCESSED', get: (t) => time(t.accessed) },
];
const SESSION_COLUMNS: Column[] = [
  { title: 'CLIENT ID', get: (s) => s.client_id },
  { title: 'TOKEN', get: (s) => s.token_id },
  { title: 'IP', get: (s) => s.ip },
  { title: 'TRANSPORT', get: (s) => s.transport },
  { title: 'NODE', get: (s) => s.node },
  { title: 'CONNECTED', get: (s) => time(s.connected) },
  { title: 'IN', get: (s) => s.msgs_in },
  { title: 'OUT', get: (s) => s.msgs_out },
];
const LOG_COLUMNS: Column[] = [
  { title: 'TIME', get: (e) => time(Math.floor(Number(e.time))) },
  { title: 'EVENT', get: (e) => e.event },
  { title: 'CLIENT ID', get: (e) => e.client_id },
  { title: 'TOKEN', get: (e) => e.token_id },
  { title: 'IP', get: (e) => e.ip },
  { title: 'REASON', get: (e) => e.reason },
];

interface Output {
  body: { result?: unknown[]; pagination?: { offset: number; limit: number; total: number } } & Record<string, unknown>;
  columns?: Column[];
  /** Said on stderr after the table (never with --json). */
  note?: string;
}

/** A session mask (`*`, `?`) applied here when the node's API does not take it yet. */
function maskTest(mask: string): (value: unknown) => boolean {
  const re = new RegExp(`^${mask.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return (value) => re.test(String(value));
}

async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<Output | null> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    return usage((err as Error).message);
  }
  const { values: v, positionals: [group, command, ...rest] } = parsed;
  if (v.help || group === undefined || group === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return null;
  }
  const api = new ApiClient(v.url ?? env.TOKENMQ_URL ?? 'http://127.0.0.1:8080', env.TOKENMQ_KEY);
  const sel = (fallback?: string): string => {
    const s = rest[0] ?? fallback;
    if (s === undefined) usage(`${group} ${command}: a selector is required`);
    return encodeURIComponent(s);
  };
  const page = { limit: uint('limit', v.limit), offset: uint('offset', v.offset) };

  // `publish TOPIC ...` and `check TOPIC ...` take no sub-command.
  switch (group === 'publish' || group === 'check' ? group : `${group} ${command ?? ''}`.trim()) {
    case 'tokens list':
      return { body: await api.call('GET', `/platform/tokens/${sel('all')}${query(page)}`), columns: TOKEN_COLUMNS };
    case 'tokens create': {
      const body = await api.call('POST', '/platform/tokens', tokenBody(v));
      return { body, columns: [...TOKEN_COLUMNS.slice(0, 4), { title: 'KEY', get: (t) => t.key }], note: 'the key is shown only now' };
    }
    case 'tokens update':
    case 'tokens change': {
      const body = tokenBody(v);
      if (Object.keys(body).length === 0) usage('tokens update: nothing to change');
      return { body: await api.call('PUT', `/platform/tokens/${sel()}`, body), columns: TOKEN_COLUMNS };
    }
    case 'tokens delete':
      return { body: await api.call('DELETE', `/platform/tokens/${sel()}`), columns: TOKEN_COLUMNS.slice(0, 2) };
    case 'tokens logs':
      return {
        body: await api.call('GET', `/platform/tokens/${sel()}/logs${query({ since: v.since, event: v.event, limit: page.limit })}`),
        columns: LOG_COLUMNS,
      };
    case 'sessions list': {
      const filters = { token_id: uint('token-id', v['token-id']), client_id: v['client-id'], ip: v.ip };
      const path = `/mqtt/sessions/${sel('all')}`;
      try {
        return { body: await api.call('GET', `${path}${query({ ...filters, ...page })}`), columns: SESSION_COLUMNS };
      } catch (err) {
        // A node without SPEC §5's `client_id`/`ip`/paging parameters: filter here instead.
        if (!(err instanceof CliError && err.status === 400 && /unknown query parameter/.test(err.message))) throw err;
        const body = await api.call('GET', `${path}${query({ token_id: filters.token_id })}`);
        const byClient = filters.client_id === undefined ? () => true : maskTest(filters.client_id);
        const byIp = filters.ip === undefined ? () => true : maskTest(filters.ip);
        const all = (body.result ?? []).filter((s) => byClient((s as Record<string, unknown>).client_id) && byIp((s as Record<string, unknown>).ip));
        const offset = page.offset ?? 0;
        const limit = page.limit ?? 1000;
        return { body: { result: all.slice(offset, offset + limit), pagination: { offset, limit, total: all.length } }, columns: SESSION_COLUMNS };
      }
    }
    case 'sessions kick':
      return {
        body: await api.call('DELETE', `/mqtt/sessions/${sel()}${query({ token_id: uint('token-id', v['token-id']) })}`),
        columns: SESSION_COLUMNS.slice(0, 2).concat({ title: 'NODE', get: (s) => s.node }),
      };
    case 'publish': {
      const [topic, payload] = [command, rest[0]];
      if (topic === undefined || payload === undefined) usage('publish: TOPIC and PAYLOAD are required');
      const qos = uint('qos', v.qos) ?? 0;
      if (qos > 1) usage('--qos: 0 or 1');
      const body = await api.call('POST', '/mqtt/messages', {
        topic, payload, qos, retain: Boolean(v.retain), encoding: v.base64 ? 'base64' : 'utf8',
      });
      return { body, columns: [{ title: 'TOPIC', get: (r) => r.topic ?? topic }, { title: 'QOS', get: (r) => r.qos ?? qos }] };
    }
    case 'check': {
      const topic = command;
      if (topic === undefined) usage('check: TOPIC is required');
      if (v.action !== 'publish' && v.action !== 'subscribe') usage('check: --action publish or --action subscribe');
      const body = await api.call('GET', `/auth/check${query({ topic, action: v.action, client_id: v['client-id'], token_id: v['token-id'] })}`);
      // SPEC §5: the answer is one object; tables take a list.
      const result = Array.isArray(body.result) ? body.result : [body.result ?? body];
      return {
        body,
        columns: [
          { title: 'ALLOWED', get: (r) => (r.allowed ? 'yes' : 'no') },
          { title: 'ENTRY', get: (r) => r.entry ?? '-' },
          { title: 'REASON', get: (r) => r.reason },
        ],
        note: result.length === 1 && !(result[0] as { allowed?: boolean }).allowed ? 'not allowed' : undefined,
      };
    }
    default:
      return usage(`unknown command '${[group, command].filter(Boolean).join(' ')}'`);
  }
}

export async function main(argv = process.argv.slice(2), env = process.env): Promise<number> {
  const asJson = argv.includes('--json');
  try {
    const out = await run(argv, env);
    if (!out) return EXIT.ok;
    if (asJson) {
      process.stdout.write(`${JSON.stringify(out.body, null, 2)}\n`);
    } else {
      const rows = (Array.isArray(out.body.result) ? out.body.result : [out.body.result ?? out.body]) as Record<string, unknown>[];
      process.stdout.write(formatTable(rows, out.columns ?? []));
      const p = out.body.pagination;
      if (p && p.total > rows.length) process.stderr.write(`${p.offset + 1}-${p.offset + rows.length} of ${p.total} (--offset, --limit for more)\n`);
      if (out.note) process.stderr.write(`${out.note}\n`);
    }
    // `check` answering "not allowed" is a successful call with a negative answer: exit 1 like grep, so scripts can test it.
    if (out.note === 'not allowed') return EXIT.refused;
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`tokenmq: ${err.message}\n`);
      return err.exit;
    }
    process.stderr.write(`tokenmq: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.unreachable;
  }
}
