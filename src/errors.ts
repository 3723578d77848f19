/**
 * Errors shared by every Weft module.
 *
 * One base class with a stable `code` (as undici does in `lib/core/errors.js`), so callers branch on
 * `err.code` or `instanceof`, never on message text. Subclasses exist only where callers branch on them.
 *
 * @example
 * ```ts
 * try { await pool.run('work', [1]); }
 * catch (err) { if (err instanceof WeftError && err.code === 'ERR_WEFT_QUEUE_FULL') retryLater(); }
 * ```
 */

/** Every error code Weft throws or rejects with. */
export type WeftErrorCode =
  | 'ERR_WEFT_INVALID_OPTION'
  | 'ERR_WEFT_INVALID_ARGUMENT'
  | 'ERR_WEFT_UNKNOWN_TASK'
  | 'ERR_WEFT_QUEUE_FULL'
  | 'ERR_WEFT_TASK_TIMEOUT'
  | 'ERR_WEFT_WORKER_CRASHED'
  | 'ERR_WEFT_MODULE_LOAD'
  | 'ERR_WEFT_POOL_CLOSED'
  | 'ERR_WEFT_DATA_CLONE'
  | 'ERR_WEFT_NOT_RUNNING'
  | 'ERR_WEFT_CONTROL_DENIED'
  | 'ERR_WEFT_METRICS_CLOSED'
  | 'ERR_WEFT_IPC'
  | 'ERR_WEFT_BUS_CLOSED';

export interface WeftErrorOptions {
  cause?: unknown;
}

/** Base class of every Weft error: a stable `code` plus an optional `cause`. */
export class WeftError extends Error {
  override name = 'WeftError';
  readonly code: WeftErrorCode;

  constructor(code: WeftErrorCode, message: string, options?: WeftErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** A constructor or method option failed validation; `option` names it. */
export class InvalidOptionError extends WeftError {
  override name = 'InvalidOptionError';
  readonly option: string;

  constructor(option: string, expected: string, actual: unknown) {
    super(
      'ERR_WEFT_INVALID_OPTION',
      `The "${option}" option must be ${expected}. Received ${describe(actual)}`,
    );
    this.option = option;
  }
}

/** A task ran longer than its timeout; its worker was terminated and replaced. */
export class TaskTimeoutError extends WeftError {
  override name = 'TaskTimeoutError';
  readonly timeout: number;

  constructor(task: string, timeout: number) {
    super('ERR_WEFT_TASK_TIMEOUT', `Task "${task}" timed out after ${timeout} ms`);
    this.timeout = timeout;
  }
}

/** The worker running a task died (exit, uncaught error, out of memory) before the task settled. */
export class WorkerCrashedError extends WeftError {
  override name = 'WorkerCrashedError';
  /** The worker's exit code, or `null` when it had not exited when the task was rejected. */
  readonly exitCode: number | null;

  constructor(message: string, exitCode: number | null, cause?: unknown) {
    super('ERR_WEFT_WORKER_CRASHED', message, cause === undefined ? undefined : { cause });
    this.exitCode = exitCode;
  }
}

/** The pool's queue is at `maxQueue`; the task was not accepted. */
export class QueueFullError extends WeftError {
  override name = 'QueueFullError';
  readonly maxQueue: number;

  constructor(maxQueue: number) {
    super('ERR_WEFT_QUEUE_FULL', `The task queue is full (maxQueue: ${maxQueue})`);
    this.maxQueue = maxQueue;
  }
}

/** Short, safe description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string')
    return `type string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return `type ${typeof value} (${String(value)})`;
}
