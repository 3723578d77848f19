import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from '../errors.ts';
import type { Logger } from '../lifecycle/index.ts';
import { timerOption } from '../validate.ts';
import type { BackoffOptions } from './backoff.ts';

/** Options of `supervise()`. Validated once, at start. */
export interface SuperviseOptions {
  /** The application's entry script (absolute path or file: URL). */
  exec: string | URL;
  /** Arguments passed to the application. */
  args?: string[];
  /** Worker processes: a number or `'max'` (one per core). Default: `'max'`. */
  workers?: number | 'max';
  /** Shown in logs and status. Default: the script's file name without its extension. */
  name?: string;
  /** Extra environment for the workers. */
  env?: Record<string, string>;
  /** Node options for the workers. Default: the supervisor's own `execArgv`. */
  execArgv?: string[];
  /** Ms a new worker has to become ready (listen, or call `worker.ready()`). Default: 30 000. */
  startTimeout?: number;
  /** Ms a stopping worker has to drain before SIGKILL. Default: 30 000. */
  killTimeout?: number;
  /** Ms between liveness pings. Default: 1 000. */
  pingInterval?: number;
  /** A worker whose event loop has not answered a ping for this long is killed and replaced (0: off). Default: 10 000. */
  livenessTimeout?: number;
  /** Ms between SIGTERM and SIGKILL for a hung worker. Default: 2 000. */
  hungKillGrace?: number;
  /** RSS in bytes above which a worker is replaced gracefully (0: off). Default: 0. */
  maxMemory?: number;
  /** Restart delays after a crash. Default: 100 ms doubling to 30 s, 20 % jitter. */
  backoff?: BackoffOptions;
  /** Ms a worker must run before its slot's backoff resets. Default: 30 000. */
  stableAfter?: number;
  /**
   * A stop signal (SIGTERM, SIGINT) this soon after the one that started the stop is the same request delivered twice
   * (Ctrl-C under `npm start` reaches the supervisor from the terminal and again from npm), not a second one that
   * forces. Ms. Default: 500.
   */
  repeatSignalWindow?: number;
  /**
   * More than `max` crashes within `windowMs` marks a slot failed. Default: 5 in 60 000 ms. With `retryAfter` (ms) a
   * failed slot is started again after that long, for as long as it takes: a crash loop caused by something the
   * supervisor cannot fix (a database that is down or locked) heals by itself once that is back. Without it, the
   * supervisor exits 1 when every slot has failed, for an orchestrator to act on.
   */
  crashLoop?: { max: number; windowMs: number; retryAfter?: number };
  /** Extra workers a reload may start at once. Default: 1. */
  maxSurge?: number;
  /** Ms between the workers' stats reports. Default: 1 000. */
  statsInterval?: number;
  /** A pino-compatible logger. Default: JSON lines on stderr for warnings and errors. */
  logger?: Logger;
  /** Handle SIGTERM/SIGINT (stop) and SIGHUP/SIGUSR2 (reload) in the supervisor. Default: true. */
  handleSignals?: boolean;
  /** Exit the supervisor process when the cluster stops or crash-loops. Default: true. */
  exit?: boolean;
  /**
   * Stream each worker's stdout and stderr through the supervisor, each line prefixed with `[name:slot]`, and keep
   * the last lines for `weft logs`. Default: true. False: workers write to the supervisor's own stdout/stderr.
   */
  prefixOutput?: boolean;
  /**
   * With `prefixOutput`, what a worker's output line becomes on the terminal (`text` as the worker wrote it,
   * `prefix` its `[name:slot]`); `weft logs` keeps the line as written. Default: `${prefix} ${text}`.
   */
  formatOutput?: (text: string, prefix: string) => string;
  /**
   * Serve the whole cluster's metrics (every worker's, merged, and the supervisor's own) on this TCP port:
   * `GET /metrics` (Prometheus text) and `GET /metrics.json`. 0 picks a free port. Default: none (no endpoint).
   */
  metricsPort?: number;
  /** Interface of the metrics endpoint. Default: `'127.0.0.1'` (loopback only). */
  metricsHost?: string;
  /** Ms a worker has to answer a metrics scrape; one that does not is skipped and counted. Default: 1 000. */
  metricsTimeout?: number;
  /**
   * Serve the live dashboard (`weftjs/dashboard`) at `/` of the metrics endpoint. Without `metricsPort` it implies
   * {@link DEFAULT_DASHBOARD_PORT}. Default: false.
   */
  dashboard?: boolean;
}

/** The metrics port `dashboard: true` implies when none is given: Prometheus' usual exporter port. */
export const DEFAULT_DASHBOARD_PORT = 9464;

export type ResolvedSuperviseOptions = ReturnType<typeof resolveSuperviseOptions>;

export function resolveSuperviseOptions(options: SuperviseOptions) {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const exec = resolveExec(options.exec);
  const cores = availableParallelism();
  const w = options.workers ?? 'max';
  if (w !== 'max' && !(Number.isInteger(w) && w >= 1 && w <= 1024)) {
    throw new InvalidOptionError('workers', "an integer from 1 to 1024 or 'max'", w);
  }
  const workers = w === 'max' ? cores : w;
  const crashLoop = options.crashLoop ?? { max: 5, windowMs: 60_000 };
  const retryAfter = (crashLoop as { retryAfter?: unknown }).retryAfter;
  if (
    !Number.isInteger(crashLoop.max) ||
    crashLoop.max < 0 ||
    !(crashLoop.windowMs > 0) ||
    (retryAfter !== undefined &&
      !(typeof retryAfter === 'number' && retryAfter >= 0 && retryAfter <= 2 ** 31 - 1))
  ) {
    throw new InvalidOptionError(
      'crashLoop',
      '{ max: integer >= 0, windowMs: ms > 0, retryAfter?: ms from 0 to 2147483647 }',
      crashLoop,
    );
  }
  for (const key of ['args', 'execArgv'] as const) {
    const v = options[key];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) {
      throw new InvalidOptionError(key, 'an array of strings', v);
    }
  }
  const { metricsHost = '127.0.0.1', dashboard = false } = options;
  if (typeof dashboard !== 'boolean') throw new InvalidOptionError('dashboard', 'a boolean', dashboard);
  const metricsPort = options.metricsPort ?? (dashboard ? DEFAULT_DASHBOARD_PORT : undefined);
  if (
    metricsPort !== undefined &&
    !(
      typeof metricsPort === 'number' &&
      Number.isInteger(metricsPort) &&
      metricsPort >= 0 &&
      metricsPort <= 65_535
    )
  ) {
    throw new InvalidOptionError('metricsPort', 'an integer from 0 to 65535', metricsPort);
  }
  if (typeof metricsHost !== 'string' || metricsHost.length === 0)
    throw new InvalidOptionError('metricsHost', 'a host name or IP address', metricsHost);
  const metricsTimeout = timerOption(options, 'metricsTimeout', 1_000);
  if (metricsTimeout < 1)
    throw new InvalidOptionError('metricsTimeout', 'a number of ms >= 1', metricsTimeout);
  const maxSurge = options.maxSurge ?? 1;
  if (!Number.isInteger(maxSurge) || maxSurge < 1)
    throw new InvalidOptionError('maxSurge', 'an integer >= 1', maxSurge);
  return Object.freeze({
    exec,
    args: options.args ?? [],
    workers,
    name: options.name ?? ((exec.split('/').pop() ?? '').replace(/\.[^.]+$/, '') || 'app'),
    env: options.env ?? {},
    execArgv: options.execArgv,
    startTimeout: timerOption(options, 'startTimeout', 30_000),
    killTimeout: timerOption(options, 'killTimeout', 30_000),
    pingInterval: timerOption(options, 'pingInterval', 1_000),
    livenessTimeout: timerOption(options, 'livenessTimeout', 10_000),
    hungKillGrace: timerOption(options, 'hungKillGrace', 2_000),
    maxMemory: bytes(options.maxMemory),
    backoff: options.backoff ?? {},
    stableAfter: timerOption(options, 'stableAfter', 30_000),
    repeatSignalWindow: timerOption(options, 'repeatSignalWindow', 500),
    crashLoop,
    maxSurge,
    statsInterval: timerOption(options, 'statsInterval', 1_000),
    logger: options.logger,
    handleSignals: options.handleSignals ?? true,
    exit: options.exit ?? true,
    prefixOutput: options.prefixOutput ?? true,
    formatOutput: options.formatOutput,
    metricsPort,
    metricsHost,
    metricsTimeout,
    dashboard,
    /** Threads per worker so that workers × threads match the cores. */
    threads: Math.max(1, Math.floor(cores / workers)),
  });
}

function resolveExec(exec: unknown): string {
  if (exec instanceof URL) return fileURLToPath(exec);
  if (typeof exec === 'string' && exec.startsWith('file:')) return fileURLToPath(exec);
  if (typeof exec !== 'string' || !isAbsolute(exec)) {
    throw new InvalidOptionError('exec', 'an absolute path or a file: URL', exec);
  }
  return exec;
}

function bytes(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError('maxMemory', 'a number of bytes >= 0', value);
  }
  return value;
}
