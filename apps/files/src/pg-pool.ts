/**
 * Opening a PostgreSQL pool for one of the service's ports (the catalog, the jobs' store): connect, create its tables
 * if they do not exist (serialised across processes), then give every later query the port's deadline.
 */
import pg from 'pg';
import { FilesError } from './errors.ts';

export interface PgPoolOptions {
  /** Connections in the pool. Default 4 (each worker process has its own pool). */
  max?: number;
  /** How long to wait for a connection at start. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /**
   * Longest one query may wait for its answer (and a connection for the pool), once the tables exist; a timed-out
   * query's connection is dropped, not reused. Default: none.
   */
  queryTimeoutMs?: number;
  /** `application_name` of its connections. */
  applicationName: string;
  /** What the pool is for, in the error when PostgreSQL cannot be reached ("for the jobs"). Default: nothing. */
  purpose?: string;
  /**
   * A query answering one row with a boolean `ready`: true when every table, index and column `schema` makes is there
   * already, so the schema is not run. Running it takes locks even when it changes nothing (CREATE INDEX IF NOT
   * EXISTS locks its table against writes), which every worker start, a reload's above all, would otherwise take
   * while the other workers write. Default: the schema always runs.
   */
  ready?: string;
}

/**
 * Concurrent CREATE TABLE IF NOT EXISTS in two sessions can both pass the existence check and one then fails on
 * pg_type's unique index: every process starting at once would race, so schema creation takes a transaction-scoped
 * advisory lock (released at COMMIT or when the connection dies).
 */
const SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('weft-files:schema'))";

/**
 * Connects to `url` and runs `schema` under the schema lock. Throws `ERR_WEFT_FILES_DATABASE` when no connection can
 * be made (naming host and port, never the password); errors creating the tables pass through as pg's.
 */
export async function openPgPool(url: string, schema: string, options: PgPoolOptions): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.applicationName,
  });
  // An idle connection that dies (server restart, network) emits 'error' on the pool, which would crash the process
  // unhandled; the pool drops that connection and the next query opens a new one.
  pool.on('error', () => {});
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => {});
    const purpose = options.purpose ? ` ${options.purpose}` : '';
    throw new FilesError(
      'ERR_WEFT_FILES_DATABASE',
      `Cannot reach PostgreSQL at ${where(url)}${purpose}: ${reason(err)}`,
      {
        cause: err,
      },
    );
  }
  try {
    if (options.ready && (await client.query<{ ready: boolean }>(options.ready)).rows[0]?.ready === true) {
      client.release(options.queryTimeoutMs !== undefined);
      return withDeadline(pool, options);
    }
    await client.query('BEGIN');
    await client.query(SCHEMA_LOCK);
    await client.query(schema);
    await client.query('COMMIT');
    // With a query timeout, this connection (made without one) is not kept: every later one gets it.
    client.release(options.queryTimeoutMs !== undefined);
  } catch (err) {
    // A connection in an aborted transaction must not go back to the pool: release(err) destroys it.
    client.release(err instanceof Error ? err : true);
    await pool.end().catch(() => {});
    throw err;
  }
  return withDeadline(pool, options);
}

/**
 * Gives the pool's later connections the port's deadline. Only once the schema exists: creating it may wait on another
 * process's lock for longer than a request should. pg-pool reads both when it opens a connection, and a timed-out
 * query's connection is dropped (pool.query and release(err) remove it), so a server that stops answering cannot keep
 * the pool's connections busy.
 */
function withDeadline(pool: pg.Pool, options: PgPoolOptions): pg.Pool {
  if (options.queryTimeoutMs !== undefined) {
    const o = pool.options as { query_timeout?: number; connectionTimeoutMillis?: number };
    o.query_timeout = options.queryTimeoutMs;
    o.connectionTimeoutMillis = options.queryTimeoutMs;
  }
  return pool;
}

/** A `ready` query (see {@link PgPoolOptions.ready}): whether these relations and `table.column`s all exist. */
export function schemaReady(relations: readonly string[], columns: readonly [string, string][] = []): string {
  const rel = relations.map((r) => `to_regclass('${r}') IS NOT NULL`);
  const col = columns.map(
    ([t, c]) =>
      `EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '${t}' AND column_name = '${c}')`,
  );
  return `SELECT ${[...rel, ...col].join(' AND ')} AS ready`;
}

/** `host:port` of a PostgreSQL URL, for messages (never its password). */
export function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || 5432}`;
  } catch {
    return 'the configured address';
  }
}

/** Why a connection failed. Node's happy-eyeballs connect (several addresses) fails with an empty AggregateError. */
export function reason(err: unknown): string {
  if (err instanceof AggregateError && err.message === '') return reason(err.errors[0]);
  if (err instanceof Error) return err.message || String((err as { code?: unknown }).code ?? err.name);
  return String(err);
}

/**
 * Runs `fn` in a transaction on one connection of `pool` and commits it. When anything fails the connection is
 * destroyed (`release(err)`), which rolls the transaction back on the server: no ROLLBACK round trip that a server
 * that stopped answering could hold up, and no connection in an aborted transaction goes back to the pool.
 */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const value = await fn(client);
    await client.query('COMMIT');
    client.release();
    return value;
  } catch (err) {
    client.release(err instanceof Error ? err : true);
    throw err;
  }
}
