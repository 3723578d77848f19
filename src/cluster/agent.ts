/**
 * Loaded into every supervised worker with `--import` before the application: answers the supervisor's pings from
 * the event loop (a stuck loop cannot answer, which is how hung workers are found), reports stats, and drains on
 * SIGTERM when the application has no lifecycle of its own. Internal.
 */
import cluster from 'node:cluster';
import { subscribe } from 'node:diagnostics_channel';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { isWeftMessage, METRICS_REQUEST, type PrimaryMessage, type WorkerStats } from './protocol.ts';
import { answerRequest, customStats, deliverMessage } from './worker.ts';

if (cluster.isWorker && process.env.WEFT_WORKER_INDEX !== undefined) install();

function install(): void {
  process.on('message', (msg: unknown) => {
    if (!isWeftMessage(msg)) return;
    const m = msg as PrimaryMessage;
    if (m.weft === 'ping' && process.connected) process.send?.({ weft: 'pong', id: m.id });
    else if (m.weft === 'message') deliverMessage(m.data);
    else if (m.weft === 'request')
      void answerRequest(m.id, m.name, m.data, m.name === METRICS_REQUEST ? collectMetrics : undefined);
  });

  const interval = Number(process.env.WEFT_STATS_INTERVAL ?? 1000);
  if (interval > 0) {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    let elu = performance.eventLoopUtilization();
    // Every node:http server in the process, with no change to the application.
    let requests = 0;
    let counted = 0;
    let last = performance.now();
    subscribe('http.server.request.start', () => {
      requests++;
    });
    setInterval(() => {
      const t = performance.now();
      const requestsPerSecond = ((requests - counted) * 1000) / Math.max(1, t - last);
      counted = requests;
      last = t;
      const now = performance.eventLoopUtilization();
      const mem = process.memoryUsage();
      const stats: WorkerStats = {
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        eventLoopDelayP99: delay.count > 0 ? delay.percentile(99) / 1e6 : 0,
        eventLoopUtilization: performance.eventLoopUtilization(now, elu).utilization,
        requests,
        requestsPerSecond,
        custom: customStats(),
      };
      elu = now;
      delay.reset();
      if (process.connected) process.send?.({ weft: 'stats', stats });
    }, interval).unref();
  }

  // Without weft/lifecycle in the application, SIGTERM would kill the worker mid-request. Unless the application
  // handles SIGTERM itself, close its servers, let in-flight requests finish, and exit (node:cluster's disconnect).
  process.on('SIGTERM', () => {
    if (process.listenerCount('SIGTERM') > 1) return;
    const timeout = Number(process.env.WEFT_KILL_TIMEOUT ?? 30_000);
    setTimeout(() => process.exit(1), timeout).unref();
    cluster.worker?.disconnect();
    cluster.worker?.once('disconnect', () => process.exit(0));
  });
}

/**
 * Answers the supervisor's metrics scrape with the process's default weft/metrics instance (the application's pools,
 * lifecycles and meters, and its own prom-client metrics). Loaded on the first scrape: a worker that is never
 * scraped never loads prom-client nor runs the collectors.
 */
async function collectMetrics(data: unknown): Promise<unknown> {
  const { defaultMetrics } = await import('../metrics/index.ts');
  // Dashboards ask every second for the snapshot alone: no metric families to read, send and merge.
  if ((data as { families?: unknown } | undefined)?.families === false)
    return { snapshot: defaultMetrics().snapshot() };
  return defaultMetrics().collect();
}
