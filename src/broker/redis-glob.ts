// Redis glob patterns (PSUBSCRIBE, SCAN/HSCAN MATCH) built from MQTT topics,
// which may hold any of the pattern's special characters (SPEC §6: every MQTT
// topic is legal). Pure.

/**
 * Escapes the characters that Redis glob patterns treat specially: `*`, `?`,
 * `[`, `]` and `\`. Outside a class `]` is literal already; escaping it costs
 * nothing and keeps the rule simple.
 */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * A pattern matching every string that starts with `prefix`, taken literally. A
 * prefix cut inside a UTF-16 surrogate pair (a common prefix of `😀/+` and
 * `😁/+`) loses its lone high surrogate: Redis would get U+FFFD in its place
 * and match nothing.
 */
export function prefixPattern(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  const whole = last >= 0xd800 && last <= 0xdbff ? prefix.slice(0, -1) : prefix;
  return `${escapeGlob(whole)}*`;
}
