/**
 * Restart delays: exponential with jitter, reset after a stable run; and the crash-loop window. Internal.
 */

export interface BackoffOptions {
  /** First delay, ms. Default: 100. */
  min?: number;
  /** Largest delay, ms. Default: 30 000. */
  max?: number;
  /** Each delay is the previous one times this. Default: 2. */
  factor?: number;
  /** Up to this fraction of a delay is added at random, so restarts of many slots do not align. Default: 0.2. */
  jitter?: number;
  /** Injectable randomness, 0 ≤ x < 1. Default: Math.random. */
  random?: () => number;
}

/** Exponential backoff with jitter: 100 ms, 200 ms, 400 ms … up to 30 s. */
export class Backoff {
  readonly #min: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#min = options.min ?? 100;
    this.#max = options.max ?? 30_000;
    this.#factor = options.factor ?? 2;
    this.#jitter = options.jitter ?? 0.2;
    this.#random = options.random ?? Math.random;
  }

  /** Restarts so far since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next restart, ms; counts the attempt. */
  next(): number {
    const base = Math.min(this.#max, this.#min * this.#factor ** this.#attempt);
    this.#attempt++;
    return Math.min(this.#max, Math.round(base * (1 + this.#jitter * this.#random())));
  }

  /** After a stable run: the next restart waits `min` again. */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Counts crashes in a sliding time window: more than `max` within `windowMs` is a crash loop. */
export class CrashWindow {
  readonly #max: number;
  readonly #windowMs: number;
  #times: number[] = [];

  constructor(max: number, windowMs: number) {
    this.#max = max;
    this.#windowMs = windowMs;
  }

  /** Records a crash at `now` (ms); true when the slot is now crash-looping. */
  record(now: number): boolean {
    this.#times = this.#times.filter((t) => now - t < this.#windowMs);
    this.#times.push(now);
    return this.#times.length > this.#max;
  }

  get count(): number {
    return this.#times.length;
  }
}
