import { type Metric, Registry } from 'prom-client';
import type { MetricFamily, MetricSample } from './types.ts';

/** One worker's families, as its `Metrics.collect()` gave them. */
export interface WorkerFamilies {
  /** The worker's slot index: the `worker` label. */
  worker: number;
  /** The `pid` label. */
  pid: number;
  families: readonly MetricFamily[];
}

/** What {@link MetricsMerger.merge} merges. */
export interface MergeInput {
  /** The workers that answered this scrape. */
  workers: readonly WorkerFamilies[];
  /**
   * PIDs of every worker still alive, answered or not. A worker that did not answer but is alive keeps its last
   * counter values in the totals; one that is gone has them carried over for good.
   */
  alive: ReadonlySet<number>;
  /** The merging process's own families, added as they are. */
  own?: readonly MetricFamily[];
}

/** A counter series summed over workers (without the `worker` and `pid` labels). */
export interface TotalSeries {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/**
 * The name of the cluster total of counter `name`: `x_total` → `x_cluster_total`.
 *
 * @example
 * ```ts
 * clusterTotalName('weft_pool_tasks_total'); // 'weft_pool_tasks_cluster_total'
 * ```
 */
export function clusterTotalName(name: string): string {
  return `${name.endsWith('_total') ? name.slice(0, -6) : name}_cluster_total`;
}

interface Total {
  family: string;
  help: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Merges the families of several worker processes into one exposition: each worker's series keep their labels
 * plus `worker` (slot) and `pid`; every counter also gets a cluster total, `<name>_cluster_total`, summed over
 * workers. Totals are kept monotonic the way Prometheus expects a counter to be: the last values of a worker that
 * exited (or whose counter went back, which is a reset) are carried over, so a restart does not make the total
 * drop and `rate()` does not see a spurious reset.
 *
 * @example
 * ```ts
 * const merger = new MetricsMerger();
 * const families = merger.merge({ workers: [{ worker: 0, pid: 4242, families }], alive: new Set([4242]) });
 * const text = await renderFamilies(families);
 * ```
 */
export class MetricsMerger {
  /** Carried-over values of exited workers (and of resets), by total key. */
  readonly #base = new Map<string, Total>();
  /** The last counter values of each worker, by PID, then total key. */
  readonly #last = new Map<number, Map<string, Total>>();

  /** Merges one scrape. Malformed families (a worker of another version, say) are skipped, never thrown. */
  merge(input: MergeInput): MetricFamily[] {
    const byName = new Map<string, MetricFamily>();
    const answered = new Set<number>();
    for (const w of input.workers) {
      answered.add(w.pid);
      const extra = { worker: String(w.worker), pid: String(w.pid) };
      const counters = new Map<string, Total>();
      for (const f of w.families) {
        const clean = sanitize(f);
        if (!clean) continue;
        add(byName, clean, extra);
        if (clean.type === 'counter') for (const t of totalsOf(clean)) counters.set(key(t), t);
      }
      this.#remember(w.pid, counters);
    }
    for (const f of input.own ?? []) {
      const clean = sanitize(f);
      if (clean) add(byName, clean);
    }
    for (const [pid, series] of this.#last) {
      if (input.alive.has(pid) || answered.has(pid)) continue;
      for (const [k, t] of series) this.#carry(k, t);
      this.#last.delete(pid);
    }
    return [...byName.values(), ...this.#totalFamilies()];
  }

  /** The current cluster totals (what the `_cluster_total` families hold), for JSON. */
  totals(): TotalSeries[] {
    return [...this.#sum().values()].map((t) => ({
      name: clusterTotalName(t.family),
      labels: t.labels,
      value: t.value,
    }));
  }

  #remember(pid: number, counters: Map<string, Total>): void {
    const last = this.#last.get(pid) ?? new Map<string, Total>();
    for (const [k, t] of counters) {
      const prev = last.get(k);
      if (prev && t.value < prev.value) this.#carry(k, prev); // a counter that went back was reset
      last.set(k, t);
    }
    this.#last.set(pid, last);
  }

  #carry(k: string, t: Total): void {
    const b = this.#base.get(k);
    this.#base.set(k, { ...t, value: (b?.value ?? 0) + t.value });
  }

  #sum(): Map<string, Total> {
    const sum = new Map<string, Total>();
    for (const [k, t] of this.#base) sum.set(k, { ...t });
    for (const series of this.#last.values()) {
      for (const [k, t] of series) {
        const s = sum.get(k);
        sum.set(k, { ...t, value: (s?.value ?? 0) + t.value });
      }
    }
    return sum;
  }

  #totalFamilies(): MetricFamily[] {
    const families = new Map<string, MetricFamily>();
    for (const t of this.#sum().values()) {
      const name = clusterTotalName(t.family);
      let f = families.get(name);
      if (!f) {
        f = {
          name,
          help: `${t.help} (sum over every worker, exited ones included)`,
          type: 'counter',
          values: [],
        };
        families.set(name, f);
      }
      f.values.push({ value: t.value, labels: t.labels });
    }
    return [...families.values()];
  }
}

function key(t: Total): string {
  return JSON.stringify([
    t.family,
    Object.entries(t.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ]);
}

function totalsOf(f: MetricFamily): Total[] {
  const out: Total[] = [];
  for (const v of f.values) {
    if ((v.metricName ?? f.name) !== f.name || !Number.isFinite(v.value)) continue;
    const labels: Record<string, string> = {};
    for (const [k, val] of Object.entries(v.labels))
      if (k !== 'worker' && k !== 'pid') labels[k] = String(val);
    out.push({ family: f.name, help: f.help, labels, value: v.value });
  }
  return out;
}

function add(byName: Map<string, MetricFamily>, f: MetricFamily, extra?: Record<string, string>): void {
  let out = byName.get(f.name);
  if (!out) {
    out = { name: f.name, help: f.help, type: f.type, values: [] };
    byName.set(f.name, out);
  }
  for (const v of f.values) out.values.push(extra ? { ...v, labels: { ...v.labels, ...extra } } : v);
}

/** A checked copy of a family that crossed a process boundary, or undefined when it cannot be exposed. */
function sanitize(f: MetricFamily): MetricFamily | undefined {
  if (typeof f !== 'object' || f === null || typeof f.name !== 'string' || !NAME.test(f.name))
    return undefined;
  if (!Array.isArray(f.values)) return undefined;
  const values: MetricSample[] = [];
  for (const v of f.values as unknown[]) {
    const s = v as Partial<MetricSample> | null;
    if (typeof s !== 'object' || s === null) continue;
    // IPC is JSON: NaN and ±Infinity arrive as null. Dropped, as a single process drops its NaN samples (and
    // prom-client would render NaN as "Nan").
    if (typeof s.value !== 'number' || Number.isNaN(s.value)) continue;
    const value = s.value;
    const labels: Record<string, string | number> = {};
    let ok = s.metricName === undefined || (typeof s.metricName === 'string' && NAME.test(s.metricName));
    for (const [k, l] of Object.entries(s.labels ?? {})) {
      if (!LABEL.test(k) || (typeof l !== 'string' && typeof l !== 'number')) ok = false;
      else labels[k] = l;
    }
    if (ok)
      values.push(
        s.metricName === undefined ? { value, labels } : { value, labels, metricName: s.metricName },
      );
  }
  const type = TYPES.has(f.type) ? f.type : 'untyped';
  return { name: f.name, help: typeof f.help === 'string' ? f.help : '', type, values };
}

/**
 * Renders families in the Prometheus text exposition format (prom-client's own renderer, so escaping and number
 * formatting match a single process's `/metrics`).
 *
 * @example
 * ```ts
 * res.end(await renderFamilies(merger.merge({ workers, alive })));
 * ```
 */
export async function renderFamilies(families: readonly MetricFamily[]): Promise<string> {
  const registry = new Registry();
  for (const f of families) {
    if (registry.getSingleMetric(f.name)) continue; // one family per name, or the scrape would be rejected
    // prom-client renders anything with name and get(); its types only know its own classes.
    registry.registerMetric({ name: f.name, get: async () => f, reset() {} } as unknown as Metric);
  }
  return registry.metrics();
}
