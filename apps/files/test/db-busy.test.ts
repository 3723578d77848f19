// Another process holding files.db's write lock (a backup, an operator's sqlite3) must not freeze the service:
// writes wait asynchronously up to dbBusyTimeout and then answer 503 + Retry-After, reads go on (WAL), the event
// loop is never blocked for long, the runner backs off and logs once, a new worker starts, and everything works
// again by itself once the lock is released.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { isBusy, retryBusy } from '../src/db.ts';
import type { FilesEvent } from '../src/events/types.ts';
import type { Logger } from '../src/logger.ts';
import { createService } from '../src/service.ts';
import { type Running, startService, waitFor } from './helpers.ts';

const BUSY_MS = 300;
/** What a request may take while the database is locked: the busy bound plus generous scheduling slack. */
const ANSWER_BOUND_MS = BUSY_MS + 1_500;
/** The longest the event loop may be blocked at once (SQLite's own busy handler is 20 ms). */
const LOOP_BOUND_MS = 200;

function capture(): Logger & { errors: string[]; logged(prefix: string, ms: number): Promise<void> } {
  const errors: string[] = [];
  const waiting: { prefix: string; resolve: () => void }[] = [];
  return {
    errors,
    info() {},
    warn() {},
    error(_o, msg) {
      errors.push(String(msg));
      for (const w of waiting) if (String(msg).startsWith(w.prefix)) w.resolve();
    },
    /** Resolves once an error starting with `prefix` was logged; fails after `ms`. */
    logged(prefix, ms) {
      if (errors.some((m) => m.startsWith(prefix))) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`"${prefix}" not logged within ${ms} ms`)), ms);
        waiting.push({
          prefix,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

const csv = (i: number) => `id,name\n${i},row${i}\n`;

describe('a database locked by another process', () => {
  let s: Running;
  const log = capture();
  before(async () => {
    s = await startService({ dbBusyTimeout: BUSY_MS, pollMs: 50 }, { log });
  });
  after(() => s.stop());

  it('answers writes 503 + Retry-After within a bound, serves reads, never blocks the loop, then recovers', async () => {
    const first = await fetch(`${s.url}/files?name=a.csv`, { method: 'POST', body: csv(1) });
    assert.equal(first.status, 201);
    const { id } = (await first.json()) as { id: string };
    // Its job done, the runner's one slot is free: it keeps claiming (every 50 ms) while the lock is held.
    await waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' }> =>
        e.type === 'job.completed' && e.data.fileId === id,
      20_000,
      'the job of the first upload',
    );

    const holder = new DatabaseSync(join(s.dataDir, 'files.db'));
    const loop = monitorEventLoopDelay({ resolution: 10 });
    let other: Awaited<ReturnType<typeof createService>> | undefined;
    try {
      holder.exec('BEGIN IMMEDIATE');
      loop.enable();

      let t = performance.now();
      const upload = await fetch(`${s.url}/files?name=b.csv`, { method: 'POST', body: csv(2) });
      const uploadMs = performance.now() - t;
      assert.equal(upload.status, 503);
      assert.equal(upload.headers.get('retry-after'), '1');
      assert.equal(((await upload.json()) as { error: { code: string } }).error.code, 'ERR_WEFT_FILES_BUSY');
      assert.ok(uploadMs < ANSWER_BOUND_MS, `upload answered in ${Math.round(uploadMs)} ms`);

      t = performance.now();
      const del = await fetch(`${s.url}/files/${id}`, { method: 'DELETE' });
      assert.equal(del.status, 503);
      assert.equal(del.headers.get('retry-after'), '1');
      assert.ok(performance.now() - t < ANSWER_BOUND_MS);

      // Reads do not need the write lock (WAL).
      const list = (await (await fetch(`${s.url}/files`)).json()) as { files: { id: string }[] };
      assert.deepEqual(
        list.files.map((f) => f.id),
        [id],
      );
      assert.equal((await fetch(`${s.url}/files/${id}`)).status, 200);

      // A worker starting now (the supervisor replacing one) opens the database without needing the lock.
      const config = { ...loadConfig({ FILES_DATA_DIR: s.dataDir }, s.dataDir), dbBusyTimeout: BUSY_MS };
      t = performance.now();
      other = await createService(config, { log: capture(), runJobs: false });
      assert.ok(performance.now() - t < ANSWER_BOUND_MS, 'a new worker starts while the lock is held');

      // The runner met the lock too: it logged that once, and goes on claiming (with backoff) without crashing.
      await log.logged('claiming jobs failed', 10_000);

      loop.disable();
      const maxMs = loop.max / 1e6;
      assert.ok(maxMs < LOOP_BOUND_MS, `event loop blocked ${Math.round(maxMs)} ms at most`);
    } finally {
      loop.disable();
      if (holder.isTransaction) holder.exec('ROLLBACK');
      holder.close();
      await other?.close();
    }

    // Released: uploads succeed again, and the runner (which backed off) processes them.
    const again = await fetch(`${s.url}/files?name=c.csv`, { method: 'POST', body: csv(3) });
    assert.equal(again.status, 201);
    const { id: third } = (await again.json()) as { id: string };
    await waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' }> =>
        e.type === 'job.completed' && e.data.fileId === third,
      20_000,
      'the job of the upload after the lock',
    );
    const claimLogs = log.errors.filter((m) => m.startsWith('claiming jobs failed'));
    assert.equal(claimLogs.length, 1, `claim failures logged ${claimLogs.length} times, not once per poll`);
  });
});

describe('retryBusy', () => {
  it('retries a locked call asynchronously and fails with ERR_WEFT_FILES_BUSY at the bound', async () => {
    let calls = 0;
    const locked = Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 });
    assert.ok(isBusy(locked));
    const adapter = retryBusy(
      {
        async write() {
          calls++;
          throw locked;
        },
        sync: () => 'as is',
      },
      { timeoutMs: 100, delayMs: 5, maxDelayMs: 20 },
    );
    assert.equal(adapter.sync(), 'as is');
    const t = performance.now();
    await assert.rejects(adapter.write(), { code: 'ERR_WEFT_FILES_BUSY', statusCode: 503 });
    assert.ok(performance.now() - t < 1_000);
    assert.ok(calls > 2, `tried ${calls} times`);
  });

  it('passes the first success through after a few locked tries', async () => {
    let calls = 0;
    const adapter = retryBusy(
      {
        async write() {
          if (++calls < 3)
            throw Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 });
          return 'done';
        },
      },
      { timeoutMs: 1_000, delayMs: 1 },
    );
    assert.equal(await adapter.write(), 'done');
    assert.equal(calls, 3);
  });
});
