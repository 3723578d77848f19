// "201 means durable": SQLite commits without an fsync (synchronous = NORMAL, off the event loop's path), and every
// write whose outcome is reported awaits an fsync of the WAL that started after its commit (walSync, shared by the
// writes of the same moment); a worker killed with SIGKILL right after answering 201 keeps every upload it answered.
// A power cut cannot be simulated here: the tests below check that the answer waits for that fsync, and that a
// failed fsync fails the upload and leaves no record.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { SqliteCatalog } from '../src/catalog/sqlite.ts';
import { openDatabase } from '../src/db.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';
import { freePort, startService, until } from './helpers.ts';

const server = new URL('../src/server.ts', import.meta.url).pathname;

describe('durability of a 201', () => {
  const children = new Set<ChildProcess>();
  const dirs: string[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('opens the database in WAL mode with synchronous = NORMAL (durability comes from walSync)', async () => {
    const s = await startService({}, { runJobs: false });
    try {
      assert.deepEqual({ ...(s.db!.prepare('PRAGMA synchronous').get() as object) }, { synchronous: 1 });
      assert.deepEqual(
        { ...(s.db!.prepare('PRAGMA journal_mode').get() as object) },
        { journal_mode: 'wal' },
      );
    } finally {
      await s.stop();
    }
  });

  it('records an upload only once the WAL fsync after its commit completed, and not at all when it fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'files-walsync-'));
    dirs.push(dir);
    const path = join(dir, 'files.db');
    const db = openDatabase(path);
    try {
      let release: (() => void) | undefined;
      let fail: ((err: Error) => void) | undefined;
      let syncs = 0;
      const sync = () =>
        new Promise<void>((resolve, reject) => {
          syncs++;
          release = resolve;
          fail = reject;
        });
      const queue = new SqliteQueue(db, { leaseMs: 1_000, retryDelayMs: 10, sync });
      const catalog = new SqliteCatalog(db, queue, path, { sync });
      const file = (id: string) => ({
        id,
        name: 'a.csv',
        type: 'text/csv',
        size: 4,
        sha256: 'x',
        createdAt: 1,
      });
      const id = '00000000-0000-4000-8000-000000000001';
      let settled = false;
      const recorded = catalog.recordUpload(file(id), ['csv'], 3).then((r) => {
        settled = true;
        return r;
      });
      await until(() => syncs === 1, 5_000, 'the fsync to be asked for');
      // Committed (another connection sees it), but not yet reported: the fsync has not completed.
      assert.ok(db.prepare('SELECT 1 FROM files WHERE id = ?').get(id));
      await new Promise((r) => setImmediate(r));
      assert.equal(settled, false, 'recordUpload waits for the fsync');
      release!();
      assert.equal((await recorded).jobs.length, 1);

      // A failed fsync: the upload fails, and neither its record nor its job is left.
      const lost = '00000000-0000-4000-8000-000000000002';
      const failed = catalog.recordUpload(file(lost), ['csv'], 3);
      await until(() => syncs === 2, 5_000, 'the second fsync to be asked for');
      fail!(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
      await assert.rejects(failed, /EIO/);
      assert.equal(db.prepare('SELECT 1 FROM files WHERE id = ?').get(lost), undefined);
      assert.equal(db.prepare('SELECT 1 FROM jobs WHERE file_id = ?').get(lost), undefined);

      // A job's outcome is reported (and its event published) only after its fsync too.
      const [job] = await queue.claim('me', 1);
      assert.equal(syncs, 2, 'a claim (a lease, which a power cut ends anyway) does not wait for an fsync');
      const completed = queue.complete(job!, 'me', { rows: 1 });
      await until(() => syncs === 3, 5_000, 'the fsync of the completion');
      release!();
      assert.equal(await completed, true);
    } finally {
      db.close();
    }
  });

  it('keeps every upload answered 201 when the process is killed with SIGKILL right after', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'files-durable-'));
    dirs.push(dataDir);
    const port = await freePort();
    const child = spawn(process.execPath, ['--conditions=weft-source', server], {
      env: {
        ...process.env,
        FILES_DATA_DIR: dataDir,
        FILES_PORT: String(port),
        FILES_LOG_LEVEL: 'info',
        FILES_CONCURRENCY: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    const exited = new Promise<string | null>((resolve) => child.once('exit', (_c, sig) => resolve(sig)));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not listen within 20 s:\n${out}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('files listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.on('data', (d: Buffer) => {
        out += d;
      });
      child.once('exit', () => reject(new Error(`server exited before listening:\n${out}`)));
    });
    // Several uploads in flight; the first 201 kills the process at once (before it can answer the others).
    const answered: string[] = [];
    let killed = false;
    const uploads = Array.from(
      { length: 8 },
      (_, i) =>
        fetch(`http://127.0.0.1:${port}/files?name=n${i}.csv`, { method: 'POST', body: `a,b\n${i},x\n` })
          .then(async (res) => {
            if (res.status !== 201) return;
            const { id } = (await res.json()) as { id: string };
            answered.push(id);
            if (!killed) {
              killed = true;
              child.kill('SIGKILL');
            }
          })
          .catch(() => {}), // connections cut by the kill
    );
    await Promise.all(uploads);
    assert.equal(await exited, 'SIGKILL');
    assert.ok(answered.length >= 1, 'at least one upload was answered 201 before the kill');
    // A fresh connection (as the restarted worker would open) sees each answered upload and its job.
    const db = openDatabase(join(dataDir, 'files.db'));
    try {
      for (const id of answered) {
        assert.ok(db.prepare('SELECT id FROM files WHERE id = ?').get(id), `file ${id} answered 201 is kept`);
        const jobs = db.prepare('SELECT kind FROM jobs WHERE file_id = ?').all(id);
        assert.equal(jobs.length, 1, `the job of ${id} is kept`);
      }
    } finally {
      db.close();
    }
    // And the file opens with plain SQLite too (no half-written state left behind).
    const plain = new DatabaseSync(join(dataDir, 'files.db'), { readOnly: true });
    assert.equal(plain.prepare('PRAGMA integrity_check').get()!.integrity_check, 'ok');
    plain.close();
  });
});
