// The tus upload lock across processes: a lease in SQLite (one machine's processes), Redis or PostgreSQL (many
// machines). One
// holder at a time; a waiter asks the holder to let go and gets the lock when it does; a holder that died (never
// renews) loses the lease when it expires; a waiter gives up after its timeout with tus's lock error.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { ERRORS } from '@tus/utils';
import { Redis } from 'ioredis';
import pg from 'pg';
import { type LeaseBackend, LeaseLocker, RedisLeases, SqliteLeases } from '../src/tus-lock.ts';
import { PgLeases } from '../src/tus-lock-pg.ts';
import { DATABASE_URL, pgSchema, REDIS_URL, serviceSkip } from './services.ts';

/** Resolves when `p` settles within `ms`, else fails naming `what`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The contract, run against two lockers that share nothing but `backends` (as two processes would). */
function contract(
  name: string,
  open: () => Promise<{ a: LeaseBackend; b: LeaseBackend; close(): Promise<void> }>,
) {
  describe(name, () => {
    it('excludes: a second request waits, asks the holder to let go, and gets the lock once it is released', async () => {
      const { a, b, close } = await open();
      try {
        const la = new LeaseLocker(a, { pollMs: 20 });
        const lb = new LeaseLocker(b, { pollMs: 20 });
        const id = randomUUID();
        const first = la.newLock(id);
        const asked = Promise.withResolvers<void>();
        await first.lock(new AbortController().signal, () => asked.resolve());
        let second = false;
        const waiting = lb
          .newLock(id)
          .lock(new AbortController().signal, () => {})
          .then(() => {
            second = true;
          });
        await within(asked.promise, 5_000, 'the holder to be asked to let go');
        assert.equal(second, false, 'not held twice');
        await first.unlock();
        await within(waiting, 5_000, 'the waiter to get the lock');
        assert.equal(second, true);
      } finally {
        await close();
      }
    });

    it('a holder that died (no renewals) loses the lock when its lease expires', async () => {
      const { a, b, close } = await open();
      try {
        const id = randomUUID();
        assert.equal(await a.acquire(id, 'dead-process', 300), true);
        assert.equal(await b.acquire(id, 'other', 300), false, 'held');
        const lb = new LeaseLocker(b, { pollMs: 20, acquireTimeoutMs: 5_000 });
        const lock = lb.newLock(id);
        await within(
          lock.lock(new AbortController().signal, () => {}),
          5_000,
          'the expired lease to be taken',
        );
        assert.equal((await a.renew(id, 'dead-process', 300)).held, false, 'the dead holder has lost it');
        await lock.unlock();
        assert.equal(await a.acquire(id, 'third', 300), true, 'released');
      } finally {
        await close();
      }
    });

    it('a holder keeps its lock past the lease by renewing it', async () => {
      const { a, b, close } = await open();
      try {
        const la = new LeaseLocker(a, { ttlMs: 300, pollMs: 20 });
        const id = randomUUID();
        const lock = la.newLock(id);
        await lock.lock(new AbortController().signal, () => {});
        const t = Date.now();
        // Tried repeatedly for three leases: never free.
        while (Date.now() - t < 900) {
          assert.equal(await b.acquire(id, 'intruder', 300), false, 'renewed, so never free');
          await new Promise((r) => setTimeout(r, 50));
        }
        await lock.unlock();
      } finally {
        await close();
      }
    });

    it('a waiter gives up with tus ERR_LOCK_TIMEOUT when the holder does not let go', async () => {
      const { a, b, close } = await open();
      try {
        const id = randomUUID();
        const la = new LeaseLocker(a, { pollMs: 20 });
        const held = la.newLock(id);
        await held.lock(new AbortController().signal, () => {}); // ignores requests to let go
        const lb = new LeaseLocker(b, { pollMs: 20, acquireTimeoutMs: 200 });
        await assert.rejects(
          lb.newLock(id).lock(new AbortController().signal, () => {}),
          (err) => {
            assert.equal(err, ERRORS.ERR_LOCK_TIMEOUT);
            return true;
          },
        );
        await held.unlock();
      } finally {
        await close();
      }
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

contract('tus lock in SQLite (two connections to one file, as two processes)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'files-tus-lock-'));
  dirs.push(dir);
  const path = join(dir, 'files.db');
  const dbA = new DatabaseSync(path);
  dbA.exec('PRAGMA journal_mode = WAL');
  const dbB = new DatabaseSync(path);
  dbB.exec('PRAGMA busy_timeout = 1000');
  return {
    a: new SqliteLeases(dbA),
    b: new SqliteLeases(dbB),
    async close() {
      dbA.close();
      dbB.close();
    },
  };
});

const skip = await serviceSkip({ redis: REDIS_URL });
if (!skip) {
  contract('tus lock in Redis (two connections, as two machines)', async () => {
    const prefix = `weft-test:tus-lock:${randomUUID()}:`;
    const ra = new Redis(REDIS_URL);
    const rb = new Redis(REDIS_URL);
    return {
      a: new RedisLeases(ra, prefix),
      b: new RedisLeases(rb, prefix),
      async close() {
        const keys = await ra.keys(`${prefix}*`);
        if (keys.length) await ra.del(...keys);
        ra.disconnect();
        rb.disconnect();
      },
    };
  });
}

const pgSkip = await serviceSkip({ postgres: DATABASE_URL });
if (!pgSkip) {
  contract(
    'tus lock in PostgreSQL (two pools, as two machines sharing a database and no Redis)',
    async () => {
      const db = await pgSchema('tuslock');
      const pa = new pg.Pool({ connectionString: db.url, max: 2 });
      const pb = new pg.Pool({ connectionString: db.url, max: 2 });
      return {
        a: new PgLeases(pa),
        b: new PgLeases(pb),
        async close() {
          await Promise.all([pa.end(), pb.end()]);
          await db.cleanup();
        },
      };
    },
  );
}
