// Path selectors and `?fields=` (SPEC §5), shared by the route groups.
import { ApiError } from './errors.js';

/** `all`, an id or a comma list of ids (already checked by the params schema) → ids in order, each once. */
export function parseIdSelector(sel: string): number[] | 'all' {
  if (sel === 'all') return 'all';
  const ids: number[] = [];
  for (const part of sel.split(',')) {
    const id = Number(part);
    if (!Number.isSafeInteger(id)) throw new ApiError(400, `sel: '${part.slice(0, 20)}' is not a token id`);
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** `all` or a comma list of client ids → null for all, else the set of ids. */
export function parseClientIdSelector(sel: string): Set<string> | null {
  if (sel === 'all') return null;
  return new Set(sel.split(',').filter((id) => id !== ''));
}

/**
 * Keeps only the fields named in `fields` (a comma list, checked against
 * `known`); all fields when `fields` is undefined.
 */
export function pickFields<T extends object>(items: T[], fields: string | undefined, known: readonly string[]): Partial<T>[] {
  if (fields === undefined) return items;
  const wanted = [...new Set(fields.split(','))];
  for (const field of wanted) {
    if (!known.includes(field)) {
      throw new ApiError(400, `fields: unknown field '${field.slice(0, 64)}' (known: ${known.join(', ')})`);
    }
  }
  return items.map((item) => {
    const out: Partial<T> = {};
    for (const field of wanted) {
      if (Object.hasOwn(item, field)) (out as Record<string, unknown>)[field] = (item as Record<string, unknown>)[field];
    }
    return out;
  });
}
