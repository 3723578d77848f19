/** Option validation shared by the stream tools. Internal. */
import { addAbortSignal, type Stream } from 'node:stream';
import { InvalidOptionError } from '../errors.ts';
import { MAX_TIMER } from '../validate.ts';

/** `options` itself: absent means `{}`, anything but an object is refused. */
export function optionsObject<T extends object>(options: T | undefined, name = 'options'): T {
  if (options === undefined) return {} as T;
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError(name, 'an object', options);
  return options;
}

/** An integer option `>= min`, or `fallback` when absent (`undefined` fallback: required). */
export function intOption(options: object, key: string, fallback: number | undefined, min: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidOptionError(key, `an integer >= ${min}`, value);
  }
  return value;
}

/** A delay in ms a timer can honour, or Infinity (never). */
export function delayOption(options: object, key: string, fallback: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !(value >= 0) ||
    (value > MAX_TIMER && value !== Number.POSITIVE_INFINITY)
  ) {
    throw new InvalidOptionError(key, `a number of ms from 0 to ${MAX_TIMER}, or Infinity`, value);
  }
  return value;
}

/** A finite duration in ms, `> 0`. */
export function periodOption(options: object, key: string, fallback: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0) || value > MAX_TIMER) {
    throw new InvalidOptionError(key, `a number of ms > 0 and <= ${MAX_TIMER}`, value);
  }
  return value;
}

/** A finite number `>= 0`, or undefined when absent. */
export function amountOption(options: object, key: string): number | undefined {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return undefined;
  checkAmount(key, value);
  return value as number;
}

export function checkAmount(key: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(key, 'a finite number >= 0', value);
  }
}

export function boolOption(options: object, key: string, fallback: boolean): boolean {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(key, 'a boolean', value);
  return value;
}

// biome-ignore lint/suspicious/noExplicitAny: a validator must accept every function signature
type Fn = (...args: any[]) => unknown;

export function fnOption<F extends Fn>(options: object, key: string): F | undefined {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(key, 'a function', value);
  return value as F;
}

export function signalOption(options: object): AbortSignal | undefined {
  const value = (options as Record<string, unknown>).signal;
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new InvalidOptionError('signal', 'an AbortSignal', value);
  return value;
}

/** Destroys `stream` with an `AbortError` (cause: the signal's reason) when `signal` aborts, now or later. */
export function attachSignal(signal: AbortSignal | undefined, stream: Stream): void {
  // addAbortSignal removes its listener when the stream ends, so a long-lived signal does not leak streams.
  if (signal) addAbortSignal(signal, stream);
}
