/**
 * The lock tus uploads need across processes and machines: `@tus/server` locks an upload while a request writes to
 * it, and its own `MemoryLocker` only excludes requests of one process. Here a lock is a lease in a store every
 * node sees (the embedded SQLite database for the processes of one machine, Redis when the queue is on Redis):
 * taken when free or expired, renewed while held, released at the end. A request that finds the upload locked asks
 * the holder to let go (tus's "request release": a client that lost its connection and resumed must not wait for
 * the stale request's socket to time out); the holder sees the request within a poll and cancels its request.
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import type { Redis } from 'ioredis';

/** Where leases live. Every method is one atomic step of the store. */
export interface LeaseBackend {
  /** Takes the lease of `id` for `owner` when it is free or expired; true when `owner` holds it now. */
  acquire(id: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends `owner`'s lease; `held: false` when it lost it (expired and taken). */
  renew(id: string, owner: string, ttlMs: number): Promise<{ held: boolean; releaseRequested: boolean }>;
  /** Whether another request asked `owner` to let go (a read; cheaper than a renewal). */
  releaseRequested(id: string, owner: string): Promise<boolean>;
  /** Asks the holder of `id` to let go. */
  requestRelease(id: string): Promise<void>;
  /** Gives the lease back when `owner` holds it. */
  release(id: string, owner: string): Promise<void>;
}

/** Leases in the embedded SQLite database: one row per held upload. */
export class SqliteLeases implements LeaseBackend {
  // Prepared once: a held lock is polled every `pollMs` for as long as its upload is written.
  readonly #acquire: StatementSync;
  readonly #renew: StatementSync;
  readonly #asked: StatementSync;
  readonly #requestRelease: StatementSync;
  readonly #release: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(`CREATE TABLE IF NOT EXISTS tus_locks (
      id TEXT PRIMARY KEY,
      owner TEXT NOT NULL,
      until INTEGER NOT NULL,
      release_requested INTEGER NOT NULL DEFAULT 0
    )`);
    this.#acquire = db.prepare(
      `INSERT INTO tus_locks (id, owner, until) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until = excluded.until, release_requested = 0
       WHERE tus_locks.until < ?`,
    );
    this.#renew = db.prepare(
      'UPDATE tus_locks SET until = ? WHERE id = ? AND owner = ? RETURNING release_requested',
    );
    this.#asked = db.prepare('SELECT release_requested FROM tus_locks WHERE id = ? AND owner = ?');
    this.#requestRelease = db.prepare('UPDATE tus_locks SET release_requested = 1 WHERE id = ?');
    this.#release = db.prepare('DELETE FROM tus_locks WHERE id = ? AND owner = ?');
  }

  async acquire(id: string, owner: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    return Number(this.#acquire.run(id, owner, now + ttlMs, now).changes) === 1;
  }

  async renew(id: string, owner: string, ttlMs: number) {
    const row = this.#renew.get(Date.now() + ttlMs, id, owner);
    return { held: row !== undefined, releaseRequested: Number(row?.release_requested) === 1 };
  }

  async releaseRequested(id: string, owner: string): Promise<boolean> {
    return Number(this.#asked.get(id, owner)?.release_requested) === 1;
  }

  async requestRelease(id: string): Promise<void> {
    this.#requestRelease.run(id);
  }

  async release(id: string, owner: string): Promise<void> {
    this.#release.run(id, owner);
  }
}

/** Extends the lease when `owner` holds it: 0 not held, 1 held, 2 held and asked to let go. */
const RENEW = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1 + redis.call('exists', KEYS[2])
end
return 0`;

const RELEASE = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2])
end
return 0`;

/** Leases in Redis: `<prefix><id>` holds the owner (with the lease as its TTL), `<prefix><id>:release` the ask. */
export class RedisLeases implements LeaseBackend {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #keys(id: string): [string, string] {
    return [`${this.#prefix}${id}`, `${this.#prefix}${id}:release`];
  }

  async acquire(id: string, owner: string, ttlMs: number): Promise<boolean> {
    const [key, release] = this.#keys(id);
    const ok = await this.#redis.set(key, owner, 'PX', ttlMs, 'NX');
    if (ok === 'OK') await this.#redis.del(release);
    return ok === 'OK';
  }

  async renew(id: string, owner: string, ttlMs: number) {
    const n = Number(await this.#redis.eval(RENEW, 2, ...this.#keys(id), owner, ttlMs));
    return { held: n > 0, releaseRequested: n === 2 };
  }

  async releaseRequested(id: string, _owner: string): Promise<boolean> {
    return (await this.#redis.exists(this.#keys(id)[1])) === 1;
  }

  async requestRelease(id: string): Promise<void> {
    await this.#redis.set(this.#keys(id)[1], '1', 'PX', 60_000);
  }

  async release(id: string, owner: string): Promise<void> {
    await this.#redis.eval(RELEASE, 2, ...this.#keys(id), owner);
  }
}

export interface LeaseLockerOptions {
  /** How long a lease lasts without renewal, ms: a crashed holder's lock frees itself after this. Default 10 000. */
  ttlMs?: number;
  /** How often a holder looks for a release request, ms (and a waiter tries again). Default 200. */
  pollMs?: number;
  /** How long `lock` waits before failing with tus's `ERR_LOCK_TIMEOUT` (a 500 the client retries). Default 30 000. */
  acquireTimeoutMs?: number;
  /** Told when a renewal or release fails (the store is unreachable). */
  onError?: (err: unknown) => void;
}

/**
 * A tus `Locker` over a {@link LeaseBackend}. Locks of this process are also known locally, so a request of the same
 * process asks the holder to let go at once, without waiting for its poll.
 *
 * @example
 * ```ts
 * const server = new Server({ path: '/uploads', datastore, locker: new LeaseLocker(new SqliteLeases(db)) });
 * ```
 */
export class LeaseLocker implements Locker {
  readonly backend: LeaseBackend;
  readonly ttlMs: number;
  readonly pollMs: number;
  readonly acquireTimeoutMs: number;
  readonly onError: (err: unknown) => void;
  /** Locks held by this process: id → the holder's release callback. */
  readonly local = new Map<string, RequestRelease>();

  constructor(backend: LeaseBackend, options: LeaseLockerOptions = {}) {
    this.backend = backend;
    this.ttlMs = options.ttlMs ?? 10_000;
    this.pollMs = options.pollMs ?? 200;
    this.acquireTimeoutMs = options.acquireTimeoutMs ?? 30_000;
    this.onError = options.onError ?? (() => {});
  }

  newLock(id: string): Lock {
    return new LeaseLock(this, id);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

class LeaseLock implements Lock {
  readonly #locker: LeaseLocker;
  readonly #id: string;
  readonly #owner = randomUUID();
  #timer: NodeJS.Timeout | undefined;
  #held = false;

  constructor(locker: LeaseLocker, id: string) {
    this.#locker = locker;
    this.#id = id;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const { backend, ttlMs, pollMs, acquireTimeoutMs, local } = this.#locker;
    const deadline = Date.now() + acquireTimeoutMs;
    let asked = false;
    while (!(await backend.acquire(this.#id, this.#owner, ttlMs))) {
      if (signal.aborted || Date.now() >= deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      if (!asked) {
        asked = true;
        await local.get(this.#id)?.();
        await backend.requestRelease(this.#id);
      }
      await pause(pollMs, signal);
    }
    this.#held = true;
    local.set(this.#id, requestRelease);
    let released = false;
    let lastRenewal = Date.now();
    let busy = false;
    const letGo = () => {
      if (released) return;
      released = true;
      void requestRelease();
    };
    // Renews at a third of the lease, and looks for a release request at every poll in between.
    this.#timer = setInterval(() => {
      if (busy || !this.#held) return;
      busy = true;
      const renew = Date.now() - lastRenewal >= ttlMs / 3;
      const step = renew
        ? backend.renew(this.#id, this.#owner, ttlMs).then(({ held, releaseRequested }) => {
            lastRenewal = Date.now();
            // A lease lost (the store was away longer than the lease) may already be another request's: stop.
            if (!held || releaseRequested) letGo();
          })
        : backend.releaseRequested(this.#id, this.#owner).then((asked) => {
            if (asked) letGo();
          });
      step.catch(this.#locker.onError).finally(() => {
        busy = false;
      });
    }, pollMs);
    this.#timer.unref();
  }

  async unlock(): Promise<void> {
    clearInterval(this.#timer);
    if (!this.#held) return;
    this.#held = false;
    const { local, backend } = this.#locker;
    local.delete(this.#id);
    try {
      await backend.release(this.#id, this.#owner);
    } catch (err) {
      // The lease expires by itself.
      this.#locker.onError(err);
    }
  }
}
