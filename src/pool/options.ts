import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import { InvalidOptionError } from '../errors.ts';
import { DELAY, isDelay } from '../validate.ts';

/** Options of {@link Pool}. Every one is validated once, at construction. */
export interface PoolOptions {
  /** The task module: an ES module (`.js`, `.mjs`, `.ts`) whose named exports are the task functions. */
  filename: string | URL;
  /** Threads kept alive even when idle. Default: 1 (capped at `maxThreads`). */
  minThreads?: number;
  /**
   * Most threads at once. Default: `WEFT_THREADS` when a `weftjs/cluster` supervisor set it (its share of the cores, so
   * processes × threads do not oversubscribe them), else `os.availableParallelism()`.
   */
  maxThreads?: number;
  /** Start `minThreads` threads at construction instead of on the first task. Default: false. */
  eager?: boolean;
  /** An idle thread above `minThreads` is ended after this many ms. Default: 10 000. */
  idleTimeout?: number;
  /** Tasks one thread runs at once; above 1 only helps async tasks. Default: 1. */
  concurrentTasksPerWorker?: number;
  /** Most tasks waiting in the queue; `run` rejects with `QueueFullError` beyond it. Default: Infinity. */
  maxQueue?: number;
  /** Default per-task timeout in ms (0: none). Default: 0. */
  timeout?: number;
  /**
   * When a task that is awaiting (async) is cancelled or times out, its signal is aborted and its thread is given
   * this many ms to settle before it is terminated. A task stuck in synchronous code is terminated at once.
   * Default: 100.
   */
  cancelGrace?: number;
  /** V8 limits for each thread (heap sizes, stack); a thread over them dies and is replaced. */
  resourceLimits?: ResourceLimits;
  /** A thread is replaced after running this many tasks. Default: Infinity. */
  maxTasksPerWorker?: number;
  /** A thread whose V8 heap in use passes this many bytes after a task is replaced. Default: 0 (off). */
  maxHeapUsed?: number;
  /** Passed to each thread as `workerData` from `node:worker_threads`. */
  workerData?: unknown;
  /** Extra `execArgv` for the threads (default: the process's). */
  execArgv?: string[];
  /** Environment of the threads (default: a copy of `process.env`). */
  env?: Record<string, string | undefined>;
}

/** The validated, defaulted, frozen form of {@link PoolOptions}. */
export interface ResolvedPoolOptions {
  readonly filename: string;
  readonly minThreads: number;
  readonly maxThreads: number;
  readonly eager: boolean;
  readonly idleTimeout: number;
  readonly concurrentTasksPerWorker: number;
  readonly maxQueue: number;
  readonly timeout: number;
  readonly cancelGrace: number;
  readonly resourceLimits: ResourceLimits | undefined;
  readonly maxTasksPerWorker: number;
  readonly maxHeapUsed: number;
  readonly workerData: unknown;
  readonly execArgv: string[] | undefined;
  readonly env: Record<string, string | undefined> | undefined;
}

export function resolveOptions(options: PoolOptions): ResolvedPoolOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const filename = resolveFilename(options.filename);
  const maxThreads = int(options, 'maxThreads', defaultThreads(), 1);
  const minThreads = int(options, 'minThreads', Math.min(1, maxThreads), 0);
  if (minThreads > maxThreads) {
    throw new InvalidOptionError('minThreads', `<= maxThreads (${maxThreads})`, minThreads);
  }
  if (options.eager !== undefined && typeof options.eager !== 'boolean') {
    throw new InvalidOptionError('eager', 'a boolean', options.eager);
  }
  if (
    options.resourceLimits !== undefined &&
    (typeof options.resourceLimits !== 'object' || !options.resourceLimits)
  ) {
    throw new InvalidOptionError('resourceLimits', 'an object', options.resourceLimits);
  }
  if (options.execArgv !== undefined && !isStringArray(options.execArgv)) {
    throw new InvalidOptionError('execArgv', 'an array of strings', options.execArgv);
  }
  if (options.env !== undefined && (typeof options.env !== 'object' || options.env === null)) {
    throw new InvalidOptionError('env', 'an object', options.env);
  }
  const timeout = delay(options, 'timeout', 0);
  return Object.freeze({
    filename,
    minThreads,
    maxThreads,
    eager: options.eager ?? false,
    idleTimeout: delay(options, 'idleTimeout', 10_000),
    concurrentTasksPerWorker: int(options, 'concurrentTasksPerWorker', 1, 1),
    maxQueue: int(options, 'maxQueue', Number.POSITIVE_INFINITY, 0, true),
    timeout: timeout === Number.POSITIVE_INFINITY ? 0 : timeout,
    cancelGrace: delay(options, 'cancelGrace', 100),
    resourceLimits: options.resourceLimits ? Object.freeze({ ...options.resourceLimits }) : undefined,
    maxTasksPerWorker: int(options, 'maxTasksPerWorker', Number.POSITIVE_INFINITY, 1, true),
    maxHeapUsed: num(options, 'maxHeapUsed', 0),
    workerData: options.workerData,
    execArgv: options.execArgv ? [...options.execArgv] : undefined,
    env: options.env ? { ...options.env } : undefined,
  });
}

/** The supervisor's CPU budget for this process (`WEFT_THREADS`), else every core. */
function defaultThreads(): number {
  const budget = Number(process.env.WEFT_THREADS);
  return Number.isSafeInteger(budget) && budget >= 1 ? budget : availableParallelism();
}

function resolveFilename(filename: unknown): string {
  if (filename instanceof URL) {
    if (filename.protocol !== 'file:' && filename.protocol !== 'data:') {
      throw new InvalidOptionError('filename', 'a file: or data: URL or a path', filename.href);
    }
    return filename.href;
  }
  if (typeof filename !== 'string' || filename.length === 0) {
    throw new InvalidOptionError('filename', 'a non-empty string or URL', filename);
  }
  if (filename.startsWith('file:')) return new URL(filename).href;
  if (filename.startsWith('data:')) return filename;
  if (!isAbsolute(filename))
    throw new InvalidOptionError('filename', 'an absolute path or a file: URL', filename);
  return pathToFileURL(filename).href;
}

function int(options: object, key: string, fallback: number, min: number, infinite = false): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  const ok = Number.isSafeInteger(value) || (infinite && value === Number.POSITIVE_INFINITY);
  if (typeof value !== 'number' || !ok || value < min) {
    throw new InvalidOptionError(key, `an integer >= ${min}${infinite ? ' or Infinity' : ''}`, value);
  }
  return value;
}

function delay(options: object, key: string, fallback: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (!isDelay(value)) throw new InvalidOptionError(key, DELAY, value);
  return value;
}

function num(options: object, key: string, fallback: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidOptionError(key, 'a number >= 0', value);
  }
  return value;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}
