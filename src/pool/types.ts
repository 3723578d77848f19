import type { TransferListItem, Transferred } from './transfer.ts';

/** Per-call options of `pool.run`. */
export interface RunOptions {
  /** Lower runs first; FIFO within a priority. Default: 0. */
  priority?: number;
  /** Ms the task may run before it is rejected with `TaskTimeoutError` (0: none). Default: the pool's `timeout`. */
  timeout?: number;
  /** Cancels the task: a queued one is removed, a running one is rejected at once and its thread replaced. */
  signal?: AbortSignal;
  /** Moved, not copied, to the thread: `ArrayBuffer`s, `MessagePort`s. */
  transfer?: readonly TransferListItem[];
}

/** Options of `pool.close`. */
export interface CloseOptions {
  /** Reject queued and running tasks with `ERR_WEFT_POOL_CLOSED` instead of finishing them. */
  force?: boolean;
}

/** Information passed with `workerStart` and `workerExit`. */
export interface WorkerInfo {
  threadId: number;
  /** Exit code, on `workerExit`. */
  exitCode?: number;
  /** Why it ended, on `workerExit`: `idle`, `recycled`, `cancelled`, `timeout`, `crashed`, `load-failed`, `closed`. */
  reason?: string;
}

// biome-ignore lint/suspicious/noExplicitAny: the constraint must accept every function signature
export type AnyFunction = (...args: any[]) => any;
/** The names of a task module's function exports. */
export type TaskName<M> = { [K in keyof M]: M[K] extends AnyFunction ? K : never }[keyof M] & string;
/** The argument tuple of a task. */
export type TaskArgs<F> = F extends (...args: infer A) => unknown ? A : never;
/** What the caller receives from a task: its awaited return value, unwrapped from `transfer()`. */
export type TaskResult<F> = F extends (...args: never[]) => infer R ? Unwrap<Awaited<R>> : never;
type Unwrap<T> = T extends Transferred<infer V> ? V : T;
export type RunRest<F> =
  [] extends TaskArgs<F>
    ? [args?: TaskArgs<F>, options?: RunOptions]
    : [args: TaskArgs<F>, options?: RunOptions];
