import { performance } from 'node:perf_hooks';
import type { Dashboard } from '../dashboard/index.ts';
import type { Logger } from '../lifecycle/index.ts';
import type { MetricsServer } from '../metrics/index.ts';
import { clusterDashboard } from './dashboard.ts';
import type { ClusterMetrics } from './metrics.ts';
import type { Slot, SlotStatus } from './slot.ts';
import type { Supervisor } from './supervisor.ts';

/** The outcome of a rolling reload. */
export interface ReloadResult {
  ok: boolean;
  /** Slots whose worker was replaced. */
  replaced: number;
  /** Why the rollout stopped, when it did. */
  reason?: string;
}

/** What `status()` returns. */
export interface SupervisorStatus {
  name: string;
  pid: number;
  state: 'running' | 'reloading' | 'stopping' | 'stopped' | 'failed';
  slots: SlotStatus[];
  lastReload: (ReloadResult & { at: string }) | undefined;
  /**
   * A rolling reload under way: when it started, slots to replace, replaced so far. Each slot's own step is in its
   * `replacement`.
   */
  reload?: ReloadProgress;
}

/** Progress of a rolling reload. */
export interface ReloadProgress {
  startedAt: string;
  total: number;
  replaced: number;
}

/** A snapshot of the supervisor and every slot. Internal. */
export function statusOf(
  name: string,
  state: SupervisorStatus['state'],
  slots: readonly Slot[],
  lastReload: SupervisorStatus['lastReload'],
  progress: ReloadProgress | undefined,
): SupervisorStatus {
  const now = performance.now();
  return {
    name,
    pid: process.pid,
    state,
    slots: slots.map((s) => s.status(now)),
    lastReload,
    ...(progress ? { reload: { ...progress } } : {}),
  };
}

/** The supervisor's `metricsPort` endpoint: the merged metrics, and the dashboard when asked for. Internal. */
export class MetricsEndpoint {
  #dashboard: Dashboard | undefined;
  #server: MetricsServer | undefined;

  /** `http://host:port/metrics` once open. */
  get url(): string | undefined {
    return this.#server?.url;
  }

  /** Serves `metrics` on `port` (`options.metricsPort`), and the dashboard with `options.dashboard`. */
  async open(supervisor: Supervisor, metrics: ClusterMetrics, port: number, log: Logger): Promise<void> {
    const o = supervisor.options;
    // Loaded only when asked for, so a supervisor without an endpoint never loads prom-client.
    const { serveMetrics } = await import('../metrics/index.ts');
    // The dashboard shares the metrics port: its page at `/`, its event stream at `/dashboard/events`.
    this.#dashboard = o.dashboard ? await clusterDashboard(supervisor) : undefined;
    this.#server = await serveMetrics(metrics, {
      port,
      host: o.metricsHost,
      ...(this.#dashboard ? { handler: this.#dashboard.handle } : {}),
    });
    log.info({ metrics: this.#server.url }, `metrics on ${this.#server.url}`);
    if (this.#dashboard) {
      const page = this.#server.url.replace(/metrics$/, '');
      log.info({ dashboard: page }, `dashboard on ${page}`);
    }
  }

  close(): void {
    void this.#dashboard?.close();
    void this.#server?.close();
  }
}
