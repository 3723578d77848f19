/** The shapes `weftjs/metrics` reads and returns. Sources are structural so metrics depends on no module's classes. */
import type { LifecycleState } from '../lifecycle/index.ts';
import type { PoolStats } from '../pool/index.ts';
import type { MeterSnapshot } from '../stream/index.ts';

/** What a stream meter reports: `weftjs/stream`'s type (a type-only import: metrics loads none of stream's code). */
export type { MeterSnapshot } from '../stream/index.ts';

/** Anything with a name and a `snapshot()` of {@link MeterSnapshot} shape, such as a `weftjs/stream` meter. */
export interface MeterLike {
  readonly name: string;
  snapshot(): MeterSnapshot;
}

/** A `weftjs/pool` Pool, or anything whose `stats()` returns {@link PoolStats}. */
export interface PoolLike {
  stats(): PoolStats;
}

/** A `weftjs/lifecycle` Lifecycle, or anything with its `state`. */
export interface LifecycleLike {
  readonly state: LifecycleState;
}

/** A `weftjs/lifecycle` LoadShedder, or anything with its `shed` count and `overloaded` flag. */
export interface ShedderLike {
  readonly shed: number;
  readonly overloaded: boolean;
}

/** Event-loop delay and utilization over the last complete interval, in ms and 0..1. */
export interface EventLoopSnapshot {
  /** Delay percentiles and maximum, in ms (the monitor's own resolution not counted). */
  delayP50: number;
  delayP99: number;
  delayMax: number;
  delayMean: number;
  /** Share of the interval the event loop was busy, 0..1. */
  utilization: number;
  /** Length of the interval these numbers cover, in ms. */
  intervalMs: number;
}

/** Garbage-collection pauses of one kind since the collector started. */
export interface GcSnapshot {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** The process's own numbers, read when `collectProcess` is on. */
export interface ProcessSnapshot {
  uptimeMs: number;
  eventLoop: EventLoopSnapshot;
  memory: { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  /** CPU time used by the process since it started, in ms. */
  cpu: { userMs: number; systemMs: number };
  /** By kind: `minor`, `major`, `incremental`, `weakcb`. */
  gc: Record<string, GcSnapshot>;
  /** `process.getActiveResourcesInfo()` counted by type: `TCPSocketWrap`, `Timeout`, `FSReqCallback`, ... */
  activeResources: Record<string, number>;
}

/** The JSON snapshot of every source of one {@link Metrics} instance, from one reading. Times in ms. */
export interface MetricsSnapshot {
  /** `Date.now()` of the reading. */
  time: number;
  pid: number;
  /** Absent when `collectProcess` is false. */
  process?: ProcessSnapshot;
  /** `pool.stats()` of each pool, by name. */
  pools: Record<string, PoolStats>;
  lifecycles: Record<string, { state: LifecycleState }>;
  shedders: Record<string, { shed: number; overloaded: boolean }>;
  meters: Record<string, MeterSnapshot>;
  /** Sources whose reading threw or returned a wrong shape (each skipped), since creation. */
  collectErrors: number;
}

/** One sample of a metric family, as prom-client's `getMetricsAsJSON()` gives it. */
export interface MetricSample {
  value: number;
  labels: Record<string, string | number>;
  /** For histograms and summaries: `<name>_bucket`, `<name>_sum`, `<name>_count`. */
  metricName?: string;
}

/** A metric family in prom-client's JSON form (`registry.getMetricsAsJSON()`), which is what workers send. */
export interface MetricFamily {
  name: string;
  help: string;
  type: string;
  values: MetricSample[];
}
