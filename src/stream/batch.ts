import { Transform, type TransformCallback } from 'node:stream';
import { attachSignal, delayOption, intOption, optionsObject, signalOption } from './options.ts';

/** Options of {@link batch}. */
export interface BatchOptions {
  /** Items per batch: a batch is passed on as soon as it holds this many. Required; an integer >= 1. */
  size: number;
  /**
   * A batch that is not full is passed on this many ms after its first item arrived, so a slow source does not
   * hold items back indefinitely. `Infinity`: only on size and at the end. Default: Infinity.
   */
  maxWaitMs?: number;
  /** Destroys the stream with an `AbortError` when aborted. */
  signal?: AbortSignal;
}

/** The stream {@link batch} returns: items of type `T` in, `T[]` out. */
export class BatchStream<T = unknown> extends Transform {
  readonly size: number;
  readonly maxWaitMs: number;
  #items: T[] = [];
  #timer: NodeJS.Timeout | undefined;

  /** @internal Use {@link batch}. */
  constructor(options: BatchOptions) {
    const opts = optionsObject(options);
    const size = intOption(opts, 'size', undefined, 1);
    const maxWaitMs = delayOption(opts, 'maxWaitMs', Number.POSITIVE_INFINITY);
    const signal = signalOption(opts);
    // Output is counted in batches, so a full readable side holds at most a few batches, not 16 × size items.
    super({ objectMode: true, readableHighWaterMark: 2 });
    this.size = size;
    this.maxWaitMs = maxWaitMs;
    attachSignal(signal, this);
  }

  /** Items waiting in the current, not yet full batch. */
  get pending(): number {
    return this.#items.length;
  }

  override _transform(item: T, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#items.push(item);
    if (this.#items.length >= this.size) this.#flushBatch();
    else if (this.#items.length === 1 && this.maxWaitMs !== Number.POSITIVE_INFINITY) {
      // The timer only matters while a source is feeding the stream, and that source keeps the process alive
      // on its own; unref'd, a forgotten stream never holds the process.
      this.#timer = setTimeout(() => this.#flushBatch(), this.maxWaitMs);
      this.#timer.unref();
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.#flushBatch();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#items = [];
    callback(error);
  }

  #flushBatch(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#items.length === 0 || this.destroyed) return;
    const items = this.#items;
    this.#items = [];
    // A timed flush may find the readable side full; it still pushes, which holds at most this one extra batch.
    this.push(items);
  }
}

/**
 * Groups items into arrays of `size`. A batch is passed on when it is full, when `maxWaitMs` has passed since its
 * first item, and, for the last one, when the input ends. Empty batches are never emitted. Backpressure holds: the
 * stream stops taking items while the batches it emitted are not read.
 *
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * import { batch } from 'weftjs/stream';
 * await pipeline(rows, batch({ size: 1000, maxWaitMs: 500 }), async (batches) => {
 *   for await (const rows of batches) insertMany(rows);
 * });
 * ```
 */
export function batch<T = unknown>(options: BatchOptions): BatchStream<T> {
  return new BatchStream<T>(options);
}
