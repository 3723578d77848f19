import { InvalidOptionError, WeftError } from '../errors.ts';
import { DELAY, isDelay } from '../validate.ts';
import { deserializeError } from './serialize.ts';
import type { TransferListItem } from './transfer.ts';
import type { RunOptions } from './types.ts';

/** `run` options after validation. Internal. */
export interface ParsedRunOptions {
  priority: number;
  timeout: number;
  signal: AbortSignal | undefined;
  transfer: TransferListItem[] | undefined;
}

/** Validates `run`'s options; returns the error to reject with instead of throwing (run never throws). */
export function parseRunOptions(
  options: RunOptions | undefined,
  defaultTimeout: number,
): ParsedRunOptions | WeftError {
  const parsed: ParsedRunOptions = {
    priority: 0,
    timeout: defaultTimeout,
    signal: undefined,
    transfer: undefined,
  };
  if (options === undefined) return parsed;
  if (typeof options !== 'object' || options === null)
    return invalidArgument('options', 'an object', options);
  const { priority, timeout, signal, transfer } = options;
  if (priority !== undefined) {
    if (typeof priority !== 'number' || !Number.isFinite(priority)) {
      return invalidArgument('priority', 'a finite number', priority);
    }
    parsed.priority = priority;
  }
  if (timeout !== undefined) {
    if (!isDelay(timeout)) return invalidArgument('timeout', DELAY, timeout);
    parsed.timeout = timeout === Number.POSITIVE_INFINITY ? 0 : timeout;
  }
  if (signal !== undefined) {
    if (!(signal instanceof AbortSignal)) return invalidArgument('signal', 'an AbortSignal', signal);
    parsed.signal = signal;
  }
  if (transfer !== undefined) {
    if (!Array.isArray(transfer)) return invalidArgument('transfer', 'an array', transfer);
    parsed.transfer = transfer as TransferListItem[];
  }
  return parsed;
}

/** Rebuilds a task's error; Weft's own codes from the thread become `WeftError`s again. */
export function toError(value: unknown, task: string): unknown {
  const err = deserializeError(value);
  if (!(err instanceof Error)) return err;
  const code = (err as Error & { code?: unknown }).code;
  if (code === 'ERR_WEFT_UNKNOWN_TASK') {
    const weft = new WeftError(code, err.message);
    weft.stack = err.stack;
    return weft;
  }
  if (code === 'ERR_WEFT_DATA_CLONE') {
    return new WeftError(code, `The result of task "${task}" could not be cloned: ${err.message}`, {
      cause: err.cause,
    });
  }
  return err;
}

export function closedError(): WeftError {
  return new WeftError('ERR_WEFT_POOL_CLOSED', 'The pool is closed');
}

export function invalidArgument(name: string, expected: string, actual: unknown): WeftError {
  const err = new InvalidOptionError(name, expected, actual);
  return new WeftError('ERR_WEFT_INVALID_ARGUMENT', err.message);
}
