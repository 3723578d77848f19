/**
 * The jobs' state in PostgreSQL (`weft_jobs` in the connection's schema): the store the RabbitMQ adapter keeps its
 * jobs in when the service spans machines (`QUEUE_URL=amqp://…` with `DATABASE_URL`). The same rows and state changes
 * as the SQLite queue's (queue/sqlite.ts), on the database's clock, so leases mean the same on every node whatever
 * their own clocks say. Every change is one statement conditioned on the row's state and lease owner, or one
 * transaction where it reads first (a completion that may be its file's last locks the file's jobs, so two nodes
 * completing a file's last two jobs at once cannot both miss that the file is processed). The completions asked for in
 * one turn that queue nothing are one statement for all of them (`#completeGroup`).
 */
import type pg from 'pg';
import { openPgPool, schemaReady, transaction } from '../pg-pool.ts';
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
  type JobState,
  type JobStore,
  STALLED_ERROR,
} from './types.ts';

export interface PgJobStoreOptions {
  leaseMs: number;
  /** First retry delay; doubles per attempt up to `maxRetryDelayMs`, plus up to 20 % jitter. */
  retryDelayMs: number;
  maxRetryDelayMs?: number;
  random?: () => number;
  /** Follow-ups of a processing job dead-lettered because its process stopped answering on its last attempt. */
  stalledDead?: (job: Job) => FollowUp[];
  /** Tries of a job of `kind`, where its processor sets its own; else `add`'s. */
  attempts?: (kind: JobKind) => number | undefined;
  /** Told of the jobs a call made runnable, once committed (see `SqliteQueueOptions.announce`). */
  announce?: (jobs: readonly Job[]) => void;
  /** Longest one query may wait for its answer, ms. Default: none. */
  queryTimeoutMs?: number;
  /** Connections in the pool. Default 4. */
  max?: number;
}

/** The database's clock in epoch ms. */
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
const PROCESSING = "kind <> 'webhook'";

/** The columns a completion sets, its result (JSON text) being `result`. */
const completedSet = (result: string) =>
  `state = 'completed', result = ${result}, lease_owner = NULL, lease_until = NULL, last_error = NULL,
   error_code = NULL, updated_at = ${NOW_MS}, finished_at = ${NOW_MS}`;

/** The columns a lease sets: `$2` is its owner, `$3` its length in ms. */
const LEASED_SET = `state = 'active', attempts = attempts + 1, lease_owner = $2, lease_until = ${NOW_MS} + $3,
   updated_at = ${NOW_MS}, started_at = ${NOW_MS}`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS weft_jobs (
  id           bigserial PRIMARY KEY,
  file_id      text NOT NULL,
  kind         text NOT NULL,
  state        text NOT NULL,
  attempts     integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL,
  run_at       bigint NOT NULL,
  lease_owner  text,
  lease_until  bigint,
  last_error   text,
  error_code   text,
  result       text,
  payload      text,
  created_at   bigint NOT NULL,
  updated_at   bigint NOT NULL,
  started_at   bigint,
  finished_at  bigint,
  sent_at      bigint
);
CREATE INDEX IF NOT EXISTS weft_jobs_ready ON weft_jobs (state, run_at);
CREATE INDEX IF NOT EXISTS weft_jobs_file ON weft_jobs (file_id);
`;

interface Row {
  id: string;
  file_id: string;
  kind: string;
  state: string;
  attempts: number;
  max_attempts: number;
  run_at: string;
  lease_owner: string | null;
  lease_until: string | null;
  last_error: string | null;
  error_code: string | null;
  result: string | null;
  payload: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  now?: string;
}

const num = (v: string | null): number | null => (v === null ? null : Number(v));

function toJob(r: Row): Job {
  return {
    id: Number(r.id),
    fileId: r.file_id,
    kind: r.kind,
    state: r.state as JobState,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    runAt: Number(r.run_at),
    leaseOwner: r.lease_owner,
    leaseUntil: num(r.lease_until),
    lastError: r.last_error,
    errorCode: r.error_code,
    result: r.result === null ? null : JSON.parse(r.result),
    payload: r.payload === null ? null : JSON.parse(r.payload),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    startedAt: num(r.started_at),
    finishedAt: num(r.finished_at),
  };
}

type Queryable = Pick<pg.PoolClient, 'query'>;

interface GroupedCompletion {
  id: number;
  owner: string;
  /** JSON. */
  result: string;
  resolve(done: boolean): void;
  reject(err: unknown): void;
}

/** The jobs in PostgreSQL; every method is one round trip or one transaction. */
export class PgJobStore implements JobStore {
  readonly #pool: pg.Pool;
  readonly #o: Required<Omit<PgJobStoreOptions, 'queryTimeoutMs' | 'max'>>;
  /** Completions that queue nothing, waiting for this turn's statement. */
  #completions: GroupedCompletion[] = [];
  #closed: Promise<void> | undefined;

  private constructor(pool: pg.Pool, options: PgJobStoreOptions) {
    this.#pool = pool;
    this.#o = {
      maxRetryDelayMs: 300_000,
      random: Math.random,
      stalledDead: () => [],
      attempts: () => undefined,
      announce: () => {},
      ...options,
    };
  }

  /** Connects to `url` and creates `weft_jobs` if it does not exist; `ERR_WEFT_FILES_DATABASE` when it cannot connect. */
  static async open(url: string, options: PgJobStoreOptions): Promise<PgJobStore> {
    const pool = await openPgPool(url, SCHEMA, {
      ...(options.max !== undefined ? { max: options.max } : {}),
      ...(options.queryTimeoutMs !== undefined ? { queryTimeoutMs: options.queryTimeoutMs } : {}),
      applicationName: 'weft-files-jobs',
      purpose: 'for the jobs',
      ready: schemaReady(['weft_jobs', 'weft_jobs_ready', 'weft_jobs_file']),
    });
    return new PgJobStore(pool, options);
  }

  #tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T> {
    return transaction(this.#pool, fn);
  }

  #announce(jobs: readonly Job[]): void {
    if (jobs.length > 0) this.#o.announce(jobs);
  }

  async #insert(
    c: Queryable,
    jobs: readonly { fileId: string; kind: string; maxAttempts: number; payload?: unknown }[],
  ): Promise<Job[]> {
    if (jobs.length === 0) return [];
    const { rows } = await c.query<Row>(
      `INSERT INTO weft_jobs (file_id, kind, state, max_attempts, run_at, created_at, updated_at, payload)
       SELECT f, k, 'queued', m, ${NOW_MS}, ${NOW_MS}, ${NOW_MS}, p
       FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) WITH ORDINALITY AS t(f, k, m, p, n)
       ORDER BY n
       RETURNING *`,
      [
        jobs.map((j) => j.fileId),
        jobs.map((j) => j.kind),
        jobs.map((j) => j.maxAttempts),
        jobs.map((j) => (j.payload === undefined || j.payload === null ? null : JSON.stringify(j.payload))),
      ],
    );
    return rows.map(toJob).sort((a, b) => a.id - b.id);
  }

  async add(fileId: string, kinds: readonly JobKind[], maxAttempts: number): Promise<Job[]> {
    const jobs = await this.#insert(
      this.#pool,
      kinds.map((kind) => ({ fileId, kind, maxAttempts: this.#o.attempts(kind) ?? maxAttempts })),
    );
    this.#announce(jobs);
    return jobs;
  }

  async hasJobs(fileId: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `SELECT 1 FROM weft_jobs WHERE file_id = $1 AND ${PROCESSING} LIMIT 1`,
      [fileId],
    );
    return (rowCount ?? 0) > 0;
  }

  async removeForFile(fileId: string): Promise<void> {
    await this.#pool.query(`DELETE FROM weft_jobs WHERE file_id = $1 AND ${PROCESSING}`, [fileId]);
  }

  async waiting(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM weft_jobs WHERE state IN ('queued', 'retrying')",
    );
    return Number(rows[0]!.n);
  }

  async heartbeat(owner: string, ids: number[]): Promise<number[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.#pool.query<{ id: string }>(
      `UPDATE weft_jobs SET lease_until = ${NOW_MS} + $3, updated_at = ${NOW_MS}
       WHERE id = ANY($1::bigint[]) AND lease_owner = $2 AND state = 'active' RETURNING id`,
      [ids, owner, this.#o.leaseMs],
    );
    const kept = new Set(rows.map((r) => Number(r.id)));
    return ids.filter((id) => !kept.has(id));
  }

  async complete(job: Job, owner: string, result: unknown, then?: FollowUps): Promise<boolean> {
    const processed = then?.processed !== undefined && job.kind !== 'webhook';
    if (!processed && (then?.next?.length ?? 0) === 0)
      return this.#completeGrouped({ id: job.id, owner, result: JSON.stringify(result ?? null) });
    const announced: Job[] = [];
    const done = await this.#tx(async (c) => {
      // The file's jobs, locked: a completion on another node waits here, then sees this one's.
      if (then?.processed && job.kind !== 'webhook') {
        await c.query(
          `SELECT id FROM weft_jobs WHERE file_id = $1 AND ${PROCESSING} ORDER BY id FOR UPDATE`,
          [job.fileId],
        );
      }
      const { rowCount } = await c.query(
        `UPDATE weft_jobs SET ${completedSet('$1')}
         WHERE id = $2 AND lease_owner = $3 AND state = 'active'`,
        [JSON.stringify(result ?? null), job.id, owner],
      );
      if (rowCount !== 1) return false;
      if (then?.next) announced.push(...(await this.#insert(c, then.next)));
      if (!then?.processed || job.kind === 'webhook') return true;
      const { rows } = await c.query<Row>(
        `SELECT * FROM weft_jobs WHERE file_id = $1 AND ${PROCESSING} ORDER BY id`,
        [job.fileId],
      );
      const jobs = rows.map(toJob);
      if (jobs.every((j) => j.state === 'completed'))
        announced.push(...(await this.#insert(c, then.processed(jobs))));
      return true;
    });
    this.#announce(announced);
    return done;
  }

  /**
   * A completion that queues nothing: those asked for in one turn of the event loop are made by one `UPDATE … FROM
   * unnest(…)`, one round trip and one commit (one WAL flush) for all of them. A statement is atomic, and each row
   * is matched on its own lease, so a completion refused (not its owner's, finished already) does not hold up the
   * others. A second completion of the same job in one turn waits for the next statement, where it is refused.
   */
  #completeGrouped(c: { id: number; owner: string; result: string }): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#completions.push({ ...c, resolve, reject });
      if (this.#completions.length === 1) setImmediate(() => void this.#completeGroup());
    });
  }

  async #completeGroup(): Promise<void> {
    const pending = this.#completions.splice(0);
    const seen = new Set<number>();
    const group: GroupedCompletion[] = [];
    const again: GroupedCompletion[] = [];
    for (const c of pending) {
      if (seen.has(c.id)) again.push(c);
      else {
        seen.add(c.id);
        group.push(c);
      }
    }
    try {
      const { rows } = await this.#pool.query<{ id: string }>(
        `UPDATE weft_jobs AS j SET ${completedSet('v.result')}
         FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, owner, result)
         WHERE j.id = v.id AND j.lease_owner = v.owner AND j.state = 'active'
         RETURNING j.id`,
        [group.map((c) => c.id), group.map((c) => c.owner), group.map((c) => c.result)],
      );
      const done = new Set(rows.map((r) => Number(r.id)));
      for (const c of group) c.resolve(done.has(c.id));
    } catch (err) {
      for (const c of group) c.reject(err);
    }
    for (const c of again) this.#completeGrouped(c).then(c.resolve, c.reject);
  }

  async fail(
    job: Job,
    owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
    then?: FollowUps,
  ): Promise<FailOutcome> {
    const { dead, delayMs: delay } = afterFailure(job, permanent, this.#o);
    const announced: Job[] = [];
    const changed = await this.#tx(async (c) => {
      const { rows } = await c.query<Row>(
        `UPDATE weft_jobs SET state = $1, run_at = CASE WHEN $2 THEN run_at ELSE ${NOW_MS} + $3 END,
           last_error = $4, error_code = $5, lease_owner = NULL, lease_until = NULL, updated_at = ${NOW_MS},
           finished_at = CASE WHEN $2 THEN ${NOW_MS} END, sent_at = NULL
         WHERE id = $6 AND lease_owner = $7 AND state = 'active' RETURNING *`,
        [dead ? 'dead' : 'retrying', dead, delay, error.message, error.code ?? null, job.id, owner],
      );
      const row = rows[0];
      if (!row) return false;
      if (dead && then?.dead && job.kind !== 'webhook') announced.push(...(await this.#insert(c, then.dead)));
      if (!dead) announced.push(toJob(row));
      return true;
    });
    this.#announce(announced);
    if (!changed) return 'lost';
    return dead ? 'dead' : 'retrying';
  }

  async release(job: Job, owner: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `UPDATE weft_jobs SET state = 'queued', attempts = attempts - 1, run_at = ${NOW_MS}, lease_owner = NULL,
         lease_until = NULL, updated_at = ${NOW_MS}
       WHERE id = $1 AND lease_owner = $2 AND state = 'active'`,
      [job.id, owner],
    );
    return rowCount === 1;
  }

  async retry(id: number): Promise<Job | undefined> {
    const { rows } = await this.#pool.query<Row>(
      `UPDATE weft_jobs SET state = 'queued', attempts = 0, run_at = ${NOW_MS}, last_error = NULL, error_code = NULL,
         finished_at = NULL, updated_at = ${NOW_MS}, sent_at = NULL
       WHERE id = $1 AND state = 'dead' RETURNING *`,
      [id],
    );
    const job = rows[0] && toJob(rows[0]);
    if (job) this.#announce([job]);
    return job;
  }

  async get(id: number): Promise<Job | undefined> {
    if (!Number.isSafeInteger(id)) return undefined;
    const { rows } = await this.#pool.query<Row>('SELECT * FROM weft_jobs WHERE id = $1', [id]);
    return rows[0] && toJob(rows[0]);
  }

  async list(filter: JobFilter): Promise<Job[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (filter.state) where.push(`state = ${param(filter.state)}`);
    if (filter.fileId) where.push(`file_id = ${param(filter.fileId)} AND ${PROCESSING}`);
    if (filter.kind) where.push(`kind = ${param(filter.kind)}`);
    if (filter.before !== undefined) where.push(`id < ${param(filter.before)}`);
    const sql = `SELECT * FROM weft_jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY id DESC LIMIT ${param(filter.limit ?? 100)}`;
    const { rows } = await this.#pool.query<Row>(sql, params);
    return rows.map(toJob);
  }

  async counts(filter: { kind?: JobKind } = {}): Promise<JobCounts> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobCounts;
    const { rows } = filter.kind
      ? await this.#pool.query<{ state: JobState; n: string }>(
          'SELECT state, count(*) AS n FROM weft_jobs WHERE kind = $1 GROUP BY state',
          [filter.kind],
        )
      : await this.#pool.query<{ state: JobState; n: string }>(
          'SELECT state, count(*) AS n FROM weft_jobs GROUP BY state',
        );
    for (const r of rows) counts[r.state] = Number(r.n);
    return counts;
  }

  async claimIds(owner: string, ids: readonly number[], options: ClaimOptions = {}): Promise<ClaimedIds> {
    const out: ClaimedIds = { jobs: [], gone: [], later: [], dead: [] };
    if (ids.length === 0) return out;
    const room = new ClaimRoom(options.room);
    if (room.bounded) return this.#claimIdsTx(owner, ids, room, out);
    // No kind is bounded: the runnable jobs are leased by one statement (a round trip and a commit), each row on its
    // own state under its row lock, as the transaction below would lease them. What it did not lease (finished, not
    // due, another's live lease, a last attempt whose lease expired) the transaction then sorts out.
    const { rows } = await this.#pool.query<Row>(
      `UPDATE weft_jobs SET ${LEASED_SET}
       WHERE id = ANY($1::bigint[]) AND (
         (state IN ('queued', 'retrying') AND run_at <= ${NOW_MS})
         OR (state = 'active' AND lease_until < ${NOW_MS} AND attempts < max_attempts))
       RETURNING *`,
      [ids, owner, this.#o.leaseMs],
    );
    const leased = new Set<number>();
    for (const job of rows.map(toJob)) {
      leased.add(job.id);
      out.jobs.push(job);
    }
    const rest = ids.filter((id) => !leased.has(id));
    if (rest.length > 0) await this.#claimIdsTx(owner, rest, room, out);
    out.jobs.sort((a, b) => a.id - b.id);
    return out;
  }

  /** `claimIds` in a transaction that reads the jobs first: for bounded kinds, and for what one statement left. */
  async #claimIdsTx(
    owner: string,
    ids: readonly number[],
    room: ClaimRoom,
    out: ClaimedIds,
  ): Promise<ClaimedIds> {
    const announced: Job[] = [];
    await this.#tx(async (c) => {
      const { rows } = await c.query<Row>(
        `SELECT *, ${NOW_MS} AS now FROM weft_jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
        [ids],
      );
      const byId = new Map(rows.map((r) => [Number(r.id), r]));
      const lease: number[] = [];
      const bury: number[] = [];
      for (const id of ids) {
        const row = byId.get(id);
        const job = row && toJob(row);
        const now = Number(row?.now ?? 0);
        if (!job || job.state === 'completed' || job.state === 'dead') out.gone.push(id);
        else if (job.state === 'active' && (job.leaseUntil ?? 0) >= now) out.later.push(id);
        else if (job.state !== 'active' && job.runAt > now) out.later.push(id);
        else if (job.state === 'active' && job.attempts >= job.maxAttempts) bury.push(id);
        else if (!room.take(job.kind)) out.later.push(id);
        else lease.push(id);
      }
      if (lease.length > 0) {
        const { rows: leased } = await c.query<Row>(
          `UPDATE weft_jobs SET ${LEASED_SET} WHERE id = ANY($1::bigint[]) RETURNING *`,
          [lease, owner, this.#o.leaseMs],
        );
        out.jobs.push(...leased.map(toJob).sort((a, b) => a.id - b.id));
      }
      if (bury.length > 0) {
        const { rows: buried } = await c.query<Row>(
          `UPDATE weft_jobs SET state = 'dead', error_code = 'ERR_WEFT_FILES_STALLED',
             last_error = $2, lease_owner = NULL, lease_until = NULL, updated_at = ${NOW_MS},
             finished_at = ${NOW_MS}
           WHERE id = ANY($1::bigint[]) RETURNING *`,
          [bury, STALLED_ERROR],
        );
        for (const dead of buried.map(toJob)) {
          out.dead.push(dead.id);
          if (dead.kind !== 'webhook') announced.push(...(await this.#insert(c, this.#o.stalledDead(dead))));
        }
      }
    });
    this.#announce(announced);
    return out;
  }

  async unsent(graceMs: number, limit = 500): Promise<Job[]> {
    const { rows } = await this.#pool.query<Row>(
      `SELECT * FROM weft_jobs
       WHERE (state IN ('queued', 'retrying') AND sent_at IS NULL AND updated_at < ${NOW_MS} - $1)
          OR (state = 'active' AND lease_until < ${NOW_MS} AND (sent_at IS NULL OR sent_at < lease_until))
       ORDER BY id LIMIT $2`,
      [graceMs, limit],
    );
    return rows.map(toJob);
  }

  async markSent(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#pool.query(`UPDATE weft_jobs SET sent_at = ${NOW_MS} WHERE id = ANY($1::bigint[])`, [ids]);
  }

  /** Deletes every job (tests and benchmarks). */
  async clear(): Promise<void> {
    await this.#pool.query('DELETE FROM weft_jobs');
  }

  /** Ends the pool; idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#pool.end().catch(() => {});
    return this.#closed;
  }
}
