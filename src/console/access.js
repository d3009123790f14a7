// What the logged-in token may do (SPEC §3), judged from GET /auth/info, so
// that the console hides what the token cannot use. The server stays the
// judge: a refusal it gives anyway is shown with its reason.
export const STANDARD = 0;
export const MASTER = 1;
export const ACL = 2;

/** REST entries as src/tokens/rights.ts reads them: no `topic`, with `methods`. */
function restEntries(token) {
  return (token.access?.acl ?? []).filter((e) => e.topic === undefined && Array.isArray(e.methods));
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
    // `/${uri}` without a trailing `/`, as the server compiles it; '' and a leading '/' grant nothing there.
    const uri = String(e.uri ?? '').replace(/\/$/, '');
    if (uri === '' || uri.startsWith('/') || uri.toLowerCase().startsWith('platform')) return false;
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

const MAX_TOPIC_BYTES = 65535;

/**
 * An MQTT topic filter as the server checks it: a port of filterError in
 * src/tokens/topic.ts (same rules, same reasons; test/unit/console-access.test.ts
 * holds them equal). Returns a reason, or null when the filter is valid.
 */
export function filterProblem(filter) {
  if (typeof filter !== 'string' || filter.length === 0) return 'must not be empty'; // [MQTT-4.7.3-1]
  const length = filter.length;
  let bytes = 0;
  let levelStart = 0;
  for (let i = 0; i < length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0) return 'must not contain the NUL character'; // [MQTT-4.7.3-2]
    if (c === 0x23 || c === 0x2b) {
      const alone = i === levelStart && (i + 1 === length || filter.charCodeAt(i + 1) === 0x2f);
      const name = c === 0x23 ? "'#'" : "'+'";
      if (!alone) return `${name} must occupy a whole level`; // [MQTT-4.7.1-2] [MQTT-4.7.1-3]
      if (c === 0x23 && i + 1 !== length) return "'#' must be the last level"; // [MQTT-4.7.1-2]
    } else if (c === 0x2f) {
      levelStart = i + 1;
    }
    let size;
    if (c < 0x80) size = 1;
    else if (c < 0x800) size = 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = filter.charCodeAt(i + 1);
      size = next >= 0xdc00 && next <= 0xdfff ? 4 : 0;
    } else if (c >= 0xdc00 && c <= 0xdfff) size = 0;
    else size = 3;
    if (size === 0) return 'must be valid UTF-8 (it contains a lone surrogate)'; // [MQTT-1.5.3-1]
    if (size === 4) i++;
    bytes += size;
  }
  if (bytes > MAX_TOPIC_BYTES) return `longer than ${MAX_TOPIC_BYTES} bytes`;
  return null;
}
