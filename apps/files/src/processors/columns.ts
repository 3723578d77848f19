/**
 * Turns a CSV header row into safe, distinct SQL column names.
 * @module
 */

/** The column every loaded table gets: the line of the file the row starts on. */
export const LINE_COLUMN = '_line';

// SQLite identifiers have no practical length limit, but names longer than this are unreadable in any tool.
const MAX_NAME_LENGTH = 63;

/**
 * Sanitises header cells into column names: lowercase ASCII, `[a-z0-9_]` only (accents folded, other runs of
 * characters become `_`), at most 63 characters, never empty (`col_<n>`, n the 1-based position), never starting
 * with a digit (`c_` prefix), distinct (`_2`, `_3`... suffixes) and never {@link LINE_COLUMN}.
 *
 * @example
 * ```ts
 * sanitiseColumns(['Prénom', 'prénom', '', '2024 Total ($)']); // ['prenom', 'prenom_2', 'col_3', 'c_2024_total']
 * ```
 */
export function sanitiseColumns(header: readonly string[]): string[] {
  const used = new Set<string>([LINE_COLUMN]);
  return header.map((cell, index) => {
    let base = cell
      .normalize('NFKD')
      .replace(/[\u0300-\u036f]/g, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, MAX_NAME_LENGTH);
    if (base === '') base = `col_${index + 1}`;
    else if (/^[0-9]/.test(base)) base = `c_${base}`.slice(0, MAX_NAME_LENGTH);
    let name = base;
    for (let n = 2; used.has(name); n++)
      name = `${base.slice(0, MAX_NAME_LENGTH - String(n).length - 1)}_${n}`;
    used.add(name);
    return name;
  });
}
