/** Validation shared by every Weft module. Internal. */

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
