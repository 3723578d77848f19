/** Which database a CSV job writes to, told from its name without loading a driver. */

/**
 * True when `database` names a PostgreSQL database (a `postgres://` or `postgresql://` URL), not a SQLite file.
 *
 * @example
 * ```ts
 * isPostgresUrl('postgres://weft@db/files'); // true
 * ```
 */
export function isPostgresUrl(database: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(database);
}
