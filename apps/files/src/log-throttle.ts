/**
 * Logs a failure that repeats (a poll against a locked or full database, twice a second in every process) once per
 * interval instead of once per try: the first time with the error as it is, then at most once per interval with
 * how many times it happened since, and once when it stops.
 */
import type { Logger } from './logger.ts';

export interface ThrottleOptions {
  /** Default 60 s. */
  intervalMs?: number;
  clock?: () => number;
}

interface Episode {
  since: number;
  loggedAt: number;
  suppressed: number;
}

/**
 * @example
 * ```ts
 * const errors = new ThrottledLog(log, { intervalMs: 60_000 });
 * try { await queue.claim(owner, 2); errors.recovered('claim', 'claiming jobs works again'); }
 * catch (err) { errors.failure('claim', err, 'claiming jobs failed'); }
 * ```
 */
export class ThrottledLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #clock: () => number;
  readonly #episodes = new Map<string, Episode>();

  constructor(log: Logger, options: ThrottleOptions = {}) {
    this.#log = log;
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#clock = options.clock ?? Date.now;
  }

  /** A failure of `key`: logged the first time and then once per interval. */
  failure(key: string, err: unknown, msg: string): void {
    const now = this.#clock();
    const episode = this.#episodes.get(key);
    const e = err as { message?: string; code?: string };
    if (!episode) {
      this.#episodes.set(key, { since: now, loggedAt: now, suppressed: 0 });
      this.#log.error({ err }, `${msg}: ${e?.message ?? String(err)}`);
      return;
    }
    if (now - episode.loggedAt < this.#intervalMs) {
      episode.suppressed++;
      return;
    }
    const repeated = episode.suppressed + 1;
    episode.loggedAt = now;
    episode.suppressed = 0;
    this.#log.error(
      { err: { message: e?.message, code: e?.code }, repeated, sinceMs: now - episode.since },
      `${msg}: ${e?.message ?? String(err)} (${repeated} times in the last ${Math.round(this.#intervalMs / 1000)} s)`,
    );
  }

  /** `key` works again: logged once when it had failed. */
  recovered(key: string, msg: string): void {
    const episode = this.#episodes.get(key);
    if (!episode) return;
    this.#episodes.delete(key);
    this.#log.info({ failedForMs: this.#clock() - episode.since }, msg);
  }

  /** Whether `key` is failing now. */
  failing(key: string): boolean {
    return this.#episodes.has(key);
  }
}
