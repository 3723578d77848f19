/** The records of uploaded files and their derived outputs, in the shared SQLite database. */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { transaction } from './db.ts';
import type { SqliteQueue } from './queue/sqlite.ts';
import type { Job, JobKind } from './queue/types.ts';

export interface FileRecord {
  id: string;
  name: string;
  type: string;
  size: number;
  sha256: string;
  createdAt: number;
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

export class Catalog {
  readonly #db: DatabaseSync;
  readonly #queue: SqliteQueue;

  constructor(db: DatabaseSync, queue: SqliteQueue) {
    this.#db = db;
    this.#queue = queue;
  }

  /** Records a stored upload and its jobs in one transaction: both exist, or neither. */
  recordUpload(file: FileRecord, kinds: JobKind[], maxAttempts: number): Job[] {
    return transaction(this.#db, () => {
      this.#db
        .prepare('INSERT INTO files (id, name, type, size, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(file.id, file.name, file.type, file.size, file.sha256, file.createdAt);
      return this.#queue.addSync(file.id, kinds, maxAttempts);
    });
  }

  get(id: string): FileRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM files WHERE id = ?').get(id) as Row | undefined;
    return row ? toFile(row) : undefined;
  }

  /** Newest first; `before` pages by creation time. */
  list(limit = 50, before?: number): FileRecord[] {
    const rows = this.#db
      .prepare('SELECT * FROM files WHERE created_at < ? ORDER BY created_at DESC, id DESC LIMIT ?')
      .all(before ?? Number.MAX_SAFE_INTEGER, limit) as Row[];
    return rows.map(toFile);
  }

  /** Replaces the derived outputs of a file with these (a re-run overwrites, never duplicates). */
  setDerived(fileId: string, outputs: DerivedRecord[]): void {
    const put = this.#db.prepare(
      'INSERT OR REPLACE INTO derived (file_id, name, type, size, width, height) VALUES (?, ?, ?, ?, ?, ?)',
    );
    for (const o of outputs) put.run(fileId, o.name, o.type, o.size, o.width, o.height);
  }

  derived(fileId: string): DerivedRecord[] {
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

  /** Removes the file's record, its jobs, derived rows and CSV table; true when it existed. */
  delete(id: string, csvTable: string): boolean {
    return transaction(this.#db, () => {
      const { changes } = this.#db.prepare('DELETE FROM files WHERE id = ?').run(id);
      this.#db.prepare('DELETE FROM jobs WHERE file_id = ?').run(id);
      this.#db.prepare('DELETE FROM derived WHERE file_id = ?').run(id);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}`);
      this.#db.exec(`DROP TABLE IF EXISTS ${csvTable}__staging`);
      return changes === 1;
    });
  }

  /** How many files are recorded. */
  count(): number {
    return Number((this.#db.prepare('SELECT count(*) AS n FROM files').get() as Row).n);
  }
}

/** The CSV table of a file: ids are UUIDs, so this is always a safe identifier. */
export function csvTableFor(fileId: string): string {
  return `csv_${fileId.replace(/[^a-f0-9]/gi, '').toLowerCase()}`;
}
