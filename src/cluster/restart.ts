import type { Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../lifecycle/index.ts';
import type { ResolvedSuperviseOptions } from './options.ts';
import { describeExit, type Slot } from './slot.ts';

/** What the restart policy needs from its supervisor. Internal. */
export interface RestartContext {
  readonly options: ResolvedSuperviseOptions;
  readonly log: Logger;
  /** A stop is under way: exits are expected and nothing restarts. */
  stopping(): boolean;
  /** Starts a new worker in `slot`. */
  start(slot: Slot): Promise<void>;
  /** `slot` gave up: it crash-looped. */
  failed(slot: Slot): void;
}

/**
 * The exit of a worker of `slot`: when it is the slot's current worker, restarts it (at once, or after backoff), or
 * marks the slot failed when it crash-loops.
 */
export function onWorkerExit(
  slot: Slot,
  worker: Worker,
  code: number | null,
  signal: string | null,
  ctx: RestartContext,
): void {
  if (slot.worker !== worker) return; // a retired or candidate worker: handled where it was started
  const how =
    slot.lastExit?.startsWith('hung') && slot.state === 'draining'
      ? slot.lastExit
      : describeExit(code, signal);
  slot.lastExit = how;
  slot.worker = undefined;
  slot.stats = undefined;
  if (ctx.stopping()) {
    slot.state = 'stopped';
    return;
  }
  const { options, log } = ctx;
  const now = performance.now();
  log.warn({ slot: slot.index, pid: worker.process.pid, exit: how }, `worker ${slot.index} exited (${how})`);
  if (now - slot.startedAt >= options.stableAfter) {
    slot.backoff.reset();
    slot.restartedAtOnce = false;
  }
  if (slot.crashes.record(now)) {
    slot.state = 'failed';
    log.error(
      { slot: slot.index, crashes: slot.crashes.count, window: options.crashLoop.windowMs },
      `slot ${slot.index} failed: crash loop (${slot.crashes.count} crashes in ${options.crashLoop.windowMs} ms)`,
    );
    ctx.failed(slot);
    return;
  }
  slot.state = 'backoff';
  slot.restarts++;
  // The first crash of a stable slot is restarted at once: a lone crash should cost no more than a fork. Repeated
  // crashes back off (100 ms, 200 ms, ...), so a broken build does not fork in a tight loop.
  if (!slot.restartedAtOnce) {
    slot.restartedAtOnce = true;
    void ctx.start(slot).catch(() => {});
    return;
  }
  const delay = slot.backoff.next();
  slot.restartTimer = setTimeout(() => void ctx.start(slot).catch(() => {}), delay);
}
