import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * An `onRequest` hook for writes: with a token configured, the request needs `Authorization: Bearer <token>`,
 * compared in constant time (over digests, so the length leaks nothing either). Without one, writes are open.
 */
export function requireToken(token: string | undefined) {
  const expected = token === undefined ? undefined : digest(token);
  return (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    const m = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
    if (!expected || (m && timingSafeEqual(digest(m[1]!.trim()), expected))) {
      done();
      return;
    }
    reply.header('www-authenticate', 'Bearer realm="files"');
    done(
      new FilesError(
        'ERR_WEFT_FILES_UNAUTHORIZED',
        m ? 'The bearer token is not valid' : 'This request needs an Authorization: Bearer <token> header',
      ),
    );
  };
}
