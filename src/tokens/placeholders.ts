// SPEC §3 placeholders in ACL filters: `${clientid}` and `${token_id}` are
// replaced, per session, before the filter is compiled. A value that could
// change the filter's structure is never substituted: the entry is dropped for
// that session instead (it grants nothing), so `devices/${clientid}/#` cannot be
// widened by a client id like `a/+` or `#`.

import { filterError } from './topic.js';

export const CLIENT_ID_PLACEHOLDER = '${clientid}';
export const TOKEN_ID_PLACEHOLDER = '${token_id}';
const PLACEHOLDER = /\$\{clientid\}|\$\{token_id\}/g;

/** Who a filter is being specialised for. */
export interface SessionContext {
  clientId: string;
  tokenId: number;
}

export function hasPlaceholder(filter: string): boolean {
  return filter.includes(CLIENT_ID_PLACEHOLDER) || filter.includes(TOKEN_ID_PLACEHOLDER);
}

/**
 * Whether a client id may stand in for `${clientid}` (SPEC §3). Wildcards and
 * `/` would turn one literal level into a wider filter; NUL is illegal in
 * topics [MQTT-4.7.3-2]; the empty id is the server's to assign and would
 * collapse the level.
 */
export function isSafeClientId(clientId: string): boolean {
  if (clientId.length === 0) return false;
  for (let i = 0; i < clientId.length; i++) {
    const c = clientId.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */ || c === 0x2f /* / */ || c === 0x00) return false;
  }
  return true;
}

/**
 * The filter for this session, or null when the entry must be dropped for it.
 * Filters without placeholders come back unchanged.
 */
export function substitutePlaceholders(filter: string, ctx: SessionContext): string | null {
  if (!hasPlaceholder(filter)) return filter;
  if (filter.includes(CLIENT_ID_PLACEHOLDER)) {
    if (!isSafeClientId(ctx.clientId)) return null;
    // A client id `$SYS` must not turn `${clientid}/#` into a `$` topic filter:
    // `$` at the start of a filter selects broker topics [MQTT-4.7.2-1].
    if (filter.startsWith(CLIENT_ID_PLACEHOLDER) && ctx.clientId.charCodeAt(0) === 0x24 /* $ */) return null;
  }
  if (filter.includes(TOKEN_ID_PLACEHOLDER) && !(Number.isSafeInteger(ctx.tokenId) && ctx.tokenId >= 0)) return null;
  // One pass, so a client id that spells `${token_id}` stays literal text.
  const tokenId = String(ctx.tokenId);
  const result = filter.replace(PLACEHOLDER, (name) => (name === CLIENT_ID_PLACEHOLDER ? ctx.clientId : tokenId));
  // A long client id can push the filter past 65535 bytes [MQTT-4.7.3-3].
  return filterError(result) === null ? result : null;
}
