/**
 * The separate content origin (`contentOrigin`): when the service also answers on that host name, it serves only
 * file bytes there. A document that somehow became active on the content origin then finds nothing of value: no
 * dashboard, so no token in its storage, and no API to call with the browser's credentials.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';

/** What the content origin serves: a file's bytes, a derived output, a resized image, signed links, the probes. */
const CONTENT_PATH =
  /^\/((files|links)\/[0-9a-f-]{36}\/(content|image|derived\/[^/?]+)|health\/(live|ready))(\?.*)?$/;

/**
 * An `onRequest` hook answering 404 to anything but content on requests addressed to `origin`'s host.
 *
 * @example
 * ```ts
 * app.addHook('onRequest', contentOriginGuard('https://files-content.example.com'));
 * ```
 */
export function contentOriginGuard(origin: string) {
  const url = new URL(origin);
  const hosts = new Set([url.host, `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`]);
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    const read = request.method === 'GET' || request.method === 'HEAD';
    const mine = hosts.has(request.headers.host?.toLowerCase() ?? '');
    if (!mine || (read && CONTENT_PATH.test(request.url))) {
      done();
      return;
    }
    done(
      new FilesError(
        'ERR_WEFT_FILES_NOT_FOUND',
        `The content origin ${origin} serves only file content; ${request.method} ${request.url.split('?')[0]} is on the API's origin`,
      ),
    );
  };
}
