/** The job queue's contract: the embedded SQLite queue and the BullMQ adapter implement it. */

/** What a job does to its file. */
export type JobKind = 'image' | 'csv';

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
  createdAt: number;
  updatedAt: number;
  /** When its latest attempt started (epoch ms). */
  startedAt: number | null;
  finishedAt: number | null;
}

export type JobCounts = Record<JobState, number>;

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
  /** Leases up to `limit` runnable jobs to `owner` (expired leases of dead processes included). */
  claim(owner: string, limit: number): Promise<Job[]>;
  /** Extends the leases `owner` holds on these jobs; returns the ids it no longer holds. */
  heartbeat(owner: string, ids: number[]): Promise<number[]>;
  /** Marks a leased job done with its result; false when `owner` had lost the lease (another process has it). */
  complete(job: Job, owner: string, result: unknown): Promise<boolean>;
  /** Records a failed attempt: retried after a backoff, or dead when attempts ran out or `permanent`. */
  fail(
    job: Job,
    owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
  ): Promise<FailOutcome>;
  /** Gives a leased job back without counting the attempt (graceful shutdown). */
  release(job: Job, owner: string): Promise<boolean>;
  /** Puts a dead job back in the queue with fresh attempts; undefined when there is no such dead job. */
  retry(id: number): Promise<Job | undefined>;
  get(id: number): Promise<Job | undefined>;
  list(filter: { state?: JobState; fileId?: string; limit?: number; before?: number }): Promise<Job[]>;
  counts(): Promise<JobCounts>;
  /**
   * Calls `listener` when jobs may have become runnable (another node queued some), so an idle runner claims at
   * once rather than at its next poll. Optional: a queue without it is polled.
   */
  onReady?(listener: () => void): () => void;
  /** Releases connections; idempotent. Jobs stay in the queue. */
  close(): Promise<void>;
}
