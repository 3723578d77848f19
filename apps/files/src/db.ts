/**
 * The embedded database: one SQLite file in WAL mode, opened by every worker process at once. WAL lets readers run
 * beside the one writer. node:sqlite is synchronous, so SQLite's own busy handler would sleep on the event loop:
 * `busy_timeout` is kept to a few ms (the time a normal write of another process takes), and a longer wait (a
 * backup, an operator's `sqlite3` holding the write lock) is retried asynchronously by {@link retryBusy}, at the
 * adapters' port, until a bound, then answered `ERR_WEFT_FILES_BUSY` (503).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { FilesError } from './errors.ts';
import { SyncBarrier } from './fsync.ts';

/** How long SQLite's own (blocking) busy handler may wait, ms: a bound on how long one statement blocks the loop. */
export const BUSY_TIMEOUT_MS = 20;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  type        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  webhook     TEXT,
  tenant      TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  file_id      TEXT NOT NULL,
  kind         TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('queued', 'active', 'retrying', 'completed', 'dead')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  run_at       INTEGER NOT NULL,
  lease_owner  TEXT,
  lease_until  INTEGER,
  last_error   TEXT,
  error_code   TEXT,
  result       TEXT,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  started_at   INTEGER,
  finished_at  INTEGER,
  payload      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, run_at);
CREATE INDEX IF NOT EXISTS jobs_file ON jobs (file_id);
CREATE TABLE IF NOT EXISTS derived (
  file_id  TEXT NOT NULL,
  name     TEXT NOT NULL,
  type     TEXT NOT NULL,
  size     INTEGER NOT NULL,
  width    INTEGER,
  height   INTEGER,
  PRIMARY KEY (file_id, name)
);
CREATE TABLE IF NOT EXISTS outbox (
  file_id      TEXT PRIMARY KEY,
  kinds        TEXT NOT NULL,
  max_attempts INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  lease_owner  TEXT,
  lease_until  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_at);
`;

/**
 * Opens (creating if needed) the database at `path` with the service's schema.
 *
 * @example
 * ```ts
 * const db = openDatabase('data/files.db');
 * db.prepare('SELECT count(*) AS n FROM files').get();
 * ```
 */
export function openDatabase(path: string): DatabaseSync {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // Switching to WAL needs the write lock even when the file already is in WAL: ask first (a read).
  const mode = db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
  if (mode.journal_mode !== 'wal') db.exec('PRAGMA journal_mode = WAL');
  // NORMAL: a commit writes the WAL without an fsync, so it does not hold the event loop while the disk works. A
  // write whose outcome is reported (an upload's 201, a delete, a job's outcome) is made durable before that by
  // {@link walSync}: an fsync of the WAL off the event loop, shared by the writes of the same moment (docs/files.md,
  // "What a power cut can lose"). SQLite itself fsyncs the WAL before each checkpoint and the database after it.
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA foreign_keys = ON');
  // A worker that starts while another process holds the write lock must not need it: the schema is only written
  // when something is missing (a read tells).
  if (schemaReady(db)) return db;
  // Two processes starting at once both run the schema; IF NOT EXISTS inside one write transaction makes that safe.
  transaction(db, () => {
    db.exec(SCHEMA);
    // Databases made before these columns: when a job's attempt started, a follow-up job's payload (webhooks),
    // a file's own webhook URL. Nullable, so ADD COLUMN changes no existing row.
    for (const [table, column, type] of MIGRATIONS) {
      if (!hasColumn(db, table, column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    // A tenant's listing, newest first (after the column exists in databases made before tenants).
    db.exec('CREATE INDEX IF NOT EXISTS files_tenant ON files (tenant, created_at)');
  });
  return db;
}

/** Columns added after the first schema: `[table, column, type]`. */
const MIGRATIONS = [
  ['jobs', 'started_at', 'INTEGER'],
  ['jobs', 'payload', 'TEXT'],
  // When a RabbitMQ message last announced the job (queue/rabbitmq.ts); NULL while none is out for its state.
  ['jobs', 'sent_at', 'INTEGER'],
  ['files', 'webhook', 'TEXT'],
  ['files', 'tenant', 'TEXT'],
] as const;

function hasColumn(db: DatabaseSync, table: string, column: string): boolean {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
  return columns.some((c) => c.name === column);
}

function schemaReady(db: DatabaseSync): boolean {
  const tables = db
    .prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('files', 'jobs', 'derived', 'outbox')",
    )
    .all();
  // (Databases made before the events moved to weftjs/bus keep an `events` table nothing reads.)
  if (tables.length < 4) return false;
  return MIGRATIONS.every(([table, column]) => hasColumn(db, table, column));
}

/**
 * Makes what this process committed to the database at `path` durable: resolves once an fsync of its WAL that
 * started after the call has completed (commits are written to the WAL in order, so every earlier commit is on disk
 * too, whichever process made it). Concurrent callers share fsyncs ({@link SyncBarrier}). A database in memory has
 * nothing to sync.
 *
 * @example
 * ```ts
 * const durable = walSync('data/files.db');
 * transaction(db, () => insert());
 * await durable(); // only now answer 201
 * ```
 */
export function walSync(path: string, barrier = new SyncBarrier()): () => Promise<void> {
  if (path === ':memory:') return async () => {};
  const wal = `${path}-wal`;
  // The WAL exists while a connection is open in WAL mode; should it be gone, the commits were checkpointed into
  // the database file, which is then synced instead.
  return () =>
    barrier.sync(wal).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return barrier.sync(path);
      throw err;
    });
}

/** Statements prepared on each connection, by SQL text (see {@link statement}). */
const prepared = new WeakMap<DatabaseSync, Map<string, StatementSync>>();
/** Kept per connection; beyond it the oldest goes (only a listing's filters make SQL that varies). */
const MAX_STATEMENTS = 256;

/**
 * `db.prepare(sql)`, prepared once per connection and reused: node:sqlite compiles the SQL on every `prepare`, which
 * took about 5 % of a worker's time under small uploads (docs/files.md, "Small uploads"). A statement is reset by each run, so
 * reuse is safe for `run`, `get` and `all`; do not change a shared statement's settings (`setReadBigInts`, ...).
 *
 * @example
 * ```ts
 * statement(db, 'SELECT count(*) AS n FROM files').get();
 * ```
 */
export function statement(db: DatabaseSync, sql: string): StatementSync {
  let cache = prepared.get(db);
  if (!cache) {
    cache = new Map();
    prepared.set(db, cache);
  }
  let s = cache.get(sql);
  if (!s) {
    s = db.prepare(sql);
    if (cache.size >= MAX_STATEMENTS) cache.delete(cache.keys().next().value!);
    cache.set(sql, s);
  }
  return s;
}

/** Runs `fn` in one write transaction (`BEGIN IMMEDIATE`: the write lock is taken up front, so no upgrade deadlock). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    // SQLite rolls the transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM): a
    // ROLLBACK then fails with "no transaction is active" and would replace the error that matters.
    if (db.isTransaction) {
      try {
        db.exec('ROLLBACK');
      } catch {}
    }
    throw err;
  }
}

interface Grouped {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit: the writes asked for in the same turn of the event loop are committed together in one transaction,
 * each in a savepoint of its own, so that one that fails is rolled back alone and the others commit. Concurrent
 * uploads' records share a BEGIN, a COMMIT and the WAL frames of the pages they touch (about 45 µs of CPU per
 * record alone, 20 µs in groups of 8). `write` runs synchronously inside the transaction and must not open one of
 * its own. When the transaction itself fails (its BEGIN, because another process holds the write lock; its COMMIT;
 * SQLite rolling it back on a full disk), every write of the group fails with that error and none is recorded.
 *
 * @example
 * ```ts
 * const group = new GroupCommit(db);
 * const [a, b] = await Promise.all([group.run(() => insert(x)), group.run(() => insert(y))]); // one transaction
 * ```
 */
export class GroupCommit {
  readonly #db: DatabaseSync;
  #pending: Grouped[] = [];

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Resolves with `write`'s result once the transaction that ran it has committed. */
  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#commit());
    });
  }

  #commit(): void {
    const group = this.#pending;
    this.#pending = [];
    const results = new Map<Grouped, unknown>();
    try {
      transaction(this.#db, () => {
        if (group.length === 1) {
          results.set(group[0]!, group[0]!.write());
          return;
        }
        for (const g of group) {
          statement(this.#db, 'SAVEPOINT grouped').run();
          let result: unknown;
          try {
            result = g.write();
          } catch (err) {
            // SQLite rolls the whole transaction back on some errors (a full disk): then the group fails with it.
            if (!this.#db.isTransaction) throw err;
            statement(this.#db, 'ROLLBACK TO grouped').run();
            statement(this.#db, 'RELEASE grouped').run();
            g.reject(err);
            continue;
          }
          statement(this.#db, 'RELEASE grouped').run();
          results.set(g, result);
        }
      });
    } catch (err) {
      // Nothing of the group is recorded (a write that failed on its own already has its error: this one is ignored).
      for (const g of group) g.reject(err);
      return;
    }
    for (const [g, result] of results) g.resolve(result);
  }
}

/** SQLite's primary result code of a node:sqlite error (`errcode` may be an extended code), else undefined. */
function sqliteCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; errcode?: unknown };
  return e?.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
}

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_FULL = 13;

/** True for "database is locked" (another connection holds the lock beyond `busy_timeout`). */
export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === SQLITE_BUSY || code === SQLITE_LOCKED;
}

/** SQLite's "database or disk is full" as the service's 507, keeping the original as `cause`; other errors as they are. */
export function sqliteError(err: unknown): unknown {
  if (sqliteCode(err) === SQLITE_FULL) {
    return new FilesError('ERR_WEFT_FILES_NO_SPACE', `The database cannot grow: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return err;
}

export interface BusyPolicy {
  /** Longest a call keeps retrying a locked database before it fails with `ERR_WEFT_FILES_BUSY`, ms. */
  timeoutMs: number;
  /** First wait between tries, doubled each time up to `maxDelayMs`. Default 10 ms. */
  delayMs?: number;
  /** Default 250 ms. */
  maxDelayMs?: number;
  clock?: () => number;
}

/**
 * Wraps an adapter over the SQLite database (catalog, queue, event bus) once, at its port: each of its methods that
 * returns a promise is tried again after an asynchronous backoff while the database is locked, up to
 * `policy.timeoutMs`, then fails with `ERR_WEFT_FILES_BUSY` (503, retry later); "disk full" becomes
 * `ERR_WEFT_FILES_NO_SPACE` (507). Synchronous methods pass through. Retrying a whole method is safe: every
 * method is one statement or one transaction, and a locked database fails before anything is written.
 *
 * @example
 * ```ts
 * const queue = retryBusy(new SqliteQueue(db, options), { timeoutMs: 5_000 });
 * await queue.claim(owner, 2); // waits (without blocking the event loop) while a backup holds the lock
 * ```
 */
export function retryBusy<T extends object>(adapter: T, policy: BusyPolicy): T {
  const { timeoutMs, delayMs = 10, maxDelayMs = 250, clock = Date.now } = policy;
  const retried = async (call: () => unknown): Promise<unknown> => {
    const deadline = clock() + timeoutMs;
    for (let wait = delayMs; ; wait = Math.min(maxDelayMs, wait * 2)) {
      try {
        return await call();
      } catch (err) {
        if (!isBusy(err)) throw sqliteError(err);
        const left = deadline - clock();
        if (left <= 0) {
          throw new FilesError(
            'ERR_WEFT_FILES_BUSY',
            `The database stayed locked by another process for ${timeoutMs} ms`,
            { cause: err },
          );
        }
        await sleep(Math.min(wait, left));
      }
    }
  };
  return new Proxy(adapter, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      // Bound to the adapter itself: its #private fields are not reachable through the proxy.
      return (...args: unknown[]) => {
        const first: unknown = value.apply(target, args); // a synchronous method throws as it always did
        if (!(first instanceof Promise)) return first;
        return first.catch((err: unknown) => {
          if (!isBusy(err)) throw sqliteError(err);
          return retried(() => value.apply(target, args));
        });
      };
    },
  });
}
