import { type Registry, register } from 'prom-client';
import { InvalidOptionError, WeftError } from '../errors.ts';
import { type Registered, registerFamilies } from './families.ts';
import {
  type MetricsOptions,
  nameOption,
  type ResolvedMetricsOptions,
  resolveMetricsOptions,
} from './options.ts';
import { ProcessCollector } from './process.ts';
import { Sources } from './sources.ts';
import type {
  LifecycleLike,
  MeterLike,
  MetricFamily,
  MetricSample,
  MetricsSnapshot,
  PoolLike,
  ShedderLike,
} from './types.ts';

/** Options of the `add*` methods. */
export interface SourceOptions {
  /** The value of the source's label (`pool`, `lifecycle`, `shedder`, `meter`). Default: `'default'` (a meter: its name). */
  name?: string;
}

/** Both forms of one reading: what the cluster agent sends the supervisor. */
export interface MetricsCollection {
  snapshot: MetricsSnapshot;
  /** Every family of the registry (Weft's and the application's own), as `registry.getMetricsAsJSON()` gives them. */
  families: MetricFamily[];
}

/**
 * Metrics of one process in a prom-client registry: event loop, memory, CPU, GC and active resources, plus every
 * pool, lifecycle, load shedder and stream meter added to it, each read at scrape time. Prometheus text with
 * `metrics()`, the same numbers as JSON with `snapshot()`. Create one with `createMetrics()`, or use the process's
 * `defaultMetrics()` (what a supervised worker serves to `weft start --metrics-port`). See docs/metrics.md.
 */
export class Metrics {
  readonly options: ResolvedMetricsOptions;
  readonly #sources = new Sources();
  readonly #registered: Registered;
  readonly #process: ProcessCollector | undefined;
  #cached: MetricsSnapshot | undefined;
  #closed = false;

  constructor(options: MetricsOptions = {}) {
    this.options = resolveMetricsOptions(options);
    const o = this.options;
    this.#registered = registerFamilies(
      o.registry,
      o.prefix,
      () => this.#current(),
      o.collectProcess ? o.gcBuckets : undefined,
    );
    if (o.collectProcess) {
      this.#process = new ProcessCollector(o.interval, o.eventLoopResolution, (kind, seconds) =>
        this.#registered.gc?.observe({ kind }, seconds),
      );
    }
  }

  /** The prom-client registry: register the application's own metrics here to have them scraped with Weft's. */
  get registry(): Registry {
    return this.options.registry;
  }

  /** The Content-Type of `metrics()`. */
  get contentType(): string {
    return this.options.registry.contentType;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reports a pool's threads, queue, task counts, wait and run times and crashes, from `pool.stats()` at scrape
   * time. Returns a function that removes it.
   *
   * @example
   * ```ts
   * const remove = metrics.addPool(pool, { name: 'images' });
   * ```
   */
  addPool(pool: PoolLike, options: SourceOptions = {}): () => void {
    this.#open();
    if (typeof (pool as Partial<PoolLike> | null)?.stats !== 'function')
      throw new InvalidOptionError('pool', 'a weft/pool Pool (an object with stats())', pool);
    return this.#add(this.#sources.pools, pool, options, 'default');
  }

  /**
   * Reports a lifecycle's state (`weft_lifecycle_state`). Returns a function that removes it.
   *
   * @example
   * ```ts
   * metrics.addLifecycle(life);
   * ```
   */
  addLifecycle(lifecycle: LifecycleLike, options: SourceOptions = {}): () => void {
    this.#open();
    if (typeof lifecycle !== 'object' || lifecycle === null || !('state' in lifecycle))
      throw new InvalidOptionError(
        'lifecycle',
        'a weft/lifecycle Lifecycle (an object with state)',
        lifecycle,
      );
    return this.#add(this.#sources.lifecycles, lifecycle, options, 'default');
  }

  /**
   * Reports a load shedder's shed requests and whether it sheds now. Returns a function that removes it.
   *
   * @example
   * ```ts
   * metrics.addShedder(shedder, { name: 'http' });
   * ```
   */
  addShedder(shedder: ShedderLike, options: SourceOptions = {}): () => void {
    this.#open();
    if (typeof shedder !== 'object' || shedder === null || !('shed' in shedder) || !('overloaded' in shedder))
      throw new InvalidOptionError('shedder', 'a weft/lifecycle LoadShedder (shed and overloaded)', shedder);
    return this.#add(this.#sources.shedders, shedder, options, 'default');
  }

  /**
   * Reports a stream meter (anything with `name` and `snapshot()`, such as `weftjs/stream`'s `meter()`), labelled by
   * its name. Returns a function that removes it.
   *
   * @example
   * ```ts
   * const remove = metrics.addMeter(uploadMeter);
   * stream.once('close', remove);
   * ```
   */
  addMeter(meter: MeterLike, options: SourceOptions = {}): () => void {
    this.#open();
    if (typeof (meter as Partial<MeterLike> | null)?.snapshot !== 'function')
      throw new InvalidOptionError('meter', 'a meter (an object with name and snapshot())', meter);
    return this.#add(this.#sources.meters, meter, options, meter.name);
  }

  /**
   * The registry in Prometheus text exposition format (Weft's metrics and any registered by the application).
   *
   * @example
   * ```ts
   * res.setHeader('content-type', metrics.contentType).end(await metrics.metrics());
   * ```
   */
  async metrics(): Promise<string> {
    this.#open();
    return this.options.registry.metrics();
  }

  /**
   * The same numbers as a plain JSON object, times in ms (Prometheus gets seconds).
   *
   * @example
   * ```ts
   * const { process, pools } = metrics.snapshot();
   * console.log(process?.eventLoop.delayP99, pools.images?.queued);
   * ```
   */
  snapshot(): MetricsSnapshot {
    this.#open();
    return this.#read();
  }

  /**
   * The snapshot and every family of the registry in prom-client's JSON form, from one reading.
   *
   * @example
   * ```ts
   * const { snapshot, families } = await metrics.collect();
   * ```
   */
  async collect(): Promise<MetricsCollection> {
    this.#open();
    const snapshot = this.#share(this.#read()); // the families below, asked for in this same run, share it
    const families = (await this.options.registry.getMetricsAsJSON()).map(
      // prom-client's label type allows undefined values; getMetricsAsJSON() never produces one.
      ({ name, help, type, values }): MetricFamily => ({
        name,
        help,
        type: String(type),
        values: values as MetricSample[],
      }),
    );
    return { snapshot, families };
  }

  /** Stops the collectors and removes Weft's metrics from the registry. Idempotent; leaves no handle. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#process?.close();
    for (const name of this.#registered.names) this.options.registry.removeSingleMetric(name);
    this.#sources.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #add<T>(map: Map<string, T>, source: T, options: SourceOptions, fallback: string): () => void {
    if (typeof options !== 'object' || options === null)
      throw new InvalidOptionError('options', 'an object', options);
    const raw = options.name ?? fallback;
    const remove = this.#sources.add(map, nameOption(raw, map.has(raw)), source);
    this.#cached = undefined;
    return () => {
      remove();
      this.#cached = undefined;
    };
  }

  #open(): void {
    if (this.#closed) throw new WeftError('ERR_WEFT_METRICS_CLOSED', 'This Metrics instance is closed');
  }

  /**
   * One reading shared by the families of one scrape: prom-client calls every family's `get()` in one synchronous
   * run, before its first await, so a scrape reads each pool and meter once and its families agree with each other.
   * Adding or removing a source drops the cached reading.
   */
  #current(): MetricsSnapshot {
    return this.#cached ?? this.#share(this.#read());
  }

  #share(reading: MetricsSnapshot): MetricsSnapshot {
    this.#cached = reading;
    queueMicrotask(() => {
      if (this.#cached === reading) this.#cached = undefined;
    });
    return reading;
  }

  #read(): MetricsSnapshot {
    const readings = this.#sources.read();
    return {
      time: Date.now(),
      pid: process.pid,
      ...(this.#process ? { process: this.#process.read() } : {}),
      ...readings,
      collectErrors: this.#sources.errors,
    };
  }
}

/**
 * Creates a {@link Metrics} instance with its own registry (or the one given).
 *
 * @example
 * ```ts
 * import { createMetrics } from 'weftjs/metrics';
 * const metrics = createMetrics({ prefix: 'weft_' });
 * metrics.addPool(pool, { name: 'images' });
 * console.log(await metrics.metrics());
 * ```
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  return new Metrics(options);
}

// On globalThis rather than in a module variable: the agent and the application may load weft/metrics from two
// copies (src and dist), and must still share one instance.
const DEFAULT = Symbol.for('weft.metrics.default');

/**
 * The process's default instance, registered in prom-client's global `register`, created on first use (again
 * after it was closed). In a worker under `weft start --metrics-port`, this is what the supervisor scrapes.
 * `options` apply only when this call creates it.
 *
 * @example
 * ```ts
 * import { defaultMetrics } from 'weftjs/metrics';
 * defaultMetrics().addPool(pool, { name: 'images' });
 * ```
 */
export function defaultMetrics(options?: MetricsOptions): Metrics {
  const g = globalThis as { [DEFAULT]?: Metrics };
  const current = g[DEFAULT];
  if (current && !current.closed) {
    if (options !== undefined)
      throw new InvalidOptionError(
        'options',
        'given only on the call that creates the default instance',
        options,
      );
    return current;
  }
  const created = new Metrics({ registry: register, ...options });
  g[DEFAULT] = created;
  return created;
}
