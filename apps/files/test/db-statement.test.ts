import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openDatabase, statement } from '../src/db.ts';

describe('statement()', () => {
  it('prepares each SQL text once per connection and reuses it', () => {
    const db = openDatabase(':memory:');
    const other = openDatabase(':memory:');
    try {
      const count = 'SELECT count(*) AS n FROM files';
      const s = statement(db, count);
      assert.equal(statement(db, count), s, 'the same statement for the same SQL');
      assert.notEqual(statement(other, count), s, "another connection's own");
      statement(
        db,
        'INSERT INTO files (id, name, type, size, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ).run('a', 'a.txt', 'text/plain', 1, 'x', 1);
      // Reused after a run: reset, so the next get sees the insert.
      assert.deepEqual({ ...(statement(db, count).get() as object) }, { n: 1 });
      assert.deepEqual({ ...(statement(other, count).get() as object) }, { n: 0 });
    } finally {
      db.close();
      other.close();
    }
  });

  it('keeps at most 256 statements per connection, dropping the oldest', () => {
    const db = openDatabase(':memory:');
    try {
      const first = statement(db, 'SELECT 0');
      for (let i = 1; i <= 256; i++) statement(db, `SELECT ${i}`);
      assert.notEqual(statement(db, 'SELECT 0'), first, 'the oldest was dropped and is prepared again');
      const kept = statement(db, 'SELECT 256');
      assert.equal(statement(db, 'SELECT 256'), kept);
      assert.deepEqual(
        { ...(first.get() as object) },
        { 0: 0 },
        'a dropped statement still works for its holder',
      );
    } finally {
      db.close();
    }
  });
});
