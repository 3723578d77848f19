/** IPC messages between the supervisor and the agent in each worker. Internal. */

/** Every Weft message carries this key, so it never collides with the application's own messages. */
export const KEY = 'weft';

/** The request name the supervisor scrapes a worker's metrics with; the agent answers it, not the application. */
export const METRICS_REQUEST = 'weft:metrics';

export type PrimaryMessage =
  | { weft: 'ping'; id: number }
  /** The worker may stop accepting: the supervisor closed its listening sockets, or retires this worker. */
  | { weft: 'drain' }
  | { weft: 'message'; data: unknown }
  | { weft: 'request'; id: number; name: string; data: unknown };

export type WorkerMessage =
  | { weft: 'pong'; id: number }
  | { weft: 'ready' }
  /** The worker heard a stop signal and waits for the supervisor's word (`drain`) before it stops accepting. */
  | { weft: 'stopping' }
  | { weft: 'stats'; stats: WorkerStats }
  | { weft: 'message'; data: unknown }
  | { weft: 'response'; id: number; ok: boolean; data: unknown };

/** What each worker reports on an interval. */
export interface WorkerStats {
  rss: number;
  heapUsed: number;
  eventLoopDelayP99: number;
  eventLoopUtilization: number;
  /** HTTP requests this worker has received since it started (counted through diagnostics_channel). */
  requests: number;
  /** Requests per second over the last stats interval. */
  requestsPerSecond: number;
  /** Application gauges and pool stats, as reported with `worker.report()`. */
  custom: Record<string, unknown>;
}

export function isWeftMessage(value: unknown): value is { weft: string } {
  return (
    typeof value === 'object' && value !== null && typeof (value as { weft?: unknown }).weft === 'string'
  );
}
