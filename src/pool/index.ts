/**
 * `weftjs/pool`: a worker-thread pool for CPU work. See docs/pool.md.
 * @module
 */
export {
  InvalidOptionError,
  QueueFullError,
  TaskTimeoutError,
  WeftError,
  type WeftErrorCode,
  WorkerCrashedError,
} from '../errors.ts';
export type { PoolOptions, ResolvedPoolOptions } from './options.ts';
export { Pool } from './pool.ts';
export type { PoolStats, TimeSummary } from './stats.ts';
export { isTransferred, type TransferListItem, type Transferred, transfer } from './transfer.ts';
export type { CloseOptions, RunOptions, TaskArgs, TaskName, TaskResult, WorkerInfo } from './types.ts';
export type { TaskContext } from './worker.ts';
