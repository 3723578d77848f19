import cluster, { type Worker } from 'node:cluster';
import { WeftError } from '../errors.ts';

/**
 * Sends `msg` to `worker` and forgets it: nothing when its channel is closed. With a callback, a channel that breaks
 * meanwhile (EPIPE: the worker is exiting) is an argument there, not an 'error' event that would take the supervisor
 * down. Internal.
 */
export function sendTo(worker: Worker, msg: object): void {
  if (!worker.isConnected()) return;
  try {
    worker.send(msg, undefined, () => {});
  } catch {}
}

/** Whether this process is a worker of a `weft start` supervisor, with its IPC channel. Internal. */
export function supervised(): boolean {
  return (
    cluster.isWorker && process.env.WEFT_WORKER_INDEX !== undefined && typeof process.send === 'function'
  );
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** The supervisor's requests to workers (`Supervisor.request()`), each waiting for its answer by id. Internal. */
export class WorkerRequests {
  readonly #pending = new Map<number, Pending>();
  #requestId = 0;

  /** Asks `w`, the worker of slot `slot`, to run its handler `name`; see `Supervisor.request()`. */
  request(
    w: Worker | undefined,
    slot: number,
    name: string,
    data?: unknown,
    options: { timeout?: number } = {},
  ): Promise<unknown> {
    if (!w?.isConnected())
      return Promise.reject(new WeftError('ERR_WEFT_IPC', `worker ${slot} is not connected`));
    const id = ++this.#requestId;
    const timeout = options.timeout ?? 5_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WeftError('ERR_WEFT_IPC', `worker ${slot} did not answer "${name}" within ${timeout} ms`));
      }, timeout);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      w.send({ weft: 'request', id, name, data });
    });
  }

  /** Settles the request that a worker of slot `slot` answered; an answer after its timeout finds nothing. */
  settle(slot: number, m: { id: number; ok: boolean; data: unknown }): void {
    const p = this.#pending.get(m.id);
    this.#pending.delete(m.id);
    if (p && m.ok) p.resolve(m.data);
    else p?.reject(new WeftError('ERR_WEFT_IPC', `worker ${slot}: ${String(m.data)}`));
  }
}
