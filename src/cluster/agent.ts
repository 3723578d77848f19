/**
 * Loaded into every supervised worker with `--import` before the application: answers the supervisor's pings from
 * the event loop (a stuck loop cannot answer, which is how hung workers are found), reports stats, and drains on
 * SIGTERM when the application has no lifecycle of its own. Internal.
 */
import cluster from 'node:cluster';
import { subscribe } from 'node:diagnostics_channel';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
// The two lifecycle files the agent needs, not weft/lifecycle's index: the agent is loaded into every worker before
// the application, and the index (health server, shedding) added ~13 ms to each worker's start, which a crashed
// worker's replacement pays before it serves.
import {
  installSupervisorWord,
  SUPERVISOR_WORD_TIMEOUT,
  type SupervisorWord,
} from '../lifecycle/supervisor-word.ts';
import { watchServers } from '../lifecycle/watch.ts';
import { isWeftMessage, METRICS_REQUEST, type PrimaryMessage, type WorkerStats } from './protocol.ts';
import { answerRequest, customStats, deliverMessage } from './worker.ts';

if (cluster.isWorker && process.env.WEFT_WORKER_INDEX !== undefined) install();

function install(): void {
  // The supervisor's word that this worker may stop accepting (see supervisor-word.ts): said once, for good; a
  // supervisor that is gone says it too (nothing else would).
  let said = false;
  const waiting = new Set<() => void>();
  const say = () => {
    said = true;
    for (const resolve of waiting) resolve();
    waiting.clear();
  };
  process.once('disconnect', say);
  let asked = false;
  const word: SupervisorWord = {
    wait(maxMs) {
      if (said || !process.connected) return Promise.resolve();
      // The supervisor answers: at once on its own stop, once its listening sockets are closed; for a signal sent
      // to this worker alone, after waiting a while for a stop of its own (see cluster/words.ts).
      if (!asked) {
        asked = true;
        process.send?.({ weft: 'stopping' }, undefined, {}, () => {});
      }
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiting.delete(done);
          resolve();
        };
        const timer = setTimeout(done, maxMs);
        waiting.add(done);
      });
    },
  };
  installSupervisorWord(word);

  process.on('message', (msg: unknown) => {
    if (!isWeftMessage(msg)) return;
    const m = msg as PrimaryMessage;
    if (m.weft === 'drain') say();
    else if (m.weft === 'ping' && process.connected) process.send?.({ weft: 'pong', id: m.id });
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

  drainWithoutLifecycle(word);
}

/**
 * Without weft/lifecycle in the application, SIGTERM would kill the worker mid-request. Unless the application
 * handles SIGTERM itself, drain every HTTP server it listens on (found through diagnostics_channel, as nginx's old
 * workers finish their connections while new ones take new connections), then leave the cluster and exit.
 *
 * One Ctrl-C or systemd stop signals every process of the group: the worker hears it, then its supervisor's SIGTERM.
 * So the drain starts once, whatever arrives, and SIGINT is left to the supervisor, which answers it with SIGTERM.
 */
function drainWithoutLifecycle(word: SupervisorWord): void {
  const watch = watchServers();
  let draining = false;
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {
    if (process.listenerCount('SIGTERM') > 1 || draining) return;
    draining = true;
    const timeout = Number(process.env.WEFT_KILL_TIMEOUT ?? 30_000);
    setTimeout(() => {
      watch.destroy();
      process.exit(1);
    }, timeout).unref();
    // As weft/lifecycle does under a supervisor: accept until the supervisor says so (it closed the shared
    // listening socket on a stop, or retires this worker), so no connection it accepted is left to no one.
    void word
      .wait(SUPERVISOR_WORD_TIMEOUT)
      .then(() => watch.drain())
      .then(() => {
        // Other handles (a raw TCP server, the IPC channel) close with the worker's disconnect.
        cluster.worker?.once('disconnect', () => process.exit(0));
        cluster.worker?.disconnect();
      });
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
