// Plain-text tables for humans (the CLI's default output).
export interface Column {
  title: string;
  get: (row: Record<string, unknown>) => unknown;
}

/** Control characters would let a stored value rewrite the terminal: shown as `?`. */
function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

export function formatTable(rows: Record<string, unknown>[], columns: Column[]): string {
  if (columns.length === 0) return `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
  const cells = rows.map((r) => columns.map((c) => cell(c.get(r))));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return `${[line(columns.map((c) => c.title)), ...cells.map(line)].join('\n')}\n`;
}
