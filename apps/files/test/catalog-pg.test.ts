// The Catalog contract, run against SqliteCatalog and PgCatalog alike: records, paging, derived outputs, deletion
// with the CSV table, counts, and the record removed when queueing fails. Each test gets a fresh store (a SQLite
// file, or a PostgreSQL schema chosen through the URL's `options=-c search_path=…`). Then PostgreSQL only: many
// processes creating the schema at once, and an unreachable server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PgCatalog } from '../src/catalog/pg.ts';
import { SqliteCatalog } from '../src/catalog/sqlite.ts';
import { type Catalog, type CatalogOptions, csvTableFor, type FileRecord } from '../src/catalog/types.ts';
import { openDatabase } from '../src/db.ts';
import { FilesError } from '../src/errors.ts';
import { transaction } from '../src/pg-pool.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';
import type { JobQueue } from '../src/queue/types.ts';
import { DATABASE_URL, serviceSkip } from './services.ts';

const skip = await serviceSkip({ postgres: DATABASE_URL });

const dir = mkdtempSync(join(tmpdir(), 'files-catalog-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One fresh, empty store with its catalog. */
interface Store {
  catalog: Catalog;
  queue: JobQueue;
  /** Another catalog on the same store, with another queue (and the outbox when `options` say so). */
  withQueue(queue: JobQueue, options?: CatalogOptions): Promise<Catalog>;
  exec(sql: string): Promise<void>;
  tables(): Promise<string[]>;
}

interface Backend {
  start(): Promise<void>;
  fresh(): Promise<Store>;
  close(): Promise<void>;
}

/** A queue on its own SQLite file, so the catalog under test does not share a transaction with it. */
function sqliteQueue(): { queue: SqliteQueue; db: DatabaseSync } {
  const db = openDatabase(join(dir, `queue-${randomUUID()}.db`));
  return { db, queue: new SqliteQueue(db, { leaseMs: 30_000, retryDelayMs: 1_000 }) };
}

/** A queue that is down: every call rejects. */
function brokenQueue(): JobQueue {
  const down = async (): Promise<never> => {
    throw Object.assign(new Error('queue unreachable'), { code: 'ECONNREFUSED' });
  };
  return {
    add: down,
    hasJobs: down,
    removeForFile: down,
    waiting: down,
    claim: down,
    heartbeat: down,
    complete: down,
    fail: down,
    release: down,
    retry: down,
    get: down,
    list: down,
    counts: down,
    close: async () => {},
  };
}

/** A queue that is unavailable, as the guarded BullMQ queue answers while Redis is away. */
function unavailableQueue(): JobQueue {
  return {
    ...brokenQueue(),
    add: async () => {
      throw new FilesError(
        'ERR_WEFT_FILES_QUEUE_UNAVAILABLE',
        'The queue backend is unavailable (circuit open)',
      );
    },
  };
}

function sqliteBackend(): Backend {
  const dbs: DatabaseSync[] = [];
  return {
    async start() {},
    async fresh() {
      const path = join(dir, `${randomUUID()}.db`);
      const db = openDatabase(path);
      dbs.push(db);
      // The embedded queue in the catalog's own database: record and jobs in one transaction.
      const queue = new SqliteQueue(db, { leaseMs: 30_000, retryDelayMs: 1_000 });
      return {
        catalog: new SqliteCatalog(db, queue, path),
        queue,
        withQueue: async (other, options) => new SqliteCatalog(db, other, path, options),
        exec: async (sql) => db.exec(sql),
        tables: async () =>
          db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .all()
            .map((r) => String(r.name)),
      };
    },
    async close() {
      for (const db of dbs) db.close();
    },
  };
}

/** `DATABASE_URL` with `schema` first on the search path: tables are created there. */
function urlWithSchema(schema: string): string {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.href;
}

function postgresBackend(): Backend {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  const schemas: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  return {
    async start() {
      await admin.connect();
    },
    async fresh() {
      const schema = `test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
      await admin.query(`CREATE SCHEMA ${schema}`);
      schemas.push(schema);
      const { queue, db } = sqliteQueue();
      closers.push(async () => db.close());
      const open = async (q: JobQueue, options: CatalogOptions = {}) => {
        const catalog = await PgCatalog.open(urlWithSchema(schema), q, { max: 2, ...options });
        closers.push(() => catalog.close());
        return catalog;
      };
      return {
        catalog: await open(queue),
        queue,
        withQueue: open,
        exec: async (sql) => void (await admin.query(`SET search_path = ${schema}; ${sql}`)),
        tables: async () => {
          const { rows } = await admin.query<{ name: string }>(
            'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1',
            [schema],
          );
          return rows.map((r) => r.name);
        },
      };
    },
    async close() {
      for (const close of closers) await close();
      for (const schema of schemas) await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

const file = (createdAt: number, over: Partial<FileRecord> = {}): FileRecord => ({
  id: randomUUID(),
  name: 'data.csv',
  type: 'text/csv',
  size: 1234,
  sha256: 'ab'.repeat(32),
  createdAt,
  tenant: null,
  ...over,
});

for (const [name, backend, when] of [
  ['SqliteCatalog', sqliteBackend(), false],
  ['PgCatalog', postgresBackend(), skip],
] as const) {
  describe(`Catalog contract: ${name}`, { skip: when }, () => {
    before(() => backend.start());
    after(() => backend.close());

    it('records an upload with its jobs, gets it back and counts it', async () => {
      const { catalog, queue } = await backend.fresh();
      // Sizes past 2^32 and epoch-ms times come back as numbers, not strings.
      const record = file(1_700_000_000_123, { size: 5 * 2 ** 32, name: 'Zoë "big".csv' });
      const { jobs, pending } = await catalog.recordUpload(record, ['csv', 'image'], 3);
      assert.deepEqual(pending, []);
      assert.deepEqual(
        jobs.map((j) => [j.fileId, j.kind, j.state, j.maxAttempts]),
        [
          [record.id, 'csv', 'queued', 3],
          [record.id, 'image', 'queued', 3],
        ],
      );
      assert.equal((await queue.list({ fileId: record.id })).length, 2);
      assert.deepEqual(await catalog.get(record.id), record);
      assert.equal(await catalog.get(randomUUID()), undefined);
      assert.equal(await catalog.count(), 1);
      await catalog.ping();
      await assert.rejects(catalog.recordUpload(record, ['csv'], 3), 'a second record with the same id');
      assert.equal(await catalog.count(), 1);
    });

    it('lists newest first, ties by id, and pages with `before`', async () => {
      const { catalog } = await backend.fresh();
      const records = [1000, 1001, 1002, 1002, 1003].map((t) => file(t));
      for (const r of records) await catalog.recordUpload(r, [], 1);
      const tie = records
        .filter((r) => r.createdAt === 1002)
        .map((r) => r.id)
        .sort()
        .reverse();
      const all = await catalog.list();
      assert.deepEqual(
        all.map((r) => r.id),
        [records[4]!.id, ...tie, records[1]!.id, records[0]!.id],
      );
      const first = await catalog.list(2);
      assert.deepEqual(first, all.slice(0, 2));
      const next = await catalog.list(2, 1002);
      assert.deepEqual(next, all.slice(3, 5));
      assert.deepEqual(await catalog.list(10, 1000), []);
      assert.equal(await catalog.count(), 5);
    });

    it('keeps each file’s tenant, and lists one tenant’s files (null: those of none) or every file', async () => {
      const { catalog } = await backend.fresh();
      const acme = [file(1, { tenant: 'acme' }), file(3, { tenant: 'acme' })];
      const globex = file(2, { tenant: 'globex' });
      const none = file(4);
      for (const r of [...acme, globex, none]) await catalog.recordUpload(r, [], 1);
      assert.deepEqual(await catalog.get(globex.id), globex);
      const ids = (records: FileRecord[]) => records.map((r) => r.id);
      assert.deepEqual(ids(await catalog.list(10, undefined, { tenant: 'acme' })), [
        acme[1]!.id,
        acme[0]!.id,
      ]);
      assert.deepEqual(
        ids(await catalog.list(1, 3, { tenant: 'acme' })),
        [acme[0]!.id],
        'pages within the tenant',
      );
      assert.deepEqual(ids(await catalog.list(10, undefined, { tenant: 'globex' })), [globex.id]);
      assert.deepEqual(ids(await catalog.list(10, undefined, { tenant: null })), [none.id]);
      assert.deepEqual(ids(await catalog.list(10, undefined, { tenant: 'initech' })), []);
      assert.equal((await catalog.list()).length, 4);
    });

    it('upserts derived outputs: a re-run replaces by name, never duplicates', async () => {
      const { catalog } = await backend.fresh();
      const record = file(1);
      const { id } = record;
      await catalog.recordUpload(record, [], 1);
      const thumb = { name: 'thumb.webp', type: 'image/webp', size: 100, width: 64, height: 48 };
      const meta = { name: 'meta.json', type: 'application/json', size: 20, width: null, height: null };
      assert.equal(await catalog.setDerived(id, [thumb, meta]), true);
      assert.deepEqual(await catalog.derived(id), [meta, thumb]);
      const rerun = { ...thumb, size: 90, width: 32, height: 24 };
      await catalog.setDerived(id, [{ ...rerun, size: 1 }, rerun]);
      assert.deepEqual(await catalog.derived(id), [meta, rerun]);
      await catalog.setDerived(id, []);
      assert.deepEqual(await catalog.derived(id), [meta, rerun]);
      assert.deepEqual(await catalog.derived(randomUUID()), []);
    });

    it('records no derived outputs for a file that is gone (deleted while its job ran)', async () => {
      const { catalog } = await backend.fresh();
      const record = file(1);
      await catalog.recordUpload(record, [], 1);
      assert.equal(await catalog.delete(record.id), true);
      const thumb = { name: 'thumb.webp', type: 'image/webp', size: 100, width: 64, height: 48 };
      assert.equal(await catalog.setDerived(record.id, [thumb]), false);
      assert.deepEqual(await catalog.derived(record.id), []);
    });

    it('deletes the record, its derived rows and its CSV tables; false for an unknown id', async () => {
      const store = await backend.fresh();
      const { catalog } = store;
      const [gone, kept] = [file(1), file(2)];
      for (const r of [gone, kept]) {
        await catalog.recordUpload(r, [], 1);
        await catalog.setDerived(r.id, [{ name: 'x', type: 't', size: 1, width: null, height: null }]);
        await store.exec(`CREATE TABLE ${csvTableFor(r.id)} (_line integer, a text)`);
      }
      await store.exec(`CREATE TABLE ${csvTableFor(gone.id)}__staging (_line integer, a text)`);
      assert.equal(await catalog.delete(gone.id), true);
      assert.equal(await catalog.get(gone.id), undefined);
      assert.deepEqual(await catalog.derived(gone.id), []);
      const tables = await store.tables();
      assert.ok(!tables.some((t) => t.startsWith(csvTableFor(gone.id))), tables.join());
      assert.ok(tables.includes(csvTableFor(kept.id)));
      assert.deepEqual(await catalog.get(kept.id), kept);
      assert.equal((await catalog.derived(kept.id)).length, 1);
      assert.equal(await catalog.delete(gone.id), false);
      assert.equal(await catalog.delete(randomUUID()), false);
      assert.equal(await catalog.count(), 1);
    });

    it('with the outbox, an upload the queue cannot take is kept, its jobs pending, until a relay deletes the row', async () => {
      const store = await backend.fresh();
      // The upload holds its row for a minute: no relay takes it meanwhile.
      const catalog = await store.withQueue(unavailableQueue(), { outboxLeaseMs: 60_000 });
      const record = file(1);
      assert.deepEqual(await catalog.recordUpload(record, ['csv'], 3), { jobs: [], pending: ['csv'] });
      assert.deepEqual(await catalog.get(record.id), record);
      assert.deepEqual(await catalog.pendingKinds(record.id), ['csv']);
      assert.deepEqual(await catalog.pendingKinds(randomUUID()), []);
      assert.equal(await catalog.outboxSize(), 1);
      assert.deepEqual(await catalog.claimOutbox('relay-a', 10, 60_000), [], 'leased to the upload');
      // A file with no jobs needs no row.
      const plain = file(2, { type: 'text/plain' });
      assert.deepEqual(await catalog.recordUpload(plain, [], 3), { jobs: [], pending: [] });
      assert.equal(await catalog.outboxSize(), 1);
      // Once the upload's lease is over, a relay takes it.
      const soon = await store.withQueue(unavailableQueue(), { outboxLeaseMs: 0 });
      const later = file(3);
      await soon.recordUpload(later, ['image'], 4);
      assert.deepEqual(await catalog.claimOutbox('relay-a', 10, 60_000), [
        { fileId: later.id, kinds: ['image'], maxAttempts: 4, createdAt: 3 },
      ]);
      assert.equal(await catalog.deleteOutbox(later.id), true);
      assert.equal(await catalog.deleteOutbox(later.id), false);
      assert.deepEqual(await catalog.pendingKinds(later.id), []);
      // Deleting a file removes its row with it.
      assert.equal(await catalog.delete(record.id), true);
      assert.equal(await catalog.outboxSize(), 0);
      assert.deepEqual(await catalog.pendingKinds(record.id), []);
    });

    it('leases outbox rows: one owner at a time, its own again, anyone once the lease ran out', async () => {
      const store = await backend.fresh();
      const catalog = await store.withQueue(unavailableQueue(), { outboxLeaseMs: 0 });
      const records = Array.from({ length: 3 }, (_, i) => file(10 + i));
      for (const r of records) await catalog.recordUpload(r, ['csv'], 2);
      const ids = (rows: ({ fileId: string } | { id: string })[]) =>
        rows.map((r) => ('fileId' in r ? r.fileId : r.id));
      assert.deepEqual(
        ids(await catalog.claimOutbox('a', 2, 60_000)),
        ids(records.slice(0, 2)),
        'oldest first',
      );
      assert.deepEqual(ids(await catalog.claimOutbox('b', 10, 60_000)), ids(records.slice(2)));
      assert.deepEqual(await catalog.claimOutbox('c', 10, 60_000), [], 'all leased');
      assert.deepEqual(ids(await catalog.claimOutbox('a', 10, 0)), ids(records.slice(0, 2)), 'its own again');
      // a's lease is now over (0 ms): anyone takes those rows, never b's.
      assert.deepEqual(ids(await catalog.claimOutbox('c', 10, 60_000)), ids(records.slice(0, 2)));
    });

    it('two catalogs claiming at once never get the same outbox row', async () => {
      const store = await backend.fresh();
      const a = await store.withQueue(unavailableQueue(), { outboxLeaseMs: 0 });
      const b = await store.withQueue(unavailableQueue(), { outboxLeaseMs: 0 });
      const records = Array.from({ length: 40 }, (_, i) => file(100 + i));
      for (const r of records) await a.recordUpload(r, ['csv'], 2);
      const taken: string[][] = [[], []];
      await Promise.all(
        [a, b].map(async (catalog, k) => {
          for (;;) {
            const rows = await catalog.claimOutbox(`owner-${k}`, 3, 60_000);
            if (rows.length === 0) return;
            taken[k]!.push(...rows.map((r) => r.fileId));
            // As a relay does once the jobs are queued (its own rows would come back to it otherwise).
            for (const r of rows) await catalog.deleteOutbox(r.fileId);
          }
        }),
      );
      const all = [...taken[0]!, ...taken[1]!];
      assert.equal(new Set(all).size, all.length, 'no row claimed twice');
      assert.deepEqual(new Set(all), new Set(records.map((r) => r.id)));
    });

    it('with the outbox and a queue that takes the jobs, the row goes; another failure keeps nothing', async () => {
      const store = await backend.fresh();
      const catalog = await store.withQueue(store.queue, { outboxLeaseMs: 60_000 });
      const record = file(1);
      const { jobs, pending } = await catalog.recordUpload(record, ['csv'], 3);
      assert.deepEqual(pending, []);
      assert.deepEqual(
        jobs.map((j) => [j.fileId, j.kind]),
        [[record.id, 'csv']],
      );
      // The row is deleted in the background once the jobs are queued.
      const until = performance.now() + 5_000;
      while ((await catalog.outboxSize()) > 0) {
        assert.ok(performance.now() < until, 'the outbox row is deleted within 5 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      const broken = await store.withQueue(brokenQueue(), { outboxLeaseMs: 60_000 });
      const other = file(2);
      await assert.rejects(broken.recordUpload(other, ['csv'], 3), { message: 'queue unreachable' });
      assert.equal(await catalog.get(other.id), undefined);
      assert.equal(await catalog.outboxSize(), 0);
    });

    it('removes the record again when queueing fails: no file without its jobs', async () => {
      const store = await backend.fresh();
      const catalog = await store.withQueue(brokenQueue());
      const record = file(1);
      await assert.rejects(catalog.recordUpload(record, ['csv'], 3), { message: 'queue unreachable' });
      assert.equal(await catalog.get(record.id), undefined);
      assert.equal(await catalog.count(), 0);
      // The id is free again: a retry of the upload can record it.
      await store.catalog.recordUpload(record, ['csv'], 3);
      assert.deepEqual(await store.catalog.get(record.id), record);
    });
  });
}

describe('PgCatalog', { skip }, () => {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  const schema = `test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  before(async () => {
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
  });
  after(async () => {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  });

  it('many processes opening a fresh schema at once all succeed', async () => {
    const { queue, db } = sqliteQueue();
    const opened = await Promise.allSettled(
      Array.from({ length: 6 }, () => PgCatalog.open(urlWithSchema(schema), queue, { max: 1 })),
    );
    try {
      assert.deepEqual(
        opened.map((o) => (o.status === 'rejected' ? String(o.reason) : 'ok')),
        Array(6).fill('ok'),
      );
      const { rows } = await admin.query(
        'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1',
        [schema],
      );
      assert.deepEqual(
        rows.map((r) => r.table_name),
        ['weft_derived', 'weft_files', 'weft_files_outbox'],
      );
      const first = opened[0];
      assert.ok(first?.status === 'fulfilled');
      assert.equal(first.value.csvDatabase, urlWithSchema(schema));
    } finally {
      for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
      db.close();
    }
  });

  it('transaction() commits what its function did; a failure rolls it all back and drops the connection', async () => {
    // One connection: were the failed transaction's connection returned to the pool (aborted, or mid-transaction),
    // the next transaction would fail or see the uncommitted row.
    const pool = new pg.Pool({ connectionString: urlWithSchema(schema), max: 1 });
    try {
      await pool.query('CREATE TABLE tx_probe (n int PRIMARY KEY)');
      assert.equal(
        await transaction(pool, async (c) => (await c.query('INSERT INTO tx_probe VALUES (1)')).rowCount),
        1,
      );
      // A failure after a write: the function's own error, and a database error.
      await assert.rejects(
        transaction(pool, async (c) => {
          await c.query('INSERT INTO tx_probe VALUES (2)');
          throw new Error('the step after failed');
        }),
        { message: 'the step after failed' },
      );
      await assert.rejects(
        transaction(pool, async (c) => {
          await c.query('INSERT INTO tx_probe VALUES (3)');
          await c.query('INSERT INTO tx_probe VALUES (1)');
        }),
        { code: '23505' },
      );
      const { rows } = await pool.query<{ n: number }>('SELECT n FROM tx_probe ORDER BY n');
      assert.deepEqual(
        rows.map((r) => r.n),
        [1],
        'only the committed row is there',
      );
      assert.equal(pool.totalCount, 1, 'the pool works on, with one connection');
    } finally {
      await pool.end();
    }
  });

  it('close() is idempotent; the catalog is unusable afterwards', async () => {
    const { queue, db } = sqliteQueue();
    const catalog = await PgCatalog.open(urlWithSchema(schema), queue);
    try {
      await catalog.ping();
      await Promise.all([catalog.close(), catalog.close()]);
      await catalog.close();
      await assert.rejects(catalog.ping());
    } finally {
      db.close();
    }
  });

  it('an unreachable server fails open() at once with ERR_WEFT_FILES_DATABASE, without the password', async () => {
    const { queue, db } = sqliteQueue();
    try {
      for (const [url, where, why] of [
        ['postgres://weft:s3cr3t-pw@127.0.0.1:1/x', '127.0.0.1:1', /ECONNREFUSED/],
        [
          new URL('/weft_no_such_database', DATABASE_URL).href.replace('//', '//postgres:s3cr3t-pw@'),
          new URL(DATABASE_URL).host,
          /does not exist/,
        ],
      ] as const) {
        const started = performance.now();
        const err = await PgCatalog.open(url, queue, { connectTimeoutMs: 5_000 }).then(
          () => assert.fail(`open(${url}) resolved`),
          (e: Error & { code?: string; statusCode?: number }) => e,
        );
        assert.equal(err.name, 'FilesError');
        assert.equal(err.code, 'ERR_WEFT_FILES_DATABASE');
        assert.equal(err.statusCode, 503);
        assert.ok(err.message.startsWith(`Cannot reach PostgreSQL at ${where}: `), err.message);
        assert.match(err.message, why);
        assert.ok(!err.message.includes('s3cr3t'), err.message);
        assert.ok(err.cause instanceof Error);
        assert.ok(performance.now() - started < 5_000);
      }
    } finally {
      db.close();
    }
  });
});
