import cluster, { type Worker } from 'node:cluster';
import type { ResolvedSuperviseOptions } from './options.ts';
import { isWeftMessage, type WorkerMessage } from './protocol.ts';
import { describeExit, type Slot } from './slot.ts';

// The agent answers pings and reports stats inside every worker; loaded before the application with --import.
const agentUrl = new URL(import.meta.url.endsWith('.ts') ? './agent.ts' : './agent.js', import.meta.url).href;

/** A forked worker, and whether it became ready. Internal. */
export interface Forked {
  worker: Worker;
  ready: Promise<void>;
}

/** Points node:cluster at the application, with the agent loaded first in every worker. */
export function setupPrimary(o: ResolvedSuperviseOptions): void {
  cluster.setupPrimary({
    exec: o.exec,
    args: o.args,
    execArgv: [...(o.execArgv ?? process.execArgv), '--import', agentUrl],
    silent: o.prefixOutput,
  });
}

/**
 * Forks a worker for `slot`; `ready` settles when it listens or says ready, or fails to in time. `metricsUrl` is the
 * supervisor's merged endpoint, when it has one.
 */
export function forkWorker(slot: Slot, o: ResolvedSuperviseOptions, metricsUrl: string | undefined): Forked {
  const worker = cluster.fork({
    ...o.env,
    WEFT_WORKER_INDEX: String(slot.index),
    WEFT_WORKERS: String(o.workers),
    WEFT_THREADS: String(o.threads),
    // The merged endpoint, so an application can serve the whole cluster's metrics on its own port too.
    ...(metricsUrl !== undefined ? { WEFT_METRICS_URL: metricsUrl } : {}),
    WEFT_STATS_INTERVAL: String(o.statsInterval),
    WEFT_KILL_TIMEOUT: String(o.killTimeout),
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`not ready within ${o.startTimeout} ms`));
      worker.process.kill('SIGKILL');
    }, o.startTimeout);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    worker.once('listening', done);
    worker.on('message', (msg: unknown) => {
      if (isWeftMessage(msg) && (msg as WorkerMessage).weft === 'ready') done();
    });
    worker.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited before ready (${describeExit(code, signal)})`));
    });
  });
  ready.catch(() => {}); // observed by the caller; never an unhandled rejection
  return { worker, ready };
}
