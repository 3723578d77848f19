/** The Prometheus metric families of `weftjs/metrics`, each computed from the current snapshot at scrape time. Internal. */
import { Histogram, type Metric, type Registry } from 'prom-client';
import { InvalidOptionError } from '../errors.ts';
import type { TimeSummary } from '../pool/index.ts';
import type { MetricFamily, MetricSample, MetricsSnapshot } from './types.ts';

type Labels = Record<string, string | number>;
type Emit = (value: number, labels?: Labels, suffix?: string) => void;
type Read = (s: MetricsSnapshot, emit: Emit) => void;

/**
 * A family whose samples are derived from a snapshot when the registry asks for them. prom-client's registry only
 * calls `get()` (and `reset()`), as its own AggregatorRegistry relies on; a prom-client Gauge with `collect` would
 * need its values reset and set again at every scrape, and could not express a summary we did not observe.
 * `get()` reads the snapshot before any await, so every family of one scrape shares one reading (see Metrics).
 */
class ReadFamily {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator = 'sum';
  readonly #current: () => MetricsSnapshot;
  readonly #read: Read;

  constructor(name: string, type: string, help: string, current: () => MetricsSnapshot, read: Read) {
    this.name = name;
    this.type = type;
    this.help = help;
    this.#current = current;
    this.#read = read;
  }

  async get(): Promise<MetricFamily & { aggregator: string }> {
    const values: MetricSample[] = [];
    this.#read(this.#current(), (value, labels = {}, suffix) => {
      if (Number.isNaN(value)) return;
      values.push(suffix ? { value, labels, metricName: this.name + suffix } : { value, labels });
    });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {}
}

const LIFECYCLE_STATES = ['starting', 'ready', 'shutting-down', 'stopped'] as const;
const QUANTILES = [
  ['0.5', 'p50'],
  ['0.9', 'p90'],
  ['0.99', 'p99'],
  ['1', 'max'],
] as const;

function summary(emit: Emit, labels: Labels, t: TimeSummary): void {
  for (const [quantile, key] of QUANTILES) emit(t[key] / 1000, { ...labels, quantile });
  emit((t.mean * t.count) / 1000, labels, '_sum');
  emit(t.count, labels, '_count');
}

/** [name without prefix, type, help, read]: the whole catalogue, documented in docs/metrics.md. */
const CATALOGUE: readonly (readonly [string, string, string, Read])[] = [
  // Process (present only with collectProcess)
  ...(
    [
      ['eventloop_delay_p50_seconds', 'delayP50', 'Event-loop delay, median over the last interval'],
      ['eventloop_delay_p99_seconds', 'delayP99', 'Event-loop delay, 99th percentile over the last interval'],
      ['eventloop_delay_max_seconds', 'delayMax', 'Event-loop delay, maximum over the last interval'],
      ['eventloop_delay_mean_seconds', 'delayMean', 'Event-loop delay, mean over the last interval'],
    ] as const
  ).map(
    ([name, key, help]) =>
      [
        name,
        'gauge',
        help,
        (s: MetricsSnapshot, emit: Emit) => s.process && emit(s.process.eventLoop[key] / 1000),
      ] as const,
  ),
  [
    'eventloop_utilization_ratio',
    'gauge',
    'Share of the last interval the event loop was busy (0..1)',
    (s, emit) => s.process && emit(s.process.eventLoop.utilization),
  ],
  ...(
    [
      ['process_resident_memory_bytes', 'rss', 'Resident set size'],
      ['process_heap_used_bytes', 'heapUsed', 'V8 heap used'],
      ['process_heap_total_bytes', 'heapTotal', 'V8 heap allocated'],
      ['process_external_memory_bytes', 'external', 'Memory of C++ objects bound to JavaScript objects'],
    ] as const
  ).map(
    ([name, key, help]) =>
      [
        name,
        'gauge',
        help,
        (s: MetricsSnapshot, emit: Emit) => s.process && emit(s.process.memory[key]),
      ] as const,
  ),
  [
    'process_cpu_seconds_total',
    'counter',
    'CPU time used by the process, by mode (user, system)',
    (s, emit) => {
      if (!s.process) return;
      emit(s.process.cpu.userMs / 1000, { mode: 'user' });
      emit(s.process.cpu.systemMs / 1000, { mode: 'system' });
    },
  ],
  [
    'process_start_time_seconds',
    'gauge',
    'Start time of the process since the Unix epoch',
    (s, emit) => s.process && emit(Math.round(s.time - s.process.uptimeMs) / 1000),
  ],
  [
    'process_active_resources',
    'gauge',
    'Resources keeping the event loop alive (process.getActiveResourcesInfo()), by type',
    (s, emit) => {
      for (const [type, n] of Object.entries(s.process?.activeResources ?? {})) emit(n, { type });
    },
  ],
  // weft/pool
  [
    'pool_threads',
    'gauge',
    'Threads of the pool, by state (busy, idle)',
    (s, emit) => {
      for (const [pool, p] of Object.entries(s.pools)) {
        emit(p.threads.busy, { pool, state: 'busy' });
        emit(p.threads.idle, { pool, state: 'idle' });
      }
    },
  ],
  ['pool_queued_tasks', 'gauge', 'Tasks waiting in the queue', pools((p) => p.queued)],
  ['pool_running_tasks', 'gauge', 'Tasks handed to a thread and not settled yet', pools((p) => p.running)],
  [
    'pool_tasks_total',
    'counter',
    'Settled tasks, by outcome (completed, failed, cancelled, timed_out)',
    (s, emit) => {
      for (const [pool, p] of Object.entries(s.pools)) {
        emit(p.completed, { pool, outcome: 'completed' });
        emit(p.failed, { pool, outcome: 'failed' });
        emit(p.cancelled, { pool, outcome: 'cancelled' });
        emit(p.timedOut, { pool, outcome: 'timed_out' });
      }
    },
  ],
  ['pool_thread_crashes_total', 'counter', 'Threads that died unexpectedly', pools((p) => p.crashed)],
  [
    'pool_utilization_ratio',
    'gauge',
    'Mean event-loop utilization of the live threads since each started (0..1)',
    pools((p) => p.utilization),
  ],
  [
    'pool_task_wait_seconds',
    'summary',
    'Time from run() to the start of the task, since the pool started (quantile 1 is the maximum)',
    (s, emit) => {
      for (const [pool, p] of Object.entries(s.pools)) summary(emit, { pool }, p.waitTime);
    },
  ],
  [
    'pool_task_run_seconds',
    'summary',
    'Time tasks ran on their thread, since the pool started (quantile 1 is the maximum)',
    (s, emit) => {
      for (const [pool, p] of Object.entries(s.pools)) summary(emit, { pool }, p.runTime);
    },
  ],
  // weft/lifecycle
  [
    'lifecycle_state',
    'gauge',
    'The lifecycle state: 1 for the current one (starting, ready, shutting-down, stopped), 0 for the others',
    (s, emit) => {
      for (const [lifecycle, l] of Object.entries(s.lifecycles)) {
        const states = (LIFECYCLE_STATES as readonly string[]).includes(l.state)
          ? LIFECYCLE_STATES
          : [...LIFECYCLE_STATES, l.state];
        for (const state of states) emit(state === l.state ? 1 : 0, { lifecycle, state });
      }
    },
  ],
  [
    'lifecycle_shed_requests_total',
    'counter',
    'Requests the load shedder answered 503',
    (s, emit) => {
      for (const [shedder, x] of Object.entries(s.shedders)) emit(x.shed, { shedder });
    },
  ],
  [
    'lifecycle_overloaded',
    'gauge',
    '1 while the load shedder sheds, else 0',
    (s, emit) => {
      for (const [shedder, x] of Object.entries(s.shedders)) emit(x.overloaded ? 1 : 0, { shedder });
    },
  ],
  // Stream meters
  ['stream_items_total', 'counter', 'Items through the meter', meters((m) => m.items)],
  ['stream_bytes_total', 'counter', 'Bytes through the meter', meters((m) => m.bytes)],
  [
    'stream_items_per_second',
    'gauge',
    'Items per second (as the meter reports it)',
    meters((m) => m.itemsPerSecond),
  ],
  [
    'stream_bytes_per_second',
    'gauge',
    'Bytes per second (as the meter reports it)',
    meters((m) => m.bytesPerSecond),
  ],
  ['stream_elapsed_seconds', 'gauge', 'Time since the meter started', meters((m) => m.elapsedMs / 1000)],
  ['stream_pauses_total', 'counter', 'Times the stream was paused by backpressure', meters((m) => m.pauses)],
  [
    'stream_paused_seconds_total',
    'counter',
    'Time the stream spent paused',
    meters((m) => m.pausedMs / 1000),
  ],
  ['stream_expected_items', 'gauge', 'Items expected in all, when known', meters((m) => m.total)],
  ['stream_expected_bytes', 'gauge', 'Bytes expected in all, when known', meters((m) => m.totalBytes)],
  [
    'stream_progress_ratio',
    'gauge',
    'Progress 0..1, when a total is known',
    meters((m) => (m.percent === undefined ? undefined : m.percent / 100)),
  ],
  [
    'stream_eta_seconds',
    'gauge',
    'Estimated time left, when known',
    meters((m) => (m.etaMs === undefined ? undefined : m.etaMs / 1000)),
  ],
  [
    'metrics_collect_errors_total',
    'counter',
    'Sources (pools, lifecycles, shedders, meters) whose reading threw or had a wrong shape',
    (s, emit) => emit(s.collectErrors),
  ],
];

function pools(value: (p: MetricsSnapshot['pools'][string]) => number): Read {
  return (s, emit) => {
    for (const [pool, p] of Object.entries(s.pools)) emit(value(p), { pool });
  };
}

function meters(value: (m: MetricsSnapshot['meters'][string]) => number | undefined): Read {
  return (s, emit) => {
    for (const [meter, m] of Object.entries(s.meters)) {
      const v = value(m);
      if (v !== undefined) emit(v, { meter });
    }
  };
}

/** The families registered by one Metrics instance, and the GC histogram fed by the process collector. */
export interface Registered {
  names: string[];
  gc: Histogram<'kind'> | undefined;
}

/**
 * Registers the catalogue under `prefix` into `registry`. A name already taken there (say, two instances with one
 * prefix on one registry) throws ERR_WEFT_INVALID_OPTION and registers nothing.
 */
export function registerFamilies(
  registry: Registry,
  prefix: string,
  current: () => MetricsSnapshot,
  gcBuckets: readonly number[] | undefined,
): Registered {
  const names: string[] = [];
  try {
    for (const [name, type, help, read] of CATALOGUE) {
      const family = new ReadFamily(prefix + name, type, help, current, read);
      claim(registry, family.name, prefix);
      // prom-client types registerMetric() with its own classes only; it uses nothing but name, get and reset.
      registry.registerMetric(family as unknown as Metric);
      names.push(family.name);
    }
    let gc: Histogram<'kind'> | undefined;
    if (gcBuckets) {
      const name = `${prefix}gc_pause_seconds`;
      claim(registry, name, prefix);
      gc = new Histogram({
        name,
        help: 'Garbage-collection pauses, by kind (minor, major, incremental, weakcb)',
        labelNames: ['kind'],
        buckets: [...gcBuckets],
        registers: [registry],
      });
      names.push(name);
    }
    return { names, gc };
  } catch (err) {
    for (const n of names) registry.removeSingleMetric(n);
    throw err;
  }
}

function claim(registry: Registry, name: string, prefix: string): void {
  if (registry.getSingleMetric(name)) {
    throw new InvalidOptionError(
      'prefix',
      `a prefix whose metrics are not in the registry yet (${name} is)`,
      prefix,
    );
  }
}
