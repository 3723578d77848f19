/**
 * The records of uploaded files and their derived outputs. `Catalog` is the contract; `SqliteCatalog` keeps them in
 * the embedded SQLite database, `PgCatalog` (catalog-pg.ts) in PostgreSQL.
 */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { type RowPage, type RowQuery, sqliteRowCount, sqliteRows } from './csv-rows.ts';
import { transaction } from './db.ts';
import { type OutboxRow, type Recorded, recordWithOutbox } from './outbox.ts';
import { SqliteQueue } from './queue/sqlite.ts';
import type { JobKind, JobQueue } from './queue/types.ts';

export interface FileRecord {
  id: string;
  name: string;
  type: string;
  size: number;
  sha256: string;
  createdAt: number;
  /**
   * The upload's own webhook URL (`POST /files?webhook=`), recorded with it. Not read back by `get` or `list`, whose
   * records the API shows to anyone (the URL may carry a token): see `Catalog.webhookOf`.
   */
  webhook?: string;
}

export interface DerivedRecord {
  name: string;
  type: string;
  size: number;
  width: number | null;
  height: number | null;
}

type Row = Record<string, SQLInputValue>;

const toFile = (r: Row): FileRecord => ({
  id: String(r.id),
  name: String(r.name),
  type: String(r.type),
  size: Number(r.size),
  sha256: String(r.sha256),
  createdAt: Number(r.created_at),
});

/** Where file records live. Every method may reach a network database, so every one is asynchronous. */
export interface Catalog {
  /**
   * Records a stored upload and queues its jobs. With the embedded queue this is one transaction. With the outbox
   * (a remote queue) the record and an outbox row go in one transaction, then the jobs are queued: when the queue is
   * unavailable the upload stays recorded and its kinds come back `pending`, for the relay to queue later. Otherwise
   * the record is removed again when queueing fails (no file without its jobs).
   */
  recordUpload(file: FileRecord, kinds: JobKind[], maxAttempts: number): Promise<Recorded>;
  get(id: string): Promise<FileRecord | undefined>;
  /** The upload's own webhook URL; undefined when it has none, or no such file. */
  webhookOf(id: string): Promise<string | undefined>;
  /** Newest first; `before` pages by creation time. */
  list(limit?: number, before?: number): Promise<FileRecord[]>;
  /**
   * Replaces the derived outputs of a file with these (a re-run overwrites, never duplicates). Records nothing and
   * resolves false when the file is gone (deleted while its job ran): the caller removes the outputs it stored.
   */
  setDerived(fileId: string, outputs: DerivedRecord[]): Promise<boolean>;
  derived(fileId: string): Promise<DerivedRecord[]>;
  /**
   * Removes the file's record, its derived rows, its outbox row and its CSV table (not its jobs: see
   * `JobQueue.removeForFile`).
   */
  delete(id: string): Promise<boolean>;
  /**
   * Leases up to `limit` outbox rows to `owner` for `leaseMs`: rows whose lease ran out, and rows `owner` already
   * holds. No two owners hold a row at once. Oldest first.
   */
  claimOutbox(owner: string, limit: number, leaseMs: number): Promise<OutboxRow[]>;
  /** Deletes the outbox row of a file whose jobs are queued; false when there was none. */
  deleteOutbox(fileId: string): Promise<boolean>;
  /** Rows waiting in the outbox. */
  outboxSize(): Promise<number>;
  /** The kinds of `fileId`'s jobs still waiting in the outbox (none: `[]`). */
  pendingKinds(fileId: string): Promise<JobKind[]>;
  /** How many files are recorded. */
  count(): Promise<number>;
  /**
   * Rows of the CSV table of `fileId` (what its CSV job loaded), in line order; undefined when it has none (not a
   * CSV file, its job not completed, or deleted). One short read: a stream pages through the table with `after`.
   */
  rows(fileId: string, query: RowQuery): Promise<RowPage | undefined>;
  /** How many rows the CSV table of `fileId` has; undefined when it has none. */
  rowCount(fileId: string): Promise<number | undefined>;
  /** Resolves when the database answers; the readiness probe calls it. */
  ping(): Promise<void>;
  /** What `ingestCsv` loads CSV tables into: a SQLite file path or a `postgres://` URL. */
  readonly csvDatabase: string;
  /** Releases connections; idempotent. */
  close(): Promise<void>;
}

/** Records an upload, then queues its jobs; removes the record when queueing fails (no file without its jobs). */
export async function recordThenQueue(
  insert: () => Promise<void>,
  remove: () => Promise<unknown>,
  queue: JobQueue,
  fileId: string,
  kinds: JobKind[],
  maxAttempts: number,
): Promise<Recorded> {
  await insert();
  // Nothing to queue (a plain text file): the queue is not asked, so its outage does not refuse the upload.
  if (kinds.length === 0) return { jobs: [], pending: [] };
  try {
    return { jobs: await queue.add(fileId, kinds, maxAttempts), pending: [] };
  } catch (err) {
    await remove().catch(() => {});
    throw err;
  }
}

/** Options of the catalogs. */
export interface CatalogOptions {
  /**
   * Record uploads through the outbox (set with a remote queue): the row is the upload's own for this long, ms (the
   * time its jobs take to be queued directly, the queue's deadline and some), then any relay's to take.
   */
  outboxLeaseMs?: number;
  /**
   * SQLite only: makes the commits so far durable (`walSync` of the database), awaited after each write whose outcome
   * is reported (an upload recorded, outputs recorded, a file deleted). Default: nothing.
   */
  sync?: () => Promise<void>;
}

/** `kinds` as stored in an outbox row, and back. */
export const kindsColumn = (kinds: readonly JobKind[]): string => kinds.join(',');
export const kindsOf = (column: string): JobKind[] => (column === '' ? [] : (column.split(',') as JobKind[]));

/** The catalog in the embedded SQLite database (`db`, which may also hold the queue). */
export class SqliteCatalog implements Catalog {
  readonly #db: DatabaseSync;
  readonly #queue: JobQueue;
  readonly csvDatabase: string;

  readonly #outboxLeaseMs: number | undefined;
  readonly #sync: () => Promise<void>;

  constructor(db: DatabaseSync, queue: JobQueue, path: string, options: CatalogOptions = {}) {
    this.#db = db;
    this.#queue = queue;
    this.csvDatabase = path;
    this.#outboxLeaseMs = options.outboxLeaseMs;
    this.#sync = options.sync ?? (async () => {});
  }

  /**
   * The upload's record (and its jobs or outbox row), committed and then made durable. Should the sync fail (the
   * disk failed), the record is removed again before the error goes up: the route deletes the bytes and answers an
   * error, and no record may point to them.
   */
  async #durable<T>(write: () => T, undo: () => void): Promise<T> {
    const result = transaction(this.#db, write);
    try {
      await this.#sync();
    } catch (err) {
      try {
        transaction(this.#db, undo);
      } catch {}
      throw err;
    }
    return result;
  }

  async recordUpload(file: FileRecord, kinds: JobKind[], maxAttempts: number): Promise<Recorded> {
    const insert = () =>
      this.#db
        .prepare(
          'INSERT INTO files (id, name, type, size, sha256, created_at, webhook) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(file.id, file.name, file.type, file.size, file.sha256, file.createdAt, file.webhook ?? null);
    // The embedded queue shares the database: the record and its jobs go in one transaction.
    const queue = this.#queue;
    const removeRecord = () => {
      this.#db.prepare('DELETE FROM jobs WHERE file_id = ?').run(file.id);
      this.#db.prepare('DELETE FROM outbox WHERE file_id = ?').run(file.id);
      this.#db.prepare('DELETE FROM files WHERE id = ?').run(file.id);
    };
    if (queue instanceof SqliteQueue) {
      const jobs = await this.#durable(() => {
        insert();
        return queue.addSync(file.id, kinds, maxAttempts);
      }, removeRecord);
      return { jobs, pending: [] };
    }
    const leaseMs = this.#outboxLeaseMs;
    if (leaseMs !== undefined && kinds.length > 0) {
      const row = this.#db.prepare(
        'INSERT INTO outbox (file_id, kinds, max_attempts, created_at, lease_until) VALUES (?, ?, ?, ?, ?)',
      );
      return recordWithOutbox(
        {
          insert: () =>
            this.#durable(() => {
              insert();
              row.run(file.id, kindsColumn(kinds), maxAttempts, file.createdAt, Date.now() + leaseMs);
            }, removeRecord),
          remove: async () =>
            transaction(this.#db, () => {
              this.#db.prepare('DELETE FROM outbox WHERE file_id = ?').run(file.id);
              this.#db.prepare('DELETE FROM files WHERE id = ?').run(file.id);
            }),
          settle: () => this.deleteOutbox(file.id),
        },
        queue,
        file.id,
        kinds,
        maxAttempts,
      );
    }
    return recordThenQueue(
      () => this.#durable(() => void insert(), removeRecord),
      async () => this.#db.prepare('DELETE FROM files WHERE id = ?').run(file.id),
      queue,
      file.id,
      kinds,
      maxAttempts,
    );
  }

  async get(id: string): Promise<FileRecord | undefined> {
    const row = this.#db.prepare('SELECT * FROM files WHERE id = ?').get(id) as Row | undefined;
    return row ? toFile(row) : undefined;
  }

  async webhookOf(id: string): Promise<string | undefined> {
    const row = this.#db.prepare('SELECT webhook FROM files WHERE id = ?').get(id) as Row | undefined;
    return typeof row?.webhook === 'string' ? row.webhook : undefined;
  }

  async list(limit = 50, before?: number): Promise<FileRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM files WHERE created_at < ? ORDER BY created_at DESC, id DESC LIMIT ?')
      .all(before ?? Number.MAX_SAFE_INTEGER, limit) as Row[];
    return rows.map(toFile);
  }

  async setDerived(fileId: string, outputs: DerivedRecord[]): Promise<boolean> {
    // One transaction with the check: a delete (also a write transaction) runs wholly before or after it.
    const kept = transaction(this.#db, () => {
      if (!this.#db.prepare('SELECT 1 FROM files WHERE id = ?').get(fileId)) return false;
      const put = this.#db.prepare(
        'INSERT OR REPLACE INTO derived (file_id, name, type, size, width, height) VALUES (?, ?, ?, ?, ?, ?)',
      );
      for (const o of outputs) put.run(fileId, o.name, o.type, o.size, o.width, o.height);
      return true;
    });
    await this.#sync();
    return kept;
  }

  async derived(fileId: string): Promise<DerivedRecord[]> {
    const rows = this.#db
      .prepare('SELECT name, type, size, width, height FROM derived WHERE file_id = ? ORDER BY name')
      .all(fileId) as Row[];
    return rows.map((r) => ({
      name: String(r.name),
      type: String(r.type),
      size: Number(r.size),
      width: r.width === null ? null : Number(r.width),
      height: r.height === null ? null : Number(r.height),
    }));
  }

  async delete(id: string): Promise<boolean> {
    const csvTable = csvTableFor(id);
    const deleted = transaction(this.#db, () => {
      const { changes } = this.#db.prepare('DELETE FROM files WHERE id = ?').run(id);
      this.#db.prepare('DELETE FROM derived WHERE file_id = ?').run(id);
      this.#db.prepare('DELETE FROM outbox WHERE file_id = ?').run(id);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}`);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}__staging`);
      return changes === 1;
    });
    await this.#sync();
    return deleted;
  }

  async count(): Promise<number> {
    return Number((this.#db.prepare('SELECT count(*) AS n FROM files').get() as Row).n);
  }

  async rows(fileId: string, query: RowQuery): Promise<RowPage | undefined> {
    return sqliteRows(this.#db, csvTableFor(fileId), query);
  }

  async rowCount(fileId: string): Promise<number | undefined> {
    return sqliteRowCount(this.#db, csvTableFor(fileId));
  }

  async claimOutbox(owner: string, limit: number, leaseMs: number): Promise<OutboxRow[]> {
    const now = Date.now();
    // One statement, so one write transaction: two processes cannot both take a row.
    const rows = this.#db
      .prepare(
        `UPDATE outbox SET lease_owner = ?, lease_until = ?
         WHERE file_id IN (SELECT file_id FROM outbox WHERE lease_until <= ? OR lease_owner = ?
                           ORDER BY created_at LIMIT ?)
         RETURNING file_id, kinds, max_attempts, created_at`,
      )
      .all(owner, now + leaseMs, now, owner, limit) as Row[];
    return rows.map(toOutboxRow).sort((a, b) => a.createdAt - b.createdAt);
  }

  async deleteOutbox(fileId: string): Promise<boolean> {
    return this.#db.prepare('DELETE FROM outbox WHERE file_id = ?').run(fileId).changes === 1;
  }

  async outboxSize(): Promise<number> {
    return Number((this.#db.prepare('SELECT count(*) AS n FROM outbox').get() as Row).n);
  }

  async pendingKinds(fileId: string): Promise<JobKind[]> {
    const row = this.#db.prepare('SELECT kinds FROM outbox WHERE file_id = ?').get(fileId) as Row | undefined;
    return row ? kindsOf(String(row.kinds)) : [];
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  /** The database is the service's to close (the queue and the bus may use it too). */
  async close(): Promise<void> {}
}

const toOutboxRow = (r: Row): OutboxRow => ({
  fileId: String(r.file_id),
  kinds: kindsOf(String(r.kinds)),
  maxAttempts: Number(r.max_attempts),
  createdAt: Number(r.created_at),
});

/** The CSV table of a file: ids are UUIDs, so this is always a safe identifier. */
export function csvTableFor(fileId: string): string {
  return `csv_${fileId.replace(/[^a-f0-9]/gi, '').toLowerCase()}`;
}
