/** The job queue's contract: the embedded SQLite queue and the BullMQ adapter implement it. */

/**
 * What a job does: process its file (`image`, `csv`, or the kind of a processor plug-in), or deliver a webhook about
 * it (`webhook`). A webhook job is queued only as a {@link FollowUp} of another job's state change; it is not one of
 * its file's jobs (`hasJobs`, `removeForFile` and `list({ fileId })` leave it out), so a delivery neither holds up a
 * file's state nor is lost when the file is deleted.
 */
// `string & {}` keeps the built-in names suggested while a plug-in's kind is any string.
export type JobKind = 'image' | 'csv' | 'webhook' | (string & {});

/** Whether jobs of `kind` are a file's own processing (not a delivery about it). */
export const isProcessing = (kind: JobKind): boolean => kind !== 'webhook';

/**
 * `queued` → `active` (leased by one process) → `completed`; a failed attempt → `retrying` (after a backoff) or, when
 * attempts run out or the error is permanent, `dead` (the dead-letter state, kept with its last error).
 */
export type JobState = 'queued' | 'active' | 'retrying' | 'completed' | 'dead';

export const JOB_STATES: readonly JobState[] = ['queued', 'active', 'retrying', 'completed', 'dead'];

export interface Job {
  id: number;
  fileId: string;
  kind: JobKind;
  state: JobState;
  /** Claims so far, this one included while active. */
  attempts: number;
  maxAttempts: number;
  /** Epoch ms before which it is not run (a retry's backoff). */
  runAt: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
  lastError: string | null;
  errorCode: string | null;
  result: unknown;
  /** What a follow-up job was queued with (a webhook's event and target); null for a file's processing jobs. */
  payload: unknown;
  createdAt: number;
  updatedAt: number;
  /** When its latest attempt started (epoch ms). */
  startedAt: number | null;
  finishedAt: number | null;
}

export type JobCounts = Record<JobState, number>;

export interface JobFilter {
  state?: JobState;
  fileId?: string;
  kind?: JobKind;
  limit?: number;
  before?: number;
}

/** A job queued because of another job's state change (a webhook delivery), with that change where it can be. */
export interface FollowUp {
  kind: JobKind;
  /** The file it is about. */
  fileId: string;
  payload: unknown;
  maxAttempts: number;
  /**
   * Names it for a remote queue's deduplication: queueing the same key again (a repeat after a lost answer, or two
   * processes that both saw the change) adds nothing.
   */
  key: string;
}

/**
 * Jobs to queue with an outcome: the embedded queue adds them in the transaction that records the outcome (both or
 * neither); BullMQ adds them just after it, by deduplication key (see bullmq.ts for what a crash between loses).
 */
export interface FollowUps {
  /**
   * With a completion: called with the file's processing jobs (this one completed) when every one of them is
   * completed, and its follow-ups queued; not called while any other is not.
   */
  processed?: (jobs: Job[]) => FollowUp[];
  /** With a failure: queued when it leaves the job dead. */
  dead?: FollowUp[];
  /**
   * With a completion: the next steps of its file's chains, queued as processing jobs of the file (before
   * `processed` is asked, so the file is not processed while they wait), by `key` like every follow-up.
   */
  next?: FollowUp[];
}

/** Options of {@link JobQueue.claim}. */
export interface ClaimOptions {
  /**
   * Kinds with a concurrency of their own: how many more jobs of each this claim may take (0: none). Kinds not
   * named are bounded by `limit` alone.
   */
  room?: Readonly<Record<string, number>>;
}

/**
 * What a claim may still take of each kind with a room of its own ({@link ClaimOptions.room}), counted down as the
 * claim takes jobs. Every queue adapter reads the room through it.
 */
export class ClaimRoom {
  readonly #left: Map<string, number>;

  constructor(room: Readonly<Record<string, number>> = {}) {
    this.#left = new Map(Object.entries(room));
  }

  /** Whether any kind is bounded (else `take` always says yes). */
  get bounded(): boolean {
    return this.#left.size > 0;
  }

  /** The kinds with no room left. */
  full(): string[] {
    return [...this.#left].filter(([, n]) => n <= 0).map(([kind]) => kind);
  }

  /** Takes one job of `kind` if it has room (a kind not bounded always has): whether it was taken. */
  take(kind: string): boolean {
    const n = this.#left.get(kind);
    if (n === undefined) return true;
    if (n <= 0) return false;
    this.#left.set(kind, n - 1);
    return true;
  }
}

/** How a failed attempt ended. */
export type FailOutcome = 'retrying' | 'dead' | 'lost';

export interface JobQueue {
  /**
   * Queues one job per kind for `fileId`, in this order. A remote queue makes it idempotent per file and kind (a
   * repeat returns the jobs already queued), so a call whose answer was lost can be made again.
   */
  add(fileId: string, kinds: readonly JobKind[], maxAttempts: number): Promise<Job[]>;
  /**
   * Whether jobs were queued for `fileId` (any state, even finished): the outbox relay asks before adding, so an
   * upload whose jobs a previous relay added (without deleting its outbox row) is not queued twice.
   */
  hasJobs(fileId: string): Promise<boolean>;
  /** Removes every job of `fileId` (its file was deleted); a running one finds its file gone. */
  removeForFile(fileId: string): Promise<void>;
  /** Jobs waiting to run (queued, or waiting for a retry): load shedding and metrics read it. */
  waiting(): Promise<number>;
  /**
   * Leases up to `limit` runnable jobs to `owner` (expired leases of dead processes included), and of the kinds in
   * `room` no more than their room (what their processor's own concurrency leaves in this process): the others stay
   * for a later claim.
   */
  claim(owner: string, limit: number, options?: ClaimOptions): Promise<Job[]>;
  /** Extends the leases `owner` holds on these jobs; returns the ids it no longer holds. */
  heartbeat(owner: string, ids: number[]): Promise<number[]>;
  /**
   * Marks a leased job done with its result, queueing `then.processed`'s jobs when it was its file's last; false
   * when `owner` had lost the lease (another process has it), and nothing is queued.
   */
  complete(job: Job, owner: string, result: unknown, then?: FollowUps): Promise<boolean>;
  /**
   * Records a failed attempt: retried after a backoff, or dead when attempts ran out or `permanent`, and then
   * `then.dead` queued.
   */
  fail(
    job: Job,
    owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
    then?: FollowUps,
  ): Promise<FailOutcome>;
  /** Gives a leased job back without counting the attempt (graceful shutdown). */
  release(job: Job, owner: string): Promise<boolean>;
  /** Puts a dead job back in the queue with fresh attempts; undefined when there is no such dead job. */
  retry(id: number): Promise<Job | undefined>;
  get(id: number): Promise<Job | undefined>;
  /** Newest first. `fileId`: that file's processing jobs; `kind`: jobs of that kind only. */
  list(filter: JobFilter): Promise<Job[]>;
  /** Jobs by state: all of them, or those of one kind. */
  counts(filter?: { kind?: JobKind }): Promise<JobCounts>;
  /**
   * Calls `listener` when jobs may have become runnable (another node queued some), so an idle runner claims at
   * once rather than at its next poll. Optional: a queue without it is polled.
   */
  onReady?(listener: () => void): () => void;
  /** Releases connections; idempotent. Jobs stay in the queue. */
  close(): Promise<void>;
}

/** What a {@link JobStore}'s `claimIds` did with each id a message named. */
export interface ClaimedIds {
  /** Leased to the owner now. */
  jobs: Job[];
  /** Finished, removed or never there: the message is spent. */
  gone: number[];
  /** Not runnable yet (a retry not due, another owner's live lease, or no room for its kind): ask again later. */
  later: number[];
  /** Dead-lettered by this claim: its process stopped answering on its last attempt. */
  dead: number[];
}

/**
 * Where the RabbitMQ adapter keeps its jobs' state (queue/rabbitmq.ts): the queue contract's bookkeeping, without
 * `claim` (RabbitMQ's messages say which jobs to take), plus taking jobs by id and finding those no message announces.
 * The SQLite queue (one machine) and `PgJobStore` (several) are stores.
 */
export interface JobStore
  extends Pick<
    JobQueue,
    | 'add'
    | 'hasJobs'
    | 'removeForFile'
    | 'waiting'
    | 'heartbeat'
    | 'complete'
    | 'fail'
    | 'release'
    | 'retry'
    | 'get'
    | 'list'
    | 'counts'
  > {
  /**
   * Leases to `owner` those of `ids` that are runnable now (queued, a retry that is due, or active under an expired
   * lease), within `room`; a job whose lease expired on its last attempt is dead-lettered instead.
   */
  claimIds(owner: string, ids: readonly number[], options?: ClaimOptions): ClaimedIds | Promise<ClaimedIds>;
  /**
   * Jobs a message should announce and none does: queued or waiting for a retry with no message sent for `graceMs`,
   * and active under a lease that expired since the last message.
   */
  unsent(graceMs: number, limit?: number): Job[] | Promise<Job[]>;
  /** Records that a message announces each of these jobs now. */
  markSent(ids: readonly number[]): void | Promise<void>;
}

/** The last error of a job dead-lettered because its process stopped answering on its last attempt (a lease expired). */
export const STALLED_ERROR = 'the process running it stopped answering (lease expired) on its last attempt';

/** How a store's retries back off: the first delay, doubled per attempt up to `maxRetryDelayMs`, plus up to 20 %. */
export interface Backoff {
  retryDelayMs: number;
  maxRetryDelayMs: number;
  random: () => number;
}

/** What a failed attempt of `job` leads to: dead (attempts ran out, or `permanent`), or a retry after `delayMs`. */
export function afterFailure(job: Job, permanent: boolean, b: Backoff): { dead: boolean; delayMs: number } {
  const dead = permanent || job.attempts >= job.maxAttempts;
  if (dead) return { dead, delayMs: 0 };
  const base = Math.min(b.maxRetryDelayMs, b.retryDelayMs * 2 ** Math.max(0, job.attempts - 1));
  return { dead, delayMs: Math.round(base * (1 + 0.2 * b.random())) };
}
