/** Load shedding for uploads: 503 with `Retry-After` while the queue is too deep or the event loop too late. */
import { LoadShedder, type LoadShedderOptions } from 'weftjs/lifecycle';
import type { FilesConfig } from './config.ts';
import type { Logger } from './logger.ts';

/**
 * The upload shedder. Event-loop utilization is left out: a busy upload server runs near 1 and is healthy; delay
 * and queue depth are what say it is falling behind.
 *
 * @example
 * ```ts
 * const shedder = uploadShedder(config, () => service.queued(), log);
 * app.addHook('onRequest', shedder.handler());
 * ```
 */
export function uploadShedder(
  config: Pick<FilesConfig, 'maxEventLoopDelay' | 'maxQueued'>,
  queued: () => number,
  log: Logger,
  options: Pick<LoadShedderOptions, 'timer' | 'sampler'> = {},
): LoadShedder {
  const shedder = new LoadShedder({
    maxEventLoopDelay: config.maxEventLoopDelay,
    maxEventLoopUtilization: Number.POSITIVE_INFINITY,
    gauges: { queuedJobs: { value: queued, max: config.maxQueued } },
    ...options,
  });
  shedder.on('overload', (reasons) =>
    log.warn({ reasons }, `overloaded, uploads answered 503: ${reasons.join('; ')}`),
  );
  shedder.on('recover', () => log.info({}, 'load back to normal: uploads accepted again'));
  return shedder;
}
