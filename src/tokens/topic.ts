// MQTT topic names and filters (MQTT 3.1.1 §4.7), as SPEC §3 uses them.
// `matches` and `intersects` are total functions over strings, but they only
// promise MQTT semantics for valid filters and topics (see `filterError`).

const SLASH = 0x2f; // '/'
const PLUS = 0x2b; // '+'
const HASH = 0x23; // '#'
const DOLLAR = 0x24; // '$'
const NUL = 0x00;

/** [MQTT-4.7.3-3] topic names and filters are at most 65535 bytes of UTF-8. */
export const MAX_TOPIC_BYTES = 65535;

/**
 * Checks a topic filter; returns why it is invalid, or null when it is valid.
 * The reason is phrased to follow a field name (`access.acl[3].topic: ...`).
 */
export function filterError(filter: string): string | null {
  if (filter.length === 0) return 'must not be empty'; // [MQTT-4.7.3-1]
  const length = filter.length;
  let bytes = 0;
  let levelStart = 0;
  for (let i = 0; i < length; i++) {
    const c = filter.charCodeAt(i);
    if (c === NUL) return 'must not contain the NUL character'; // [MQTT-4.7.3-2]
    if (c === HASH || c === PLUS) {
      const alone = i === levelStart && (i + 1 === length || filter.charCodeAt(i + 1) === SLASH);
      const name = c === HASH ? "'#'" : "'+'";
      if (!alone) return `${name} must occupy a whole level`; // [MQTT-4.7.1-2] [MQTT-4.7.1-3]
      if (c === HASH && i + 1 !== length) return "'#' must be the last level"; // [MQTT-4.7.1-2]
    } else if (c === SLASH) {
      levelStart = i + 1;
    }
    const size = utf8Size(filter, i, c);
    if (size === 0) return 'must be valid UTF-8 (it contains a lone surrogate)'; // [MQTT-1.5.3-1]
    if (size === 4) i++;
    bytes += size;
  }
  if (bytes > MAX_TOPIC_BYTES) return `longer than ${MAX_TOPIC_BYTES} bytes`;
  return null;
}

/** Checks a topic name (what PUBLISH carries); returns why it is invalid, or null. */
export function topicError(topic: string): string | null {
  if (topic.length === 0) return 'must not be empty'; // [MQTT-4.7.3-1]
  const length = topic.length;
  let bytes = 0;
  for (let i = 0; i < length; i++) {
    const c = topic.charCodeAt(i);
    if (c === NUL) return 'must not contain the NUL character'; // [MQTT-4.7.3-2]
    if (c === HASH || c === PLUS) return "must not contain the wildcards '+' or '#'"; // [MQTT-3.3.2-2]
    const size = utf8Size(topic, i, c);
    if (size === 0) return 'must be valid UTF-8 (it contains a lone surrogate)'; // [MQTT-1.5.3-1]
    if (size === 4) i++;
    bytes += size;
  }
  if (bytes > MAX_TOPIC_BYTES) return `longer than ${MAX_TOPIC_BYTES} bytes`;
  return null;
}

export function isValidFilter(filter: string): boolean {
  return filterError(filter) === null;
}

export function isValidTopic(topic: string): boolean {
  return topicError(topic) === null;
}

/** UTF-8 size of the character whose first UTF-16 unit `c` is at `i`; 4 spans two units; 0 = lone surrogate. */
function utf8Size(s: string, i: number, c: number): number {
  if (c < 0x80) return 1;
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = s.charCodeAt(i + 1); // NaN past the end
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 0;
  }
  if (c >= 0xdc00 && c <= 0xdfff) return 0;
  return 3;
}

/** True when `s[start, end)` is exactly the one character `code`. */
function isLevel(s: string, start: number, end: number, code: number): boolean {
  return end - start === 1 && s.charCodeAt(start) === code;
}

/** True when `a[aStart, aEnd)` and `b[bStart, bEnd)` are the same text, without slicing. */
function sameLevel(a: string, aStart: number, aEnd: number, b: string, bStart: number, bEnd: number): boolean {
  const length = aEnd - aStart;
  if (length !== bEnd - bStart) return false;
  for (let k = 0; k < length; k++) {
    if (a.charCodeAt(aStart + k) !== b.charCodeAt(bStart + k)) return false;
  }
  return true;
}

/** True when what follows position `end` of `filter` is exactly `/#`: `#` also matches the parent level. */
function onlyHashFollows(filter: string, end: number): boolean {
  return end + 2 === filter.length && filter.charCodeAt(end) === SLASH && filter.charCodeAt(end + 1) === HASH;
}

/** Two one-level filters whose only common level is the empty one (`''` with `''` or `+`). */
function onlyEmptyLevel(aEmpty: boolean, aPlus: boolean, bEmpty: boolean, bPlus: boolean): boolean {
  return (aEmpty && (bEmpty || bPlus)) || (bEmpty && aPlus);
}

function levelEnd(s: string, start: number): number {
  const slash = s.indexOf('/', start);
  return slash === -1 ? s.length : slash;
}

/**
 * Does `filter` match the topic name `topic`? MQTT 3.1.1 §4.7: `+` is exactly one
 * level (possibly empty), `#` is this level and every level below it including
 * none (`a/#` matches `a`), empty levels are levels (`a//b`), and a topic that
 * starts with `$` is not matched by a filter starting with `+` or `#` [MQTT-4.7.2-1].
 */
export function matches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === DOLLAR) {
    const first = filter.charCodeAt(0);
    if (first === PLUS || first === HASH) return false; // [MQTT-4.7.2-1]
  }
  let f = 0;
  let t = 0;
  for (;;) {
    const fEnd = levelEnd(filter, f);
    const tEnd = levelEnd(topic, t);
    if (isLevel(filter, f, fEnd, HASH)) return true; // [MQTT-4.7.1-2]
    if (!isLevel(filter, f, fEnd, PLUS) && !sameLevel(filter, f, fEnd, topic, t, tEnd)) return false;
    if (tEnd === topic.length) {
      // The topic ends here: the filter must end too, or go on with only `/#`.
      return fEnd === filter.length || onlyHashFollows(filter, fEnd);
    }
    if (fEnd === filter.length) return false; // the topic has more levels than the filter
    f = fEnd + 1;
    t = tEnd + 1;
  }
}

/**
 * Is there a topic name that both filters match? SPEC §3 grants a SUBSCRIBE to
 * `requested` iff it intersects some `subscribe` entry. Because of [MQTT-4.7.2-1],
 * a filter whose first level is `+` or `#` shares no topic with one whose first
 * level is a literal starting with `$`. Both filters are expected to be valid.
 */
export function intersects(aclFilter: string, requested: string): boolean {
  const a = aclFilter;
  const b = requested;
  const a0 = a.charCodeAt(0);
  const b0 = b.charCodeAt(0);
  // [MQTT-4.7.2-1]: the common topic would start with the literal `$...` level.
  if ((a0 === PLUS || a0 === HASH) && b0 === DOLLAR) return false;
  if ((b0 === PLUS || b0 === HASH) && a0 === DOLLAR) return false;
  let i = 0;
  let j = 0;
  for (;;) {
    const aEnd = levelEnd(a, i);
    const bEnd = levelEnd(b, j);
    // `#` matches any rest (of zero or more levels), and any valid filter matches some rest.
    if (isLevel(a, i, aEnd, HASH) || isLevel(b, j, bEnd, HASH)) return true;
    const aPlus = isLevel(a, i, aEnd, PLUS);
    const bPlus = isLevel(b, j, bEnd, PLUS);
    if (!aPlus && !bPlus && !sameLevel(a, i, aEnd, b, j, bEnd)) return false;
    const aLast = aEnd === a.length;
    const bLast = bEnd === b.length;
    if (aLast || bLast) {
      // One filter ends: the other must end too, or go on with only `/#` (which matches its parent).
      const sameLength = (aLast && bLast) || (aLast ? onlyHashFollows(b, bEnd) : onlyHashFollows(a, aEnd));
      if (!sameLength) return false;
      // A one-level topic: it must not be the empty topic, which is no topic name [MQTT-4.7.3-1].
      return i !== 0 || !onlyEmptyLevel(aEnd - i === 0, aPlus, bEnd - j === 0, bPlus);
    }
    i = aEnd + 1;
    j = bEnd + 1;
  }
}
