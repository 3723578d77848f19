/**
 * The transactional outbox: with a remote queue (Redis), an upload's record and an outbox row naming its jobs are
 * written in one database transaction, then the jobs are queued and the row deleted. When the queue is unavailable
 * the upload is still answered 201 with its jobs `pending`, and the {@link OutboxRelay} of any process queues them
 * once the queue is back, so a queue outage costs no upload. Exactly once: the row is leased to one relay at a time,
 * a relay that finds the file's jobs already queued only deletes the row, and the queue's `add` is idempotent per
 * file and kind (BullQueue's deduplication key), which covers an add whose answer was lost.
 */
import type { Catalog } from './catalog/types.ts';
import { FilesError } from './errors.ts';
import { ThrottledLog } from './log-throttle.ts';
import type { Logger } from './logger.ts';
import type { Job, JobKind, JobQueue } from './queue/types.ts';
import type { BackendGuard } from './resilience.ts';

/** One upload whose jobs were recorded but may not be queued yet. */
export interface OutboxRow {
  fileId: string;
  kinds: JobKind[];
  maxAttempts: number;
  /** When the upload was recorded (epoch ms). */
  createdAt: number;
}

/** What `Catalog.recordUpload` did: the jobs queued, and the kinds whose jobs wait in the outbox for the queue. */
export interface Recorded {
  jobs: Job[];
  pending: JobKind[];
}

/** The queue is away (Redis down, no answer by its deadline, its breaker open): what the outbox absorbs. */
export function queueUnavailable(err: unknown): boolean {
  return (
    err instanceof FilesError &&
    (err.code === 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE' ||
      err.code === 'ERR_WEFT_FILES_REDIS' ||
      err.code === 'ERR_WEFT_FILES_RABBITMQ')
  );
}

/** The three writes a catalog does for an upload through the outbox. */
export interface OutboxWrites {
  /** The file's record and its outbox row, in one transaction. */
  insert(): Promise<void>;
  /** Both again (queueing failed for another reason than an outage: nothing is kept, as without an outbox). */
  remove(): Promise<unknown>;
  /** The outbox row alone (its jobs are queued). */
  settle(): Promise<unknown>;
}

/**
 * Records an upload with its outbox row, then queues its jobs: on success the row is deleted (in the background: a
 * row left behind is found queued by the relay, which deletes it); when the queue is unavailable the upload stays
 * recorded with its jobs pending in the outbox; any other failure removes both and is thrown.
 */
export async function recordWithOutbox(
  writes: OutboxWrites,
  queue: JobQueue,
  fileId: string,
  kinds: JobKind[],
  maxAttempts: number,
): Promise<Recorded> {
  await writes.insert();
  let jobs: Job[];
  try {
    jobs = await queue.add(fileId, kinds, maxAttempts);
  } catch (err) {
    if (queueUnavailable(err)) return { jobs: [], pending: [...kinds] };
    await writes.remove().catch(() => {});
    throw err;
  }
  writes.settle().catch(() => {});
  return { jobs, pending: [] };
}

export interface RelayOptions {
  /** The catalog holding the outbox (under the database's guard). */
  catalog: Catalog;
  /** The queue the rows go to (under the queue's guard). */
  queue: JobQueue;
  /** The queue's guard: no pass runs while its breaker is not closed, and one runs at once when it closes. */
  guard?: Pick<BackendGuard, 'up' | 'onStateChange'>;
  log: Logger;
  /** Who leases the rows (unique per process). */
  owner: string;
  /** Between passes while rows wait, ms. Default 1 000. */
  intervalMs?: number;
  /** Between passes while the outbox looked empty (rows other processes left behind), ms. Default 5 000. */
  idleMs?: number;
  /** How long a claimed row is this relay's alone, ms. Default 10 000. */
  leaseMs?: number;
  /** Rows claimed per pass. Default 50. */
  batch?: number;
  /** Repeated failures are logged once per this interval. Default 60 s. */
  logIntervalMs?: number;
  /** Called with each file whose jobs this relay queued (the runner wakes). */
  onRelayed?: (fileId: string) => void;
}

/**
 * Drains the outbox into the queue, in every service process: a pass claims a batch of rows with a lease (no two
 * relays hold a row at once: `FOR UPDATE SKIP LOCKED` on PostgreSQL, one UPDATE on SQLite), queues each row's jobs
 * unless the queue already has jobs of that file, and deletes the row. It runs every `intervalMs` while rows wait,
 * every `idleMs` otherwise, at once on {@link wake} and when the queue's breaker closes.
 *
 * @example
 * ```ts
 * const relay = new OutboxRelay({ catalog, queue, guard: guards.queue, log, owner: runner.owner });
 * relay.start();
 * // ...
 * await relay.close();
 * ```
 */
export class OutboxRelay {
  readonly #o: Required<Omit<RelayOptions, 'guard' | 'onRelayed'>> &
    Pick<RelayOptions, 'guard' | 'onRelayed'>;
  readonly #errors: ThrottledLog;
  #loop: Promise<void> | undefined;
  #closing = false;
  #wake: (() => void) | undefined;
  #nudged = false;
  #offGuard: (() => void) | undefined;
  /** Rows in the outbox at the last count (every pass); -1 before the first. */
  #pending = -1;
  /** Rows this relay queued (or found queued) and deleted. */
  relayed = 0;

  constructor(options: RelayOptions) {
    this.#o = {
      intervalMs: 1_000,
      idleMs: 5_000,
      leaseMs: 10_000,
      batch: 50,
      logIntervalMs: 60_000,
      ...options,
    };
    this.#errors = new ThrottledLog(options.log, { intervalMs: this.#o.logIntervalMs });
  }

  /** Rows waiting in the outbox at the last pass (0 before the first). */
  get pending(): number {
    return Math.max(0, this.#pending);
  }

  start(): void {
    if (this.#loop || this.#closing) return;
    this.#offGuard = this.#o.guard?.onStateChange((state) => {
      if (state === 'closed') this.wake();
    });
    this.#loop = this.#run();
  }

  /** Runs a pass now rather than at the next tick (an upload left a row; the queue is back). */
  wake(): void {
    this.#nudged = true;
    this.#wake?.();
  }

  /** Stops after the pass in flight (each of its calls is bounded by its backend's deadline). Idempotent. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#offGuard?.();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#closing) {
      let more = false;
      if (this.#o.guard?.up ?? true) {
        try {
          more = await this.pass();
          this.#errors.recovered('relay', 'relaying the outbox to the queue works again');
        } catch (err) {
          this.#errors.failure('relay', err, 'relaying the outbox to the queue failed');
        }
      } else {
        // The queue is away: no pass, but the backlog is still counted (the gauge matters most now).
        await this.#count();
      }
      if (this.#closing) break;
      if (more || this.#nudged) {
        this.#nudged = false;
        continue;
      }
      await this.#sleep(this.#pending === 0 ? this.#o.idleMs : this.#o.intervalMs);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  /**
   * One pass: claims up to `batch` rows and relays each; stops at the first failure (the rows it holds are its own
   * to take again at the next pass). Resolves true when a full batch was relayed (more may wait). Public for tests.
   */
  async pass(): Promise<boolean> {
    const { catalog } = this.#o;
    const rows = await catalog.claimOutbox(this.#o.owner, this.#o.batch, this.#o.leaseMs);
    // A row is started only while its lease surely holds (half of it from the claim's answer; the database set it
    // before): past the lease another relay may take it. The rest are claimed (and leased) again at once.
    const leaseEnd = performance.now() + this.#o.leaseMs / 2;
    try {
      for (const row of rows) {
        if (this.#closing) return false;
        if (performance.now() > leaseEnd) return true;
        await this.#relay(row);
      }
    } finally {
      await this.#count();
    }
    return rows.length === this.#o.batch;
  }

  /** Counts the rows waiting (a failed count keeps the last one). */
  async #count(): Promise<void> {
    this.#pending = await this.#o.catalog.outboxSize().catch(() => this.#pending);
  }

  async #relay(row: OutboxRow): Promise<void> {
    const { queue, catalog } = this.#o;
    // A previous relay (or the upload itself) may have queued the jobs and failed to delete the row: the file's
    // jobs are in the queue, so only the row goes. The add is idempotent too (deduplication per file and kind),
    // which covers an add that went through without its answer, before the file's set was written.
    if (!(await queue.hasJobs(row.fileId))) await queue.add(row.fileId, row.kinds, row.maxAttempts);
    if (!(await catalog.deleteOutbox(row.fileId)) && !(await catalog.get(row.fileId))) {
      // The file was deleted meanwhile (its row with it), possibly before these jobs existed: remove them.
      await queue.removeForFile(row.fileId);
      return;
    }
    this.relayed++;
    this.#o.onRelayed?.(row.fileId);
  }
}
