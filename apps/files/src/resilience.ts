/**
 * Resilience at the ports: each remote backend (queue, database, storage) has one {@link BackendGuard} — a deadline,
 * retries with backoff for the calls that are safe to repeat, and a circuit breaker (cockatiel) — and each adapter
 * is wrapped once with {@link resilient}, so no call site carries its own policy. A failure that means the backend
 * is unavailable (an error of the driver, no answer by the deadline, the breaker open) becomes a `FilesError`
 * naming the backend (`ERR_WEFT_FILES_QUEUE_UNAVAILABLE`…, 503); the service's own answers (`FilesError`s such as
 * not found, no space, busy) pass through and never count against the backend.
 */
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IBackoffFactory,
  retry,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';
import type { Catalog } from './catalog/types.ts';
import type { FilesConfig } from './config.ts';
import { FilesError, type FilesErrorCode } from './errors.ts';
import type { FilesBus } from './events/bus.ts';
import type { JobQueue, JobStore } from './queue/types.ts';
import type { Storage } from './storage/types.ts';

/** The backends a node needs to take uploads; each has its breaker, readiness check and `weft_files_backend_up`. */
export type Backend = 'queue' | 'database' | 'storage';

export const BACKENDS: readonly Backend[] = ['queue', 'database', 'storage'];

const CODES: Record<Backend, FilesErrorCode> = {
  queue: 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE',
  database: 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE',
  storage: 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE',
};

/** Codes the adapters threw before the guards existed that also mean "unavailable": mapped to the backend's. */
const OUTAGE_CODES = new Set<string>([
  'ERR_WEFT_FILES_REDIS',
  'ERR_WEFT_FILES_RABBITMQ',
  'ERR_WEFT_FILES_DATABASE',
]);

export interface GuardOptions {
  /** Deadline of one call, retries included, ms. */
  timeoutMs: number;
  /** Extra tries of a call that is safe to repeat (a read, an idempotent write). Default 2. */
  retries?: number;
  /** Consecutive failures that open the breaker. Default 5. */
  threshold?: number;
  /** How long the breaker stays open before one call (a probe) is let through, ms. Default 2 000. */
  halfOpenAfterMs?: number;
  /** Backoff between retries. Default: exponential from 20 ms to 200 ms with jitter. */
  backoff?: IBackoffFactory<unknown>;
  /** Errors that are answers, not outages (they pass through and are not counted), besides `FilesError`s. */
  isAnswer?: (err: unknown) => boolean;
}

/**
 * How a port's method is guarded: `read` (safe to repeat: retried) or `write` (never retried), under the deadline;
 * `long-…` without it (they move whole files: the request's or the job's own deadlines bound them).
 */
export type CallKind = 'read' | 'write' | 'long-read' | 'long-write';

/** A method's kind, or its kind and its own deadline (a call that spans two backends gets the sum of theirs). */
export type CallSpec = CallKind | { kind: CallKind; timeoutMs: number };

/** The state the breaker reports: `closed` (calls pass), `open` (calls fail at once), `half-open` (one probe runs). */
export type BreakerState = 'closed' | 'open' | 'half-open';

const STATES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

/** The signal was aborted by the deadline: raised inside the breaker so that a call that hangs counts as failed. */
class DeadlineError extends Error {
  override name = 'DeadlineError';
}

/** Settles with `call`, or rejects with a `DeadlineError` as soon as `signal` aborts (the call is left behind). */
function raced<T>(call: () => PromiseLike<T> | T, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new DeadlineError('deadline passed'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new DeadlineError('deadline passed'));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve()
      .then(call)
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * One backend's policies: a deadline per call, retries with backoff for safe calls, a consecutive-failures breaker
 * with half-open probing. Counts its opens and half-opens for `/metrics`.
 *
 * @example
 * ```ts
 * const guard = new BackendGuard('database', { timeoutMs: 1_000 });
 * const row = await guard.run(() => pool.query('SELECT 1'), 'read'); // 503 DATABASE_UNAVAILABLE when down
 * ```
 */
export class BackendGuard {
  readonly backend: Backend;
  /** Times the breaker opened, and went half-open (a probe let through). */
  opens = 0;
  halfOpens = 0;
  readonly #o: Readonly<Required<Omit<GuardOptions, 'backoff'>>>;
  readonly #breaker: ReturnType<typeof circuitBreaker>;
  readonly #retry;
  readonly #deadlines = new Map<number, ReturnType<typeof timeout>>();
  readonly #listeners = new Set<(state: BreakerState) => void>();
  #probe: ReturnType<typeof setInterval> | undefined;

  constructor(backend: Backend, options: GuardOptions) {
    this.backend = backend;
    this.#o = Object.freeze({
      retries: 2,
      threshold: 5,
      halfOpenAfterMs: 2_000,
      isAnswer: () => false,
      ...options,
    });
    const outage = (err: unknown) => this.#isOutage(err);
    this.#breaker = circuitBreaker(handleWhen(outage), {
      halfOpenAfter: this.#o.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(this.#o.threshold),
    });
    this.#breaker.onBreak(() => this.opens++);
    this.#breaker.onHalfOpen(() => this.halfOpens++);
    this.#breaker.onStateChange((s) => {
      for (const listener of this.#listeners) listener(STATES[s]);
    });
    const retried = retry(
      // A call that hit the deadline or met an open breaker is not tried again: the deadline is for the whole call.
      handleWhen(
        (err) => outage(err) && !(err instanceof DeadlineError) && !(err instanceof BrokenCircuitError),
      ),
      {
        maxAttempts: this.#o.retries,
        backoff: options.backoff ?? new ExponentialBackoff({ initialDelay: 20, maxDelay: 200 }),
      },
    );
    this.#retry = retried;
  }

  /** The deadline policy of `ms` (kept: a port uses one or two). */
  #deadline(ms: number) {
    let policy = this.#deadlines.get(ms);
    if (!policy) {
      policy = timeout(ms, TimeoutStrategy.Aggressive);
      this.#deadlines.set(ms, policy);
    }
    return policy;
  }

  get state(): BreakerState {
    return STATES[this.#breaker.state];
  }

  /** True while calls pass (the breaker is closed). */
  get up(): boolean {
    return this.#breaker.state === CircuitState.Closed;
  }

  /** Calls `listener` on each change of the breaker's state; returns the function that stops it. */
  onStateChange(listener: (state: BreakerState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs `call` under the policy its `kind` gets (`timeoutMs` overrides the deadline; `label`, the method's name,
   * goes into messages); rejects with the backend's `FilesError` when it is unavailable.
   */
  async run<T>(
    call: () => PromiseLike<T> | T,
    kind: CallKind = 'write',
    timeoutMs = this.#o.timeoutMs,
    label = 'call',
  ): Promise<T> {
    // While a half-open breaker's probe runs, cockatiel holds every other call until the probe settles. Calls under
    // a deadline are bounded by it; a long call (an upload's body, a job's copy) would wait as long as the probe, so
    // it is refused at once, as while the breaker is open.
    if ((kind === 'long-read' || kind === 'long-write') && this.#breaker.state === CircuitState.HalfOpen) {
      throw this.#translate(new BrokenCircuitError(), timeoutMs, label);
    }
    const inner = kind === 'read' || kind === 'long-read' ? wrap(this.#retry, this.#breaker) : this.#breaker;
    const policy = kind === 'read' || kind === 'write' ? wrap(this.#deadline(timeoutMs), inner) : inner;
    try {
      return await policy.execute(({ signal }) => raced(call, signal));
    } catch (err) {
      throw this.#translate(err, timeoutMs, label);
    }
  }

  /**
   * While the breaker is not closed, runs `check` through it every `everyMs`, so the backend's return closes it
   * (the half-open probe) even when no request comes. Stopped by {@link close}.
   */
  probe(
    check: () => Promise<unknown>,
    everyMs = Math.max(100, Math.min(1_000, this.#o.halfOpenAfterMs / 2)),
  ) {
    clearInterval(this.#probe);
    let running = false;
    this.#probe = setInterval(() => {
      if (this.up || running) return;
      running = true;
      this.run(check, 'write', undefined, 'probe')
        .catch(() => {}) // the breaker keeps the outcome
        .finally(() => {
          running = false;
        });
    }, everyMs).unref();
  }

  /** The readiness check: fails at once while the breaker is open, else runs `check` (under the deadline). */
  check(check: () => Promise<unknown>): () => Promise<void> {
    return async () => {
      if (this.state === 'open') throw new FilesError(CODES[this.backend], `${this.backend}: breaker open`);
      await this.run(check, 'write', undefined, 'ready');
    };
  }

  close(): void {
    clearInterval(this.#probe);
    this.#probe = undefined;
    this.#listeners.clear();
  }

  #isOutage(err: unknown): boolean {
    if (err instanceof DeadlineError) return true;
    if (err instanceof FilesError) return OUTAGE_CODES.has(err.code);
    if ((err as { name?: unknown })?.name === 'AbortError') return false;
    return !this.#o.isAnswer(err);
  }

  #translate(err: unknown, timeoutMs: number, label: string): unknown {
    const code = CODES[this.backend];
    if (err instanceof BrokenCircuitError) {
      return new FilesError(
        code,
        `The ${this.backend} backend is unavailable (circuit open, ${label} not tried); retry later`,
        {
          cause: this.#breaker.lastFailure,
        },
      );
    }
    if (err instanceof TaskCancelledError || err instanceof DeadlineError) {
      return new FilesError(
        code,
        `The ${this.backend} backend did not answer ${label} within ${timeoutMs} ms`,
        {
          cause: err,
        },
      );
    }
    if (!this.#isOutage(err)) return err;
    const message = (err as Error)?.message ?? String(err);
    return new FilesError(code, `The ${this.backend} backend failed (${label}): ${message}`, { cause: err });
  }
}

/**
 * Wraps an adapter once, at its port: each method named in `calls` runs through `guard` with its kind; other
 * members (synchronous methods, fields, `close`) pass through untouched.
 *
 * @example
 * ```ts
 * const catalog = resilient(await PgCatalog.open(url, queue), guards.database, CATALOG_CALLS);
 * await catalog.get(id); // deadline, retries, breaker; 503 ERR_WEFT_FILES_DATABASE_UNAVAILABLE when down
 * ```
 */
export function resilient<T extends object>(
  adapter: T,
  guard: BackendGuard,
  calls: Partial<Record<keyof T & string, CallSpec>>,
): T {
  return new Proxy(adapter, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const spec = typeof key === 'string' ? (calls as Record<string, CallSpec | undefined>)[key] : undefined;
      // Bound to the adapter itself: its #private fields are not reachable through the proxy.
      if (!spec) return value.bind(target);
      const { kind, timeoutMs } = typeof spec === 'string' ? { kind: spec, timeoutMs: undefined } : spec;
      return (...args: unknown[]) => guard.run(() => value.apply(target, args), kind, timeoutMs, String(key));
    },
  });
}

/**
 * What each port's methods are. Reads are retried; so are writes that change nothing when repeated (removing,
 * extending a lease, replacing the derived rows, uploading a finished file again). Claiming, completing, failing,
 * adding jobs, recording an upload and publishing an event are not: a retry after a lost answer would do it twice.
 */
export const QUEUE_CALLS: Partial<Record<keyof JobQueue, CallSpec>> = {
  add: 'write',
  hasJobs: 'read',
  removeForFile: 'read',
  waiting: 'read',
  claim: 'write',
  heartbeat: 'read',
  complete: 'write',
  fail: 'write',
  release: 'write',
  retry: 'write',
  get: 'read',
  list: 'read',
  counts: 'read',
};

/**
 * The RabbitMQ adapter's calls that reach RabbitMQ and report its failure: adding (publishing) and claiming. Its
 * reads and outcomes are the SQLite file's (an outcome is recorded even while RabbitMQ is away; a sweep sends its
 * messages later), so RabbitMQ's breaker does not refuse them.
 */
export const RABBIT_CALLS: Partial<Record<keyof JobQueue, CallSpec>> = {
  add: 'write',
  claim: 'write',
};

/** The queue calls a job store has too: all but `claim`. */
const { claim: _claim, ...BOOKKEEPING_CALLS } = QUEUE_CALLS;

/**
 * The RabbitMQ adapter's job store in PostgreSQL (`DATABASE_URL`), at the database's guard: its outage is the
 * database's (503 `ERR_WEFT_FILES_DATABASE_UNAVAILABLE`, its breaker), not RabbitMQ's, even inside a claim.
 */
export const PG_STORE_CALLS: Partial<Record<keyof JobStore, CallSpec>> = {
  // The queue contract's bookkeeping, as a queue's; the store's own calls: leasing named jobs changes them (not
  // retried), finding and marking unsent ones reads or sets the same marks again.
  ...BOOKKEEPING_CALLS,
  claimIds: 'write',
  unsent: 'read',
  markSent: 'read',
};

export const BUS_CALLS: Partial<Record<keyof FilesBus, CallSpec>> = { publish: 'write' };

/** `recordUpload` also queues the jobs: its deadline is the database's plus the queue's (see {@link guardsFor}). */
export function catalogCalls(recordUploadMs: number): Partial<Record<keyof Catalog, CallSpec>> {
  return {
    recordUpload: { kind: 'write', timeoutMs: recordUploadMs },
    get: 'read',
    webhookOf: 'read',
    list: 'read',
    setDerived: 'read',
    derived: 'read',
    delete: 'write',
    count: 'read',
    // One short query each: a stream of a CSV table calls `rows` once per batch, each under the deadline.
    rows: 'read',
    rowCount: 'read',
    ping: 'read',
    // Claiming changes the lease (not retried); deleting a row twice deletes it once.
    claimOutbox: 'write',
    deleteOutbox: 'read',
    outboxSize: 'read',
    pendingKinds: 'read',
  };
}

/** `put` streams the request body and `putFile`/`localPath` move whole files: the breaker gates them, no deadline. */
export const STORAGE_CALLS: Partial<Record<keyof Storage, CallSpec>> = {
  put: 'long-write',
  putFile: 'long-read',
  read: 'read',
  stat: 'read',
  delete: 'read',
  localPath: 'long-read',
};

/** The three guards, from the configuration's settings. */
export function guardsFor(
  config: Pick<
    FilesConfig,
    | 'queueTimeout'
    | 'databaseTimeout'
    | 'storageTimeout'
    | 'backendRetries'
    | 'breakerThreshold'
    | 'breakerHalfOpen'
  >,
): Record<Backend, BackendGuard> {
  const common = {
    retries: config.backendRetries,
    threshold: config.breakerThreshold,
    halfOpenAfterMs: config.breakerHalfOpen,
  };
  return {
    queue: new BackendGuard('queue', { ...common, timeoutMs: config.queueTimeout }),
    database: new BackendGuard('database', { ...common, timeoutMs: config.databaseTimeout }),
    storage: new BackendGuard('storage', { ...common, timeoutMs: config.storageTimeout }),
  };
}
