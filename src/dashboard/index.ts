/**
 * `weftjs/dashboard`: a live web page of a service (processes, pools, jobs, files), updated by server-sent events,
 * served by `weft start --dashboard` on the metrics port and by `apps/files` at `/`. See docs/dashboard.md.
 * @module
 */
export { InvalidOptionError, WeftError } from '../errors.ts';
export { createDashboard, DASHBOARD_PATHS, type Dashboard, type DashboardOptions } from './dashboard.ts';
export {
  type BackendView,
  type ClusterInput,
  clusterView,
  type DashboardSnapshot,
  type EventView,
  type FailureView,
  type FilesView,
  type FileView,
  type JobsView,
  type NodeView,
  type PoolView,
  processView,
  type ReloadView,
  type ReplacementView,
  type SlotView,
  type TenantView,
  type WebhooksView,
} from './view.ts';
