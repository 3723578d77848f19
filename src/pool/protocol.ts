import type { MessagePort } from 'node:worker_threads';

/**
 * Messages between the pool (main side) and its worker runtime. Internal.
 *
 * Tasks travel in flat batches so that a burst of tiny tasks costs one `postMessage` per worker, not one per task:
 * `[id, name, args, id, name, args, ...]`. Results come back the same way: `[id, status, value, runMicros, ...]`.
 */

/** Index of the shared `Int32Array` cell where the worker counts the tasks it has started (wrapping). */
export const STATE_STARTED = 0;
/** Index of the cell holding the sequence number of the task whose synchronous part runs now (0: none). */
export const STATE_IN_SYNC = 1;
/** Cells in the shared state array. */
export const STATE_CELLS = 2;

/** Result status codes. */
export const OK = 0;
export const ERROR = 1;

/** First message to a worker: everything it needs before it imports the task module. */
export interface InitMessage {
  type: 'init';
  filename: string;
  state: SharedArrayBuffer;
  control: MessagePort;
  concurrency: number;
  recycleHeapUsed: number;
}

/** Control messages, sent on the dedicated control port (read between tasks with `receiveMessageOnPort`). */
export type ControlMessage = { type: 'cancel'; id: number };

/** Messages from a worker that are not result batches. */
export type WorkerEvent =
  | { type: 'ready' }
  | { type: 'loadError'; error: SerializedError }
  | { type: 'recycle'; heapUsed: number };

/** An error flattened for structured clone, so nothing the caller may branch on is lost. */
export interface SerializedError {
  __weftError: true;
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
  cause?: unknown;
  props?: Record<string, unknown>;
}
