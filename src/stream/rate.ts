/** Rates over a sliding window of recent samples. Internal. */

interface Sample {
  t: number;
  items: number;
  bytes: number;
}

/** Samples kept per window: the rate's resolution is a tenth of the window. */
const SAMPLES = 10;

/**
 * Items and bytes per second over roughly the last `windowMs`, so a rate reflects how fast things go now, not the
 * average since the start (which a slow start or a stall would skew for the rest of the run).
 */
export class RateWindow {
  readonly #windowMs: number;
  readonly #step: number;
  #samples: Sample[] = [];
  /** When the totals last changed. */
  #lastChange = Number.NEGATIVE_INFINITY;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
    this.#step = windowMs / SAMPLES;
  }

  /** Starts the window at `t` with the given totals. */
  start(t: number, items: number, bytes: number): void {
    this.#samples = [{ t, items, bytes }];
    this.#lastChange = t;
  }

  /** Records the running totals at `t`; cheap to call on every chunk (keeps one sample per step). */
  record(t: number, items: number, bytes: number): void {
    const last = this.#samples[this.#samples.length - 1];
    if (last === undefined) {
      this.start(t, items, bytes);
      return;
    }
    this.#lastChange = t;
    if (t - last.t < this.#step) return;
    this.#samples.push({ t, items, bytes });
    this.#trim(t);
  }

  /** Rates per second at `now`, given the current totals. */
  rates(now: number, items: number, bytes: number): { itemsPerSecond: number; bytesPerSecond: number } {
    this.#trim(now);
    const base = this.#samples[0];
    const span = base === undefined ? 0 : now - base.t;
    // Nothing moved for a whole window: the rate is 0, not the crumbs counted after the last sample.
    if (base === undefined || span <= 0 || now - this.#lastChange >= this.#windowMs) {
      return { itemsPerSecond: 0, bytesPerSecond: 0 };
    }
    return {
      itemsPerSecond: ((items - base.items) * 1000) / span,
      bytesPerSecond: ((bytes - base.bytes) * 1000) / span,
    };
  }

  /** Drops samples older than the window, keeping the newest of them as the window's base. */
  #trim(now: number): void {
    const from = now - this.#windowMs;
    let drop = 0;
    while (drop + 1 < this.#samples.length && this.#samples[drop + 1]!.t <= from) drop++;
    if (drop > 0) this.#samples.splice(0, drop);
  }
}
