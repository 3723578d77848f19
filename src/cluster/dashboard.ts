/**
 * `weft start --dashboard`: the dashboard page on the supervisor's metrics port, its snapshots made from the merged
 * metrics of every worker (one scrape per tick, only while a page is open). Internal.
 */
import type { Dashboard } from '../dashboard/index.ts';
import type { Supervisor } from './supervisor.ts';

/** Loaded only when the dashboard is on: a supervisor without one never reads its assets. */
export async function clusterDashboard(supervisor: Supervisor): Promise<Dashboard> {
  const { createDashboard, clusterView } = await import('../dashboard/index.ts');
  return createDashboard({
    snapshot: async () =>
      clusterView(await supervisor.metricsSnapshot({ light: true }), supervisor.options.name),
  });
}
