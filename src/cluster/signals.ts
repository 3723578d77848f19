import { performance } from 'node:perf_hooks';
import type { Logger } from '../lifecycle/index.ts';

/** What the signal handlers need from their supervisor. Internal. */
export interface SignalContext {
  readonly log: Logger;
  /** How soon a second stop signal is taken as the same stop (`repeatSignalWindow`). */
  readonly repeatWindow: number;
  /** A stop is under way. */
  stopping(): boolean;
  /** Kills every worker now and ends the supervisor with code 1. */
  force(): void;
}

/** The supervisor's process signal handlers (SIGTERM, SIGINT: stop; SIGHUP, SIGUSR2: reload). Internal. */
export class SignalHandlers {
  readonly #ctx: SignalContext;
  readonly #handlers = new Map<string, () => void>();
  /** When the signal that started the stop arrived. */
  #stopSignalAt = Number.NEGATIVE_INFINITY;

  constructor(ctx: SignalContext) {
    this.#ctx = ctx;
  }

  /** Runs `fn` on `signal`; a stop signal while stopping is the same stop at once, else it forces the stop. */
  on(signal: string, fn: () => void): void {
    const { log } = this.#ctx;
    const handler = () => {
      const stopSignal = signal === 'SIGTERM' || signal === 'SIGINT';
      const stopping = this.#ctx.stopping();
      // One Ctrl-C under `npm start` arrives twice (from the terminal, and forwarded by npm): that is one request.
      if (stopping && stopSignal && performance.now() - this.#stopSignalAt < this.#ctx.repeatWindow) {
        log.info({ signal }, `${signal} received again at once: taken as the same stop`);
        return;
      }
      if (stopping && stopSignal) {
        log.error({ signal }, `${signal} received again while stopping: killing every worker now`);
        this.#ctx.force();
        return;
      }
      log.info({ signal }, `${signal} received`);
      if (stopSignal && !stopping) this.#stopSignalAt = performance.now();
      fn();
    };
    this.#handlers.set(signal, handler);
    process.on(signal, handler);
  }

  /** Removes every handler. */
  dispose(): void {
    for (const [signal, handler] of this.#handlers) process.off(signal, handler);
    this.#handlers.clear();
  }
}
