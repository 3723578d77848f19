/**
 * Reading the tables the CSV processor loads (`csv_<id>`: `_line`, then one text column per CSV column) for the
 * catalogs: a page in line order, from an offset or after a line (keyset), and the row count. Each call is one
 * short statement (SQLite: one read transaction; PostgreSQL: one query on the catalog's pool), so a reader paging
 * through a large table holds no cursor, no lock and no connection between pages.
 */
import type { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';
import { LINE_COLUMN } from '../processors/columns.ts';

/** A value of a CSV table: its columns are text; `null` only in a table written by something else. */
export type RowValue = string | null;

/** Which rows of a CSV table to read: in line order, those after `after`, `offset` of them skipped, `limit` kept. */
export interface RowQuery {
  /** Rows at most. */
  limit: number;
  /** Rows skipped before the first one returned (after `after`). Default 0. */
  offset?: number;
  /** Only rows whose line (`_line`) is greater than this: keyset paging. Default: from the first row. */
  after?: number;
}

/** Rows of a CSV table, in line order. */
export interface RowPage {
  /** The data columns in table order (the CSV's, sanitised), without `_line`. */
  columns: string[];
  /** The line of the CSV file each row starts on (its `_line`), one per row. */
  lines: number[];
  /** One array of values per row, in `columns` order. */
  rows: RowValue[][];
}

/** Both databases quote identifiers alike; table and column names reaching here are already `[a-z0-9_]`. */
const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;

const LINE = quote(LINE_COLUMN);

const value = (v: unknown): RowValue => (v === null || typeof v === 'string' ? v : String(v));

/** Splits rows read as arrays (columns `names`, `_line` among them) into lines and data values. */
function toPage(names: readonly string[], raw: readonly (readonly unknown[])[]): RowPage {
  const at = names.indexOf(LINE_COLUMN);
  const lines: number[] = [];
  const rows: RowValue[][] = [];
  for (const r of raw) {
    lines.push(Number(r[at]));
    const row: RowValue[] = [];
    for (let i = 0; i < r.length; i++) if (i !== at) row.push(value(r[i]));
    rows.push(row);
  }
  return { columns: names.filter((_, i) => i !== at), lines, rows };
}

/**
 * Runs `read` in one read transaction: its statements see one snapshot (a re-run swapping the table in is not seen
 * halfway).
 */
function snapshot<T>(db: DatabaseSync, read: () => T): T {
  // Every transaction on this connection is synchronous (db.ts), so none is open while a promise is pending; but
  // should one be, the statements join it rather than fail on a nested BEGIN.
  if (db.isTransaction) return read();
  db.exec('BEGIN');
  try {
    return read();
  } finally {
    db.exec('COMMIT');
  }
}

/** The columns of `table` in order, or undefined when there is no such table. */
function sqliteColumns(db: DatabaseSync, table: string): string[] | undefined {
  const info = db.prepare(`PRAGMA table_info(${quote(table)})`).all() as { name: string }[];
  return info.length === 0 ? undefined : info.map((c) => String(c.name));
}

/**
 * A page of `table` in the SQLite database `db`, or undefined when the table does not exist. Synchronous: with the
 * processor's index on `_line` a page of a thousand rows after a line takes about a millisecond.
 *
 * @example
 * ```ts
 * const page = sqliteRows(db, 'csv_3f2a…', { limit: 100, after: 41 });
 * ```
 */
export function sqliteRows(db: DatabaseSync, table: string, query: RowQuery): RowPage | undefined {
  return snapshot(db, () => {
    const names = sqliteColumns(db, table);
    if (names === undefined) return undefined;
    const raw = db
      .prepare(
        `SELECT ${names.map(quote).join(', ')} FROM ${quote(table)} WHERE ${LINE} > ? ORDER BY ${LINE} LIMIT ? OFFSET ?`,
      )
      .all(query.after ?? -1, query.limit, query.offset ?? 0) as Record<string, unknown>[];
    return toPage(
      names,
      raw.map((r) => names.map((n) => r[n])),
    );
  });
}

/**
 * The rows of `table` in the SQLite database `db`, or undefined when the table does not exist.
 *
 * @example
 * ```ts
 * sqliteRowCount(db, 'csv_3f2a…'); // 1000000 (a few ms: it counts the `_line` index)
 * ```
 */
export function sqliteRowCount(db: DatabaseSync, table: string): number | undefined {
  return snapshot(db, () => {
    if (sqliteColumns(db, table) === undefined) return undefined;
    return Number((db.prepare(`SELECT count(*) AS n FROM ${quote(table)}`).get() as { n: number }).n);
  });
}

/** PostgreSQL's undefined_table: the table is not there (not loaded yet, or dropped). */
const isUndefinedTable = (err: unknown): boolean => (err as { code?: unknown })?.code === '42P01';

/**
 * A page of `table` through `pool`, or undefined when the table does not exist. One query on one pooled
 * connection, given back at once.
 *
 * @example
 * ```ts
 * const page = await pgRows(pool, 'csv_3f2a…', { limit: 1000, after: 1041 });
 * ```
 */
export async function pgRows(pool: pg.Pool, table: string, query: RowQuery): Promise<RowPage | undefined> {
  try {
    const result = await pool.query<unknown[]>({
      text: `SELECT * FROM ${quote(table)} WHERE ${LINE} > $1 ORDER BY ${LINE} LIMIT $2 OFFSET $3`,
      values: [query.after ?? -1, query.limit, query.offset ?? 0],
      rowMode: 'array',
    });
    return toPage(
      result.fields.map((f) => f.name),
      result.rows,
    );
  } catch (err) {
    if (isUndefinedTable(err)) return undefined;
    throw err;
  }
}

/**
 * The rows of `table` through `pool`, or undefined when the table does not exist.
 *
 * @example
 * ```ts
 * await pgRowCount(pool, 'csv_3f2a…'); // 1000000
 * ```
 */
export async function pgRowCount(pool: pg.Pool, table: string): Promise<number | undefined> {
  try {
    const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quote(table)}`);
    return Number(rows[0]?.n);
  } catch (err) {
    if (isUndefinedTable(err)) return undefined;
    throw err;
  }
}
