import type { Transferable as NodeTransferable } from 'node:worker_threads';

/** Anything `postMessage` can move instead of copy. */
export type TransferListItem = NodeTransferable;

// A registered symbol, not a class: the worker runtime and the user's task module may load two copies of this
// file (src and dist), and a brand must survive that.
const kTransfer = Symbol.for('weft.pool.transfer');

/** A task result that is moved to the caller with its transfer list. See {@link transfer}. */
export interface Transferred<T> {
  readonly [kTransfer]: true;
  readonly value: T;
  readonly transferList: readonly TransferListItem[];
}

/**
 * Marks a task's return value to be moved, not copied, to the caller: the buffers in `transferList` are detached in
 * the worker and arrive in the caller without a copy. The caller receives `value` itself.
 *
 * @example
 * ```ts
 * import { transfer } from 'weftjs/pool';
 * export function invert(pixels: Uint8Array) {
 *   for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
 *   return transfer(pixels, [pixels.buffer]);
 * }
 * ```
 */
export function transfer<T>(value: T, transferList: readonly TransferListItem[]): Transferred<T> {
  return { [kTransfer]: true, value, transferList } as Transferred<T>;
}

/** True when `value` was made by {@link transfer}. */
export function isTransferred(value: unknown): value is Transferred<unknown> {
  return (
    typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kTransfer] === true
  );
}
