import { Registry } from 'prom-client';
import { InvalidOptionError } from '../errors.ts';
import { MAX_TIMER } from '../validate.ts';

/** Options of `createMetrics()`. Validated once, at construction. */
export interface MetricsOptions {
  /**
   * The prom-client registry to register into (Weft's metrics are removed from it on `close()`). Default: a new
   * registry of its own; `defaultMetrics()` uses prom-client's global `register`.
   */
  registry?: Registry;
  /** Prefix of every metric name. Default: `'weft_'`. */
  prefix?: string;
  /** Event-loop, memory, CPU, GC and active-resource collectors for this process. Default: true. */
  collectProcess?: boolean;
  /** Ms of each event-loop window (delay percentiles and utilization cover the last complete one). Default: 1 000. */
  interval?: number;
  /** Ms between the event-loop delay monitor's samples (`monitorEventLoopDelay`'s resolution). Default: 10. */
  eventLoopResolution?: number;
  /** Upper bounds, in seconds, of the GC pause histogram's buckets. Default: 1 ms to 1 s. */
  gcBuckets?: number[];
}

/** The validated, defaulted, frozen form of {@link MetricsOptions}. */
export interface ResolvedMetricsOptions {
  readonly registry: Registry;
  readonly prefix: string;
  readonly collectProcess: boolean;
  readonly interval: number;
  readonly eventLoopResolution: number;
  readonly gcBuckets: readonly number[];
}

export const DEFAULT_GC_BUCKETS = Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);

/** A Prometheus metric name prefix (or nothing). */
const PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

export function resolveMetricsOptions(options: MetricsOptions): ResolvedMetricsOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const { prefix = 'weft_', collectProcess = true, gcBuckets = DEFAULT_GC_BUCKETS } = options;
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new InvalidOptionError('prefix', 'a Prometheus name prefix such as "weft_" (or "")', prefix);
  }
  if (typeof collectProcess !== 'boolean')
    throw new InvalidOptionError('collectProcess', 'a boolean', collectProcess);
  if (
    !Array.isArray(gcBuckets) ||
    gcBuckets.length === 0 ||
    !gcBuckets.every(
      (b, i) => typeof b === 'number' && b > 0 && Number.isFinite(b) && (i === 0 || b > gcBuckets[i - 1]!),
    )
  ) {
    throw new InvalidOptionError(
      'gcBuckets',
      'a non-empty array of increasing numbers of seconds > 0',
      gcBuckets,
    );
  }
  const interval = ms(options, 'interval', 1_000, 1);
  const eventLoopResolution = ms(options, 'eventLoopResolution', 10, 1);
  if (eventLoopResolution >= interval) {
    throw new InvalidOptionError(
      'eventLoopResolution',
      `less than interval (${interval} ms)`,
      eventLoopResolution,
    );
  }
  return Object.freeze({
    registry: registryOption(options.registry),
    prefix,
    collectProcess,
    interval,
    eventLoopResolution,
    gcBuckets: Object.freeze([...gcBuckets]),
  });
}

function registryOption(registry: unknown): Registry {
  if (registry === undefined) return new Registry();
  // Duck-typed rather than instanceof: an application may load its own copy of prom-client.
  const r = registry as Partial<Record<string, unknown>> | null;
  const methods = ['registerMetric', 'removeSingleMetric', 'getSingleMetric', 'metrics', 'getMetricsAsJSON'];
  if (typeof r !== 'object' || r === null || !methods.every((m) => typeof r[m] === 'function')) {
    throw new InvalidOptionError('registry', 'a prom-client Registry', registry);
  }
  return registry as Registry;
}

function ms(options: object, key: string, fallback: number, min: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_TIMER) {
    throw new InvalidOptionError(key, `an integer number of ms from ${min} to ${MAX_TIMER}`, value);
  }
  return value;
}

/** The `name` option of the `add*` methods: a non-empty string without control characters. */
export function nameOption(name: unknown, taken: boolean): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200 || /[\p{Cc}]/u.test(name)) {
    throw new InvalidOptionError(
      'name',
      'a non-empty string (at most 200 characters, no control characters)',
      name,
    );
  }
  if (taken) throw new InvalidOptionError('name', 'a name no other source of that kind uses', name);
  return name;
}
