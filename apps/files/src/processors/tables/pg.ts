/**
 * The PostgreSQL side of the CSV processor: one connection per job, and a staging table filled batch by batch
 * with multi-row INSERTs, then swapped in for the target table in one transaction.
 * @module
 */
import pg from 'pg';
import { LINE_COLUMN } from '../columns.ts';
import type { StagedRow } from './sqlite.ts';

/** The protocol's Bind message counts parameters in 16 bits. */
const MAX_PARAMETERS = 65_535;
/** Rows per INSERT at most: past this, a bigger statement only costs parse time, not round trips. */
const MAX_ROWS_PER_INSERT = 1_000;

/**
 * Opens one connection for a loader. A lock held longer than 5 s (a reader inside a long transaction on the
 * target table) fails the statement rather than stalling the job, as SQLite's busy_timeout does.
 *
 * @example
 * ```ts
 * const client = await connectPg('postgres://weft@db/files');
 * try { await client.query('SELECT 1'); } finally { await client.end(); }
 * ```
 */
export async function connectPg(url: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    application_name: 'weft-files-csv',
    connectionTimeoutMillis: 10_000,
  });
  // A connection lost between queries emits 'error', which would crash the thread unhandled; the next query
  // rejects anyway, and that fails the job.
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query("SET lock_timeout = '5s'");
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  return client;
}

/**
 * A table being loaded under the name `<table>__staging`, with `_line integer` and one `text` column per CSV
 * column. `create()` drops any leftover of an earlier run; `insert()` writes a batch (as many multi-row INSERTs as
 * the 65,535-parameter limit needs); `publish()` replaces `<table>` with it atomically; `discard()` drops it.
 * PostgreSQL text cannot hold NUL characters, so they are removed from values.
 *
 * @example
 * ```ts
 * const staging = new PgStagingTable(client, 'csv_1', ['name', 'age']);
 * await staging.create();
 * await staging.insert([[2, 'Ada', '36']]);
 * await staging.publish();
 * ```
 */
export class PgStagingTable {
  readonly table: string;
  readonly staging: string;
  readonly columns: readonly string[];
  #client: pg.ClientBase;
  #rowsPerInsert: number;
  /** Prepared INSERTs by row count: every batch has the same chunk sizes, so two cover all but the last batch. */
  #statements = new Map<number, { name: string; text: string }>();

  constructor(client: pg.ClientBase, table: string, columns: readonly string[]) {
    this.#client = client;
    this.table = table;
    this.staging = `${table}__staging`;
    this.columns = columns;
    this.#rowsPerInsert = Math.min(MAX_ROWS_PER_INSERT, Math.floor(MAX_PARAMETERS / (columns.length + 1)));
  }

  /** Drops any staging table left by an earlier run and creates an empty one. */
  async create(): Promise<void> {
    const staging = pg.escapeIdentifier(this.staging);
    const columns = this.columns.map((name) => `, ${pg.escapeIdentifier(name)} text`).join('');
    // Several statements in one simple query run as one implicit transaction: all of them, or none.
    await this.#client.query(
      `DROP TABLE IF EXISTS ${staging}; ` +
        `CREATE TABLE ${staging} (${pg.escapeIdentifier(LINE_COLUMN)} integer NOT NULL${columns})`,
    );
  }

  /** Inserts `rows`, chunk after chunk; the caller awaits it before reading more of the file. */
  async insert(rows: readonly StagedRow[]): Promise<void> {
    for (let at = 0; at < rows.length; at += this.#rowsPerInsert) {
      const chunk = rows.slice(at, at + this.#rowsPerInsert);
      const values: unknown[] = [];
      for (const [line, ...cells] of chunk) {
        values.push(line);
        for (const cell of cells) values.push(cell.includes('\0') ? cell.replaceAll('\0', '') : cell);
      }
      await this.#client.query({ ...this.#statement(chunk.length), values });
    }
  }

  /**
   * Replaces the target table with the staging table, atomically: readers see the old rows or the new. First the
   * staging table gets an index on `_line`, which readers page by (`GET /files/:id/rows`); it is built before the
   * swap, so readers of the old table are not held meanwhile (PostgreSQL names it, never clashing with the old
   * table's).
   */
  async publish(): Promise<void> {
    await this.#client.query(
      `CREATE INDEX ON ${pg.escapeIdentifier(this.staging)} (${pg.escapeIdentifier(LINE_COLUMN)})`,
    );
    await this.#client.query(
      `DROP TABLE IF EXISTS ${pg.escapeIdentifier(this.table)}; ` +
        `ALTER TABLE ${pg.escapeIdentifier(this.staging)} RENAME TO ${pg.escapeIdentifier(this.table)}`,
    );
  }

  /** Drops the staging table. */
  async discard(): Promise<void> {
    await this.#client.query(`DROP TABLE IF EXISTS ${pg.escapeIdentifier(this.staging)}`);
  }

  /**
   * The INSERT for `rows` rows. Parsing and planning a statement of thousands of parameters costs as much as
   * running it: a named (prepared) statement is parsed once per connection, which halves the load time.
   */
  #statement(rows: number): { name?: string; text: string } {
    const known = this.#statements.get(rows);
    if (known !== undefined) return known;
    const width = this.columns.length + 1;
    const tuples: string[] = [];
    for (let row = 0; row < rows; row++) {
      const params = Array.from({ length: width }, (_, column) => `$${row * width + column + 1}`);
      tuples.push(`(${params.join(', ')})`);
    }
    const names = [LINE_COLUMN, ...this.columns].map((name) => pg.escapeIdentifier(name)).join(', ');
    const text = `INSERT INTO ${pg.escapeIdentifier(this.staging)} (${names}) VALUES ${tuples.join(', ')}`;
    if (this.#statements.size === 2) return { text };
    // Names are per connection, and a connection loads one table.
    const statement = { name: `weft_csv_insert_${rows}`, text };
    this.#statements.set(rows, statement);
    return statement;
  }
}
