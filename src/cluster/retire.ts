import type { Worker } from 'node:cluster';
import type { Logger } from '../lifecycle/index.ts';
import type { Slot } from './slot.ts';

/**
 * Tells a worker to drain: the supervisor's word first (see lifecycle/supervisor-word.ts), then SIGTERM. A worker
 * that already heard a stop signal (one sent to the whole group) waits for the word before it stops accepting; one
 * that did not starts draining at once.
 */
export function askToDrain(worker: Worker): void {
  if (worker.isConnected()) worker.send({ weft: 'drain' }, undefined, () => {});
  worker.process.kill('SIGTERM');
}

/** Drains workers through their lifecycle, each once, and stops them all at the end. Internal. */
export class Retirer {
  readonly #retiring = new Map<Worker, Promise<number>>();
  readonly #killTimeout: number;

  /** `killTimeout`: how long a worker may drain before SIGKILL. */
  constructor(killTimeout: number) {
    this.#killTimeout = killTimeout;
  }

  /** Drains a worker through its lifecycle (SIGTERM), SIGKILL after killTimeout; resolves with its exit code. */
  retire(worker: Worker): Promise<number> {
    let done = this.#retiring.get(worker);
    if (done) return done; // already draining: a second SIGTERM would force it
    done = new Promise<number>((resolve) => {
      const { exitCode, signalCode } = worker.process;
      if (exitCode !== null || signalCode !== null) return resolve(exitCode ?? 1);
      const timer = setTimeout(() => worker.process.kill('SIGKILL'), this.#killTimeout);
      worker.once('exit', (code: number | null) => {
        clearTimeout(timer);
        this.#retiring.delete(worker);
        resolve(code ?? 1);
      });
      askToDrain(worker);
    });
    this.#retiring.set(worker, done);
    return done;
  }

  /**
   * Retires every worker in parallel: `candidates` (replacements not ready yet), those already draining and each
   * slot's, with no restart pending. Resolves with 0 when every one exited cleanly, else 1.
   */
  async retireAll(slots: readonly Slot[], candidates: Iterable<Worker>, log: Logger): Promise<number> {
    const workers = new Set<Worker>([...candidates, ...this.#retiring.keys()]);
    for (const slot of slots) {
      clearTimeout(slot.restartTimer);
      if (slot.worker) workers.add(slot.worker);
    }
    const codes = await Promise.all([...workers].map((w) => this.retire(w)));
    for (const slot of slots) if (slot.state !== 'failed') slot.state = 'stopped';
    const code = codes.every((c) => c === 0) ? 0 : 1;
    log.info(
      { code },
      `stopped (${code === 0 ? 'every worker drained' : 'not every worker exited cleanly'})`,
    );
    return code;
  }
}
