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
