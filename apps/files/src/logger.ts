/** The service's log: pino JSON lines on stdout, which the weft supervisor prefixes with the worker's slot. */
import { pino } from 'pino';

/** The part of a pino logger the service uses (pino-compatible, so tests can pass a silent one). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A pino logger at `FILES_LOG_LEVEL` (default `info`), or silent with `FILES_LOG_LEVEL=silent`. */
export function createLogger(env: NodeJS.ProcessEnv = process.env): pino.Logger {
  return pino({
    level: env.FILES_LOG_LEVEL ?? 'info',
    base: { pid: process.pid, worker: env.WEFT_WORKER_INDEX },
  });
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
