// The embedded SQLite queue: claims, leases across connections (as across processes), stalled-job recovery,
// retries with backoff, dead letters, release and retry. The clock is injected: nothing here waits.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, beforeEach, describe, it } from 'node:test';
import { SqliteCatalog } from '../src/catalog/sqlite.ts';
import { openDatabase } from '../src/db.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'files-queue-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let now = 1_000_000;
const clock = () => now;
let dbs: DatabaseSync[] = [];
let n = 0;

/** Two connections to one fresh database file: two processes, as far as SQLite is concerned. */
function twoProcesses() {
  const path = join(dir, `q${++n}.db`);
  const a = openDatabase(path);
  const b = openDatabase(path);
  dbs.push(a, b);
  const options = { leaseMs: 30_000, retryDelayMs: 1_000, clock, random: () => 0 };
  const qa = new SqliteQueue(a, options);
  const qb = new SqliteQueue(b, options);
  return { qa, qb, catalog: new SqliteCatalog(a, qa, path) };
}

function addFile(
  catalog: SqliteCatalog,
  id: string,
  kinds: ('image' | 'csv')[] = ['image'],
  maxAttempts = 3,
) {
  return catalog.recordUpload(
    { id, name: `${id}.jpg`, type: 'image/jpeg', size: 1, sha256: 'x', createdAt: now },
    kinds,
    maxAttempts,
  );
}

describe('SqliteQueue', () => {
  beforeEach(() => {
    for (const db of dbs) db.close();
    dbs = [];
    now = 1_000_000;
  });

  it('hands each job to one process only, oldest first', async () => {
    const { qa, qb, catalog } = twoProcesses();
    for (let i = 0; i < 5; i++) await addFile(catalog, `f${i}`);
    const a = await qa.claim('A', 3);
    const b = await qb.claim('B', 10);
    assert.deepEqual(
      a.map((j) => j.fileId),
      ['f0', 'f1', 'f2'],
    );
    assert.deepEqual(
      b.map((j) => j.fileId),
      ['f3', 'f4'],
    );
    assert.ok([...a, ...b].every((j) => j.state === 'active' && j.attempts === 1 && j.startedAt === now));
    assert.deepEqual(await qa.claim('A', 10), [], 'nothing left to claim');
  });

  it('takes the runnable jobs of every state (queued, a due retry, an expired lease) by their run time', async () => {
    const { qa, qb, catalog } = twoProcesses();
    await addFile(catalog, 'retried');
    const [retried] = await qa.claim('A', 1);
    assert.equal(await qa.fail(retried!, 'A', { message: 'again' }, false), 'retrying'); // due at +1 000
    now += 1;
    await addFile(catalog, 'expired');
    assert.deepEqual(
      (await qa.claim('A', 1)).map((j) => j.fileId),
      ['expired'],
    ); // leased until +30 001, then A stops answering
    now += 1;
    await addFile(catalog, 'q1');
    await addFile(catalog, 'q2');
    now += 1_498;
    await addFile(catalog, 'late'); // queued at +1 500
    now += 40_000;
    const names = (jobs: { fileId: string }[]) => jobs.map((j) => j.fileId).sort();
    assert.deepEqual(names(await qb.claim('B', 2)), ['expired', 'q1'], 'the two that are runnable longest');
    assert.deepEqual(names(await qb.claim('B', 10)), ['late', 'q2', 'retried']);
  });

  it('completions of one turn share a transaction, and one that fails is rolled back alone', async () => {
    const { qa, catalog } = twoProcesses();
    for (const f of ['a', 'b', 'c']) await addFile(catalog, f);
    const [a, b, c] = await qa.claim('A', 3);
    const broken = {
      // Its follow-up cannot be recorded (a payload JSON cannot hold): the completion fails with it.
      next: [{ kind: 'image' as const, fileId: 'b', payload: { n: 1n }, maxAttempts: 1, key: 'b-next' }],
    };
    const db = dbs.at(-2)!; // qa's connection
    const exec = db.exec.bind(db);
    let begun = 0;
    db.exec = (sql: string) => {
      if (sql.startsWith('BEGIN')) begun++;
      return exec(sql);
    };
    const outcomes = await Promise.allSettled([
      qa.complete(a!, 'A', { ok: 1 }, { next: [] }),
      qa.complete(b!, 'A', { ok: 2 }, broken),
      qa.complete(c!, 'A', { ok: 3 }, { next: [] }),
    ]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    db.exec = exec;
    assert.equal(begun, 1, 'one transaction for the three');
    assert.deepEqual(
      [(await qa.get(a!.id))!.state, (await qa.get(b!.id))!.state, (await qa.get(c!.id))!.state],
      ['completed', 'active', 'completed'],
    );
    assert.equal((await qa.list({ state: 'queued' })).length, 0, 'no follow-up of the failed completion');
  });

  it('completes only under the current lease; a stale owner is refused', async () => {
    const { qa, qb, catalog } = twoProcesses();
    await addFile(catalog, 'f');
    const [job] = await qa.claim('A', 1);
    now += 30_001; // A was killed: its lease expires
    const [again] = await qb.claim('B', 1);
    assert.equal(again!.id, job!.id, 'the stalled job is claimed again');
    assert.equal(again!.attempts, 2);
    assert.equal(await qa.complete(job!, 'A', { late: true }), false, 'the old owner cannot complete it');
    assert.equal(await qb.complete(again!, 'B', { ok: 1 }), true);
    const done = await qa.get(job!.id);
    assert.equal(done!.state, 'completed');
    assert.deepEqual(done!.result, { ok: 1 });
    assert.equal(await qb.complete(again!, 'B', {}), false, 'completed exactly once');
  });

  it('heartbeats keep a lease; the ids it no longer holds come back', async () => {
    const { qa, qb, catalog } = twoProcesses();
    await addFile(catalog, 'f1');
    await addFile(catalog, 'f2');
    const jobs = await qa.claim('A', 2);
    now += 20_000;
    assert.deepEqual(await qa.heartbeat('A', [jobs[0]!.id]), []);
    now += 20_000; // job 0 was extended, job 1 was not
    const stolen = await qb.claim('B', 5);
    assert.deepEqual(
      stolen.map((j) => j.id),
      [jobs[1]!.id],
    );
    assert.deepEqual(await qa.heartbeat('A', [jobs[0]!.id, jobs[1]!.id]), [jobs[1]!.id]);
  });

  it('retries a failed attempt after an exponential backoff, then dead-letters it', async () => {
    const { qa, catalog } = twoProcesses();
    await addFile(catalog, 'f', ['image'], 3);
    let [job] = await qa.claim('A', 1);
    assert.equal(await qa.fail(job!, 'A', { message: 'boom', code: 'E1' }, false), 'retrying');
    assert.deepEqual(await qa.claim('A', 1), [], 'not before its backoff');
    now += 1_000;
    [job] = await qa.claim('A', 1);
    assert.equal(job!.attempts, 2);
    assert.equal(job!.lastError, 'boom');
    assert.equal(await qa.fail(job!, 'A', { message: 'boom again' }, false), 'retrying');
    now += 1_999;
    assert.deepEqual(await qa.claim('A', 1), [], 'the second delay is twice the first');
    now += 1;
    [job] = await qa.claim('A', 1);
    assert.equal(await qa.fail(job!, 'A', { message: 'last', code: 'E3' }, false), 'dead');
    const dead = await qa.get(job!.id);
    assert.equal(dead!.state, 'dead');
    assert.equal(dead!.lastError, 'last');
    assert.equal(dead!.errorCode, 'E3');
    assert.deepEqual(
      (await qa.list({ state: 'dead' })).map((j) => j.id),
      [job!.id],
    );
  });

  it('dead-letters a permanent error at once, and retry() brings it back with fresh attempts', async () => {
    const { qa, catalog } = twoProcesses();
    await addFile(catalog, 'f', ['image'], 5);
    const [job] = await qa.claim('A', 1);
    assert.equal(await qa.fail(job!, 'A', { message: 'corrupt', code: 'ERR_X' }, true), 'dead');
    assert.equal((await qa.retry(job!.id))?.state, 'queued');
    assert.equal(await qa.retry(job!.id), undefined, 'only a dead job can be retried');
    const [again] = await qa.claim('A', 1);
    assert.equal(again!.attempts, 1);
    assert.equal(again!.lastError, null);
  });

  it('release gives a job back without counting the attempt', async () => {
    const { qa, qb, catalog } = twoProcesses();
    await addFile(catalog, 'f');
    const [job] = await qa.claim('A', 1);
    assert.equal(await qb.release(job!, 'B'), false, 'only its owner can release it');
    assert.equal(await qa.release(job!, 'A'), true);
    const [again] = await qb.claim('B', 1);
    assert.equal(again!.attempts, 1);
  });

  it('a job whose process died on its last attempt goes to the dead letters, not round again', async () => {
    const { qa, qb, catalog } = twoProcesses();
    await addFile(catalog, 'f', ['image'], 1);
    const [job] = await qa.claim('A', 1);
    now += 30_001;
    assert.deepEqual(await qb.claim('B', 1), []);
    const dead = await qb.get(job!.id);
    assert.equal(dead!.state, 'dead');
    assert.equal(dead!.errorCode, 'ERR_WEFT_FILES_STALLED');
  });

  it('adds the started_at column to a database made before it existed', () => {
    const path = join(dir, 'old.db');
    const old = new DatabaseSync(path);
    old.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, file_id TEXT NOT NULL, kind TEXT NOT NULL,
      state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, run_at INTEGER NOT NULL,
      lease_owner TEXT, lease_until INTEGER, last_error TEXT, error_code TEXT, result TEXT, created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, finished_at INTEGER)`);
    old.close();
    const db = openDatabase(path);
    dbs.push(db);
    const columns = (db.prepare('PRAGMA table_info(jobs)').all() as { name: string }[]).map((c) => c.name);
    assert.ok(columns.includes('started_at'));
  });

  it('counts jobs by state', async () => {
    const { qa, catalog } = twoProcesses();
    await addFile(catalog, 'a', ['image', 'csv']);
    await qa.claim('A', 1);
    assert.deepEqual(await qa.counts(), { queued: 1, active: 1, retrying: 0, completed: 0, dead: 0 });
  });
});
