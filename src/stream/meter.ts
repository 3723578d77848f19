import { Transform, type TransformCallback } from 'node:stream';
import { InvalidOptionError } from '../errors.ts';
import { BackpressureMonitor, type Clock, defaultClock } from './backpressure.ts';
import {
  amountOption,
  attachSignal,
  boolOption,
  checkAmount,
  fnOption,
  optionsObject,
  periodOption,
  signalOption,
} from './options.ts';
import { RateWindow } from './rate.ts';

/** What a meter has counted. `weftjs/metrics` reads this shape. */
export interface MeterSnapshot {
  name: string;
  items: number;
  bytes: number;
  /** Ms from the first chunk to now, or to the end once the input has ended; 0 before the first chunk. */
  elapsedMs: number;
  /** Over the last `windowMs` (default 5 s), not the average since the start. */
  itemsPerSecond: number;
  bytesPerSecond: number;
  /** Expected items, when known. */
  total?: number;
  /** Expected bytes, when known. */
  totalBytes?: number;
  /** 0-100, from `totalBytes` when known, else `total`; capped at 100. */
  percent?: number;
  /** Ms left at the current rate, when a total is known and the rate is not 0; 0 once ended. */
  etaMs?: number;
  /** Backpressure: times the downstream made this stream wait (its output buffer was full). */
  pauses: number;
  /** Backpressure: ms spent waiting so, including a wait going on. */
  pausedMs: number;
}

/** Options of {@link meter}. */
export interface MeterOptions<T = unknown> {
  /** Shown by the progress bar and in `weftjs/metrics`. Default: `'stream'`. */
  name?: string;
  /** Expected items, for `percent` and `etaMs`. Can also be set later: `meter.total = n`. */
  total?: number;
  /** Expected bytes, for `percent` and `etaMs` (wins over `total`). Can also be set later. */
  totalBytes?: number;
  /** Items a chunk counts for. Default: 1 (a batch of rows counts for `rows.length` with `(b) => b.length`). */
  items?: (chunk: T) => number;
  /**
   * Bytes a chunk counts for. Default: the byte length of a `Buffer`, typed array, `ArrayBuffer` or string
   * (UTF-8), 0 for anything else.
   */
  bytes?: (chunk: T) => number;
  /** Object mode on both sides. Default: true; `false` for a byte stream, so buffering is counted in bytes. */
  objectMode?: boolean;
  /** The window rates are computed over, in ms. Default: 5000. */
  windowMs?: number;
  /** `progress` is emitted at most this often, in ms, while chunks flow (and once at the end). Default: 1000. */
  progressIntervalMs?: number;
  /** A monotonic clock in ms, for tests. Default: `performance.now`. */
  clock?: Clock;
  /** Destroys the stream with an `AbortError` when aborted. */
  signal?: AbortSignal;
}

function defaultBytes(chunk: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk);
  if (ArrayBuffer.isView(chunk) || chunk instanceof ArrayBuffer) return chunk.byteLength;
  return 0;
}

/**
 * A pass-through stream that counts what goes through it. Events: `progress` with a {@link MeterSnapshot}, at most
 * every `progressIntervalMs` while chunks flow and once when the input ends.
 */
export class Meter<T = unknown> extends Transform {
  readonly name: string;
  readonly #clock: Clock;
  readonly #itemsOf: ((chunk: T) => number) | undefined;
  readonly #bytesOf: (chunk: T) => number;
  readonly #progressIntervalMs: number;
  readonly #window: RateWindow;
  readonly #waits: BackpressureMonitor;
  #total: number | undefined;
  #totalBytes: number | undefined;
  #items = 0;
  #bytes = 0;
  #startedAt: number | undefined;
  #endedAt: number | undefined;
  #lastProgress = Number.NEGATIVE_INFINITY;
  #held: TransformCallback | undefined;

  /** @internal Use {@link meter}. */
  constructor(options?: MeterOptions<T>) {
    const opts = optionsObject(options);
    const name = opts.name ?? 'stream';
    if (typeof name !== 'string') throw new InvalidOptionError('name', 'a string', name);
    const objectMode = boolOption(opts, 'objectMode', true);
    const clock = fnOption<Clock>(opts, 'clock') ?? defaultClock;
    const itemsOf = fnOption<(chunk: T) => number>(opts, 'items');
    const bytesOf = fnOption<(chunk: T) => number>(opts, 'bytes') ?? defaultBytes;
    const windowMs = periodOption(opts, 'windowMs', 5_000);
    const progressIntervalMs = periodOption(opts, 'progressIntervalMs', 1_000);
    const total = amountOption(opts, 'total');
    const totalBytes = amountOption(opts, 'totalBytes');
    const signal = signalOption(opts);
    super({ objectMode });
    this.name = name;
    this.#clock = clock;
    this.#itemsOf = itemsOf;
    this.#bytesOf = bytesOf;
    this.#progressIntervalMs = progressIntervalMs;
    this.#window = new RateWindow(windowMs);
    this.#waits = new BackpressureMonitor(clock);
    this.#total = total;
    this.#totalBytes = totalBytes;
    attachSignal(signal, this);
  }

  /** Expected items, or undefined. Settable, say once a count is known. */
  get total(): number | undefined {
    return this.#total;
  }

  set total(value: number | undefined) {
    if (value !== undefined) checkAmount('total', value);
    this.#total = value;
  }

  /** Expected bytes, or undefined. Settable, say from a file's size or a `Content-Length`. */
  get totalBytes(): number | undefined {
    return this.#totalBytes;
  }

  set totalBytes(value: number | undefined) {
    if (value !== undefined) checkAmount('totalBytes', value);
    this.#totalBytes = value;
  }

  /** True once the input has ended and everything was passed on. */
  get done(): boolean {
    return this.#endedAt !== undefined;
  }

  /** The counters now. */
  snapshot(): MeterSnapshot {
    const now = this.#endedAt ?? this.#clock();
    const elapsedMs = this.#startedAt === undefined ? 0 : Math.max(0, now - this.#startedAt);
    const rates = this.#window.rates(now, this.#items, this.#bytes);
    const snap: MeterSnapshot = {
      name: this.name,
      items: this.#items,
      bytes: this.#bytes,
      elapsedMs,
      itemsPerSecond: rates.itemsPerSecond,
      bytesPerSecond: rates.bytesPerSecond,
      pauses: this.#waits.pauses,
      pausedMs: this.#waits.pausedMs,
    };
    if (this.#total !== undefined) snap.total = this.#total;
    if (this.#totalBytes !== undefined) snap.totalBytes = this.#totalBytes;
    const [done, expected, rate] =
      this.#totalBytes !== undefined
        ? [this.#bytes, this.#totalBytes, rates.bytesPerSecond]
        : [this.#items, this.#total, rates.itemsPerSecond];
    if (expected !== undefined) {
      snap.percent = expected === 0 ? 100 : Math.min(100, (done / expected) * 100);
      if (this.#endedAt !== undefined || done >= expected) snap.etaMs = 0;
      else if (rate > 0) snap.etaMs = ((expected - done) / rate) * 1000;
    }
    return snap;
  }

  override _transform(chunk: T, _encoding: BufferEncoding, callback: TransformCallback): void {
    let items: number;
    let bytes: number;
    try {
      items = this.#itemsOf ? this.#itemsOf(chunk) : 1;
      bytes = this.#bytesOf(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    const now = this.#clock();
    if (this.#startedAt === undefined) {
      this.#startedAt = now;
      this.#window.start(now, 0, 0);
    }
    this.#items += Number.isFinite(items) ? items : 0;
    this.#bytes += Number.isFinite(bytes) ? bytes : 0;
    this.#window.record(now, this.#items, this.#bytes);
    if (now - this.#lastProgress >= this.#progressIntervalMs) {
      this.#lastProgress = now;
      this.emit('progress', this.snapshot());
    }
    if (this.push(chunk)) callback();
    else {
      // The reader downstream has not caught up: hold the input (which pauses the source) until it reads.
      this.#held = callback;
      this.#waits.pause();
    }
  }

  override _read(size: number): void {
    if (this.#held) {
      const held = this.#held;
      this.#held = undefined;
      this.#waits.resume();
      held();
    }
    super._read(size);
  }

  override _flush(callback: TransformCallback): void {
    this.#endedAt = this.#clock();
    this.emit('progress', this.snapshot());
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#waits.resume();
    this.#held = undefined;
    callback(error);
  }
}

/**
 * A pass-through stream that counts items and bytes, with rates over a recent window, percent and ETA when a total
 * is known, and backpressure: how often and how long the stage after it made it wait. Place it before the stage you
 * want to watch. Read it with `snapshot()`, the `progress` event, `progressBar()`, or `weftjs/metrics`.
 *
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * import { meter, progressBar } from 'weftjs/stream';
 * const bytesIn = meter({ name: 'upload', objectMode: false, totalBytes: size });
 * progressBar(bytesIn);
 * await pipeline(createReadStream(file), bytesIn, parse(), sink);
 * console.log(bytesIn.snapshot()); // { items, bytes, bytesPerSecond, pauses, pausedMs, ... }
 * ```
 */
export function meter<T = unknown>(options?: MeterOptions<T>): Meter<T> {
  return new Meter<T>(options);
}
