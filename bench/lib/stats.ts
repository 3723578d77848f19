/** Small statistics and formatting helpers for benchmark reports. */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** The `p`th percentile (nearest rank) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** A number with a sensible count of significant digits and thousands separators. */
export function fmt(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  if (abs >= 10 ** digits) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(digits)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

/** A ratio such as `1.52×`, `18.7×` or `0.0015×`. */
export function times(ratio: number): string {
  if (!Number.isFinite(ratio)) return '—';
  if (ratio >= 0.1 && ratio < 10) return `${ratio.toFixed(2)}×`;
  return `${fmt(ratio)}×`;
}

/** A GitHub-flavoured markdown table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
