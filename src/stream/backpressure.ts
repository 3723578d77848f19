import { performance } from 'node:perf_hooks';

/** Counts of the waits a stage was made to do. See {@link BackpressureMonitor}. */
export interface BackpressureSnapshot {
  /** Times the stage started waiting. */
  pauses: number;
  /** Total time spent waiting, in ms, including a wait still going on. */
  pausedMs: number;
  /** True while a wait is going on. */
  paused: boolean;
}

/** A monotonic clock in ms. Default: `performance.now`. */
export type Clock = () => number;

export const defaultClock: Clock = () => performance.now();

/**
 * Measures how often, and for how long, something had to wait: `pause()` when the wait starts, `resume()` when it
 * ends. Repeated calls are ignored (a second `pause()` while paused is the same wait), so it can be called from
 * every place that notices the state without bookkeeping. `meter()` uses one for the time its downstream made it
 * wait; `mapConcurrent()` and `poolMap()` for the time their input waited for a free slot. Use one for any stage of
 * your own the same way.
 *
 * @example
 * ```ts
 * import { BackpressureMonitor } from 'weftjs/stream';
 * const monitor = new BackpressureMonitor();
 * if (!sink.write(row)) {
 *   monitor.pause();
 *   sink.once('drain', () => monitor.resume());
 * }
 * console.log(monitor.snapshot()); // { pauses: 1, pausedMs: 12.5, paused: false }
 * ```
 */
export class BackpressureMonitor {
  readonly #clock: Clock;
  #pauses = 0;
  #pausedMs = 0;
  #since: number | undefined;

  /** `clock`: a monotonic time source in ms, for tests. Default: `performance.now`. */
  constructor(clock: Clock = defaultClock) {
    this.#clock = clock;
  }

  /** Starts a wait; ignored while one is going on. */
  pause(): void {
    if (this.#since !== undefined) return;
    this.#since = this.#clock();
    this.#pauses++;
  }

  /** Ends the current wait; ignored when there is none. */
  resume(): void {
    if (this.#since === undefined) return;
    this.#pausedMs += Math.max(0, this.#clock() - this.#since);
    this.#since = undefined;
  }

  get paused(): boolean {
    return this.#since !== undefined;
  }

  get pauses(): number {
    return this.#pauses;
  }

  /** Total ms spent waiting, including a wait still going on. */
  get pausedMs(): number {
    return this.#since === undefined
      ? this.#pausedMs
      : this.#pausedMs + Math.max(0, this.#clock() - this.#since);
  }

  snapshot(): BackpressureSnapshot {
    return { pauses: this.#pauses, pausedMs: this.pausedMs, paused: this.paused };
  }
}
