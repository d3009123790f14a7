// SPEC §2 `clientids`: which MQTT client ids a token may connect with.
// Comma-separated masks, `*` (any run of characters) and `?` (one character),
// `${token_id}` standing for the token's own id; empty = any client id.
// Whitespace around a mask is ignored (as for `ips`); a client id is matched
// whole. Compiled once per token into one anchored regular expression, so
// `allows` costs one regex test and never throws.

import { TokenValidationError } from './errors.js';

export interface ClientIdMatcher {
  /** True when the token has no masks: every client id is allowed. */
  readonly any: boolean;
  /** Whether a CONNECT with this client id is admitted. */
  allows(clientId: string): boolean;
}

const TOKEN_ID = '${token_id}';
const PLACEHOLDER = /\$\{[^}]*\}/g;
// The syntax characters of a `u` regular expression (any other escape is an error there).
const SPECIAL = /[.*+?^${}()|[\]\\/]/g;

const ANY: ClientIdMatcher = { any: true, allows: () => true };

class Masks implements ClientIdMatcher {
  readonly any = false;
  constructor(private readonly pattern: RegExp) {}

  allows(clientId: string): boolean {
    return this.pattern.test(clientId);
  }
}

/** The masks of a `clientids` text; TokenValidationError('clientids') on an unknown placeholder. */
export function parseClientIdMasks(text: string): string[] {
  const masks: string[] = [];
  for (const raw of text.split(',')) {
    const mask = raw.trim();
    if (mask === '') continue;
    for (const found of mask.match(PLACEHOLDER) ?? []) {
      if (found !== TOKEN_ID) throw new TokenValidationError('clientids', `unknown placeholder ${found.slice(0, 40)} (only \${token_id})`);
    }
    masks.push(mask);
  }
  return masks;
}

/** One mask as a regular expression source: `*`, `?` wild, `${token_id}` the id, the rest literal. */
function maskSource(mask: string, tokenId: string): string {
  let out = '';
  for (let i = 0; i < mask.length;) {
    if (mask.startsWith(TOKEN_ID, i)) {
      out += escape(tokenId);
      i += TOKEN_ID.length;
      continue;
    }
    const c = String.fromCodePoint(mask.codePointAt(i)!);
    out += c === '*' ? '.*' : c === '?' ? '.' : escape(c);
    i += c.length;
  }
  return out;
}

function escape(text: string): string {
  return text.replace(SPECIAL, '\\$&');
}

/** Compiles `clientids` for the token `tokenId`. Throws TokenValidationError on a bad mask. */
export function compileClientIdMasks(text: string, tokenId: number): ClientIdMatcher {
  const masks = parseClientIdMasks(text);
  if (masks.length === 0) return ANY;
  const id = String(tokenId);
  // `s`: a client id may hold any character, a newline too; `u`: `?` is one character, not one UTF-16 unit.
  return new Masks(new RegExp(`^(?:${masks.map((m) => maskSource(m, id)).join('|')})$`, 'su'));
}
