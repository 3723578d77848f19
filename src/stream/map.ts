import { Transform, type TransformCallback } from 'node:stream';
import { InvalidOptionError } from '../errors.ts';
import { BackpressureMonitor, type BackpressureSnapshot } from './backpressure.ts';
import { attachSignal, boolOption, intOption, optionsObject, signalOption } from './options.ts';

/** What the mapping function receives besides the item. */
export interface MapContext {
  /** Aborted when the stream is destroyed (an error elsewhere, the caller's signal): stop the work. */
  signal: AbortSignal;
  /** The item's position in the input, from 0. */
  index: number;
}

/** The function of {@link mapConcurrent}. A result of `undefined` or `null` is not passed on. */
export type MapFn<In, Out> = (item: In, context: MapContext) => Out | PromiseLike<Out>;

/** Options of {@link mapConcurrent}. */
export interface MapConcurrentOptions {
  /** Most calls of `fn` at once. Required; an integer >= 1. */
  concurrency: number;
  /**
   * Emit results in input order. A finished result then waits in a reorder buffer for the ones before it, and it
   * keeps its slot while it waits, so the buffer never holds more than `concurrency` results. Default: true.
   */
  ordered?: boolean;
  /** Destroys the stream with an `AbortError` when aborted, which cancels the calls in flight. */
  signal?: AbortSignal;
}

/** Counters of a {@link MapStream}. */
export interface MapStats extends BackpressureSnapshot {
  /** Calls started. */
  started: number;
  /** Calls settled (fulfilled or rejected). */
  settled: number;
  /** Calls running now. */
  inFlight: number;
  /** Finished results waiting for earlier ones (ordered only). */
  reorderBuffered: number;
}

interface Slot {
  done: boolean;
  value: unknown;
}

/**
 * The stream {@link mapConcurrent} and `poolMap` return. `stats()` tells how busy it is; its `pauses` and
 * `pausedMs` count the times, and the time, its input waited because every slot was taken (or its output was not
 * read), which is when the source upstream is paused.
 */
export class MapStream<In = unknown, Out = unknown> extends Transform {
  readonly concurrency: number;
  readonly ordered: boolean;
  readonly #fn: MapFn<In, Out>;
  readonly #abort = new AbortController();
  readonly #waits = new BackpressureMonitor();
  /** Ordered: every started call until its result is emitted, in input order. */
  readonly #slots: Slot[] = [];
  readonly #running = new Set<Promise<void>>();
  #started = 0;
  #settled = 0;
  #outputFull = false;
  /** The input's callback, held while no slot is free or the output is full: this is what pauses the source. */
  #heldInput: TransformCallback | undefined;
  #flushed: TransformCallback | undefined;

  /** @internal Use {@link mapConcurrent}. */
  constructor(fn: MapFn<In, Out>, options: MapConcurrentOptions) {
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', 'a function', fn);
    const opts = optionsObject(options);
    const concurrency = intOption(opts, 'concurrency', undefined, 1);
    const ordered = boolOption(opts, 'ordered', true);
    const signal = signalOption(opts);
    super({ objectMode: true });
    this.#fn = fn;
    this.concurrency = concurrency;
    this.ordered = ordered;
    attachSignal(signal, this);
  }

  stats(): MapStats {
    return {
      started: this.#started,
      settled: this.#settled,
      inFlight: this.#started - this.#settled,
      reorderBuffered: this.ordered ? this.#slots.length - (this.#started - this.#settled) : 0,
      ...this.#waits.snapshot(),
    };
  }

  /** Slots taken: calls running, plus (ordered) finished results not yet emitted. */
  #occupied(): number {
    return this.ordered ? this.#slots.length : this.#started - this.#settled;
  }

  #canTakeInput(): boolean {
    return this.#occupied() < this.concurrency && !this.#outputFull;
  }

  override _transform(item: In, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#start(item);
    if (this.#canTakeInput()) callback();
    else {
      this.#heldInput = callback;
      this.#waits.pause();
    }
  }

  override _read(size: number): void {
    this.#outputFull = false;
    this.#release();
    super._read(size);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#occupied() === 0) callback();
    else this.#flushed = callback;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#waits.resume();
    this.#heldInput = undefined;
    this.#flushed = undefined;
    if (!this.#abort.signal.aborted) {
      this.#abort.abort(error ?? new DOMException('The stream was destroyed', 'AbortError'));
    }
    // The stream closes (and pipeline() settles) only once every call has settled, so when a pipeline rejects
    // nothing of this stage is still writing to a database behind the caller's back.
    if (this.#running.size === 0) callback(error);
    else Promise.allSettled(this.#running).then(() => callback(error));
  }

  #start(item: In): void {
    const index = this.#started++;
    const slot: Slot = { done: false, value: undefined };
    if (this.ordered) this.#slots.push(slot);
    let result: Promise<Out>;
    try {
      result = Promise.resolve(this.#fn(item, { signal: this.#abort.signal, index }));
    } catch (err) {
      result = Promise.reject(err);
    }
    const settled = result.then(
      (value) => this.#onResult(slot, value),
      (err: unknown) => this.#onError(err),
    );
    this.#running.add(settled);
    void settled.finally(() => this.#running.delete(settled));
  }

  #onResult(slot: Slot, value: Out): void {
    this.#settled++;
    if (this.destroyed) return;
    if (!this.ordered) this.#emit(value);
    else {
      slot.done = true;
      slot.value = value;
      while (this.#slots.length > 0 && this.#slots[0]!.done) this.#emit(this.#slots.shift()!.value);
    }
    this.#release();
    if (this.#flushed && this.#occupied() === 0) {
      const flushed = this.#flushed;
      this.#flushed = undefined;
      flushed();
    }
  }

  #onError(err: unknown): void {
    this.#settled++;
    if (this.destroyed) return;
    this.destroy(err instanceof Error ? err : new Error(String(err), { cause: err }));
  }

  #emit(value: unknown): void {
    // A Node stream cannot carry null (it means "end"), and a stage that only writes has nothing to pass on.
    if (value === undefined || value === null) return;
    if (!this.push(value)) this.#outputFull = true;
  }

  /** Lets the held input in once a slot is free and the output has room. */
  #release(): void {
    if (this.#heldInput === undefined || !this.#canTakeInput()) return;
    const callback = this.#heldInput;
    this.#heldInput = undefined;
    this.#waits.resume();
    callback();
  }
}

/**
 * Maps every item through an async `fn` with at most `concurrency` calls in flight: a database insert, an HTTP
 * call. While every slot is busy (or the output is not read) the stream stops taking input, so the source upstream
 * is paused and nothing piles up in memory. `ordered: true` (the default) emits results in input order.
 * A rejection of `fn` destroys the stream with that error (so `pipeline()` rejects with it), aborts the `signal`
 * given to the other calls in flight, and the stream closes once they have settled.
 *
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * import { batch, mapConcurrent } from 'weftjs/stream';
 * await pipeline(
 *   rows,
 *   batch({ size: 500 }),
 *   mapConcurrent((rows, { signal }) => db.insertMany(rows, { signal }), { concurrency: 4, ordered: false }),
 * );
 * ```
 */
export function mapConcurrent<In = unknown, Out = unknown>(
  fn: MapFn<In, Out>,
  options: MapConcurrentOptions,
): MapStream<In, Awaited<Out>> {
  return new MapStream<In, Awaited<Out>>(fn as MapFn<In, Awaited<Out>>, options);
}
