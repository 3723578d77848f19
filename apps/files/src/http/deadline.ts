/**
 * Deadlines on an upload's body: one for a pause (no byte for `idleMs`) and one for the whole body (`totalMs`).
 * Without them a client that stops sending mid-body holds its socket and its temp file for as long as the TCP
 * connection lives (hours, behind a NAT that drops it silently).
 */
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream';
import { FilesError } from '../errors.ts';

export interface BodyLimits {
  idleMs: number;
  totalMs: number;
}

/**
 * Watches `source` (already piped into `target`): when a deadline passes, `source` is unpiped and `target` is
 * destroyed with `ERR_WEFT_FILES_TIMEOUT` (408), so whatever consumes `target` (storage) fails and removes its temp
 * file. The request itself is left to the route, which answers and closes the connection.
 *
 * @example
 * ```ts
 * source.pipe(inspector);
 * watchBody(source, inspector, { idleMs: 30_000, totalMs: 3_600_000 });
 * ```
 */
export function watchBody(source: Readable, target: Writable, limits: BodyLimits): void {
  const expire = (what: string) => {
    stop();
    source.unpipe(target);
    target.destroy(new FilesError('ERR_WEFT_FILES_TIMEOUT', what));
  };
  const total = setTimeout(() => expire(`The upload took longer than ${limits.totalMs} ms`), limits.totalMs);
  let idle = setTimeout(() => expire(`The upload sent nothing for ${limits.idleMs} ms`), limits.idleMs);
  // Observing 'data' does not change the flow: the source is already flowing into `target`.
  const onData = () => {
    idle.refresh();
  };
  source.on('data', onData);
  const stop = () => {
    clearTimeout(total);
    clearTimeout(idle);
    source.off('data', onData);
  };
  // A deadline ends once the body is all read (or failed): what follows (fsync, database) is not the client's.
  finished(source, { writable: false }, stop);
  finished(target, stop);
  idle = idle.unref();
  total.unref();
}
