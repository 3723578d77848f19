/**
 * `weftjs/stream`: Node stream tools with backpressure: `batch`, `mapConcurrent`, `poolMap`, `meter`,
 * `progressBar`, `through`. Every one is a `Transform` usable in `pipeline()` from `node:stream/promises`,
 * readable with `for await`, and takes a `signal`. See docs/stream.md.
 * @module
 */
export { InvalidOptionError, WeftError, type WeftErrorCode } from '../errors.ts';
export {
  BackpressureMonitor,
  type BackpressureSnapshot,
  type Clock,
} from './backpressure.ts';
export { type BatchOptions, BatchStream, batch } from './batch.ts';
export {
  type MapConcurrentOptions,
  type MapContext,
  type MapFn,
  type MapStats,
  MapStream,
  mapConcurrent,
} from './map.ts';
export { Meter, type MeterOptions, type MeterSnapshot, meter } from './meter.ts';
export { type PoolMapOptions, poolMap, transferable } from './pool-map.ts';
export {
  formatProgress,
  type ProgressBar,
  type ProgressBarOptions,
  type ProgressOutput,
  progressBar,
} from './progress.ts';
export { type OutputOf, type Source, type Through, through } from './through.ts';
