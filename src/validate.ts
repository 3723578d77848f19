/** Validation shared by every Weft module. Internal. */
import { InvalidOptionError } from './errors.ts';

/** Longest delay a Node timer honours; longer ones fire after 1 ms (with a TimeoutOverflowWarning). */
export const MAX_TIMER = 2 ** 31 - 1;

/** What a delay option must be, for error messages. */
export const DELAY = `a number of ms from 0 to ${MAX_TIMER}, or Infinity`;

/** True for a delay a timer can honour, or Infinity (never). */
export function isDelay(value: unknown): value is number {
  return (
    typeof value === 'number' && value >= 0 && (value <= MAX_TIMER || value === Number.POSITIVE_INFINITY)
  );
}

/** Reads a finite timer option (0 to MAX_TIMER ms) from `options[key]`, or `fallback` when absent. */
export function timerOption(options: object, key: string, fallback: number): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0) || value > MAX_TIMER) {
    throw new InvalidOptionError(key, `a number of ms from 0 to ${MAX_TIMER}`, value);
  }
  return value;
}
