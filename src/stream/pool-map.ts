import { InvalidOptionError } from '../errors.ts';
import type { Pool, RunOptions, TaskArgs, TaskName, TaskResult, TransferListItem } from '../pool/index.ts';
import { type MapFn, MapStream } from './map.ts';
import { boolOption, intOption, optionsObject, signalOption } from './options.ts';

/** Options of {@link poolMap}. */
export interface PoolMapOptions<In = unknown> {
  /**
   * Most tasks in flight. Default: twice the pool's task slots (`maxThreads × concurrentTasksPerWorker`), so each
   * thread has its next task waiting and never idles for a round trip.
   */
  concurrency?: number;
  /** Emit results in input order (a bounded reorder buffer, as in `mapConcurrent`). Default: true. */
  ordered?: boolean;
  /**
   * How an item is sent to the thread. `true` (default): binary items are moved, not copied (see
   * {@link transferable}); `false`: always copied; a function: returns the transfer list for an item.
   */
  transfer?: boolean | ((item: In) => readonly TransferListItem[]);
  /** Destroys the stream with an `AbortError` when aborted, which cancels the tasks in flight. */
  signal?: AbortSignal;
}

/** The slice of `Pool` that `poolMap` uses, so any pool of tasks fits. */
interface Runner {
  run(name: string, args: unknown[], options?: RunOptions): Promise<unknown>;
  readonly options: { readonly maxThreads: number; readonly concurrentTasksPerWorker: number };
}

type ArrayView = ArrayBufferView<ArrayBufferLike>;
type TypedArrayConstructor = new (buffer: ArrayBuffer) => ArrayView;

/**
 * What `poolMap` does with an item before sending it (the `transfer: true` rule), exported for tests and for
 * callers who build their own `run` calls. Returns the value to send and the buffers to move with it:
 *
 * - an `ArrayBuffer`: moved as is;
 * - a view (`Buffer`, typed array, `DataView`) that covers the whole of its `ArrayBuffer`: the buffer is moved;
 * - a view of part of an `ArrayBuffer` (a `Buffer` from Node's shared 8 KiB pool, a `subarray`, a chunk of a file
 *   stream's read buffer): its bytes are copied into a buffer of their own, which is moved. Moving the shared
 *   buffer would detach memory other views still use, and copying the view the default way would send the whole
 *   `ArrayBuffer`, not just the view's bytes;
 * - anything else, or a view of a `SharedArrayBuffer` (which is shared, never moved): sent as is, no transfer.
 *
 * @example
 * ```ts
 * import { transferable } from 'weftjs/stream';
 * const { value, transfer } = transferable(chunk);
 * await pool.run('hash', [value], { transfer });
 * ```
 */
export function transferable<T>(item: T): { value: T; transfer: TransferListItem[] } {
  if (item instanceof ArrayBuffer) return { value: item, transfer: [item] };
  if (!ArrayBuffer.isView(item)) return { value: item, transfer: [] };
  const view = item as ArrayView;
  const buffer = view.buffer;
  if (!(buffer instanceof ArrayBuffer)) return { value: item, transfer: [] };
  if (view.byteOffset === 0 && view.byteLength === buffer.byteLength)
    return { value: item, transfer: [buffer] };
  const own = new Uint8Array(buffer, view.byteOffset, view.byteLength).slice().buffer;
  let copy: ArrayView;
  if (Buffer.isBuffer(view)) copy = Buffer.from(own);
  else if (view instanceof DataView) copy = new DataView(own);
  else copy = new (view.constructor as TypedArrayConstructor)(own);
  return { value: copy as T, transfer: [own] };
}

/** The input type of task `K` (its first argument) and its result. */
type In<M, K extends keyof M> = TaskArgs<M[K]> extends [infer A, ...unknown[]] ? A : unknown;

/**
 * Maps every item through task `taskName` of a `weftjs/pool` pool: `pool.run(taskName, [item])`, at most
 * `concurrency` tasks in flight, so a CPU-heavy transform uses every thread while the source is paused whenever the
 * pool is saturated. Binary items (`ArrayBuffer`, `Buffer`, typed arrays) are moved to the thread, not copied
 * (see {@link transferable}); a task can move its result back with `transfer()` from `weftjs/pool/task`. A failed
 * task destroys the stream with the task's error, and destroying the stream (an error elsewhere in the pipeline,
 * the `signal`) cancels the tasks in flight through `pool.run`'s own signal. The pool is not closed by the stream.
 *
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * import { Pool } from 'weftjs/pool';
 * import { poolMap } from 'weftjs/stream';
 * const pool = new Pool<typeof import('./tasks.ts')>({ filename: new URL('./tasks.ts', import.meta.url) });
 * await pipeline(createReadStream('big.bin'), poolMap(pool, 'compress'), createWriteStream('big.bin.z'));
 * await pool.close();
 * ```
 */
export function poolMap<M, K extends TaskName<M>>(
  pool: Pool<M>,
  taskName: K,
  options?: PoolMapOptions<In<M, K>>,
): MapStream<In<M, K>, TaskResult<M[K]>> {
  const runner = pool as unknown as Runner;
  if (
    typeof runner !== 'object' ||
    runner === null ||
    typeof runner.run !== 'function' ||
    typeof runner.options?.maxThreads !== 'number'
  ) {
    throw new InvalidOptionError('pool', 'a Pool from weft/pool', pool);
  }
  if (typeof taskName !== 'string' || taskName.length === 0) {
    throw new InvalidOptionError('taskName', 'a non-empty string', taskName);
  }
  const opts = optionsObject(options);
  const slots = runner.options.maxThreads * runner.options.concurrentTasksPerWorker;
  const concurrency = intOption(opts, 'concurrency', 2 * slots, 1);
  const ordered = boolOption(opts, 'ordered', true);
  const signal = signalOption(opts);
  const mode = opts.transfer ?? true;
  if (typeof mode !== 'boolean' && typeof mode !== 'function') {
    throw new InvalidOptionError('transfer', 'a boolean or a function', mode);
  }
  const fn: MapFn<In<M, K>, TaskResult<M[K]>> = (item, context) => {
    let value: unknown = item;
    let list: readonly TransferListItem[] | undefined;
    if (mode === true) ({ value, transfer: list } = transferable(item));
    else if (typeof mode === 'function') list = mode(item);
    const run: RunOptions = { signal: context.signal };
    if (list !== undefined && list.length > 0) run.transfer = list;
    return runner.run(taskName, [value], run) as Promise<TaskResult<M[K]>>;
  };
  return new MapStream(fn, { concurrency, ordered, ...(signal ? { signal } : {}) });
}
