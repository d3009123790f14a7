// `*`/`?` masks over whole strings (SPEC §3 `ids`, §5 selectors and filters). Pure.

/**
 * A `*`/`?` mask (SPEC §5 selectors and filters) → a whole-string matcher; no
 * other character is special. The greedy two-pointer glob match: O(length of
 * value × length of mask) at worst, never a backtracking regex (a mask comes
 * from the request).
 */
export function compileMask(mask: string): (value: string) => boolean {
  if (!mask.includes('*') && !mask.includes('?')) return (value) => value === mask;
  return (value) => {
    let v = 0;
    let m = 0;
    let star = -1;
    let mark = 0;
    while (v < value.length) {
      const c = mask.charCodeAt(m);
      // A `*` first: a `*` in the value is not the mask's wildcard matched literally.
      if (m < mask.length && c === 0x2a) {
        star = m++;
        mark = v;
      } else if (m < mask.length && (c === 0x3f || c === value.charCodeAt(v))) {
        v++;
        m++;
      } else if (star !== -1) {
        m = star + 1;
        v = ++mark;
      } else {
        return false;
      }
    }
    while (m < mask.length && mask.charCodeAt(m) === 0x2a) m++;
    return m === mask.length;
  };
}
