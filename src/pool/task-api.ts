/**
 * `weftjs/pool/task`: what a task module needs inside a thread, and nothing else, so importing it costs a thread
 * about a millisecond at start instead of loading the whole pool.
 *
 * @example
 * ```ts
 * import { transfer, type TaskContext } from 'weftjs/pool/task';
 * export function invert(this: TaskContext, pixels: Uint8Array) {
 *   for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
 *   return transfer(pixels, [pixels.buffer]);
 * }
 * ```
 * @module
 */
export { isTransferred, type TransferListItem, type Transferred, transfer } from './transfer.ts';
export type { TaskContext } from './worker.ts';
