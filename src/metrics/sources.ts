/** The pools, lifecycles, shedders and meters added to a Metrics instance, and how each is read. Internal. */
import type { PoolStats, TimeSummary } from '../pool/index.ts';
import type {
  LifecycleLike,
  MeterLike,
  MeterSnapshot,
  MetricsSnapshot,
  PoolLike,
  ShedderLike,
} from './types.ts';

type Readings = Pick<MetricsSnapshot, 'pools' | 'lifecycles' | 'shedders' | 'meters'>;

const isNum = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);
const isSummary = (t: unknown): t is TimeSummary => {
  const s = t as Partial<Record<keyof TimeSummary, unknown>> | null;
  return typeof s === 'object' && s !== null && [s.count, s.mean, s.p50, s.p90, s.p99, s.max].every(isNum);
};

export class Sources {
  readonly pools = new Map<string, PoolLike>();
  readonly lifecycles = new Map<string, LifecycleLike>();
  readonly shedders = new Map<string, ShedderLike>();
  readonly meters = new Map<string, MeterLike>();
  /** Readings that threw or had a wrong shape, since creation. */
  errors = 0;

  /** Adds `source` under `name`; the returned function removes it (and only it: a later one of that name stays). */
  add<T>(map: Map<string, T>, name: string, source: T): () => void {
    map.set(name, source);
    return () => {
      if (map.get(name) === source) map.delete(name);
    };
  }

  clear(): void {
    this.pools.clear();
    this.lifecycles.clear();
    this.shedders.clear();
    this.meters.clear();
  }

  /**
   * Reads every source once. A source that throws or answers with the wrong shape is skipped and counted in
   * `errors`: one broken meter must not take the whole scrape (or the process) down with it.
   */
  read(): Readings {
    const out: Readings = { pools: {}, lifecycles: {}, shedders: {}, meters: {} };
    for (const [name, pool] of this.pools) this.#try(() => (out.pools[name] = poolStats(pool.stats())));
    for (const [name, life] of this.lifecycles) {
      this.#try(() => {
        const state = life.state;
        if (typeof state !== 'string') throw new TypeError('state is not a string');
        out.lifecycles[name] = { state };
      });
    }
    for (const [name, s] of this.shedders) {
      this.#try(() => {
        const { shed, overloaded } = s;
        if (!isNum(shed) || typeof overloaded !== 'boolean') throw new TypeError('not a LoadShedder');
        out.shedders[name] = { shed, overloaded };
      });
    }
    for (const [name, meter] of this.meters)
      this.#try(() => (out.meters[name] = meterSnapshot(meter.snapshot())));
    return out;
  }

  #try(read: () => unknown): void {
    try {
      read();
    } catch {
      this.errors++;
    }
  }
}

function poolStats(s: PoolStats): PoolStats {
  const ok =
    typeof s === 'object' &&
    s !== null &&
    typeof s.threads === 'object' &&
    s.threads !== null &&
    [s.threads.total, s.threads.idle, s.threads.busy, s.queued, s.running].every(isNum) &&
    [s.completed, s.failed, s.cancelled, s.timedOut, s.crashed, s.utilization].every(isNum) &&
    isSummary(s.waitTime) &&
    isSummary(s.runTime);
  if (!ok) throw new TypeError('stats() did not return PoolStats');
  return s;
}

/** A copy of the meter's known fields, checked: NaN or a missing number would poison sums and rates. */
function meterSnapshot(m: MeterSnapshot): MeterSnapshot {
  if (typeof m !== 'object' || m === null) throw new TypeError('snapshot() did not return an object');
  const required = [
    'items',
    'bytes',
    'elapsedMs',
    'itemsPerSecond',
    'bytesPerSecond',
    'pauses',
    'pausedMs',
  ] as const;
  const out: Record<string, unknown> = { name: String(m.name) };
  for (const key of required) {
    if (!isNum(m[key])) throw new TypeError(`snapshot().${key} is not a number`);
    out[key] = m[key];
  }
  for (const key of ['total', 'totalBytes', 'percent', 'etaMs'] as const)
    if (isNum(m[key])) out[key] = m[key];
  return out as unknown as MeterSnapshot;
}
