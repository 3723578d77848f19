/**
 * The embedded job queue: rows in the shared SQLite database. Every state change is one `UPDATE … WHERE` on the
 * row's current state and lease owner, so two processes can never both complete or both claim a job: SQLite runs
 * one writer at a time, and a process whose lease expired (it was killed, or stalled) finds its `complete` refused.
 */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { GroupCommit, statement, transaction } from '../db.ts';
import {
  afterFailure,
  type ClaimedIds,
  type ClaimOptions,
  ClaimRoom,
  type FailOutcome,
  type FollowUp,
  type FollowUps,
  JOB_STATES,
  type Job,
  type JobCounts,
  type JobFilter,
  type JobKind,
  type JobQueue,
  type JobState,
  STALLED_ERROR,
} from './types.ts';

export interface SqliteQueueOptions {
  leaseMs: number;
  /** First retry delay; doubles per attempt up to `maxRetryDelayMs`, plus up to 20 % jitter. */
  retryDelayMs: number;
  maxRetryDelayMs?: number;
  clock?: () => number;
  random?: () => number;
  /**
   * Makes the commits so far durable (`walSync` of the database): awaited after each write whose outcome is acted
   * on (a job added, completed, failed, released, retried or removed); not after claims and heartbeats, leases that
   * a power cut ends anyway. Default: nothing (the database's own `synchronous` setting decides).
   */
  sync?: () => Promise<void>;
  /**
   * The follow-ups of a processing job dead-lettered by a claim because its process stopped answering on its last
   * attempt (no runner saw it fail), queued in that claim's transaction. Default: none.
   */
  stalledDead?: (job: Job) => FollowUp[];
  /** Tries of a job of `kind`, where its processor sets its own (a plug-in's `maxAttempts`); else `add`'s. */
  attempts?: (kind: JobKind) => number | undefined;
  /**
   * Told, once their transaction committed (and `sync` returned), of the jobs a call made runnable later or now:
   * added (`add`, follow-ups), waiting for a retry, or retried from the dead letters. The RabbitMQ adapter sends a
   * message for each. `addSync` does not tell (its caller's transaction commits later): {@link SqliteQueue.unsent}
   * finds those. Default: nothing.
   */
  announce?: (jobs: readonly Job[]) => void;
}

type Row = Record<string, SQLInputValue>;

function toJob(row: Row): Job {
  return {
    id: Number(row.id),
    fileId: String(row.file_id),
    kind: row.kind as Job['kind'],
    state: row.state as JobState,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    runAt: Number(row.run_at),
    leaseOwner: (row.lease_owner as string | null) ?? null,
    leaseUntil: row.lease_until === null ? null : Number(row.lease_until),
    lastError: (row.last_error as string | null) ?? null,
    errorCode: (row.error_code as string | null) ?? null,
    result: typeof row.result === 'string' ? JSON.parse(row.result) : null,
    payload: typeof row.payload === 'string' ? JSON.parse(row.payload) : null,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    startedAt: row.started_at === null || row.started_at === undefined ? null : Number(row.started_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
  };
}

/** Where a file's processing jobs are meant (webhook deliveries about it are not among them). */
const PROCESSING = "kind <> 'webhook'";

/** The SQLite queue. Its methods are synchronous underneath; they return promises to fit {@link JobQueue}. */
export class SqliteQueue implements JobQueue {
  readonly #db: DatabaseSync;
  readonly #o: Required<SqliteQueueOptions>;
  /** Completions asked for in one turn of the event loop share a transaction (each in a savepoint of its own). */
  readonly #completions: GroupCommit;

  constructor(db: DatabaseSync, options: SqliteQueueOptions) {
    this.#db = db;
    this.#completions = new GroupCommit(db);
    this.#o = {
      maxRetryDelayMs: 300_000,
      clock: Date.now,
      random: Math.random,
      sync: async () => {},
      stalledDead: () => [],
      attempts: () => undefined,
      announce: () => {},
      ...options,
    };
  }

  /** Inserts follow-up jobs; call it inside the transaction that records what they follow. Returns them. */
  #addFollowUps(jobs: readonly FollowUp[], now: number): Job[] {
    if (jobs.length === 0) return [];
    const insert = statement(
      this.#db,
      `INSERT INTO jobs (file_id, kind, state, max_attempts, run_at, created_at, updated_at, payload)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?) RETURNING *`,
    );
    return jobs.map((j) => {
      const payload = j.payload === undefined || j.payload === null ? null : JSON.stringify(j.payload);
      return toJob(insert.get(j.fileId, j.kind, j.maxAttempts, now, now, now, payload) as Row);
    });
  }

  /** Tells `announce` of jobs once their transaction is durable. */
  #announce(jobs: readonly Job[]): void {
    if (jobs.length > 0) this.#o.announce(jobs);
  }

  /** Inserts one queued job per kind for `fileId`; call it inside the upload's transaction. */
  addSync(fileId: string, kinds: readonly Job['kind'][], maxAttempts: number): Job[] {
    const now = this.#o.clock();
    const insert = statement(
      this.#db,
      `INSERT INTO jobs (file_id, kind, state, max_attempts, run_at, created_at, updated_at)
       VALUES (?, ?, 'queued', ?, ?, ?, ?) RETURNING *`,
    );
    return kinds.map((kind) =>
      toJob(insert.get(fileId, kind, this.#o.attempts(kind) ?? maxAttempts, now, now, now) as Row),
    );
  }

  async add(fileId: string, kinds: readonly Job['kind'][], maxAttempts: number): Promise<Job[]> {
    const jobs = transaction(this.#db, () => this.addSync(fileId, kinds, maxAttempts));
    await this.#o.sync();
    this.#announce(jobs);
    return jobs;
  }

  async hasJobs(fileId: string): Promise<boolean> {
    return (
      statement(this.#db, `SELECT 1 FROM jobs WHERE file_id = ? AND ${PROCESSING} LIMIT 1`).get(fileId) !==
      undefined
    );
  }

  async removeForFile(fileId: string): Promise<void> {
    statement(this.#db, `DELETE FROM jobs WHERE file_id = ? AND ${PROCESSING}`).run(fileId);
    await this.#o.sync();
  }

  async waiting(): Promise<number> {
    return this.waitingSync();
  }

  /** `waiting()`, at once. */
  waitingSync(): number {
    const row = statement(
      this.#db,
      "SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'retrying')",
    ).get() as Row;
    return Number(row.n);
  }

  /** The database belongs to the service (the catalog and the bus use it too). */
  async close(): Promise<void> {}

  async claim(owner: string, limit: number, options: ClaimOptions = {}): Promise<Job[]> {
    const room = new ClaimRoom(options.room);
    const full = JSON.stringify(room.full());
    // With kinds of bounded room, more candidates are read than taken, and taken in order while their kind has room.
    const now = this.#o.clock();
    const announced: Job[] = [];
    const claimed = transaction(this.#db, () => {
      // A lease that expired on its last attempt: its process died with it every time. Dead, not retried forever.
      const stalled = statement(
        this.#db,
        `UPDATE jobs SET state = 'dead', error_code = 'ERR_WEFT_FILES_STALLED',
             last_error = :stalled,
             lease_owner = NULL, lease_until = NULL, updated_at = :now, finished_at = :now
           WHERE state = 'active' AND lease_until < :now AND attempts >= max_attempts
           RETURNING *`,
      ).all({ now, stalled: STALLED_ERROR }) as Row[];
      for (const job of stalled.map(toJob)) {
        // A delivery's own death is not followed by another (no webhook about a webhook).
        if (job.kind !== 'webhook') announced.push(...this.#addFollowUps(this.#o.stalledDead(job), now));
      }
      // One ordered walk of the (state, run_at) index per state, each stopping at `scan` rows, merged: a single
      // query with an OR over the states collected and sorted every runnable row, on each claim (4.7 ms a claim
      // with 20,000 jobs queued).
      const candidates = statement(
        this.#db,
        `SELECT id, kind, run_at FROM (
             SELECT id, kind, run_at FROM jobs WHERE state = 'queued' AND run_at <= :now
               AND kind NOT IN (SELECT value FROM json_each(:full)) ORDER BY run_at, id LIMIT :scan)
           UNION ALL SELECT id, kind, run_at FROM (
             SELECT id, kind, run_at FROM jobs WHERE state = 'retrying' AND run_at <= :now
               AND kind NOT IN (SELECT value FROM json_each(:full)) ORDER BY run_at, id LIMIT :scan)
           UNION ALL SELECT id, kind, run_at FROM (
             SELECT id, kind, run_at FROM jobs WHERE state = 'active' AND lease_until < :now
               AND kind NOT IN (SELECT value FROM json_each(:full)) ORDER BY run_at, id LIMIT :scan)
           ORDER BY run_at, id LIMIT :scan`,
      ).all({ now, full, scan: room.bounded ? limit * 4 + 16 : limit }) as { id: number; kind: string }[];
      const ids: number[] = [];
      for (const c of candidates) {
        if (ids.length >= limit) break;
        if (room.take(c.kind)) ids.push(c.id);
      }
      const rows = statement(
        this.#db,
        `UPDATE jobs SET state = 'active', attempts = attempts + 1, lease_owner = :owner,
             lease_until = :until, updated_at = :now, started_at = :now
           WHERE id IN (SELECT value FROM json_each(:ids))
           RETURNING *`,
      ).all({ owner, until: now + this.#o.leaseMs, now, ids: JSON.stringify(ids) });
      return (rows as Row[]).map(toJob).sort((a, b) => a.id - b.id);
    });
    this.#announce(announced);
    return claimed;
  }

  /**
   * Leases to `owner` those of `ids` that are runnable now (queued, a retry that is due, or active under a lease that
   * expired), within `room`; the RabbitMQ adapter calls it with the ids its messages named. A job whose lease expired
   * on its last attempt is dead-lettered instead, with `stalledDead`'s follow-ups.
   */
  claimIds(owner: string, ids: readonly number[], options: ClaimOptions = {}): ClaimedIds {
    const room = new ClaimRoom(options.room);
    const now = this.#o.clock();
    const out: ClaimedIds = { jobs: [], gone: [], later: [], dead: [] };
    const announced: Job[] = [];
    const read = statement(this.#db, 'SELECT * FROM jobs WHERE id = ?');
    const lease = statement(
      this.#db,
      `UPDATE jobs SET state = 'active', attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?,
         started_at = ?
       WHERE id = ? RETURNING *`,
    );
    const bury = statement(
      this.#db,
      `UPDATE jobs SET state = 'dead', error_code = 'ERR_WEFT_FILES_STALLED', last_error = ?,
         lease_owner = NULL, lease_until = NULL, updated_at = ?, finished_at = ?
       WHERE id = ? RETURNING *`,
    );
    transaction(this.#db, () => {
      for (const id of ids) {
        const row = read.get(id) as Row | undefined;
        const job = row && toJob(row);
        if (!job || job.state === 'completed' || job.state === 'dead') out.gone.push(id);
        else if (job.state === 'active' && (job.leaseUntil ?? 0) >= now) out.later.push(id);
        else if (job.state !== 'active' && job.runAt > now) out.later.push(id);
        else if (job.state === 'active' && job.attempts >= job.maxAttempts) {
          const dead = toJob(bury.get(STALLED_ERROR, now, now, id) as Row);
          if (dead.kind !== 'webhook') announced.push(...this.#addFollowUps(this.#o.stalledDead(dead), now));
          out.dead.push(id);
        } else if (!room.take(job.kind)) out.later.push(id);
        else out.jobs.push(toJob(lease.get(owner, now + this.#o.leaseMs, now, now, id) as Row));
      }
    });
    this.#announce(announced);
    return out;
  }

  /**
   * Jobs a message should announce and none does: queued or waiting for a retry with no message sent for that
   * state for `graceMs` (a process stopped between its commit and its message), and active under a lease expired
   * since the last message (its process holds the message and stopped answering).
   */
  unsent(graceMs: number, limit = 500): Job[] {
    const now = this.#o.clock();
    return (
      statement(
        this.#db,
        `SELECT * FROM jobs
           WHERE (state IN ('queued', 'retrying') AND sent_at IS NULL AND updated_at < :old)
              OR (state = 'active' AND lease_until < :now AND (sent_at IS NULL OR sent_at < lease_until))
           ORDER BY id LIMIT :limit`,
      ).all({ old: now - graceMs, now, limit }) as Row[]
    ).map(toJob);
  }

  /** Records that a message announces each of these jobs now. */
  markSent(ids: readonly number[]): void {
    if (ids.length === 0) return;
    statement(this.#db, 'UPDATE jobs SET sent_at = ? WHERE id IN (SELECT value FROM json_each(?))').run(
      this.#o.clock(),
      JSON.stringify(ids),
    );
  }

  async heartbeat(owner: string, ids: number[]): Promise<number[]> {
    if (ids.length === 0) return [];
    const now = this.#o.clock();
    const extend = statement(
      this.#db,
      `UPDATE jobs SET lease_until = ?, updated_at = ? WHERE id = ? AND lease_owner = ? AND state = 'active'`,
    );
    return transaction(this.#db, () =>
      ids.filter((id) => extend.run(now + this.#o.leaseMs, now, id, owner).changes === 0),
    );
  }

  async complete(job: Job, owner: string, result: unknown, then?: FollowUps): Promise<boolean> {
    const now = this.#o.clock();
    // With follow-ups, one transaction: whether this was the file's last job is read where no other completion can
    // interleave, and the follow-ups are recorded with the completion or not at all.
    const announced: Job[] = [];
    const record = () => {
      const { changes } = statement(
        this.#db,
        `UPDATE jobs SET state = 'completed', result = ?, lease_owner = NULL, lease_until = NULL,
             last_error = NULL, error_code = NULL, updated_at = ?, finished_at = ?
           WHERE id = ? AND lease_owner = ? AND state = 'active'`,
      ).run(JSON.stringify(result ?? null), now, now, job.id, owner);
      if (changes === 1 && then?.next) announced.push(...this.#addFollowUps(then.next, now));
      if (changes !== 1 || !then?.processed || job.kind === 'webhook') return changes === 1;
      const jobs = (
        statement(this.#db, `SELECT * FROM jobs WHERE file_id = ? AND ${PROCESSING} ORDER BY id`).all(
          job.fileId,
        ) as Row[]
      ).map(toJob);
      if (jobs.every((j) => j.state === 'completed'))
        announced.push(...this.#addFollowUps(then.processed(jobs), now));
      return true;
    };
    const done = await this.#completions.run(record);
    await this.#o.sync();
    this.#announce(announced);
    return done;
  }

  async fail(
    job: Job,
    owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
    then?: FollowUps,
  ): Promise<FailOutcome> {
    const now = this.#o.clock();
    const { dead, delayMs } = afterFailure(job, permanent, this.#o);
    const runAt = dead ? job.runAt : now + delayMs;
    const announced: Job[] = [];
    const record = () => {
      const { changes } = statement(
        this.#db,
        `UPDATE jobs SET state = ?, run_at = ?, last_error = ?, error_code = ?, lease_owner = NULL,
             lease_until = NULL, updated_at = ?, finished_at = ?, sent_at = NULL
           WHERE id = ? AND lease_owner = ? AND state = 'active'`,
      ).run(
        dead ? 'dead' : 'retrying',
        runAt,
        error.message,
        error.code ?? null,
        now,
        dead ? now : null,
        job.id,
        owner,
      );
      if (changes === 1 && dead && then?.dead && job.kind !== 'webhook') {
        announced.push(...this.#addFollowUps(then.dead, now));
      }
      if (changes === 1 && !dead) announced.push({ ...job, state: 'retrying', runAt });
      return changes;
    };
    const changes = then ? transaction(this.#db, record) : record();
    await this.#o.sync();
    this.#announce(announced);
    if (changes === 0) return 'lost';
    return dead ? 'dead' : 'retrying';
  }

  async release(job: Job, owner: string): Promise<boolean> {
    const now = this.#o.clock();
    const { changes } = statement(
      this.#db,
      `UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_at = ?, lease_owner = NULL,
           lease_until = NULL, updated_at = ?
         WHERE id = ? AND lease_owner = ? AND state = 'active'`,
    ).run(now, now, job.id, owner);
    await this.#o.sync();
    return changes === 1;
  }

  async retry(id: number): Promise<Job | undefined> {
    const now = this.#o.clock();
    const row = statement(
      this.#db,
      `UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?, last_error = NULL, error_code = NULL,
           finished_at = NULL, updated_at = ?, sent_at = NULL
         WHERE id = ? AND state = 'dead' RETURNING *`,
    ).get(now, now, id) as Row | undefined;
    await this.#o.sync();
    const job = row ? toJob(row) : undefined;
    if (job) this.#announce([job]);
    return job;
  }

  async get(id: number): Promise<Job | undefined> {
    const row = statement(this.#db, 'SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  async list(filter: JobFilter): Promise<Job[]> {
    const where: string[] = [];
    const params: Record<string, SQLInputValue> = { limit: filter.limit ?? 100 };
    if (filter.state) {
      where.push('state = :state');
      params.state = filter.state;
    }
    if (filter.fileId) {
      where.push(`file_id = :fileId AND ${PROCESSING}`);
      params.fileId = filter.fileId;
    }
    if (filter.kind) {
      where.push('kind = :kind');
      params.kind = filter.kind;
    }
    if (filter.before !== undefined) {
      where.push('id < :before');
      params.before = filter.before;
    }
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT :limit`;
    return (statement(this.#db, sql).all(params) as Row[]).map(toJob);
  }

  async counts(filter: { kind?: JobKind } = {}): Promise<JobCounts> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobCounts;
    const rows = (
      filter.kind
        ? statement(this.#db, 'SELECT state, count(*) AS n FROM jobs WHERE kind = ? GROUP BY state').all(
            filter.kind,
          )
        : statement(this.#db, 'SELECT state, count(*) AS n FROM jobs GROUP BY state').all()
    ) as Row[];
    for (const r of rows) counts[r.state as JobState] = Number(r.n);
    return counts;
  }
}
