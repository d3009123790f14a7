// REST calls of the console (SPEC §5, §9). The key lives only in this tab's
// sessionStorage and travels only in the Authorization header: never in a
// URL, a cookie or localStorage.
const KEY = 'tokenmq.key';

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** An error answer of the API: its HTTP status and `reason` (SPEC §5 error envelope). */
export class ApiFailure extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

/** Calls the API with the stored key (or `key`); resolves with the parsed body, rejects with ApiFailure. */
export async function api(method, path, body, key = storedKey()) {
  const headers = { authorization: `FlespiToken ${key ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'omit', cache: 'no-store' });
  } catch (err) {
    throw new ApiFailure(0, `network error: ${err.message}`);
  }
  const text = await res.text();
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (!res.ok) {
    const reason = parsed?.errors?.[0]?.reason ?? `HTTP ${res.status}`;
    // The logged-in token stopped working (deleted, disabled, expired): back to the login, the key forgotten.
    if (res.status === 401 && key !== null && key === storedKey()) {
      forgetKey();
      dispatchEvent(new CustomEvent('tokenmq-logout', { detail: reason }));
    }
    throw new ApiFailure(res.status, reason);
  }
  return parsed;
}

/**
 * What this node's API offers, read from /openapi.json: a view whose route is
 * missing is hidden (SPEC §9), and listings use server paging only where the
 * route takes `limit`/`offset`.
 */
export async function loadFeatures() {
  const features = { routes: new Set(), query: new Map() };
  try {
    const res = await fetch('/openapi.json', { credentials: 'omit' });
    const doc = await res.json();
    for (const [path, ops] of Object.entries(doc.paths ?? {})) {
      for (const [method, op] of Object.entries(ops)) {
        const route = `${method.toUpperCase()} ${path}`;
        features.routes.add(route);
        const names = (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
        features.query.set(route, new Set(names));
      }
    }
  } catch {
    // no document: only the routes every node has are used
  }
  return {
    has: (method, path) => features.routes.has(`${method} ${path}`),
    takes: (method, path, param) => features.query.get(`${method} ${path}`)?.has(param) ?? false,
  };
}

/**
 * The REST path of one session (SPEC §5: a session selector is `all` or ONE
 * client id, URL-encoded; a ',' is part of the id, never a list), with `sub`
 * (`/subscriptions`) and `query` appended. A path cannot name three ids: `all`
 * (the selector of every session) and `.`/`..` (the browser folds them into the
 * parent path); those are selected by `all?client_id=<id>`, a mask with no `*`
 * or `?` matching that id alone.
 */
export function sessionPath(clientId, sub = '', query = {}) {
  const q = new URLSearchParams(query);
  let sel = encodeURIComponent(clientId);
  if (clientId === 'all' || clientId === '.' || clientId === '..') {
    sel = 'all';
    q.set('client_id', clientId);
  }
  const search = q.toString();
  return `/mqtt/sessions/${sel}${sub}${search ? `?${search}` : ''}`;
}

/** `*` and `?` masks as SPEC §5 selectors use them, as a case-sensitive RegExp. */
export function maskRegExp(mask) {
  const body = mask.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`);
}

/** A filter text as the user means it: a mask if it has `*`/`?`, else a substring. */
export function textFilter(text) {
  const t = text.trim();
  if (t === '') return () => true;
  if (/[*?]/.test(t)) {
    const re = maskRegExp(t);
    return (value) => re.test(String(value));
  }
  return (value) => String(value).includes(t);
}

/** The same meaning for a server-side mask (SPEC §5 selectors): plain text becomes `*text*`. */
export function asMask(text) {
  const t = text.trim();
  return /[*?]/.test(t) ? t : `*${t}*`;
}

export function formatTime(unixSeconds) {
  if (!unixSeconds) return '—';
  return new Date(unixSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
