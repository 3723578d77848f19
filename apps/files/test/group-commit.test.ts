import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { GroupCommit, isBusy, openDatabase, statement } from '../src/db.ts';

const dir = mkdtempSync(join(tmpdir(), 'files-group-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A database whose transactions are counted (each BEGIN). */
function counted(): { db: DatabaseSync; path: string; begins: () => number } {
  const path = join(dir, `g${++n}.db`);
  const db = openDatabase(path);
  let begins = 0;
  const exec = db.exec.bind(db);
  db.exec = (sql: string) => {
    if (/^BEGIN/i.test(sql)) begins++;
    return exec(sql);
  };
  return { db, path, begins: () => begins };
}

const insert = (db: DatabaseSync, id: string) =>
  statement(db, 'INSERT INTO files (id, name, type, size, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
    id,
    `${id}.bin`,
    'application/octet-stream',
    1,
    'x',
    1,
  );
const ids = (db: DatabaseSync) =>
  (statement(db, 'SELECT id FROM files ORDER BY id').all() as { id: string }[]).map((r) => r.id);

describe('GroupCommit', () => {
  it('commits the writes of one moment in one transaction, each with its own result', async () => {
    const { db, begins } = counted();
    try {
      const group = new GroupCommit(db);
      const results = await Promise.all(
        ['a', 'b', 'c', 'd', 'e'].map((id) =>
          group.run(() => {
            insert(db, id);
            return `${id}!`;
          }),
        ),
      );
      assert.deepEqual(results, ['a!', 'b!', 'c!', 'd!', 'e!']);
      assert.equal(begins(), 1, 'one BEGIN for the five');
      assert.deepEqual(ids(db), ['a', 'b', 'c', 'd', 'e']);
      // A later moment is a transaction of its own.
      assert.equal(await group.run(() => insert(db, 'f').changes), 1);
      assert.equal(begins(), 2);
    } finally {
      db.close();
    }
  });

  it('rolls back only the write that failed: the others of its group commit', async () => {
    const { db, begins } = counted();
    try {
      const group = new GroupCommit(db);
      const [a, bad, dup, c] = await Promise.allSettled([
        group.run(() => insert(db, 'a')),
        group.run(() => {
          insert(db, 'half'); // written, then the write fails: its savepoint takes it back
          throw new Error('the processor list is wrong');
        }),
        group.run(() => insert(db, 'a')), // a primary key already taken in this same transaction
        group.run(() => insert(db, 'c')),
      ]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(c.status, 'fulfilled');
      assert.equal(bad.status === 'rejected' && (bad.reason as Error).message, 'the processor list is wrong');
      assert.equal(dup.status === 'rejected' && /UNIQUE/.test((dup.reason as Error).message), true);
      assert.equal(begins(), 1);
      assert.deepEqual(ids(db), ['a', 'c']);
    } finally {
      db.close();
    }
  });

  it('fails every write of the group, recording none, when the transaction cannot start', async () => {
    const { db, path } = counted();
    const other = openDatabase(path);
    try {
      const group = new GroupCommit(db);
      other.exec('BEGIN IMMEDIATE'); // another process holds the write lock past busy_timeout
      const outcomes = await Promise.allSettled(['a', 'b', 'c'].map((id) => group.run(() => insert(db, id))));
      for (const o of outcomes) assert.ok(o.status === 'rejected' && isBusy(o.reason), 'each is told: busy');
      other.exec('ROLLBACK');
      assert.deepEqual(ids(db), []);
      // Nothing is left pending: the next moment commits.
      await group.run(() => insert(db, 'later'));
      assert.deepEqual(ids(db), ['later']);
    } finally {
      other.close();
      db.close();
    }
  });
});
