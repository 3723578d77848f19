/**
 * The catalog in PostgreSQL (`DATABASE_URL=postgres://…`): the same records as `SqliteCatalog`, in the tables
 * `weft_files` and `weft_derived` of the connection's schema (the first one on its `search_path`), so several
 * services can share a database. The CSV tables `ingestCsv` loads go to that schema too.
 */
import pg from 'pg';
import { type OutboxRow, type Recorded, recordWithOutbox } from '../outbox.ts';
import { openPgPool, schemaReady, transaction } from '../pg-pool.ts';
import type { JobKind, JobQueue } from '../queue/types.ts';
import { pgRowCount, pgRows, type RowPage, type RowQuery } from './rows.ts';
import {
  type Catalog,
  type CatalogOptions,
  csvTableFor,
  type DerivedRecord,
  type FileRecord,
  fileValues,
  kindsColumn,
  kindsOf,
  type ListScope,
  recordThenQueue,
  type TenantUsage,
} from './types.ts';

/** Options of {@link PgCatalog.open}. */
export interface PgCatalogOptions extends CatalogOptions {
  /** Connections in the pool. Default: 4 (each worker process has its own pool). */
  max?: number;
  /** How long to wait for a connection before failing. Default: 10 000 ms. */
  connectTimeoutMs?: number;
  /**
   * Longest one query may wait for its answer before it fails (and its connection is dropped, not reused), ms.
   * Default: none. The service sets `databaseTimeout`, so a server that stops answering frees the pool's
   * connections instead of holding them until TCP gives up.
   */
  queryTimeoutMs?: number;
}

/**
 * The condition "the file is `tenant`'s" on parameter $1: `=` or IS NULL, which the (tenant, created_at) index serves
 * (IS NOT DISTINCT FROM would not). For null, $1 is still named, typed, so the parameter list stays the same.
 */
function tenantIs(tenant: string | null): string {
  return tenant === null ? 'tenant IS NULL AND $1::text IS NULL' : 'tenant = $1';
}

/**
 * A column added after the first schema. Looked up first: ALTER TABLE takes an exclusive lock even when IF NOT
 * EXISTS makes it do nothing, and every process start runs the schema.
 */
function addColumn(table: string, column: string, type: string): string {
  return `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                 AND table_name = '${table}' AND column_name = '${column}') THEN
    ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column} ${type};
  END IF;
END $$;`;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS weft_files (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  type        text NOT NULL,
  size        bigint NOT NULL,
  sha256      text NOT NULL,
  created_at  bigint NOT NULL
);
-- Added after the first schema: an upload's own webhook URL; the tenant of the token that uploaded it.
${addColumn('weft_files', 'webhook', 'text')}
${addColumn('weft_files', 'tenant', 'text')}
CREATE INDEX IF NOT EXISTS weft_files_created_at ON weft_files (created_at);
CREATE INDEX IF NOT EXISTS weft_files_tenant ON weft_files (tenant, created_at);
CREATE TABLE IF NOT EXISTS weft_derived (
  file_id  text NOT NULL,
  name     text NOT NULL,
  type     text NOT NULL,
  size     bigint NOT NULL,
  width    integer,
  height   integer,
  PRIMARY KEY (file_id, name)
);
CREATE TABLE IF NOT EXISTS weft_files_outbox (
  file_id      text PRIMARY KEY,
  kinds        text NOT NULL,
  max_attempts integer NOT NULL,
  created_at   bigint NOT NULL,
  lease_owner  text,
  lease_until  bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS weft_files_outbox_created_at ON weft_files_outbox (created_at);
`;
/** The database's clock in epoch ms: leases are compared on one clock, whatever the nodes' clocks say. */
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

interface FileRow {
  id: string;
  name: string;
  type: string;
  // bigint columns arrive as strings: pg does not guess whether they fit in a double.
  size: string;
  sha256: string;
  created_at: string;
  tenant?: string | null;
}

interface OutboxDbRow {
  file_id: string;
  kinds: string;
  max_attempts: number;
  created_at: string;
}

interface DerivedRow {
  name: string;
  type: string;
  size: string;
  width: number | null;
  height: number | null;
}

const toFile = (r: FileRow): FileRecord => ({
  id: r.id,
  name: r.name,
  type: r.type,
  size: Number(r.size),
  sha256: r.sha256,
  createdAt: Number(r.created_at),
  tenant: r.tenant ?? null,
});

/**
 * The catalog in PostgreSQL, through a small connection pool. The queue is separate (SQLite or BullMQ): with
 * `outboxLeaseMs` (a remote queue) an upload is recorded with its outbox row in one statement, then queued, and
 * stays recorded with its jobs pending when the queue is unavailable (see outbox.ts); without it, it is recorded,
 * then queued, and the record removed again when queueing fails.
 *
 * @example
 * ```ts
 * const catalog = await PgCatalog.open('postgres://weft@db.internal/files', queue);
 * try { await catalog.recordUpload(file, ['csv'], 3); } finally { await catalog.close(); }
 * ```
 */
export class PgCatalog implements Catalog {
  readonly csvDatabase: string;
  readonly #pool: pg.Pool;
  readonly #queue: JobQueue;
  readonly #outboxLeaseMs: number | undefined;
  #closed: Promise<void> | undefined;

  private constructor(pool: pg.Pool, queue: JobQueue, url: string, outboxLeaseMs: number | undefined) {
    this.#pool = pool;
    this.#queue = queue;
    this.csvDatabase = url;
    this.#outboxLeaseMs = outboxLeaseMs;
  }

  /**
   * Connects to `url` and creates the tables if they do not exist (safe when many processes start at once).
   * Throws `FilesError` `ERR_WEFT_FILES_DATABASE` when no connection can be made (naming host and port, never
   * the password); errors creating the tables pass through as pg's.
   */
  static async open(url: string, queue: JobQueue, options: PgCatalogOptions = {}): Promise<PgCatalog> {
    const pool = await openPgPool(url, SCHEMA, {
      ...(options.max !== undefined ? { max: options.max } : {}),
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.queryTimeoutMs !== undefined ? { queryTimeoutMs: options.queryTimeoutMs } : {}),
      applicationName: 'weft-files',
      ready: schemaReady(
        [
          'weft_files',
          'weft_derived',
          'weft_files_outbox',
          'weft_files_created_at',
          'weft_files_tenant',
          'weft_files_outbox_created_at',
        ],
        [
          ['weft_files', 'webhook'],
          ['weft_files', 'tenant'],
        ],
      ),
    });
    return new PgCatalog(pool, queue, url, options.outboxLeaseMs);
  }

  recordUpload(file: FileRecord, kinds: JobKind[], maxAttempts: number): Promise<Recorded> {
    const leaseMs = this.#outboxLeaseMs;
    if (leaseMs !== undefined && kinds.length > 0) {
      return recordWithOutbox(
        {
          // One statement, one transaction, one round trip: the record and its outbox row, or neither.
          insert: async () => {
            await this.#pool.query(
              `WITH f AS (
                 INSERT INTO weft_files (id, name, type, size, sha256, created_at, webhook, tenant)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               )
               INSERT INTO weft_files_outbox (file_id, kinds, max_attempts, created_at, lease_until)
               VALUES ($1, $9, $10, $6, ${NOW_MS} + $11)`,
              [...fileValues(file), kindsColumn(kinds), maxAttempts, leaseMs],
            );
          },
          remove: () =>
            this.#pool.query(
              `WITH o AS (DELETE FROM weft_files_outbox WHERE file_id = $1)
               DELETE FROM weft_files WHERE id = $1`,
              [file.id],
            ),
          settle: () => this.deleteOutbox(file.id),
        },
        this.#queue,
        file.id,
        kinds,
        maxAttempts,
      );
    }
    return recordThenQueue(
      async () => {
        await this.#pool.query(
          `INSERT INTO weft_files (id, name, type, size, sha256, created_at, webhook, tenant)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          fileValues(file),
        );
      },
      () => this.#pool.query('DELETE FROM weft_files WHERE id = $1', [file.id]),
      this.#queue,
      file.id,
      kinds,
      maxAttempts,
    );
  }

  async get(id: string): Promise<FileRecord | undefined> {
    const { rows } = await this.#pool.query<FileRow>('SELECT * FROM weft_files WHERE id = $1', [id]);
    return rows[0] === undefined ? undefined : toFile(rows[0]);
  }

  async webhookOf(id: string): Promise<string | undefined> {
    const { rows } = await this.#pool.query<{ webhook: string | null }>(
      'SELECT webhook FROM weft_files WHERE id = $1',
      [id],
    );
    return rows[0]?.webhook ?? undefined;
  }

  async list(limit = 50, before?: number, scope?: ListScope): Promise<FileRecord[]> {
    const at = before ?? Number.MAX_SAFE_INTEGER;
    const { rows } =
      scope === undefined
        ? await this.#pool.query<FileRow>(
            'SELECT * FROM weft_files WHERE created_at < $1 ORDER BY created_at DESC, id DESC LIMIT $2',
            [at, limit],
          )
        : await this.#pool.query<FileRow>(
            `SELECT * FROM weft_files WHERE ${tenantIs(scope.tenant)}
             AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT $3`,
            [scope.tenant, at, limit],
          );
    return rows.map(toFile);
  }

  async storedBytes(tenant: string | null): Promise<number> {
    const { rows } = await this.#pool.query<{ bytes: string }>(
      `SELECT coalesce(sum(size), 0) AS bytes FROM weft_files WHERE ${tenantIs(tenant)}`,
      [tenant],
    );
    return Number(rows[0]?.bytes ?? 0);
  }

  async usage(): Promise<TenantUsage[]> {
    const { rows } = await this.#pool.query<{ tenant: string | null; files: string; bytes: string }>(
      'SELECT tenant, count(*) AS files, coalesce(sum(size), 0) AS bytes FROM weft_files GROUP BY tenant',
    );
    return rows.map((r) => ({ tenant: r.tenant, files: Number(r.files), bytes: Number(r.bytes) }));
  }

  async setDerived(fileId: string, outputs: DerivedRecord[]): Promise<boolean> {
    // One statement cannot update a row twice (ON CONFLICT would fail): of repeated names the last one wins, as
    // with SQLite's INSERT OR REPLACE run row by row.
    const unique = [...new Map(outputs.map((o) => [o.name, o])).values()];
    const values: unknown[] = [fileId];
    const tuples = unique.map((o) => {
      const at = values.push(o.name, o.type, o.size, o.width, o.height) - 5;
      return `($1, $${at + 1}, $${at + 2}, $${at + 3}, $${at + 4}, $${at + 5})`;
    });
    return transaction(this.#pool, async (client) => {
      // FOR SHARE: a delete running now either finished first (no row: nothing is recorded) or waits for this
      // transaction and then removes these rows with the file's.
      const { rowCount } = await client.query('SELECT 1 FROM weft_files WHERE id = $1 FOR SHARE', [fileId]);
      if (rowCount === 1 && tuples.length > 0) {
        await client.query(
          `INSERT INTO weft_derived (file_id, name, type, size, width, height) VALUES ${tuples.join(', ')}
           ON CONFLICT (file_id, name) DO UPDATE
           SET type = EXCLUDED.type, size = EXCLUDED.size, width = EXCLUDED.width, height = EXCLUDED.height`,
          values,
        );
      }
      return rowCount === 1;
    });
  }

  async derived(fileId: string): Promise<DerivedRecord[]> {
    const { rows } = await this.#pool.query<DerivedRow>(
      'SELECT name, type, size, width, height FROM weft_derived WHERE file_id = $1 ORDER BY name',
      [fileId],
    );
    return rows.map((r) => ({ ...r, size: Number(r.size) }));
  }

  async delete(id: string): Promise<boolean> {
    const table = pg.escapeIdentifier(csvTableFor(id));
    const staging = pg.escapeIdentifier(`${csvTableFor(id)}__staging`);
    return transaction(this.#pool, async (client) => {
      const { rowCount } = await client.query('DELETE FROM weft_files WHERE id = $1', [id]);
      await client.query('DELETE FROM weft_derived WHERE file_id = $1', [id]);
      await client.query('DELETE FROM weft_files_outbox WHERE file_id = $1', [id]);
      await client.query(`DROP TABLE IF EXISTS ${table}, ${staging}`);
      return rowCount === 1;
    });
  }

  async count(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>('SELECT count(*) AS n FROM weft_files');
    return Number(rows[0]?.n);
  }

  rows(fileId: string, query: RowQuery): Promise<RowPage | undefined> {
    return pgRows(this.#pool, csvTableFor(fileId), query);
  }

  rowCount(fileId: string): Promise<number | undefined> {
    return pgRowCount(this.#pool, csvTableFor(fileId));
  }

  async claimOutbox(owner: string, limit: number, leaseMs: number): Promise<OutboxRow[]> {
    // SKIP LOCKED: a relay claiming at the same moment takes other rows instead of waiting for these, and never
    // the same ones; the lease keeps them this relay's after the statement.
    const { rows } = await this.#pool.query<OutboxDbRow>(
      `UPDATE weft_files_outbox SET lease_owner = $1, lease_until = ${NOW_MS} + $3
       WHERE file_id IN (
         SELECT file_id FROM weft_files_outbox
         WHERE lease_until <= ${NOW_MS} OR lease_owner = $1
         ORDER BY created_at LIMIT $2
         FOR UPDATE SKIP LOCKED)
       RETURNING file_id, kinds, max_attempts, created_at`,
      [owner, limit, leaseMs],
    );
    return rows
      .map((r) => ({
        fileId: r.file_id,
        kinds: kindsOf(r.kinds),
        maxAttempts: r.max_attempts,
        createdAt: Number(r.created_at),
      }))
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  async deleteOutbox(fileId: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query('DELETE FROM weft_files_outbox WHERE file_id = $1', [fileId]);
    return rowCount === 1;
  }

  async outboxSize(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>('SELECT count(*) AS n FROM weft_files_outbox');
    return Number(rows[0]?.n);
  }

  async pendingKinds(fileId: string): Promise<JobKind[]> {
    const { rows } = await this.#pool.query<{ kinds: string }>(
      'SELECT kinds FROM weft_files_outbox WHERE file_id = $1',
      [fileId],
    );
    return rows[0] ? kindsOf(rows[0].kinds) : [];
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  /** Closes the pool once its queries finish; idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#pool.end();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
