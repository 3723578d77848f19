/** The catalog in the embedded SQLite database: `SqliteCatalog`. */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { GroupCommit, statement, transaction } from '../db.ts';
import { type OutboxRow, type Recorded, recordWithOutbox } from '../outbox.ts';
import { SqliteQueue } from '../queue/sqlite.ts';
import type { JobKind, JobQueue } from '../queue/types.ts';
import { type RowPage, type RowQuery, sqliteRowCount, sqliteRows } from './rows.ts';
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

type Row = Record<string, SQLInputValue>;

const toFile = (r: Row): FileRecord => ({
  id: String(r.id),
  name: String(r.name),
  type: String(r.type),
  size: Number(r.size),
  sha256: String(r.sha256),
  createdAt: Number(r.created_at),
  tenant: tenantOf(r),
});

/** A row's tenant column: null for a file of none. */
const tenantOf = (r: Row): string | null => (typeof r.tenant === 'string' ? r.tenant : null);

/** The catalog in the embedded SQLite database (`db`, which may also hold the queue). */
export class SqliteCatalog implements Catalog {
  readonly #db: DatabaseSync;
  readonly #queue: JobQueue;
  readonly csvDatabase: string;

  readonly #outboxLeaseMs: number | undefined;
  readonly #sync: () => Promise<void>;
  readonly #group: GroupCommit;

  constructor(db: DatabaseSync, queue: JobQueue, path: string, options: CatalogOptions = {}) {
    this.#db = db;
    this.#queue = queue;
    this.csvDatabase = path;
    this.#outboxLeaseMs = options.outboxLeaseMs;
    this.#sync = options.sync ?? (async () => {});
    this.#group = new GroupCommit(db);
  }

  /**
   * The upload's record (and its jobs or outbox row), committed and then made durable. Should the sync fail (the
   * disk failed), the record is removed again before the error goes up: the route deletes the bytes and answers an
   * error, and no record may point to them.
   */
  async #durable<T>(write: () => T, undo: () => void, grouped = false): Promise<T> {
    const result = grouped ? await this.#group.run(write) : transaction(this.#db, write);
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
      statement(
        this.#db,
        'INSERT INTO files (id, name, type, size, sha256, created_at, webhook, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ).run(...fileValues(file));
    // The embedded queue shares the database: the record and its jobs go in one transaction.
    const queue = this.#queue;
    const removeRecord = () => {
      statement(this.#db, 'DELETE FROM jobs WHERE file_id = ?').run(file.id);
      statement(this.#db, 'DELETE FROM outbox WHERE file_id = ?').run(file.id);
      statement(this.#db, 'DELETE FROM files WHERE id = ?').run(file.id);
    };
    if (queue instanceof SqliteQueue) {
      // Committed with the other uploads of the same moment (group commit), each on its own if it fails.
      const jobs = await this.#durable(
        () => {
          insert();
          return queue.addSync(file.id, kinds, maxAttempts);
        },
        removeRecord,
        true,
      );
      return { jobs, pending: [] };
    }
    const leaseMs = this.#outboxLeaseMs;
    if (leaseMs !== undefined && kinds.length > 0) {
      const row = statement(
        this.#db,
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
              statement(this.#db, 'DELETE FROM outbox WHERE file_id = ?').run(file.id);
              statement(this.#db, 'DELETE FROM files WHERE id = ?').run(file.id);
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
      async () => statement(this.#db, 'DELETE FROM files WHERE id = ?').run(file.id),
      queue,
      file.id,
      kinds,
      maxAttempts,
    );
  }

  async get(id: string): Promise<FileRecord | undefined> {
    const row = statement(this.#db, 'SELECT * FROM files WHERE id = ?').get(id) as Row | undefined;
    return row ? toFile(row) : undefined;
  }

  async webhookOf(id: string): Promise<string | undefined> {
    const row = statement(this.#db, 'SELECT webhook FROM files WHERE id = ?').get(id) as Row | undefined;
    return typeof row?.webhook === 'string' ? row.webhook : undefined;
  }

  async list(limit = 50, before?: number, scope?: ListScope): Promise<FileRecord[]> {
    const at = before ?? Number.MAX_SAFE_INTEGER;
    const rows = (
      scope === undefined
        ? statement(
            this.#db,
            'SELECT * FROM files WHERE created_at < ? ORDER BY created_at DESC, id DESC LIMIT ?',
          ).all(at, limit)
        : statement(
            this.#db,
            'SELECT * FROM files WHERE tenant IS ? AND created_at < ? ORDER BY created_at DESC, id DESC LIMIT ?',
          ).all(scope.tenant, at, limit)
    ) as Row[];
    return rows.map(toFile);
  }

  async storedBytes(tenant: string | null): Promise<number> {
    const row = statement(
      this.#db,
      'SELECT coalesce(sum(size), 0) AS bytes FROM files WHERE tenant IS ?',
    ).get(tenant) as Row;
    return Number(row.bytes);
  }

  async usage(): Promise<TenantUsage[]> {
    const rows = statement(
      this.#db,
      'SELECT tenant, count(*) AS files, coalesce(sum(size), 0) AS bytes FROM files GROUP BY tenant',
    ).all() as Row[];
    return rows.map((r) => ({
      tenant: tenantOf(r),
      files: Number(r.files),
      bytes: Number(r.bytes),
    }));
  }

  async setDerived(fileId: string, outputs: DerivedRecord[]): Promise<boolean> {
    // One transaction with the check: a delete (also a write transaction) runs wholly before or after it.
    const kept = transaction(this.#db, () => {
      if (!statement(this.#db, 'SELECT 1 FROM files WHERE id = ?').get(fileId)) return false;
      const put = statement(
        this.#db,
        'INSERT OR REPLACE INTO derived (file_id, name, type, size, width, height) VALUES (?, ?, ?, ?, ?, ?)',
      );
      for (const o of outputs) put.run(fileId, o.name, o.type, o.size, o.width, o.height);
      return true;
    });
    await this.#sync();
    return kept;
  }

  async derived(fileId: string): Promise<DerivedRecord[]> {
    const rows = statement(
      this.#db,
      'SELECT name, type, size, width, height FROM derived WHERE file_id = ? ORDER BY name',
    ).all(fileId) as Row[];
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
      const { changes } = statement(this.#db, 'DELETE FROM files WHERE id = ?').run(id);
      statement(this.#db, 'DELETE FROM derived WHERE file_id = ?').run(id);
      statement(this.#db, 'DELETE FROM outbox WHERE file_id = ?').run(id);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}`);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}__staging`);
      return changes === 1;
    });
    await this.#sync();
    return deleted;
  }

  async count(): Promise<number> {
    return Number((statement(this.#db, 'SELECT count(*) AS n FROM files').get() as Row).n);
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
    const rows = statement(
      this.#db,
      `UPDATE outbox SET lease_owner = ?, lease_until = ?
         WHERE file_id IN (SELECT file_id FROM outbox WHERE lease_until <= ? OR lease_owner = ?
                           ORDER BY created_at LIMIT ?)
         RETURNING file_id, kinds, max_attempts, created_at`,
    ).all(owner, now + leaseMs, now, owner, limit) as Row[];
    return rows.map(toOutboxRow).sort((a, b) => a.createdAt - b.createdAt);
  }

  async deleteOutbox(fileId: string): Promise<boolean> {
    return statement(this.#db, 'DELETE FROM outbox WHERE file_id = ?').run(fileId).changes === 1;
  }

  async outboxSize(): Promise<number> {
    return Number((statement(this.#db, 'SELECT count(*) AS n FROM outbox').get() as Row).n);
  }

  async pendingKinds(fileId: string): Promise<JobKind[]> {
    const row = statement(this.#db, 'SELECT kinds FROM outbox WHERE file_id = ?').get(fileId) as
      | Row
      | undefined;
    return row ? kindsOf(String(row.kinds)) : [];
  }

  async ping(): Promise<void> {
    statement(this.#db, 'SELECT 1').get();
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
