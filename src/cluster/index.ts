/**
 * `weftjs/cluster`: a supervisor that runs a service on N processes sharing its ports, and the worker-side API.
 * See docs/cluster.md.
 * @module
 */
export { Backoff, type BackoffOptions, CrashWindow } from './backoff.ts';
export { type ControlCommand, ControlServer, runtimeDir, sendControl, socketPath } from './control.ts';
export type { Counter, CounterAddOptions, CounterValue } from './counters.ts';
export type { ClusterMetricsSnapshot, SlotMetrics, StatusWithMetrics } from './metrics.ts';
export type { ResolvedSuperviseOptions, SuperviseOptions } from './options.ts';
export type { WorkerStats } from './protocol.ts';
export type { SlotReplacement, SlotState, SlotStatus } from './slot.ts';
export {
  type ReloadProgress,
  type ReloadResult,
  Supervisor,
  type SupervisorStatus,
  supervise,
} from './supervisor.ts';
export { worker } from './worker.ts';
