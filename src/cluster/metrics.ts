/**
 * The supervisor's view of the cluster's metrics: asks every ready worker for its weft/metrics over IPC, merges
 * them with the supervisor's own (slots, restarts, reloads) and serves them as one scrape. Internal; see
 * `Supervisor.metrics()` and `--metrics-port`.
 */
import { performance } from 'node:perf_hooks';
import type {
  MetricFamily,
  MetricsMerger,
  MetricsSnapshot,
  TotalSeries,
  WorkerFamilies,
} from '../metrics/index.ts';
import { METRICS_REQUEST } from './protocol.ts';
import type { SlotReplacement, SlotState, SlotStatus } from './slot.ts';
import type { ReloadProgress, Supervisor, SupervisorStatus } from './supervisor.ts';

/** One slot in {@link ClusterMetricsSnapshot}. */
export interface SlotMetrics {
  index: number;
  pid: number | undefined;
  state: SlotState;
  restarts: number;
  /** Ms since the slot's current worker started. */
  uptimeMs: number;
  /** How the slot's previous worker ended (`signal SIGKILL`, `exit code 1`, ...). */
  lastExit?: string;
  /** A replacement under way (reload, memory limit) and its step. */
  replacement?: SlotReplacement;
  /** The worker's `weftjs/metrics` snapshot, when it answered this scrape. */
  metrics?: MetricsSnapshot;
  /** Why it has none: not ready, did not answer in time, or its answer failed. */
  error?: string;
}

/** The whole cluster's metrics as JSON (`GET /metrics.json`, `sup.metricsSnapshot()`). Times in ms. */
export interface ClusterMetricsSnapshot {
  time: number;
  supervisor: {
    name: string;
    pid: number;
    state: SupervisorStatus['state'];
    uptimeMs: number;
    lastReload: SupervisorStatus['lastReload'];
    /** A rolling reload under way, when there is one. */
    reload?: ReloadProgress;
    /** Ms this scrape took to gather every answer. */
    scrapeMs: number;
    /** Failed or late answers so far, by slot. */
    scrapeErrors: Record<string, number>;
  };
  slots: SlotMetrics[];
  /** Every worker counter summed over the workers, exited ones included (the `_cluster_total` families). */
  totals: TotalSeries[];
}

const SLOT_STATES: readonly SlotState[] = ['starting', 'ready', 'draining', 'backoff', 'failed', 'stopped'];
const STATES: readonly SupervisorStatus['state'][] = [
  'running',
  'reloading',
  'stopping',
  'stopped',
  'failed',
];

type Lib = typeof import('../metrics/index.ts');

export class ClusterMetrics {
  readonly #sup: Supervisor;
  readonly #timeout: number;
  readonly #errors = new Map<number, number>();
  #lib: Promise<Lib> | undefined;
  #merger: MetricsMerger | undefined;

  constructor(supervisor: Supervisor, timeout: number) {
    this.#sup = supervisor;
    this.#timeout = timeout;
  }

  /** The merged Prometheus text. */
  async metrics(): Promise<string> {
    const { families } = await this.scrape();
    return (await this.#load()).renderFamilies(families);
  }

  /**
   * With `light`, each worker sends only its snapshot (no metric families, no merge: what a dashboard needs every
   * second, for a fraction of the cost), and `totals` are those of the last full scrape.
   */
  async snapshot(options: { light?: boolean } = {}): Promise<ClusterMetricsSnapshot> {
    if (!options.light) return (await this.scrape()).snapshot;
    const started = performance.now();
    const status = this.#sup.status();
    const slots = await Promise.all(status.slots.map((s) => this.#ask(s, false)));
    return this.#snapshot(status, slots, performance.now() - started, this.#merger?.totals() ?? []);
  }

  /**
   * Asks every ready worker at once; each has `timeout` ms to answer, so a scrape never takes much longer than
   * that, whatever a hung worker does. A worker that fails is skipped (and counted in
   * `weft_metrics_scrape_errors_total`).
   */
  async scrape(): Promise<{ families: MetricFamily[]; snapshot: ClusterMetricsSnapshot }> {
    const lib = await this.#load();
    this.#merger ??= new lib.MetricsMerger();
    const started = performance.now();
    const status = this.#sup.status();
    const slots = await Promise.all(status.slots.map((s) => this.#ask(s, true)));
    const scrapeMs = performance.now() - started;
    const workers: WorkerFamilies[] = [];
    for (const s of slots)
      if (s.families && s.pid !== undefined)
        workers.push({ worker: s.index, pid: s.pid, families: s.families });
    const alive = new Set(status.slots.flatMap((s) => (s.pid === undefined ? [] : [s.pid])));
    const families = this.#merger.merge({ workers, alive, own: this.#own(status, slots, scrapeMs) });
    return { families, snapshot: this.#snapshot(status, slots, scrapeMs, this.#merger.totals()) };
  }

  #snapshot(
    status: SupervisorStatus,
    slots: (SlotMetrics & { families?: MetricFamily[] })[],
    scrapeMs: number,
    totals: TotalSeries[],
  ): ClusterMetricsSnapshot {
    return {
      time: Date.now(),
      supervisor: {
        name: status.name,
        pid: status.pid,
        state: status.state,
        uptimeMs: process.uptime() * 1000,
        lastReload: status.lastReload,
        ...(status.reload ? { reload: status.reload } : {}),
        scrapeMs,
        scrapeErrors: Object.fromEntries(this.#errors),
      },
      slots: slots.map(({ families: _, ...slot }) => slot),
      totals,
    };
  }

  #load(): Promise<Lib> {
    // Loaded on the first scrape: a supervisor that is never scraped never loads prom-client.
    this.#lib ??= import('../metrics/index.ts');
    return this.#lib;
  }

  async #ask(
    s: SupervisorStatus['slots'][number],
    families: boolean,
  ): Promise<SlotMetrics & { families?: MetricFamily[] }> {
    const slot: SlotMetrics = {
      index: s.index,
      pid: s.pid,
      state: s.state,
      restarts: s.restarts,
      uptimeMs: s.uptime,
      ...(s.lastExit ? { lastExit: s.lastExit } : {}),
      ...(s.replacement ? { replacement: s.replacement } : {}),
    };
    if (s.state !== 'ready' || s.pid === undefined) return { ...slot, error: `worker is ${s.state}` };
    try {
      const answer = (await this.#sup.request(s.index, METRICS_REQUEST, families ? undefined : { families }, {
        timeout: this.#timeout,
      })) as { snapshot?: unknown; families?: unknown } | null;
      if (typeof answer?.snapshot !== 'object' || answer.snapshot === null)
        throw new Error('malformed metrics answer');
      if (!families) return { ...slot, metrics: answer.snapshot as MetricsSnapshot };
      if (!Array.isArray(answer.families)) throw new Error('malformed metrics answer');
      return {
        ...slot,
        metrics: answer.snapshot as MetricsSnapshot,
        families: answer.families as MetricFamily[],
      };
    } catch (err) {
      this.#errors.set(s.index, (this.#errors.get(s.index) ?? 0) + 1);
      return { ...slot, error: err instanceof Error ? err.message : String(err) };
    }
  }

  /** The supervisor's own families. Fixed `weft_` names: the supervisor has no application prefix. */
  #own(status: SupervisorStatus, slots: SlotMetrics[], scrapeMs: number): MetricFamily[] {
    const f = (name: string, type: string, help: string, values: MetricFamily['values']): MetricFamily => ({
      name: `weft_${name}`,
      type,
      help,
      values,
    });
    const w = (s: SlotMetrics) => String(s.index);
    const own = [
      f('cluster_workers', 'gauge', 'Worker slots configured', [{ value: slots.length, labels: {} }]),
      f(
        'cluster_state',
        'gauge',
        'The supervisor state: 1 for the current one, 0 for the others',
        STATES.map((state) => ({ value: state === status.state ? 1 : 0, labels: { state } })),
      ),
      f(
        'cluster_slot_state',
        'gauge',
        "Each slot's state: 1 for the current one, 0 for the others",
        slots.flatMap((s) =>
          SLOT_STATES.map((state) => ({ value: state === s.state ? 1 : 0, labels: { worker: w(s), state } })),
        ),
      ),
      f(
        'cluster_slot_restarts_total',
        'counter',
        'Crash restarts of each slot',
        slots.map((s) => ({ value: s.restarts, labels: { worker: w(s) } })),
      ),
      f(
        'cluster_slot_uptime_seconds',
        'gauge',
        "Time since each slot's current worker started",
        slots.map((s) => ({ value: s.uptimeMs / 1000, labels: { worker: w(s) } })),
      ),
      f('cluster_uptime_seconds', 'gauge', 'Time since the supervisor started', [
        { value: process.uptime(), labels: {} },
      ]),
      f(
        'metrics_scrape_errors_total',
        'counter',
        'Workers that did not answer a metrics scrape in time, or failed to',
        slots.map((s) => ({ value: this.#errors.get(s.index) ?? 0, labels: { worker: w(s) } })),
      ),
      f(
        'metrics_scrape_success',
        'gauge',
        '1 when the worker answered this scrape, else 0',
        slots.map((s) => ({ value: s.metrics ? 1 : 0, labels: { worker: w(s) } })),
      ),
      f('metrics_scrape_duration_seconds', 'gauge', 'Time this scrape took to gather the workers’ answers', [
        { value: scrapeMs / 1000, labels: {} },
      ]),
    ];
    const r = status.lastReload;
    if (r) {
      own.push(
        f('cluster_last_reload_success', 'gauge', '1 when the last rolling reload succeeded, else 0', [
          { value: r.ok ? 1 : 0, labels: {} },
        ]),
        f('cluster_last_reload_timestamp_seconds', 'gauge', 'When the last rolling reload finished', [
          { value: Date.parse(r.at) / 1000, labels: {} },
        ]),
      );
    }
    return own;
  }
}

/** `status()` with metrics, as `weft status --json` prints it. */
export interface StatusWithMetrics extends SupervisorStatus {
  slots: (SlotStatus & { metrics?: MetricsSnapshot; metricsError?: string })[];
  /** Worker counters summed over the cluster (see {@link ClusterMetricsSnapshot.totals}). */
  metricsTotals?: TotalSeries[];
  /** Why there are no metrics at all, when the scrape failed as a whole. */
  metricsError?: string;
}

/**
 * `status()` with each slot's metrics snapshot (or why it has none), for `weft status --json`. A scrape that fails
 * as a whole leaves the status as it is, with the reason in `metricsError`.
 */
export async function statusWithMetrics(supervisor: Supervisor): Promise<StatusWithMetrics> {
  const status = supervisor.status();
  try {
    const { slots, totals } = await supervisor.metricsSnapshot();
    return {
      ...status,
      slots: status.slots.map((s) => {
        const m = slots.find((x) => x.index === s.index && x.pid === s.pid);
        return m?.metrics ? { ...s, metrics: m.metrics } : { ...s, metricsError: m?.error ?? 'not scraped' };
      }),
      metricsTotals: totals,
    };
  } catch (err) {
    return { ...status, metricsError: err instanceof Error ? err.message : String(err) };
  }
}
