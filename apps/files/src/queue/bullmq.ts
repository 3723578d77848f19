/**
 * The job queue on Redis, with BullMQ (`QUEUE_URL=redis://…`): the queue every node of a multi-machine deployment
 * shares. Jobs are fetched by hand (BullMQ's "manually fetching jobs" pattern) rather than by a BullMQ processor, so
 * the runner keeps its own claim loop and runs processors in its `weftjs/pool` threads, not in BullMQ's sandbox, which
 * forks a process per job. What maps onto what:
 *
 * | `JobQueue`        | BullMQ                                                                      |
 * |-------------------|-----------------------------------------------------------------------------|
 * | claim             | `Worker.getNextJob(token, { block: false })` (the job's lock is the lease)   |
 * | heartbeat         | `Worker.extendJobLocks` (the lock's owner is checked by token)               |
 * | complete          | `Job.moveToCompleted` (refused when the lock is lost), fetching the next job |
 * | fail              | `Job.moveToFailed`: `delayed` with our backoff, or `failed` (dead letters)   |
 * | release           | `Job.moveToWait` (no attempt counted)                                         |
 * | stalled recovery  | the worker's stalled checker: a job whose lock expired goes back to `wait`   |
 * | retry (dead)      | `Job.retry('failed', { resetAttemptsMade: true })`                            |
 *
 * Job states map as: waiting/prioritized/paused → `queued`, active → `active`, delayed → `retrying`, completed →
 * `completed`, failed → `dead`. Ids are BullMQ's own (an integer counter in Redis), so they stay numbers.
 *
 * Follow-ups (webhook deliveries) cannot join BullMQ's own scripts: they are added just after the completion or
 * failure they follow, by deduplication key, retried once. A process that dies between the two, or a Redis that
 * fails in between, loses them (the embedded queue records both in one transaction); the job's outcome stands.
 */
import { Job as BullJob, type ConnectionOptions, type JobType, Queue, QueueEvents, Worker } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { FilesError } from '../errors.ts';
import {
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
} from './types.ts';

export interface BullQueueOptions {
  /** `redis://[user:pass@]host:port[/db][?queue=name&prefix=bull]`. */
  url: string;
  /** A job's lease: the lock's duration; a lock not extended for this long makes the job stalled. */
  leaseMs: number;
  /** First retry delay; doubles per attempt up to `maxRetryDelayMs`, plus up to 20 % jitter (as the embedded queue). */
  retryDelayMs: number;
  maxRetryDelayMs?: number;
  /**
   * Longest adding an upload's jobs may take before it fails with `ERR_WEFT_FILES_REDIS` (the jobs then wait in the
   * outbox). Default 5 s.
   */
  /** Tries of a job of `kind`, where its processor sets its own (a plug-in's `maxAttempts`); else `add`'s. */
  /** How long a job claimed over its processor's own concurrency waits, delayed, before it is claimable again. */
  deferMs?: number;
  attempts?: (kind: JobKind) => number | undefined;
  timeoutMs?: number;
  /** How often stalled jobs (their process died) are looked for. Default: `leaseMs`. */
  stalledIntervalMs?: number;
  /**
   * Times a job may stall (its process died holding it) and go back to the queue before it is dead-lettered.
   * Default 2.
   */
  maxStalledCount?: number;
  /** Completed jobs kept for the API and the dashboard. Default 10 000. */
  keepCompleted?: number;
  /**
   * Take the next job in the same round trip that completes one (BullMQ's `fetchNext`), for the next `claim`.
   * Default true.
   */
  prefetch?: boolean;
  /**
   * How long a claimed job may go unnamed by the runner's heartbeats before it is given back as orphaned (a claim
   * abandoned at its deadline that Redis carried out late). Default 1 s.
   */
  orphanGraceMs?: number;
  /**
   * How long an added job stays the answer to adding the same file's job of the same kind again (BullMQ's
   * deduplication key, kept after the job finishes): the window in which a repeated `add` (the outbox relay after
   * an answer was lost) cannot queue it twice. Default 24 h.
   */
  dedupTtlMs?: number;
}

interface Data {
  fileId: string;
  kind: JobKind;
  errorCode?: string;
  /** A follow-up's payload. */
  payload?: unknown;
}

type Bull = BullJob<Data, unknown, JobKind>;

const STATE_OF: Record<string, JobState> = {
  waiting: 'queued',
  wait: 'queued',
  prioritized: 'queued',
  paused: 'queued',
  'waiting-children': 'queued',
  active: 'active',
  delayed: 'retrying',
  completed: 'completed',
  failed: 'dead',
};

const TYPES_OF: Record<JobState, JobType[]> = {
  queued: ['waiting', 'prioritized', 'paused'],
  active: ['active'],
  retrying: ['delayed'],
  completed: ['completed'],
  dead: ['failed'],
};

/**
 * A command connection of its own to `QUEUE_URL`'s Redis, for what shares the queue's Redis (the bus, tus's locks and
 * metadata, the upload rate limit): one retry per command (`maxRetriesPerRequest: 1`) unless `options` says
 * otherwise, errors reported by the commands that fail, and `keyPrefix` (`<prefix>:<queue>:`) for its keys.
 * `close()` quits it (or drops it when Redis is away). With `role`, the connection is named `<keyPrefix><role>`
 * (CLIENT LIST).
 */
export function queueRedis(
  url: string,
  options: RedisOptions = {},
  role?: string,
): { client: Redis; keyPrefix: string; close(): Promise<unknown> } {
  const { connection, name, prefix } = parseQueueUrl(url);
  const keyPrefix = `${prefix}:${name}:`;
  const client = new Redis({
    ...connection,
    maxRetriesPerRequest: 1,
    ...(role === undefined ? {} : { connectionName: `${keyPrefix}${role}` }),
    ...options,
  });
  client.on('error', () => {}); // reported by the command that fails
  return { client, keyPrefix, close: () => client.quit().catch(() => client.disconnect()) };
}

/** Reads `QUEUE_URL`: connection options, the queue's name and key prefix. */
export function parseQueueUrl(url: string): { connection: RedisOptions; name: string; prefix: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FilesError('ERR_WEFT_FILES_CONFIG', 'QUEUE_URL must be a URL like redis://host:6379/0');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new FilesError(
      'ERR_WEFT_FILES_CONFIG',
      `QUEUE_URL must start with redis:// or rediss://, got ${u.protocol}//`,
    );
  }
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) {
    throw new FilesError('ERR_WEFT_FILES_CONFIG', `QUEUE_URL's database must be a number, got ${u.pathname}`);
  }
  return {
    connection: {
      host: u.hostname || '127.0.0.1',
      port: Number(u.port || 6379),
      db,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    },
    name: u.searchParams.get('queue') || 'weft-files',
    prefix: u.searchParams.get('prefix') || 'bull',
  };
}

/** Where the job is held by this process: BullMQ's job object and the lock's token. */
interface Held {
  bull: Bull;
  token: string;
  /** When a claim handed it out (performance.now()); unset while prefetched. */
  claimedAt?: number;
}

/** Default of `orphanGraceMs`. */
const ORPHAN_GRACE_MS = 1_000;

/** Default of `dedupTtlMs`. */
const DEDUP_TTL_MS = 24 * 60 * 60 * 1_000;

/** Default of `keepCompleted`. */
const KEEP_COMPLETED = 10_000;

/**
 * The BullMQ options of every job this queue adds: `attempts` tries with our backoff, the `keepCompleted` newest
 * completed jobs kept (older ones removed at each completion), failed ones kept (the dead letters), and a
 * deduplication key `dedupId` kept `dedupTtlMs` (adding it again meanwhile returns the job already there).
 */
export function jobOptions(
  attempts: number,
  dedupId: string,
  keepCompleted = KEEP_COMPLETED,
  dedupTtlMs = DEDUP_TTL_MS,
) {
  return {
    attempts,
    backoff: { type: 'weft' },
    removeOnComplete: { count: keepCompleted },
    removeOnFail: false,
    deduplication: { id: dedupId, ttl: dedupTtlMs },
  };
}

/** BullMQ's lists (KEYS, in this order) whose jobs {@link COUNT_KIND} counts, and the state each maps to. */
const COUNTED: [string, JobState][] = [
  ['wait', 'queued'],
  ['paused', 'queued'],
  ['prioritized', 'queued'],
  ['waiting-children', 'queued'],
  ['active', 'active'],
  ['delayed', 'retrying'],
  ['completed', 'completed'],
  ['failed', 'dead'],
];

/**
 * Counts the jobs of one name (ARGV[2]) in each list or sorted set of KEYS; ARGV[1] is the jobs' key prefix. BullMQ
 * counts by state only; one script reads every list at once (a consistent count, one round trip). It reads each job
 * of the lists, so its cost grows with them (completed jobs are capped by `keepCompleted`).
 */
const COUNT_KIND = `
local out = {}
for i, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key)['ok']
  local ids = {}
  if t == 'list' then ids = redis.call('LRANGE', key, 0, -1)
  elseif t == 'zset' then ids = redis.call('ZRANGE', key, 0, -1) end
  local n = 0
  for _, id in ipairs(ids) do
    if redis.call('HGET', ARGV[1] .. id, 'name') == ARGV[2] then n = n + 1 end
  end
  out[i] = n
end
return out`;

/**
 * @example
 * ```ts
 * const queue = await BullQueue.open({ url: 'redis://127.0.0.1:6379', leaseMs: 30_000, retryDelayMs: 1_000 });
 * await queue.add(fileId, ['image'], 5);
 * const [job] = await queue.claim('me', 1);
 * await queue.complete(job, 'me', { ok: true });
 * await queue.close();
 * ```
 */
export class BullQueue implements JobQueue {
  readonly name: string;
  readonly #o: Required<Omit<BullQueueOptions, 'url'>>;
  readonly #redis: Redis;
  readonly #queue: Queue<Data, unknown, JobKind>;
  readonly #worker: Worker<Data, unknown, JobKind>;
  readonly #connection: ConnectionOptions;
  readonly #prefix: string;
  readonly #held = new Map<number, Held>();
  /** Jobs taken with `fetchNext` that the next `claim` hands out first. */
  readonly #ready: Held[] = [];
  #events: QueueEvents | undefined;
  #tokens = 0;
  #closing = false;
  #closed: Promise<void> | undefined;

  private constructor(options: BullQueueOptions) {
    const { connection, name, prefix } = parseQueueUrl(options.url);
    this.name = name;
    this.#prefix = prefix;
    this.#o = {
      maxRetryDelayMs: 300_000,
      stalledIntervalMs: options.leaseMs,
      maxStalledCount: 2,
      keepCompleted: KEEP_COMPLETED,
      timeoutMs: 5_000,
      prefetch: true,
      orphanGraceMs: ORPHAN_GRACE_MS,
      dedupTtlMs: DEDUP_TTL_MS,
      attempts: () => undefined,
      deferMs: 250,
      ...options,
    };
    // Reconnect at least once a second: BullMQ's default backs off exponentially to 20 s, so after an outage of a
    // few seconds the queue would stay away for up to 20 s more (the breaker's probe must find it within 5 s).
    const reconnect = { ...connection, retryStrategy: (times: number) => Math.min(100 * times, 1_000) };
    // One connection for this class's own commands; BullMQ opens its own from the options.
    this.#connection = { ...reconnect, maxRetriesPerRequest: null };
    this.#redis = new Redis({ ...reconnect, maxRetriesPerRequest: 2, lazyConnect: true });
    this.#redis.on('error', () => {}); // reported by the command that fails
    const maxDelay = this.#o.maxRetryDelayMs;
    const base = this.#o.retryDelayMs;
    // The Queue's commands answer requests (adding an upload's jobs, listing): they fail fast while Redis is away
    // (no offline queue, one retry) instead of waiting for it forever, as the worker's blocking connection must.
    this.#queue = new Queue(name, {
      connection: {
        ...reconnect,
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        commandTimeout: this.#o.timeoutMs,
      },
      prefix,
    });
    this.#worker = new Worker(name, null, {
      connection: this.#connection,
      prefix,
      autorun: false,
      lockDuration: this.#o.leaseMs,
      stalledInterval: this.#o.stalledIntervalMs,
      maxStalledCount: this.#o.maxStalledCount,
      settings: {
        // The embedded queue's backoff: doubling from `retryDelayMs`, capped, with up to 20 % jitter.
        backoffStrategy: (attemptsMade: number) =>
          Math.round(
            Math.min(maxDelay, base * 2 ** Math.max(0, attemptsMade - 1)) * (1 + 0.2 * Math.random()),
          ),
      },
    });
    // Reported by the command that fails; a listener keeps them from being thrown.
    this.#queue.on('error', () => {});
    this.#worker.on('error', () => {});
  }

  /** Connects, or fails with `ERR_WEFT_FILES_REDIS` when Redis does not answer within `timeoutMs`. */
  static async open(options: BullQueueOptions, timeoutMs = 5_000): Promise<BullQueue> {
    const { connection } = parseQueueUrl(options.url);
    // Redis is asked first, by a connection that does not retry: BullMQ's own connections retry forever, and
    // rejections they leave behind when closed before connecting would surface as unhandled.
    const probe = new Redis({
      ...connection,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: timeoutMs,
    });
    let cause: Error | undefined;
    probe.on('error', (err) => {
      cause = err;
    });
    try {
      await withTimeout(
        probe.connect().then(() => probe.ping()),
        timeoutMs,
      );
    } catch (err) {
      throw new FilesError(
        'ERR_WEFT_FILES_REDIS',
        `Cannot reach Redis at ${connection.host}:${connection.port} for the job queue: ${(cause ?? (err as Error)).message}`,
        { cause: cause ?? err },
      );
    } finally {
      probe.disconnect();
    }
    const queue = new BullQueue(options);
    await Promise.all([
      queue.#redis.connect(),
      queue.#queue.waitUntilReady(),
      queue.#worker.waitUntilReady(),
    ]);
    // Jobs whose process died: their lock expires, the checker puts them back (or dead-letters them).
    void queue.#worker.startStalledCheckTimer().catch(() => {});
    return queue;
  }

  #fileKey(fileId: string): string {
    return `${this.#prefix}:${this.name}:weft-file:${fileId}`;
  }

  /**
   * Fails with `ERR_WEFT_FILES_REDIS` (mapped to `…_QUEUE_UNAVAILABLE` at the port) when Redis does not take the
   * jobs: the upload's jobs then wait in the outbox (outbox.ts). Idempotent per file and kind for `dedupTtlMs`.
   */
  async add(fileId: string, kinds: readonly JobKind[], maxAttempts: number): Promise<Job[]> {
    // A file with nothing to process (a plain text upload) has no jobs; Redis refuses an empty SADD.
    if (kinds.length === 0) return [];
    try {
      // A Redis that accepts the connection but stops answering is bounded here too.
      return await withTimeout(this.#add(fileId, kinds, maxAttempts), this.#o.timeoutMs);
    } catch (err) {
      throw new FilesError(
        'ERR_WEFT_FILES_REDIS',
        `The job queue (Redis) did not take the jobs: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  async #add(fileId: string, kinds: readonly JobKind[], maxAttempts: number): Promise<Job[]> {
    const jobs = (await this.#queue.addBulk(
      kinds.map((kind) => ({
        name: kind,
        data: { fileId, kind },
        // The deduplication key is set in the same script that adds the job (SET NX): adding this file's job of this
        // kind again within the TTL returns the job already there. The outbox relay repeats an add whose answer was
        // lost (a timeout, a crash before the SADD below); ids stay BullMQ's integers, which a custom jobId could not
        // be.
        opts: jobOptions(
          this.#o.attempts(kind) ?? maxAttempts,
          `${fileId}.${kind}`,
          this.#o.keepCompleted,
          this.#o.dedupTtlMs,
        ),
      })),
    )) as Bull[];
    // Which jobs are a file's: for `GET /files/:id`, for deleting a file and for `hasJobs`. Written once every job
    // is in: a file with members had all of its jobs added.
    await this.#redis.sadd(this.#fileKey(fileId), ...jobs.map((j) => j.id!));
    return jobs.map((j) => toJob(j, 'queued'));
  }

  async hasJobs(fileId: string): Promise<boolean> {
    return (await this.#redis.scard(this.#fileKey(fileId))) > 0;
  }

  async removeForFile(fileId: string): Promise<void> {
    const key = this.#fileKey(fileId);
    const ids = await this.#redis.smembers(key);
    const kept: string[] = [];
    for (const id of ids) {
      // An active job is locked and cannot be removed (0): it stays listed here, and the runner running it finds
      // its file gone and calls this again once the job is no longer active.
      if ((await this.#queue.remove(id).catch(() => 0)) === 0) kept.push(id);
    }
    if (kept.length === 0) await this.#redis.del(key);
    else if (kept.length < ids.length) await this.#redis.srem(key, ...ids.filter((id) => !kept.includes(id)));
  }

  async waiting(): Promise<number> {
    const c = await this.#queue.getJobCounts('waiting', 'prioritized', 'paused', 'delayed');
    return Object.values(c).reduce((a, b) => a + b, 0);
  }

  async claim(owner: string, limit: number, options: ClaimOptions = {}): Promise<Job[]> {
    const out: Job[] = [];
    const room = new ClaimRoom(options.room);
    // BullMQ hands out the next job whatever its kind: one of a kind without room is put back, delayed, for a later
    // claim (its attempts unchanged). At most `limit` of them a claim, so a queue of nothing else is not spun.
    let deferred = 0;
    while (out.length < limit && deferred < limit && !this.#closing) {
      let held = this.#ready.shift();
      if (!held) {
        const token = `${owner}:${++this.#tokens}`;
        const bull = (await this.#worker.getNextJob(token, { block: false })) as Bull | undefined;
        if (!bull) break;
        held = { bull, token };
      }
      if (!room.take(held.bull.data.kind)) {
        deferred++;
        await held.bull.moveToDelayed(Date.now() + this.#o.deferMs, held.token);
        continue;
      }
      held.claimedAt = performance.now();
      this.#held.set(Number(held.bull.id), held);
      out.push(toJob(held.bull, 'active', owner, this.#o.leaseMs));
    }
    return out;
  }

  async heartbeat(_owner: string, ids: number[]): Promise<number[]> {
    await this.#releaseOrphans(ids);
    // Prefetched jobs are held too: their locks are kept until a claim hands them out.
    const held = [...new Set([...ids, ...this.#ready.map((h) => Number(h.bull.id))])]
      .map((id) => this.#held.get(id) ?? this.#ready.find((h) => Number(h.bull.id) === id))
      .filter((h): h is Held => h !== undefined);
    const unknown = ids.filter((id) => !this.#held.has(id));
    if (held.length === 0) return unknown;
    const failed = await this.#worker.extendJobLocks(
      held.map((h) => h.bull.id!),
      held.map((h) => h.token),
      this.#o.leaseMs,
    );
    const lost = failed.map(Number);
    for (const id of lost) {
      const i = this.#ready.findIndex((h) => Number(h.bull.id) === id);
      if (i >= 0) this.#ready.splice(i, 1); // another process has it now
    }
    return [...unknown, ...lost.filter((id) => ids.includes(id))];
  }

  /**
   * Gives back the jobs this queue holds that the runner does not run (`running`: the ids its heartbeat names): a
   * claim abandoned at its deadline that Redis carried out late took them, and nobody would run them before their
   * lock expired (`leaseMs`, then BullMQ's stalled check): now they run again at once.
   */
  async #releaseOrphans(running: number[]): Promise<void> {
    const now = performance.now();
    const known = new Set(running);
    for (const [id, held] of this.#held) {
      if (known.has(id) || held.claimedAt === undefined || now - held.claimedAt < this.#o.orphanGraceMs)
        continue;
      this.#held.delete(id);
      await held.bull.moveToWait(held.token).catch(() => {});
    }
  }

  async complete(job: Job, _owner: string, result: unknown, then?: FollowUps): Promise<boolean> {
    if (!(await this.#complete(job, result))) return false;
    // The next steps of the file's chains: its own jobs (in its set), added by the same key as at upload, so a
    // repeat adds nothing; before the check below, so the file is not seen processed while they wait. Tried twice,
    // like the follow-ups; a crash in between loses them as it would a webhook's (see #addFollowUps).
    for (const step of then?.next ?? []) {
      const add = () => withTimeout(this.#add(step.fileId, [step.kind], step.maxAttempts), this.#o.timeoutMs);
      await add()
        .catch(add)
        .catch((err: Error) => {
          throw new FilesError(
            'ERR_WEFT_FILES_REDIS',
            `Job ${job.id} completed, but the next step of its chain (${step.kind}) was not queued: ${err.message}`,
            { cause: err },
          );
        });
    }
    if (then?.processed && job.kind !== 'webhook') {
      // Every process that completes one of the file's jobs looks after its own completion, so whichever is last
      // sees them all completed (two may both see it: the follow-ups' keys make that one job each).
      const jobs = (await this.list({ fileId: job.fileId, limit: 1_000 })).sort((a, b) => a.id - b.id);
      if (jobs.every((j) => j.state === 'completed')) await this.#addFollowUps(then.processed(jobs));
    }
    return true;
  }

  /**
   * Queues follow-up jobs (not in their file's set: they are not its processing jobs). Tried twice: a repeat of an
   * add whose answer was lost finds its deduplication key and adds nothing.
   */
  async #addFollowUps(jobs: readonly FollowUp[]): Promise<void> {
    if (jobs.length === 0) return;
    const add = () =>
      this.#queue.addBulk(
        jobs.map((j) => ({
          name: j.kind,
          data: { fileId: j.fileId, kind: j.kind, payload: j.payload },
          opts: jobOptions(j.maxAttempts, j.key, this.#o.keepCompleted, this.#o.dedupTtlMs),
        })),
      );
    try {
      await withTimeout(add(), this.#o.timeoutMs).catch(() => withTimeout(add(), this.#o.timeoutMs));
    } catch (err) {
      throw new FilesError(
        'ERR_WEFT_FILES_REDIS',
        `The outcome of the job was recorded, but its follow-up jobs (webhooks) were not queued: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  async #complete(job: Job, result: unknown): Promise<boolean> {
    const held = this.#held.get(job.id);
    if (!held) return false;
    this.#held.delete(job.id);
    const fetchNext = this.#o.prefetch && !this.#closing;
    let next: unknown;
    try {
      next = await held.bull.moveToCompleted(result ?? null, held.token, fetchNext);
    } catch (err) {
      if (lockLost(err)) return false;
      throw err;
    }
    if (Array.isArray(next) && next[0]) {
      // The job data of the next job, already moved to active and locked with this token (as BullMQ's own
      // worker does after a completion).
      const worker = this.#worker as unknown as {
        nextJobFromJobData(data: unknown, id: string, token: string): Promise<Bull | undefined>;
      };
      const bull = await worker.nextJobFromJobData(next[0], next[1] as string, held.token);
      if (bull) {
        if (this.#closing) await bull.moveToWait(held.token).catch(() => {});
        else this.#ready.push({ bull, token: held.token });
      }
    }
    return true;
  }

  async fail(
    job: Job,
    _owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
    then?: FollowUps,
  ): Promise<FailOutcome> {
    const held = this.#held.get(job.id);
    if (!held) return 'lost';
    this.#held.delete(job.id);
    const { bull, token } = held;
    const dead = permanent || bull.attemptsMade + 1 >= (bull.opts.attempts ?? 1);
    try {
      const { errorCode: _, ...data } = bull.data;
      if (error.code) await bull.updateData({ ...data, errorCode: error.code });
      else if (bull.data.errorCode) await bull.updateData(data);
      if (permanent) bull.discard();
      await bull.moveToFailed(new Error(error.message), token, false);
    } catch (err) {
      if (lockLost(err)) return 'lost';
      throw err;
    }
    if (dead && then?.dead && job.kind !== 'webhook') await this.#addFollowUps(then.dead);
    return dead ? 'dead' : 'retrying';
  }

  async release(job: Job, _owner: string): Promise<boolean> {
    const held = this.#held.get(job.id);
    if (!held) return false;
    this.#held.delete(job.id);
    try {
      await held.bull.moveToWait(held.token);
      return true;
    } catch (err) {
      if (lockLost(err)) return false;
      throw err;
    }
  }

  async retry(id: number): Promise<Job | undefined> {
    const bull = (await BullJob.fromId(this.#queue, String(id))) as Bull | undefined;
    if (!bull || (await bull.getState()) !== 'failed') return undefined;
    await bull.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    return this.get(id);
  }

  async get(id: number): Promise<Job | undefined> {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const job = await this.#read(id);
    if (job) await this.#withOwners([job]);
    return job;
  }

  /** One job as stored, without its lock's owner. */
  async #read(id: number): Promise<Job | undefined> {
    const bull = (await BullJob.fromId(this.#queue, String(id))) as Bull | undefined;
    return bull ? toJob(bull, STATE_OF[await bull.getState()] ?? 'queued') : undefined;
  }

  /**
   * Fills in which process holds each active job: the lock's token is `<owner>:<n>`. Operators (and the two-node
   * test) see which machine and pid is running what.
   */
  async #withOwners(jobs: Job[]): Promise<Job[]> {
    const active = jobs.filter((j) => j.state === 'active');
    if (active.length === 0) return jobs;
    const tokens = await this.#redis.mget(...active.map((j) => `${this.#prefix}:${this.name}:${j.id}:lock`));
    active.forEach((j, i) => {
      const token = tokens[i];
      j.leaseOwner = token ? token.slice(0, token.lastIndexOf(':')) : null;
    });
    return jobs;
  }

  async list(filter: JobFilter): Promise<Job[]> {
    const limit = filter.limit ?? 100;
    let jobs: Job[];
    if (filter.fileId) {
      const ids = await this.#redis.smembers(this.#fileKey(filter.fileId));
      jobs = (await Promise.all(ids.map((id) => this.#read(Number(id))))).filter(
        (j): j is Job => j !== undefined,
      );
      if (filter.state) jobs = jobs.filter((j) => j.state === filter.state);
    } else {
      const states = filter.state ? [filter.state] : JOB_STATES;
      // Each BullMQ list is read newest first; `before` pages by id and `kind` filters after reading, so read enough
      // to reach past them (jobs further back are not found).
      const depth = filter.before === undefined && filter.kind === undefined ? limit : limit + 1_000;
      const lists = await Promise.all(
        states.map(async (state) => {
          const bulls = (await this.#queue.getJobs(TYPES_OF[state], 0, depth - 1, false)) as Bull[];
          return bulls.filter(Boolean).map((b) => toJob(b, state));
        }),
      );
      jobs = lists.flat();
    }
    if (filter.before !== undefined) jobs = jobs.filter((j) => j.id < filter.before!);
    if (filter.kind !== undefined) jobs = jobs.filter((j) => j.kind === filter.kind);
    return this.#withOwners(jobs.sort((a, b) => b.id - a.id).slice(0, limit));
  }

  async counts(filter: { kind?: JobKind } = {}): Promise<JobCounts> {
    if (filter.kind !== undefined) {
      const base = `${this.#prefix}:${this.name}:`;
      const n = (await this.#redis.eval(
        COUNT_KIND,
        COUNTED.length,
        ...COUNTED.map(([list]) => base + list),
        base,
        filter.kind,
      )) as number[];
      const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobCounts;
      COUNTED.forEach(([, state], i) => {
        counts[state] += n[i] ?? 0;
      });
      return counts;
    }
    const c = await this.#queue.getJobCounts(
      'waiting',
      'prioritized',
      'paused',
      'waiting-children',
      'active',
      'delayed',
      'completed',
      'failed',
    );
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobCounts;
    for (const [type, n] of Object.entries(c)) {
      const state = STATE_OF[type];
      if (state) counts[state] += n;
    }
    return counts;
  }

  /** Wakes `listener` when BullMQ reports a job waiting (added on any node, or back from a retry's delay). */
  onReady(listener: () => void): () => void {
    this.#events ??= new QueueEvents(this.name, {
      connection: this.#connection,
      prefix: this.#prefix,
      blockingTimeout: 1_000,
    });
    this.#events.on('error', () => {});
    this.#events.on('waiting', listener);
    return () => this.#events?.off('waiting', listener);
  }

  /** Gives prefetched jobs back, then closes BullMQ's and this class's connections. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      for (const h of this.#ready.splice(0)) await h.bull.moveToWait(h.token).catch(() => {});
      await Promise.allSettled([this.#worker.close(true), this.#queue.close(), this.#events?.close()]);
      this.#redis.disconnect();
    })();
    return this.#closed;
  }

  /** Deletes the queue and everything in it (tests and benchmarks). */
  async obliterate(): Promise<void> {
    await this.#queue.obliterate({ force: true });
    const keys = await this.#redis.keys(`${this.#prefix}:${this.name}:weft-file:*`);
    if (keys.length) await this.#redis.del(...keys);
  }
}

function toJob(b: Bull, state: JobState, owner?: string, leaseMs?: number): Job {
  const now = Date.now();
  const attempts = state === 'active' ? b.attemptsMade + 1 : b.attemptsMade;
  const finished = state === 'completed' || state === 'dead';
  return {
    id: Number(b.id),
    fileId: b.data.fileId,
    kind: b.data.kind ?? b.name,
    state,
    attempts,
    maxAttempts: b.opts.attempts ?? 1,
    runAt: b.timestamp + (b.delay ?? 0),
    leaseOwner: owner ?? null,
    leaseUntil: owner && leaseMs ? now + leaseMs : null,
    lastError: b.failedReason || null,
    errorCode: state === 'dead' || state === 'retrying' ? (b.data.errorCode ?? null) : null,
    result: state === 'completed' ? (b.returnvalue ?? null) : null,
    payload: b.data.payload ?? null,
    createdAt: b.timestamp,
    updatedAt: b.finishedOn ?? b.processedOn ?? b.timestamp,
    startedAt: b.processedOn ?? null,
    finishedAt: finished ? (b.finishedOn ?? null) : null,
  };
}

/** BullMQ's scripts refuse a move whose lock token does not match (or whose job is gone) with these messages. */
function lockLost(err: unknown): boolean {
  const message = (err as Error)?.message ?? '';
  return /Missing lock|Lock mismatch|Missing key|not in the active state/i.test(message);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
