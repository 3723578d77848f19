// A full disk: uploads answer 507 ERR_WEFT_FILES_NO_SPACE (storage's ENOSPC and SQLite's "database or disk is
// full" alike, the real error kept as the cause rather than hidden by a failed ROLLBACK); DELETE still works and
// frees space; a runner whose every claim fails logs once per interval, not once per poll.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openDatabase, transaction } from '../src/db.ts';
import type { FilesBus } from '../src/events/bus.ts';
import { ThrottledLog } from '../src/log-throttle.ts';
import type { Logger } from '../src/logger.ts';
import type { JobQueue } from '../src/queue/types.ts';
import { JobRunner } from '../src/runner.ts';
import type { Storage } from '../src/storage/types.ts';
import { filesUnder, type Running, startService } from './helpers.ts';

function capture(): Logger & { lines: { level: string; obj: object; msg: string }[] } {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) =>
    void lines.push({ level, obj, msg: String(msg) });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

const enospc = () =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
    errno: -28,
    syscall: 'write',
  });

describe('a full disk', () => {
  let s: Running;
  let full = false;
  const log = capture();
  before(async () => {
    // Storage that fails like a full file system: the write fails with ENOSPC after some bytes were read.
    const wrap = (st: Storage): Storage => ({
      put: async (k, src, o) => {
        if (!full) return st.put(k, src, o);
        for await (const _chunk of src) break;
        src.destroy();
        throw enospc();
      },
      putFile: (k, p) => st.putFile(k, p),
      read: (k, r) => st.read(k, r),
      stat: (k) => st.stat(k),
      delete: (k, o) => st.delete(k, o),
      localPath: (k) => st.localPath(k),
      scratch: (n) => st.scratch(n),
      init: () => st.init(),
    });
    s = await startService({}, { storage: wrap, log, runJobs: false });
  });
  after(() => s.stop());

  const upload = (name: string) =>
    fetch(`${s.url}/files?name=${name}`, { method: 'POST', body: Buffer.alloc(100_000, 3) });

  it('answers an upload 507 ERR_WEFT_FILES_NO_SPACE when storage is full, and DELETE frees space', async () => {
    const kept = await upload('kept.bin');
    assert.equal(kept.status, 201);
    const { id } = (await kept.json()) as { id: string };
    full = true;
    const res = await upload('big.bin');
    assert.equal(res.status, 507);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, 'ERR_WEFT_FILES_NO_SPACE');
    assert.match(error.message, /ENOSPC/);
    const del = await fetch(`${s.url}/files/${id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.deepEqual(
      filesUnder(s.dataDir).filter((f) => f.startsWith('objects/originals/')),
      [],
    );
    full = false;
  });

  it("answers 507 when the database cannot grow, with SQLite's own error, and DELETE still works", async () => {
    const kept = await upload('kept2.bin');
    assert.equal(kept.status, 201);
    const { id } = (await kept.json()) as { id: string };
    const db = s.db!;
    // The database may not grow now, as on a full disk. Recording a file then needs room it cannot have: a
    // trigger on this connection writes 100 kB with each record (SQLite fails it with SQLITE_FULL, and rolls the
    // whole transaction back by itself, as with a full disk).
    db.exec('CREATE TABLE IF NOT EXISTS filler (x BLOB)');
    const pages = Number((db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count);
    db.exec(`PRAGMA max_page_count = ${pages + 1}`);
    db.exec(
      'CREATE TEMP TRIGGER grow BEFORE INSERT ON main.files BEGIN INSERT INTO filler VALUES (zeroblob(100000)); END',
    );
    try {
      log.lines.length = 0;
      const res = await upload('no-room.bin');
      assert.equal(res.status, 507);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'ERR_WEFT_FILES_NO_SPACE');
      assert.match(error.message, /database or disk is full/);
      assert.ok(
        !JSON.stringify(log.lines).includes('cannot rollback'),
        'the ROLLBACK does not hide the error',
      );
      const listed = (await (await fetch(`${s.url}/files`)).json()) as { files: { name: string }[] };
      assert.ok(!listed.files.some((f) => f.name === 'no-room.bin'));

      assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE' })).status, 204);
      assert.equal((await fetch(`${s.url}/files/${id}`)).status, 404);
    } finally {
      db.exec('DROP TRIGGER IF EXISTS temp.grow');
      db.exec('DROP TABLE IF EXISTS filler');
      db.exec('PRAGMA max_page_count = 1073741823');
    }
    assert.equal((await upload('room-again.bin')).status, 201);
  });
});

describe('transaction()', () => {
  it('surfaces the error that failed the transaction when SQLite already rolled it back', () => {
    const db = openDatabase(':memory:');
    try {
      db.exec('CREATE TABLE t (x)');
      assert.throws(
        () =>
          transaction(db, () => {
            db.exec('ROLLBACK'); // what SQLite does by itself on SQLITE_FULL or SQLITE_IOERR
            throw new Error('the real error');
          }),
        /the real error/,
      );
      assert.equal(db.isTransaction, false);
    } finally {
      db.close();
    }
  });
});

describe('repeated failures', () => {
  it('ThrottledLog logs a failure once per interval with a count, and its end once', () => {
    let now = 0;
    const log = capture();
    const t = new ThrottledLog(log, { intervalMs: 1_000, clock: () => now });
    for (let i = 0; i < 10; i++) {
      t.failure('claim', enospc(), 'claiming jobs failed');
      now += 50;
    }
    assert.equal(log.lines.length, 1);
    now = 1_200;
    t.failure('claim', enospc(), 'claiming jobs failed');
    assert.equal(log.lines.length, 2);
    assert.equal((log.lines[1]!.obj as { repeated: number }).repeated, 10);
    t.recovered('claim', 'claiming jobs works again');
    t.recovered('claim', 'claiming jobs works again');
    assert.deepEqual(
      log.lines.map((l) => l.level),
      ['error', 'error', 'info'],
    );
  });

  it('a runner whose claims all fail backs off and logs the failure once, not per poll', async () => {
    const log = capture();
    let claims = 0;
    let sixth!: () => void;
    const sixClaims = new Promise<void>((r) => {
      sixth = r;
    });
    const queue = {
      async claim() {
        if (++claims === 6) sixth();
        throw Object.assign(new Error('database or disk is full'), { code: 'ERR_WEFT_FILES_NO_SPACE' });
      },
      heartbeat: async () => [],
    } as unknown as JobQueue;
    const bus = { publish: async () => ({}) } as unknown as FilesBus;
    const runner = new JobRunner({
      queue,
      bus,
      log,
      catalog: undefined as never,
      storage: undefined as never,
      pool: undefined as never,
      config: {
        concurrency: 1,
        pollMs: 1,
        leaseMs: 60_000,
        jobTimeoutMs: 1,
        limitInputPixels: 1,
        csvMaxBadRows: 0,
      },
      maxBackoffMs: 8,
    });
    runner.start();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        sixClaims,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error('the runner stopped claiming (6 claims not seen in 5 s)')),
            5_000,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await runner.close();
    }
    const errors = log.lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, errors.map((l) => l.msg).join('\n'));
    assert.match(errors[0]!.msg, /claiming jobs failed: database or disk is full/);
  });
});
