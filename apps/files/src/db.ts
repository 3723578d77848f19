/**
 * The embedded database: one SQLite file in WAL mode, opened by every worker process at once. WAL lets readers run
 * beside the one writer; `busy_timeout` makes a writer wait for another process's write instead of failing.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  type        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  created_at  INTEGER NOT NULL
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
  finished_at  INTEGER
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
CREATE TABLE IF NOT EXISTS events (
  id    INTEGER PRIMARY KEY AUTOINCREMENT,
  type  TEXT NOT NULL,
  data  TEXT NOT NULL,
  at    INTEGER NOT NULL
);
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
  db.exec('PRAGMA busy_timeout = 10000');
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA foreign_keys = ON');
  // Two processes starting at once both run the schema; IF NOT EXISTS inside one write transaction makes that safe.
  transaction(db, () => {
    db.exec(SCHEMA);
    // Databases made before jobs recorded when their attempt started.
    const columns = db.prepare('PRAGMA table_info(jobs)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'started_at'))
      db.exec('ALTER TABLE jobs ADD COLUMN started_at INTEGER');
  });
  return db;
}

/** Runs `fn` in one write transaction (`BEGIN IMMEDIATE`: the write lock is taken up front, so no upgrade deadlock). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}
