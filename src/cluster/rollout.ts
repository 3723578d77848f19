import type { Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../lifecycle/index.ts';
import type { Forked } from './fork.ts';
import type { ResolvedSuperviseOptions } from './options.ts';
import type { Slot } from './slot.ts';
import type { ReloadProgress, ReloadResult, SupervisorStatus } from './status.ts';

/** What a rollout needs from its supervisor. Internal. */
export interface RolloutContext {
  readonly slots: readonly Slot[];
  readonly options: ResolvedSuperviseOptions;
  readonly log: Logger;
  /** Forks a worker for `slot`, wired to the supervisor (messages, exit, output). */
  fork(slot: Slot): Forked;
  /** Drains a worker; resolves with its exit code. */
  retire(worker: Worker): Promise<number>;
  /** A stop is under way: no further slot is replaced. */
  stopping(): boolean;
}

/** Replaces workers: every slot's in a rolling reload, or one slot's (memory limit). Internal. */
export class Rollout {
  readonly #ctx: RolloutContext;
  /** New workers not ready yet: a stop must retire them too. */
  readonly #candidates = new Set<Worker>();
  #progress: ReloadProgress | undefined;
  #last: SupervisorStatus['lastReload'];

  constructor(ctx: RolloutContext) {
    this.#ctx = ctx;
  }

  /** The rolling reload under way, if any. */
  get progress(): ReloadProgress | undefined {
    return this.#progress;
  }

  /** The last rolling reload's outcome. */
  get last(): SupervisorStatus['lastReload'] {
    return this.#last;
  }

  get candidates(): ReadonlySet<Worker> {
    return this.#candidates;
  }

  /** One rolling reload, `maxSurge` slots at a time; the old workers keep serving when a new one fails. */
  async run(): Promise<ReloadResult> {
    const { slots, options, log } = this.#ctx;
    log.info({ workers: slots.length }, 'rolling reload started');
    const progress = { startedAt: new Date().toISOString(), total: slots.length, replaced: 0 };
    this.#progress = progress;
    let replaced = 0;
    let result: ReloadResult | undefined;
    const queue = [...slots];
    // An old worker drains while the rollout goes on (nginx's old workers finish their connections while new ones
    // take new connections): its idle keep-alive connections may take seconds to close. The reload is done once the
    // last old worker has exited.
    const draining: Promise<number>[] = [];
    const lane = async () => {
      for (let slot = queue.shift(); slot && !result && !this.#ctx.stopping(); slot = queue.shift()) {
        const outcome = await this.replace(slot, 'reload', draining);
        if (outcome === true) progress.replaced = ++replaced;
        else result = { ok: false, replaced, reason: `worker ${slot.index}: ${outcome}` };
      }
    };
    await Promise.all(Array.from({ length: options.maxSurge }, lane));
    await Promise.all(draining);
    result ??= { ok: true, replaced };
    this.#progress = undefined;
    this.#last = { ...result, at: new Date().toISOString() };
    if (result.ok) log.info({ replaced }, `rolling reload finished: ${replaced} workers replaced`);
    else
      log.error(
        { reason: result.reason },
        `rolling reload failed: ${result.reason}; old workers keep serving`,
      );
    return result;
  }

  /**
   * Starts a new worker for `slot`, and once it is ready drains the old one: awaited, or pushed to `draining` to be
   * awaited by the caller. True, or why it failed.
   */
  async replace(slot: Slot, why: 'reload' | 'memory', draining?: Promise<number>[]): Promise<true | string> {
    slot.replacing = true;
    try {
      return await this.#replaceOnce(slot, why, draining);
    } finally {
      slot.replacing = false;
      slot.replacement = undefined;
    }
  }

  async #replaceOnce(
    slot: Slot,
    why: 'reload' | 'memory',
    draining?: Promise<number>[],
  ): Promise<true | string> {
    const { worker, ready } = this.#ctx.fork(slot);
    this.#candidates.add(worker);
    const pid = worker.process.pid;
    slot.replacement = { why, step: 'starting', pid, oldPid: slot.worker?.process.pid };
    try {
      await ready;
    } catch (err) {
      this.#candidates.delete(worker);
      if (worker.process.exitCode === null && worker.process.signalCode === null)
        worker.process.kill('SIGKILL');
      return (err as Error).message;
    }
    this.#candidates.delete(worker);
    const old = slot.worker;
    slot.worker = worker;
    slot.state = 'ready';
    slot.startedAt = performance.now();
    slot.lastPong = slot.startedAt;
    slot.stats = undefined;
    clearTimeout(slot.restartTimer);
    slot.replacement = { why, step: 'draining', pid, oldPid: old?.process.pid };
    if (old) {
      this.#ctx.log.info(
        { slot: slot.index, old: old.process.pid, new: worker.process.pid, why },
        `worker ${slot.index} replaced (${why}): draining pid ${old.process.pid}`,
      );
      const retired = this.#ctx.retire(old);
      if (draining) draining.push(retired);
      else await retired;
    }
    return true;
  }
}
