import { InvalidOptionError } from '../errors.ts';
import { timerOption } from '../validate.ts';
import type { HealthOptions } from './health.ts';
import type { Logger } from './logger.ts';

/** Shutdown phases, in the order they run. */
export const PHASES = ['readiness', 'listeners', 'drain', 'resources', 'flush'] as const;
export type Phase = (typeof PHASES)[number];

/** Signals a lifecycle may handle. SIGUSR1 is left to Node's inspector. */
export const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2', 'SIGQUIT'] as const;
export type ShutdownSignal = (typeof SIGNALS)[number];

/** Options of `createLifecycle`. Validated once, at creation. */
export interface LifecycleOptions {
  /** Ms the whole shutdown may take; then what is left is destroyed and the exit code is 1. Default: 30 000. */
  shutdownTimeout?: number;
  /** Signals that start the shutdown; a second one forces exit. Default: SIGTERM, SIGINT. */
  signals?: readonly ShutdownSignal[];
  /** A pino-compatible logger. Default: warnings and errors as JSON lines on stderr. */
  logger?: Logger;
  /** Turn `uncaughtException` and `unhandledRejection` into a logged shutdown with exit code 1. Default: true. */
  handleErrors?: boolean;
  /** Exit the process when the shutdown ends (true), never (false), or call this function. Default: true. */
  exit?: boolean | ((code: number) => void);
  /** Ms between readiness turning 503 and the listeners closing (load balancers notice). Default: 0. */
  drainDelay?: number;
  /** Options of the health checks. */
  health?: HealthOptions;
}

export function resolveLifecycleOptions(options: LifecycleOptions) {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const shutdownTimeout = timerOption(options, 'shutdownTimeout', 30_000);
  const drainDelay = timerOption(options, 'drainDelay', 0);
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  if (!Array.isArray(signals) || !signals.every((s) => (SIGNALS as readonly string[]).includes(s))) {
    throw new InvalidOptionError('signals', `an array of ${SIGNALS.join(', ')}`, signals);
  }
  const { logger, exit = true, handleErrors = true } = options;
  if (logger !== undefined) {
    const ok =
      logger &&
      ['info', 'warn', 'error'].every(
        (m) => typeof (logger as unknown as Record<string, unknown>)[m] === 'function',
      );
    if (!ok) throw new InvalidOptionError('logger', 'an object with info, warn and error methods', logger);
  }
  if (typeof exit !== 'boolean' && typeof exit !== 'function') {
    throw new InvalidOptionError('exit', 'a boolean or a function', exit);
  }
  if (typeof handleErrors !== 'boolean')
    throw new InvalidOptionError('handleErrors', 'a boolean', handleErrors);
  return Object.freeze({
    shutdownTimeout,
    drainDelay,
    signals: Object.freeze([...new Set(signals)]),
    logger,
    handleErrors,
    exit,
    health: options.health,
  });
}
