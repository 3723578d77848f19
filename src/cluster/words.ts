import type { Worker } from 'node:cluster';
import type { Logger } from '../lifecycle/index.ts';
import { sendTo } from './ipc.ts';

/**
 * How long the supervisor waits for a stop of its own after a worker said it heard a stop signal, ms. A Ctrl-C, a
 * `kill` of the process group or systemd's stop signals every process at once, in no promised order: the
 * supervisor's own signal is then on its way. Past this wait the signal was meant for that worker alone.
 */
export const GROUP_STOP_WAIT = 1_000;

/** Resolves after two turns of the event loop: past every I/O event (a signal, a message) pending now. Internal. */
export function twoTurns(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * Answers the workers that heard a stop signal and wait for the supervisor's word before they stop accepting (see
 * lifecycle/supervisor-word.ts). Internal.
 *
 * The word must not come before the supervisor has closed its listening sockets when the whole group stops: the
 * connections it accepts meanwhile would have no worker to take them. So while the supervisor is not stopping, a
 * worker's question waits `GROUP_STOP_WAIT` for the supervisor's own stop (which says the word to every worker once
 * its sockets are closed), and is answered only when none came: the signal was sent to that worker alone, and the
 * others serve on. The wait is measured here, not in the worker: a supervisor that a busy machine or a long
 * collection holds back reads its pending signal before it decides (the two turns after the timer), where a worker's
 * own timeout would have run out while the supervisor could not act.
 */
export class StopWords {
  readonly #stopping: () => boolean;
  readonly #log: Logger;
  readonly #waiting = new Map<Worker, NodeJS.Timeout>();

  constructor(stopping: () => boolean, log: Logger) {
    this.#stopping = stopping;
    this.#log = log;
  }

  /** `worker` heard a stop signal; `slot` is its index, for the log. */
  heard(worker: Worker, slot: number): void {
    // Stopping: the stop says the word to every worker once the listening sockets are closed.
    if (this.#stopping() || this.#waiting.has(worker)) return;
    const timer = setTimeout(() => {
      void twoTurns().then(() => {
        if (this.#waiting.get(worker) !== timer) return;
        this.#waiting.delete(worker);
        if (this.#stopping() || !worker.isConnected()) return;
        this.#log.info(
          { slot, pid: worker.process.pid },
          `worker ${slot} was sent a stop signal of its own: it drains while the others serve`,
        );
        sendTo(worker, { weft: 'drain' });
      });
    }, GROUP_STOP_WAIT);
    this.#waiting.set(worker, timer);
    worker.once('exit', () => this.#forget(worker));
  }

  #forget(worker: Worker): void {
    clearTimeout(this.#waiting.get(worker));
    this.#waiting.delete(worker);
  }

  /** Cancels every wait (the supervisor ends). */
  dispose(): void {
    for (const worker of [...this.#waiting.keys()]) this.#forget(worker);
  }
}
