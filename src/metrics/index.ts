/**
 * `weftjs/metrics`: event-loop, process, pool, lifecycle and stream metrics of one process in a prom-client
 * registry, as Prometheus text or JSON, and the merging a supervisor uses to serve a whole cluster on one
 * endpoint. See docs/metrics.md.
 * @module
 */
export { InvalidOptionError, WeftError, type WeftErrorCode } from '../errors.ts';
export {
  clusterTotalName,
  type MergeInput,
  MetricsMerger,
  renderFamilies,
  type TotalSeries,
  type WorkerFamilies,
} from './merge.ts';
export {
  createMetrics,
  defaultMetrics,
  Metrics,
  type MetricsCollection,
  type SourceOptions,
} from './metrics.ts';
export type { MetricsOptions, ResolvedMetricsOptions } from './options.ts';
export { type MetricsServer, type MetricsSource, type ServeMetricsOptions, serveMetrics } from './server.ts';
export type {
  EventLoopSnapshot,
  GcSnapshot,
  LifecycleLike,
  MeterLike,
  MeterSnapshot,
  MetricFamily,
  MetricSample,
  MetricsSnapshot,
  PoolLike,
  ProcessSnapshot,
  ShedderLike,
} from './types.ts';
