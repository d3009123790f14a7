// What the logged-in token may do (SPEC §3), judged from GET /auth/info, so
// that the console hides what the token cannot use. The server stays the
// judge: a refusal it gives anyway is shown with its reason.
export const STANDARD = 0;
export const MASTER = 1;
export const ACL = 2;

function restEntries(token) {
  return (token.access?.acl ?? []).filter((e) => Array.isArray(e.methods));
}

/** May this token call `method` on `/path` (no query)? Mirrors SPEC §3 REST rights. */
export function canRest(token, method, path) {
  const type = token.access?.type;
  if (type === MASTER) return true;
  const rel = path.replace(/^\//, '');
  if (rel.startsWith('platform/')) return false;
  if (type === STANDARD) return rel.startsWith('mqtt/') && !rel.startsWith('mqtt/logs');
  if (rel.startsWith('auth/')) return true; // every valid token (SPEC §5)
  const sub = /^mqtt\/sessions\/[^/]+\/([^/]+)/.exec(rel)?.[1];
  return restEntries(token).some((e) => {
    const uri = String(e.uri ?? '').replace(/^\/|\/$/g, '');
    if (!(rel === uri || rel.startsWith(`${uri}/`))) return false;
    // Broad form `mqtt` covers submodules; a narrower uri needs the submodule named (flespi's rule).
    if (sub !== undefined && uri !== 'mqtt') {
      return (e.submodules ?? []).some((s) => s.name === sub && (s.methods ?? []).includes(method));
    }
    return (e.methods ?? []).includes(method);
  });
}

/** MQTT topic entries with `action`; master and standard may use every non-`$` topic. */
export function mqttEntries(token, action) {
  return (token.access?.acl ?? []).filter((e) => e.uri === 'mqtt' && typeof e.topic === 'string' && (e.actions ?? []).includes(action));
}

export function canSubscribeAnything(token) {
  const type = token.access?.type;
  return type === MASTER || type === STANDARD || mqttEntries(token, 'subscribe').length > 0;
}

/** `$tokenmq/events/#`: master, or an ACL entry naming `$tokenmq` (SPEC §8). */
export function canWatchEvents(token) {
  if (token.access?.type === MASTER) return true;
  if (token.access?.type !== ACL) return false;
  return mqttEntries(token, 'subscribe').some((e) => e.topic.startsWith('$tokenmq/') || e.topic === '$tokenmq');
}

export function accessName(type) {
  return type === MASTER ? 'master' : type === STANDARD ? 'standard' : type === ACL ? 'ACL' : `type ${type}`;
}

/**
 * An MQTT topic filter as the server checks it (SPEC §3; src/tokens/topic.ts):
 * not empty, no NUL, `#` only as the whole last level, `+` only as a whole level.
 * Returns a reason, or null when the filter is valid.
 */
export function filterProblem(filter) {
  if (typeof filter !== 'string' || filter === '') return 'must not be empty';
  if (filter.includes('\u0000')) return 'must not contain NUL';
  if (new TextEncoder().encode(filter).length > 65535) return 'is longer than 65535 bytes';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "'#' must be the whole last level";
    if (level.includes('+') && level !== '+') return "'+' must be a whole level";
  }
  return null;
}
