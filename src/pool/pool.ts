import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { QueueFullError, TaskTimeoutError, WeftError, WorkerCrashedError } from '../errors.ts';
import { type PoolOptions, type ResolvedPoolOptions, resolveOptions } from './options.ts';
import { ERROR, type WorkerEvent } from './protocol.ts';
import { TaskQueue } from './queue.ts';
import { closedError, invalidArgument, parseRunOptions, toError } from './run-options.ts';
import { deserializeError } from './serialize.ts';
import { DurationHistogram, type PoolStats } from './stats.ts';
import { Task } from './task.ts';
import type { TransferListItem } from './transfer.ts';
import type {
  AnyFunction,
  CloseOptions,
  RunOptions,
  RunRest,
  TaskName,
  TaskResult,
  WorkerInfo,
} from './types.ts';
import { WorkerHandle } from './worker-handle.ts';

/** Tasks handed to a thread beyond its concurrency when tasks are tiny, so one message carries many. */
const PREFETCH = 64;
/** Mean run time under which a task counts as tiny, in µs. */
const TINY_TASK_MICROS = 100;
/**
 * Mean run time under which a busy thread is handed one task ahead, in µs: it then never idles for a round trip
 * between tasks (5-8 % of a 1 ms task), and a task stuck behind a slower one waits at most about this long.
 */
const SHORT_TASK_MICROS = 10_000;
const LOAD_BACKOFF_MIN = 100;
const LOAD_BACKOFF_MAX = 30_000;

/**
 * A pool of worker threads running the exported functions of one task module.
 *
 * @example
 * ```ts
 * import { Pool } from 'weftjs/pool';
 * const pool = new Pool<typeof import('./tasks.ts')>({ filename: new URL('./tasks.ts', import.meta.url) });
 * const hash = await pool.run('hashPassword', ['s3cret'], { timeout: 2_000 });
 * await pool.close();
 * ```
 */
export class Pool<M = Record<string, AnyFunction>> extends EventEmitter {
  readonly options: ResolvedPoolOptions;
  readonly #queue = new TaskQueue<Task>();
  readonly #workers: WorkerHandle[] = [];
  /** Every thread not yet exited, including ones ending; `close()` waits for all of them. */
  readonly #alive = new Set<WorkerHandle>();
  #nextId = 1;
  #dispatchQueued = false;
  #closing: Promise<void> | undefined;
  #forced = false;
  #finishClose: (() => void) | undefined;
  #loadFailures = 0;
  #loadBackoffUntil = 0;
  #loadError: WeftError | undefined;
  /** Exponentially weighted mean run time, in µs; -1 until the first result. */
  #meanRunMicros = -1;
  readonly #waitTime = new DurationHistogram();
  readonly #runTime = new DurationHistogram();
  #counts = { completed: 0, failed: 0, cancelled: 0, timedOut: 0, crashed: 0 };

  constructor(options: PoolOptions) {
    super();
    this.options = resolveOptions(options);
    if (this.options.eager) for (let i = 0; i < this.options.minThreads; i++) this.#spawn();
  }

  /** Tasks waiting for a thread. */
  get queueSize(): number {
    return this.#queue.size;
  }

  /** True while tasks wait and the queue is at `maxQueue`: wait for `drain` before adding more. */
  get needsDrain(): boolean {
    return this.#queue.size > 0 && this.#queue.size >= this.options.maxQueue;
  }

  /** Live threads. */
  get threadCount(): number {
    return this.#workers.length;
  }

  /**
   * Runs the exported function `name` of the task module with `args` on a thread.
   * Rejects with the task's own error, `TaskTimeoutError`, `WorkerCrashedError`, `QueueFullError`,
   * the signal's reason, or a `WeftError` (`ERR_WEFT_UNKNOWN_TASK`, `ERR_WEFT_POOL_CLOSED`, `ERR_WEFT_DATA_CLONE`,
   * `ERR_WEFT_MODULE_LOAD`, `ERR_WEFT_INVALID_ARGUMENT`).
   */
  run<K extends TaskName<M>>(name: K, ...rest: RunRest<M[K]>): Promise<TaskResult<M[K]>> {
    const [args = [], options] = rest as [unknown[] | undefined, RunOptions | undefined];
    return new Promise<TaskResult<M[K]>>((resolve, reject) => {
      const error = this.#submit(name, args, options, resolve as (v: unknown) => void, reject);
      if (error !== undefined) reject(error);
    });
  }

  #submit(
    name: string,
    args: unknown[],
    options: RunOptions | undefined,
    resolve: (v: unknown) => void,
    reject: (e: unknown) => void,
  ): unknown {
    if (typeof name !== 'string') return invalidArgument('name', 'a string', name);
    if (!Array.isArray(args)) return invalidArgument('args', 'an array', args);
    const parsed = parseRunOptions(options, this.options.timeout);
    if (parsed instanceof WeftError) return parsed;
    const { priority, timeout, signal, transfer } = parsed;
    if (this.#closing) return closedError();
    if (signal?.aborted) {
      this.#counts.cancelled++;
      return signal.reason;
    }
    if (this.#loadError && performance.now() < this.#loadBackoffUntil) return this.#loadError;
    const { maxQueue } = this.options;
    if (maxQueue !== Number.POSITIVE_INFINITY && this.#queue.size >= maxQueue + this.#freeCapacity()) {
      return new QueueFullError(this.options.maxQueue);
    }
    const task = new Task(
      this.#nextId++,
      name,
      args,
      transfer,
      priority,
      timeout,
      signal,
      resolve,
      reject,
      performance.now(),
    );
    if (signal) {
      task.onAbort = () => this.#cancel(task, signal.reason, 'cancelled');
      signal.addEventListener('abort', task.onAbort, { once: true });
    }
    this.#queue.push(task);
    if (!this.#dispatchQueued) {
      // Tasks submitted in the same tick leave together, one message per thread.
      this.#dispatchQueued = true;
      queueMicrotask(() => this.#dispatch());
    }
    return undefined;
  }

  /** Slots that could take a task now without queueing: free ones on live threads, and threads not yet started. */
  #freeCapacity(): number {
    return this.#freeLiveSlots() + this.#unspawned();
  }

  /** Free slots on live threads that take tasks. */
  #freeLiveSlots(): number {
    const c = this.options.concurrentTasksPerWorker;
    let free = 0;
    for (const h of this.#workers) if (!h.retiring) free += Math.max(0, c - h.inflight.size);
    return free;
  }

  #dispatch(): void {
    this.#dispatchQueued = false;
    const queue = this.#queue;
    if (queue.size === 0) return;
    const c = this.options.concurrentTasksPerWorker;
    if (!this.#loadError || performance.now() >= this.#loadBackoffUntil) {
      // Lazy start: the first task brings up minThreads threads; more start while tasks outnumber free slots.
      while (
        this.#workers.length < this.options.maxThreads &&
        (this.#workers.length < this.options.minThreads || queue.size > this.#freeLiveSlots())
      ) {
        if (!this.#spawn()) return;
      }
    }
    // First fill the free slots of every thread, then hand tasks ahead to busy ones.
    for (const h of this.#workers) {
      if (queue.size === 0) break;
      if (!h.retiring) this.#handOut(h, c - h.inflight.size, c);
    }
    const mean = this.#meanRunMicros;
    const ahead = mean < 0 ? 0 : mean < TINY_TASK_MICROS ? PREFETCH : mean < SHORT_TASK_MICROS ? 1 : 0;
    if (ahead > 0 && queue.size > 0) {
      let eligible = 0;
      for (const h of this.#workers) if (!h.retiring && h.ready) eligible++;
      // Share the backlog evenly instead of handing it all to the first thread.
      const share = Math.ceil(queue.size / Math.max(1, eligible));
      for (const h of this.#workers) {
        if (queue.size === 0) break;
        if (!h.retiring && h.ready) this.#handOut(h, Math.min(share, c + ahead - h.inflight.size), c);
      }
    }
    if (queue.size === 0) this.emit('drain');
  }

  /** Hands up to `take` queued tasks to `h` in one message. */
  #handOut(h: WorkerHandle, take: number, c: number): void {
    // A thread due for recycling gets no more than its remaining tasks.
    take = Math.min(take, this.options.maxTasksPerWorker - h.handedOver);
    if (take <= 0) return;
    const batch: Task[] = [];
    const startsAtOnce = c - h.inflight.size;
    for (let i = 0; i < take; i++) {
      // A task with a timeout is only handed to a free slot, where it starts at once: its timer measures its run.
      const next = this.#queue.peek();
      if (!next || (i >= startsAtOnce && next.timeout > 0)) break;
      batch.push(this.#queue.shift()!);
    }
    this.#send(h, batch);
  }

  /** Threads that could still be spawned, in task slots. */
  #unspawned(): number {
    return (this.options.maxThreads - this.#workers.length) * this.options.concurrentTasksPerWorker;
  }

  #send(h: WorkerHandle, batch: Task[]): void {
    if (batch.length === 0) return;
    const msg: unknown[] = new Array(batch.length * 3);
    let transfer: TransferListItem[] | undefined;
    for (let i = 0; i < batch.length; i++) {
      const t = batch[i]!;
      msg[i * 3] = t.id;
      msg[i * 3 + 1] = t.name;
      msg[i * 3 + 2] = t.args;
      if (t.transfer) transfer = transfer ? transfer.concat(t.transfer) : t.transfer;
    }
    try {
      h.worker.postMessage(msg, transfer);
    } catch {
      // One task's uncloneable arguments must not fail the others: send them one by one.
      for (const t of batch) this.#sendOne(h, t);
      return;
    }
    for (const t of batch) this.#handOver(h, t);
  }

  #sendOne(h: WorkerHandle, t: Task): void {
    try {
      h.worker.postMessage([t.id, t.name, t.args], t.transfer);
    } catch (err) {
      this.#counts.failed++;
      this.#detach(t);
      const message = `The arguments of task "${t.name}" could not be cloned: ${(err as Error).message}`;
      t.reject(new WeftError('ERR_WEFT_DATA_CLONE', message, { cause: err }));
      return;
    }
    this.#handOver(h, t);
  }

  #handOver(h: WorkerHandle, t: Task): void {
    h.seq = (h.seq + 1) | 0;
    h.handedOver++;
    t.seq = h.seq;
    t.handle = h;
    if (h.inflight.size === 0) {
      clearTimeout(h.idleTimer);
      h.ref();
    }
    h.inflight.set(t.id, t);
    if (t.timeout > 0) {
      t.timer = setTimeout(() => this.#onTimeout(t), t.timeout);
    }
  }

  /** A timeout measures run time: a task handed to a busy thread but not started yet gets its full time again. */
  #onTimeout(t: Task): void {
    if (t.handle && !t.handle.hasStarted(t.seq)) {
      t.timer = setTimeout(() => this.#onTimeout(t), t.timeout);
      return;
    }
    this.#cancel(t, new TaskTimeoutError(t.name, t.timeout), 'timeout');
  }

  /** Starts a thread; undefined when the platform refused (bad execArgv, resources): waiting tasks then fail. */
  #spawn(): WorkerHandle | undefined {
    let h: WorkerHandle;
    try {
      h = new WorkerHandle(this.options);
    } catch (err) {
      this.#failAll(this.#loadFailed(err, 'could not start a thread'));
      return undefined;
    }
    this.#workers.push(h);
    this.#alive.add(h);
    h.worker.on('message', (msg: unknown) => this.#onMessage(h, msg));
    h.worker.on('error', (err: unknown) => {
      h.error = err;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    h.worker.on('exit', (code: number) => this.#onExit(h, code));
    h.unref();
    return h;
  }

  #onMessage(h: WorkerHandle, msg: unknown): void {
    if (!Array.isArray(msg)) {
      this.#onEvent(h, msg as WorkerEvent);
      return;
    }
    const now = performance.now();
    for (let i = 0; i < msg.length; i += 4) {
      const id = msg[i] as number;
      const task = h.inflight.get(id);
      if (!task) {
        // A task given up on that its thread finished within the grace period: the thread is healthy.
        if (h.zombies.has(id)) {
          clearTimeout(h.zombies.get(id));
          h.zombies.delete(id);
        }
        continue;
      }
      h.inflight.delete(id);
      h.tasksDone++;
      const micros = msg[i + 3] as number;
      this.#meanRunMicros = this.#meanRunMicros < 0 ? micros : this.#meanRunMicros * 0.9 + micros * 0.1;
      this.#runTime.recordMicros(micros);
      this.#waitTime.recordMicros((now - task.submitted) * 1000 - micros);
      this.#detach(task);
      if (msg[i + 1] === ERROR) {
        this.#counts.failed++;
        task.reject(toError(msg[i + 2], task.name));
      } else {
        this.#counts.completed++;
        task.resolve(msg[i + 2]);
      }
    }
    this.#afterSettle(h);
  }

  #onEvent(h: WorkerHandle, event: WorkerEvent): void {
    if (event.type === 'ready') {
      h.ready = true;
      this.#loadFailures = 0;
      this.#loadError = undefined;
      this.emit('workerStart', { threadId: h.threadId } satisfies WorkerInfo);
      if (this.#queue.size > 0) this.#dispatch();
    } else if (event.type === 'loadError') {
      this.#onLoadFailure(h, deserializeError(event.error));
    } else if (event.type === 'recycle') {
      this.#retire(h, 'recycled');
    }
  }

  /** After results: recycle, idle, or hand the thread more work. */
  #afterSettle(h: WorkerHandle): void {
    if (!h.retiring && h.tasksDone >= this.options.maxTasksPerWorker) this.#retire(h, 'recycled');
    if (h.retiring) {
      if (h.inflight.size === 0 && !h.terminating) this.#end(h, 'recycled');
    } else if (this.#queue.size > 0) {
      this.#dispatch();
    }
    if (h.inflight.size === 0 && !h.terminating) this.#idle(h);
    this.#checkClosed();
  }

  #idle(h: WorkerHandle): void {
    h.unref();
    clearTimeout(h.idleTimer);
    if (this.#workers.length > this.options.minThreads && Number.isFinite(this.options.idleTimeout)) {
      h.idleTimer = setTimeout(() => {
        if (h.inflight.size === 0 && this.#workers.length > this.options.minThreads) this.#end(h, 'idle');
      }, this.options.idleTimeout);
      h.idleTimer.unref();
    }
  }

  /** Stops giving `h` tasks; it ends when its in-flight tasks are done, and a fresh thread takes its place. */
  #retire(h: WorkerHandle, reason: string): void {
    if (h.retiring) return;
    h.retiring = true;
    if (h.inflight.size === 0) this.#end(h, reason);
    this.#replenish();
  }

  /** Terminates `h` on purpose: tasks it had not started go back to the queue, started ones are rejected. */
  #end(h: WorkerHandle, reason: string): void {
    if (h.terminating) return;
    this.#remove(h);
    h.exitReason = reason;
    this.#evacuate(h, new WorkerCrashedError(`Worker ${h.threadId} was terminated (${reason})`, null));
    h.terminate();
    this.#replenish();
  }

  #remove(h: WorkerHandle): void {
    const i = this.#workers.indexOf(h);
    if (i !== -1) this.#workers.splice(i, 1);
  }

  /** Re-queues the not-started tasks of a dead or ending thread and rejects the started ones with `error`. */
  #evacuate(h: WorkerHandle, error: Error): void {
    const requeue: Task[] = [];
    for (const t of h.inflight.values()) {
      // A task that never started runs again elsewhere, unless its arguments were moved to the dead thread.
      if (h.hasStarted(t.seq) || t.transfer) this.#fail(t, error);
      else requeue.push(t);
    }
    h.inflight.clear();
    for (let i = requeue.length - 1; i >= 0; i--) {
      const t = requeue[i]!;
      clearTimeout(t.timer);
      t.handle = undefined;
      this.#queue.unshift(t);
    }
  }

  #onExit(h: WorkerHandle, code: number): void {
    h.exited = true;
    this.#alive.delete(h);
    clearTimeout(h.idleTimer);
    if (!h.terminating) {
      if (!h.ready) {
        const cause =
          h.error ?? new Error(`the thread exited with code ${code} before the module finished loading`);
        this.#onLoadFailure(h, cause, code);
      } else {
        this.#remove(h);
        h.terminating = true;
        this.#counts.crashed++;
        h.exitReason = 'crashed';
        const message = h.error
          ? `Worker ${h.threadId} crashed: ${(h.error as Error).message ?? String(h.error)}`
          : `Worker ${h.threadId} exited unexpectedly with code ${code}`;
        this.#evacuate(h, new WorkerCrashedError(message, code, h.error));
      }
      this.#replenish();
    }
    this.emit('workerExit', {
      threadId: h.threadId,
      exitCode: code,
      reason: h.exitReason,
    } satisfies WorkerInfo);
    this.#checkClosed();
  }

  /** The task module failed to load: fail every waiting task with that error and back off before trying again. */
  #onLoadFailure(h: WorkerHandle, cause: unknown, exitCode?: number): void {
    if (!h.exitReason) {
      this.#counts.crashed++;
      h.exitReason = 'load-failed';
    }
    this.#remove(h);
    h.terminating = true;
    const error = this.#loadFailed(
      cause,
      `failed to load${exitCode === undefined ? '' : ` (exit code ${exitCode})`}`,
    );
    for (const t of h.inflight.values()) this.#fail(t, error);
    h.inflight.clear();
    this.#failAll(error);
    void h.worker.terminate();
  }

  /** Records a failed start and its back-off; returns the error waiting tasks get. */
  #loadFailed(cause: unknown, what: string): WeftError {
    const message = cause instanceof Error ? cause.message : String(cause);
    const error = new WeftError(
      'ERR_WEFT_MODULE_LOAD',
      `The task module ${this.options.filename} ${what}: ${message}`,
      {
        cause,
      },
    );
    this.#loadFailures++;
    this.#loadError = error;
    const delay = Math.min(LOAD_BACKOFF_MAX, LOAD_BACKOFF_MIN * 2 ** (this.#loadFailures - 1));
    this.#loadBackoffUntil = performance.now() + delay;
    return error;
  }

  /** Rejects every queued task with `error`. */
  #failAll(error: unknown): void {
    const had = this.#queue.size > 0;
    for (let t = this.#queue.shift(); t; t = this.#queue.shift()) this.#fail(t, error);
    if (had) this.emit('drain');
    this.#checkClosed();
  }

  #fail(t: Task, error: unknown): void {
    this.#detach(t);
    this.#counts.failed++;
    t.reject(error);
  }

  /** Keeps `minThreads` alive and replaces ended threads while tasks wait. */
  #replenish(): void {
    if (this.#forced) return;
    if (this.#loadError && performance.now() < this.#loadBackoffUntil) return;
    if (!this.#closing) {
      let live = 0;
      for (const h of this.#workers) if (!h.retiring) live++;
      const wanted = this.#queue.size > 0 || this.options.eager ? this.options.minThreads : 0;
      for (; live < wanted && this.#workers.length < this.options.maxThreads; live++) {
        if (!this.#spawn()) return;
      }
    }
    // A graceful close still finishes the queue, on fresh threads if recycling or a crash ended the old ones.
    if (this.#queue.size > 0) this.#dispatch();
  }

  /** Cancels a task (abort or timeout): removed if queued, rejected at once if handed to a thread. */
  #cancel(t: Task, reason: unknown, kind: 'cancelled' | 'timeout'): void {
    const count = () => {
      if (kind === 'timeout') this.#counts.timedOut++;
      else this.#counts.cancelled++;
    };
    if (this.#queue.remove(t)) {
      count();
      this.#detach(t);
      t.reject(reason);
      if (this.#queue.size === 0) this.emit('drain');
      return;
    }
    const h = t.handle;
    if (!h?.inflight.delete(t.id)) return;
    count();
    this.#detach(t);
    t.reject(reason);
    if (!h.hasStarted(t.seq)) {
      h.cancel(t.id);
    } else if (h.isInSync(t.seq) || this.options.cancelGrace === 0) {
      // A running JavaScript loop cannot be interrupted any other way.
      this.#end(h, kind);
    } else {
      h.cancel(t.id);
      const grace = this.options.cancelGrace;
      // cancelGrace: Infinity trusts the task to stop by itself; the thread is never terminated for it.
      const timer =
        grace === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(() => {
              if (h.zombies.delete(t.id)) this.#end(h, kind);
            }, grace);
      h.zombies.set(t.id, timer);
    }
    this.#afterSettle(h);
  }

  /** Clears a task's timer and abort listener. */
  #detach(t: Task): void {
    if (t.timer) clearTimeout(t.timer);
    if (t.onAbort) t.signal!.removeEventListener('abort', t.onAbort);
    t.args = undefined;
  }

  /** A snapshot of the pool's threads, queue, counters and time distributions. */
  stats(): PoolStats {
    let busy = 0;
    let elu = 0;
    for (const h of this.#workers) {
      if (h.inflight.size > 0) busy++;
      elu += h.worker.performance.eventLoopUtilization().utilization;
    }
    let running = 0;
    for (const h of this.#workers) running += h.inflight.size;
    const total = this.#workers.length;
    return {
      threads: { total, idle: total - busy, busy },
      queued: this.#queue.size,
      running,
      ...this.#counts,
      utilization: total === 0 ? 0 : elu / total,
      waitTime: this.#waitTime.summary(),
      runTime: this.#runTime.summary(),
    };
  }

  /**
   * Stops taking tasks. By default finishes queued and running ones, then ends the threads; with `force`, rejects
   * them with `ERR_WEFT_POOL_CLOSED`. Idempotent: every call returns the same promise (a forced call still forces).
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#finishClose = resolve;
    });
    if (options.force) this.#force();
    this.#checkClosed();
    return this.#closing;
  }

  /** Same as `close({ force: true })`. */
  destroy(): Promise<void> {
    return this.close({ force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #force(): void {
    if (this.#forced) return;
    this.#forced = true;
    const error = closedError();
    for (let t = this.#queue.shift(); t; t = this.#queue.shift()) this.#fail(t, error);
    for (const h of [...this.#workers]) {
      for (const t of h.inflight.values()) this.#fail(t, error);
      h.inflight.clear();
    }
  }

  /** Once closing and nothing is left to run: end every thread, then resolve `close()`. */
  #checkClosed(): void {
    if (!this.#closing || !this.#finishClose) return;
    if (this.#queue.size > 0) return;
    for (const h of this.#workers) if (h.inflight.size > 0) return;
    const finish = this.#finishClose;
    this.#finishClose = undefined;
    this.#workers.length = 0;
    const exits = [...this.#alive].map((h) => {
      h.exitReason ??= 'closed';
      const exited = new Promise<void>((r) => h.worker.once('exit', () => r()));
      if (!h.terminating) h.terminate();
      return exited;
    });
    void Promise.all(exits).then(() => finish());
  }
}
