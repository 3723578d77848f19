import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

/** Percentiles of a time distribution, in milliseconds. */
export interface TimeSummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** A snapshot of a pool's state and counters. See `pool.stats()`. */
export interface PoolStats {
  threads: { total: number; idle: number; busy: number };
  /** Tasks waiting in the queue. */
  queued: number;
  /** Tasks handed to a thread and not settled yet. */
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  timedOut: number;
  /** Threads that died unexpectedly (exit, uncaught error, out of memory, failed load). */
  crashed: number;
  /** Mean event-loop utilization of the live threads since each started, 0..1. */
  utilization: number;
  /** Time from `run()` to the start of the task. */
  waitTime: TimeSummary;
  /** Time the task ran on its thread. */
  runTime: TimeSummary;
}

/** A histogram of durations recorded in microseconds, summarised in milliseconds. */
export class DurationHistogram {
  readonly #h: RecordableHistogram = createHistogram();

  recordMicros(us: number): void {
    this.#h.record(us >= 1 ? Math.round(us) : 1);
  }

  summary(): TimeSummary {
    const h = this.#h;
    if (h.count === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    return {
      count: h.count,
      mean: h.mean / 1000,
      p50: h.percentile(50) / 1000,
      p90: h.percentile(90) / 1000,
      p99: h.percentile(99) / 1000,
      max: h.max / 1000,
    };
  }
}
