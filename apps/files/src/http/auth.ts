import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';
import { OPEN_VIEWER, SCOPES, type Scope, type TokenStore, type Viewer } from '../tokens.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * An `onRequest` hook for one fixed token (`/metrics`' own): with a token configured, the request needs
 * `Authorization: Bearer <token>`, compared in constant time (over digests, so the length leaks nothing either).
 * Without one, the route is open.
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

/** Who may reach the service: scoped tokens (`FILES_TOKENS_FILE`), the one shared write token (`FILES_TOKEN`). */
export interface Access {
  tokens?: TokenStore | undefined;
  token?: string | undefined;
}

/** Who may reach the app: its scoped tokens and its one shared token. */
export const accessOf = (deps: {
  tokens?: TokenStore | undefined;
  config: { token?: string | undefined };
}): Access => ({
  tokens: deps.tokens,
  token: deps.config.token,
});

/** Whether anything but an open service is configured. */
const guarded = (access: Access): boolean => access.tokens !== undefined || access.token !== undefined;

const viewers = new WeakMap<FastifyRequest, Viewer>();

/** The viewer an `authorize` hook found for `request`; the open viewer when none ran. */
export function viewerOf(request: FastifyRequest): Viewer {
  return viewers.get(request) ?? OPEN_VIEWER;
}

/** The token a request carries: `Authorization: Bearer <token>`, or `Basic` with the token as password (a browser). */
function presented(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization ?? '';
  const bearer = /^Bearer\s+(.+)$/i.exec(header);
  if (bearer) return bearer[1]!.trim();
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : decoded.slice(colon + 1);
}

/** `FILES_TOKEN` holds every scope, for no tenant: the administrator's key, as it always was for writes. */
const SHARED_VIEWER: Viewer = { tokenId: 'FILES_TOKEN', tenant: null, scopes: new Set(SCOPES), shared: true };

/**
 * An `onRequest` hook that finds who is asking and checks `scope` (an `admin` token has every scope), then records
 * the viewer for `viewerOf`. With scoped tokens every route needs one (401 without, 403 without the scope); with only
 * `FILES_TOKEN`, writes need it and reads stay open, as before scoped tokens; with neither, everything is open.
 * `challenge`: the `WWW-Authenticate` scheme of a 401 (`Basic` makes a browser ask, for the dashboard).
 */
export function authorize(access: Access, scope: Scope, challenge: 'Bearer' | 'Basic' = 'Bearer') {
  const shared = access.token === undefined ? undefined : digest(access.token);
  const unauthorized = (reply: FastifyReply, message: string) => {
    reply.header('www-authenticate', `${challenge} realm="files"`);
    return new FilesError('ERR_WEFT_FILES_UNAUTHORIZED', message);
  };
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // With FILES_TOKEN alone, reads stay open, the admins' lists too, as before scoped tokens.
    const openRead =
      scope === 'read' || (scope === 'admin' && (request.method === 'GET' || request.method === 'HEAD'));
    if (!guarded(access) || (access.tokens === undefined && openRead)) {
      viewers.set(request, OPEN_VIEWER);
      return;
    }
    const token = presented(request);
    if (token === undefined)
      throw unauthorized(reply, 'This request needs an Authorization: Bearer <token> header');
    let viewer: Viewer | undefined;
    if (shared && timingSafeEqual(digest(token), shared)) viewer = SHARED_VIEWER;
    else viewer = await access.tokens?.authenticate(token);
    if (!viewer)
      throw unauthorized(
        reply,
        `The bearer token is not valid${access.tokens ? ' (unknown, or revoked)' : ''}`,
      );
    if (!viewer.scopes.has(scope) && !viewer.scopes.has('admin'))
      throw new FilesError(
        'ERR_WEFT_FILES_FORBIDDEN',
        `The token "${viewer.tokenId}" does not have the ${scope} scope`,
      );
    viewers.set(request, viewer);
  };
}
