import cluster from 'node:cluster';
import { type Counter, counter } from './counters.ts';
import type { WorkerStats } from './protocol.ts';

let custom: Record<string, unknown> = {};
let readySent = false;
const messageListeners = new Set<(data: unknown) => void>();
const requestHandlers = new Map<string, (data: unknown) => unknown>();

function send(message: object): boolean {
  if (!process.send || !process.connected) return false;
  process.send(message);
  return true;
}

/**
 * The worker side of `weftjs/cluster`, for code running inside a supervised worker process.
 *
 * @example
 * ```ts
 * import { worker } from 'weftjs/cluster';
 * await warmCaches();
 * worker.ready();                                   // or: automatic once the first server listens
 * worker.report({ queueDepth: queue.size });       // merged by the supervisor into `weft status`
 * ```
 */
export const worker = {
  /** True inside a worker started by the supervisor. */
  get isSupervised(): boolean {
    return cluster.isWorker && process.env.WEFT_WORKER_INDEX !== undefined;
  },
  /** This worker's slot (stable across restarts and reloads), from `WEFT_WORKER_INDEX`; -1 outside a supervisor. */
  get index(): number {
    return Number(process.env.WEFT_WORKER_INDEX ?? -1);
  },
  /** Threads this process may use, from `WEFT_THREADS` (cores ÷ workers); `weftjs/pool` uses it as its default. */
  get threads(): number | undefined {
    const n = Number(process.env.WEFT_THREADS);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  },
  /** Tells the supervisor this worker is ready for traffic (needed only when it does not listen on a port). */
  ready(): void {
    if (readySent) return;
    readySent = send({ weft: 'ready' });
  },
  /** Sends an application message to the supervisor (`message` event of `supervise()`'s handle). */
  send(data: unknown): boolean {
    return send({ weft: 'message', data });
  },
  /** Listens for messages the supervisor sends (`supervisor.send()`, `broadcast()`); returns an unsubscribe. */
  onMessage(listener: (data: unknown) => void): () => void {
    messageListeners.add(listener);
    return () => messageListeners.delete(listener);
  },
  /** Answers the supervisor's `request(slot, name, data)`; the handler may be async; a throw becomes its rejection. */
  handle(name: string, handler: (data: unknown) => unknown): void {
    requestHandlers.set(name, handler);
  },
  /**
   * The shared counter `name`: its value lives in the supervisor, one for every worker of this `weft start` (this
   * process's own when nothing supervises it). See docs/cluster.md, "Shared counters".
   */
  counter(name: string): Counter {
    return counter(name);
  },
  /** Sets custom gauges reported with the next stats (merged, not replaced). */
  report(values: Record<string, unknown>): void {
    custom = { ...custom, ...values };
  },
};

/** Internal: the custom gauges for the agent's stats. */
export function customStats(): WorkerStats['custom'] {
  return custom;
}

/** Internal: delivers a supervisor message to `worker.onMessage` listeners. */
export function deliverMessage(data: unknown): void {
  for (const l of messageListeners) l(data);
}

/** Internal: runs the handler of a supervisor request and sends back its result or error. */
export async function answerRequest(
  id: number,
  name: string,
  data: unknown,
  handler = requestHandlers.get(name),
): Promise<void> {
  let reply: object;
  try {
    if (!handler)
      throw new Error(`no handler for request "${name}" in worker ${process.env.WEFT_WORKER_INDEX}`);
    reply = { weft: 'response', id, ok: true, data: await handler(data) };
  } catch (err) {
    reply = { weft: 'response', id, ok: false, data: (err as Error)?.message ?? String(err) };
  }
  send(reply);
}
