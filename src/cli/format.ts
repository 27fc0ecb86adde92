/** Text output shared by commands: aligned tables and CSV settings. */

/**
 * Rows as aligned columns: the first left-aligned, the others right-aligned, except the
 * columns listed in `left` (trailing spaces trimmed).
 */
export function table(rows: (string | number)[][], left: readonly number[] = []): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) =>
          i === 0 || left.includes(i)
            ? String(c).padEnd(widths[i]!)
            : String(c).padStart(widths[i]!),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** csv-stringify options: booleans as `true` / `false` rather than its default `1` / empty. */
export const CSV_OPTIONS = { cast: { boolean: (v: boolean) => String(v) } };

/**
 * A metric value for people: 6 significant digits, exponent notation when very large or very
 * small; `-` for none.
 */
export function formatMetric(v: number | undefined): string {
  if (v === undefined) return '-';
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)
    ? v.toExponential(4)
    : String(Number(v.toPrecision(6)));
}

/** Parameters as `name=value` pairs, numbers through {@link formatMetric}. */
export function formatParams(params: Readonly<Record<string, number | string | boolean>>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? formatMetric(v) : String(v)}`)
    .join(' ');
}
