import type { Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../lifecycle/index.ts';
import type { ResolvedSuperviseOptions } from './options.ts';
import { askToDrain } from './retire.ts';
import type { Slot } from './slot.ts';
import { twoTurns } from './words.ts';

/**
 * Pings every ready worker each `pingInterval`, and kills one that has not answered (pong or stats) within
 * `livenessTimeout`. Internal.
 */
export class Liveness {
  readonly #slots: readonly Slot[];
  readonly #options: ResolvedSuperviseOptions;
  readonly #log: Logger;
  #pingTimer: NodeJS.Timeout | undefined;
  #pingId = 0;
  /** When the ping timer last fired (performance.now()). */
  #lastTick = 0;

  constructor(slots: readonly Slot[], options: ResolvedSuperviseOptions, log: Logger) {
    this.#slots = slots;
    this.#options = options;
    this.#log = log;
  }

  /** Starts pinging, unless `pingInterval` is 0. */
  start(): void {
    if (this.#options.pingInterval > 0) {
      this.#lastTick = performance.now();
      this.#pingTimer = setInterval(() => this.#ping(), this.#options.pingInterval);
      this.#pingTimer.unref();
    }
  }

  stop(): void {
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
  }

  #ping(): void {
    // The liveness clock runs while the supervisor does. A supervisor that a busy machine, a long collection or a
    // SIGSTOP held back sent no pings meanwhile, so its workers had nothing to answer: the time its timer came late
    // is not counted against them (without this, a hold past livenessTimeout kills every worker as hung).
    const now = performance.now();
    const late = now - this.#lastTick - this.#options.pingInterval;
    this.#lastTick = now;
    if (late > 0) for (const slot of this.#slots) slot.lastPong += late;
    // Judged after the answers already waiting are read (stats sent during a hold), not before.
    void twoTurns().then(() => this.#check());
  }

  #check(): void {
    if (this.#pingTimer === undefined) return; // stopped meanwhile
    const now = performance.now();
    const limit = this.#options.livenessTimeout;
    for (const slot of this.#slots) {
      const w = slot.worker;
      if (!w || slot.state !== 'ready') continue;
      if (limit > 0 && now - slot.lastPong > limit) {
        const stuck = Math.round(now - slot.lastPong);
        slot.lastExit = `hung ${stuck} ms`;
        slot.state = 'draining';
        this.#log.error(
          { slot: slot.index, pid: w.process.pid, stuckMs: stuck },
          `worker ${slot.index} (pid ${w.process.pid}) has not answered for ${stuck} ms: killing it`,
        );
        askToDrain(w);
        setTimeout(() => {
          if (w.process.exitCode === null && w.process.signalCode === null) w.process.kill('SIGKILL');
        }, this.#options.hungKillGrace).unref();
        continue;
      }
      if (w.isConnected()) w.send({ weft: 'ping', id: ++this.#pingId });
    }
  }
}

/**
 * Whether the ready worker of `slot`, which reported `rss`, is over `maxMemory` and nothing replaces it yet; logs it
 * when so. The caller replaces it.
 */
export function overMemory(
  slot: Slot,
  worker: Worker,
  rss: number,
  options: ResolvedSuperviseOptions,
  log: Logger,
): boolean {
  const max = options.maxMemory;
  if (!(max > 0 && rss > max && slot.state === 'ready' && !slot.replacing)) return false;
  log.warn(
    { slot: slot.index, pid: worker.process.pid, rss, maxMemory: max },
    `worker ${slot.index} is over maxMemory: replacing it`,
  );
  return true;
}
