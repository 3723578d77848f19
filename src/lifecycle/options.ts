import { InvalidOptionError } from '../errors.ts';
import { timerOption } from '../validate.ts';
import type { HealthOptions } from './health.ts';
import type { Logger } from './logger.ts';
import { supervisorWord } from './supervisor-word.ts';

/**
 * The default `drainDelay` in a worker run by the weft supervisor without its agent (`node:cluster` set up by hand
 * with `WEFT_WORKER_INDEX`), ms. One Ctrl-C or systemd stop signals the workers and the supervisor at once; a worker
 * that stopped accepting before the supervisor closed the shared listening socket would leave connections the
 * supervisor accepted meanwhile to no one (node:cluster resets them). With the agent (every worker `weft start`
 * runs) the worker waits for the supervisor's word instead (supervisor-word.ts), which no fixed delay can match.
 */
export const SUPERVISED_DRAIN_DELAY = 100;

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
  /** Signals that start the shutdown; a second one forces exit (see `forceOnRepeat`). Default: SIGTERM, SIGINT. */
  signals?: readonly ShutdownSignal[];
  /**
   * A signal received while the shutdown runs forces the exit. Default: true, except in a worker run by the weft
   * supervisor (`WEFT_WORKER_INDEX` set): one Ctrl-C or systemd stop signals every process of the group, so the
   * worker hears it and then its supervisor's SIGTERM, and the supervisor is the one that forces (a second signal
   * to it, or its kill timeout).
   */
  forceOnRepeat?: boolean;
  /** A pino-compatible logger. Default: warnings and errors as JSON lines on stderr. */
  logger?: Logger;
  /** Turn `uncaughtException` and `unhandledRejection` into a logged shutdown with exit code 1. Default: true. */
  handleErrors?: boolean;
  /** Exit the process when the shutdown ends (true), never (false), or call this function. Default: true. */
  exit?: boolean | ((code: number) => void);
  /**
   * Ms between readiness turning 503 and the listeners closing (load balancers notice). Default: 0. In a worker run
   * by `weft start` the listeners also stay open until the supervisor says it closed its own (a second later for a
   * signal sent to the worker alone; at most `SUPERVISOR_WORD_TIMEOUT`, 10 s, for a supervisor that cannot answer);
   * in a supervised worker without the agent the default is `SUPERVISED_DRAIN_DELAY`.
   */
  drainDelay?: number;
  /** Options of the health checks. */
  health?: HealthOptions;
}

export function resolveLifecycleOptions(options: LifecycleOptions) {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const shutdownTimeout = timerOption(options, 'shutdownTimeout', 30_000);
  const drainDelay = timerOption(
    options,
    'drainDelay',
    process.env.WEFT_WORKER_INDEX === undefined || supervisorWord() ? 0 : SUPERVISED_DRAIN_DELAY,
  );
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  if (!Array.isArray(signals) || !signals.every((s) => (SIGNALS as readonly string[]).includes(s))) {
    throw new InvalidOptionError('signals', `an array of ${SIGNALS.join(', ')}`, signals);
  }
  const { logger, exit = true, handleErrors = true } = options;
  const forceOnRepeat = options.forceOnRepeat ?? process.env.WEFT_WORKER_INDEX === undefined;
  if (typeof forceOnRepeat !== 'boolean')
    throw new InvalidOptionError('forceOnRepeat', 'a boolean', forceOnRepeat);
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
    forceOnRepeat,
    logger,
    handleErrors,
    exit,
    health: options.health,
  });
}
