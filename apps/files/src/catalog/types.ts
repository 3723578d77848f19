/**
 * The catalog port: the records of uploaded files and their derived outputs. `Catalog` is the contract;
 * `SqliteCatalog` (sqlite.ts) keeps them in the embedded SQLite database, `PgCatalog` (pg.ts) in PostgreSQL.
 */
import type { OutboxRow, Recorded } from '../outbox.ts';
import type { JobKind, JobQueue } from '../queue/types.ts';
import type { RowPage, RowQuery } from './rows.ts';

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
  /** The tenant of the token that uploaded it (docs/files.md, "Tokens and tenants"); null or absent: none. */
  tenant?: string | null;
}

/** What one tenant stores. */
export interface TenantUsage {
  tenant: string | null;
  files: number;
  bytes: number;
}

/** Whose files a listing shows: every file (absent), or those of one tenant (null: the files of no tenant). */
export interface ListScope {
  tenant: string | null;
}

export interface DerivedRecord {
  name: string;
  type: string;
  size: number;
  width: number | null;
  height: number | null;
}

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
  /** Newest first; `before` pages by creation time; `scope` keeps one tenant's files. */
  list(limit?: number, before?: number, scope?: ListScope): Promise<FileRecord[]>;
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
  /** Bytes of the files of `tenant` (null: of no tenant), the uploads' own (not their outputs'). */
  storedBytes(tenant: string | null): Promise<number>;
  /** Files and bytes per tenant (null: files of no tenant), for `/metrics`. */
  usage(): Promise<TenantUsage[]>;
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

/** A file record's columns, in the order both catalogs insert them: id, name, type, size, sha256, created_at, webhook, tenant. */
export function fileValues(file: FileRecord): (string | number | null)[] {
  return [
    file.id,
    file.name,
    file.type,
    file.size,
    file.sha256,
    file.createdAt,
    file.webhook ?? null,
    file.tenant ?? null,
  ];
}

/** `kinds` as stored in an outbox row, and back. */
export const kindsColumn = (kinds: readonly JobKind[]): string => kinds.join(',');
export const kindsOf = (column: string): JobKind[] => (column === '' ? [] : (column.split(',') as JobKind[]));

/** The CSV table of a file: ids are UUIDs, so this is always a safe identifier. */
export function csvTableFor(fileId: string): string {
  return `csv_${fileId.replace(/[^a-f0-9]/gi, '').toLowerCase()}`;
}
