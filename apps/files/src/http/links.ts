/**
 * Signed links: `POST /files/:id/links` hands out an expiring URL to a file's content or one of its outputs, signed
 * with HMAC-SHA256, that anyone holding it may open without a token (`GET /links/...`). An expired link, or one whose
 * file, target, expiry or signature was altered, answers 403. See docs/files.md, "Signed links".
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { sendContent, sendDerived, visibleFile } from './files.ts';

/** Default and longest lifetime of a link, s. */
export const LINK_DEFAULT_TTL = 3_600;
export const LINK_MAX_TTL = 7 * 24 * 3_600;

/**
 * The secret links are signed with: `FILES_LINK_SECRET` when set (every node must have the same one), else one made
 * at random once and kept in `file` (mode 0600), which every worker of the machine then reads. Made with `wx`, so two
 * workers starting at once agree: the second finds the first's.
 */
export function linkSecret(configured: string | undefined, file: string): Buffer {
  if (configured !== undefined) return Buffer.from(configured, 'utf8');
  mkdirSync(dirname(file), { recursive: true });
  try {
    writeFileSync(file, randomBytes(32).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // A worker that lost the race may read before the winner wrote: read until the secret is whole.
  for (let i = 0; i < 100; i++) {
    const text = readFileSync(file, 'utf8').trim();
    if (text.length >= 43) return Buffer.from(text, 'utf8');
  }
  throw new FilesError(
    'ERR_WEFT_FILES_CONFIG',
    `The link secret in ${file} is too short: delete it to make a new one`,
  );
}

/** What a link opens: the content, or `derived/<name>`. */
export type Target = { kind: 'content' } | { kind: 'derived'; name: string };

function targetPath(target: Target): string {
  return target.kind === 'content' ? 'content' : `derived/${encodeURIComponent(target.name)}`;
}

/** The signature of a link: over the file, the target and the expiry, so none of them can be changed. */
function sign(secret: Buffer, fileId: string, target: Target, expires: number): string {
  const what = target.kind === 'content' ? 'content' : `derived\n${target.name}`;
  return createHmac('sha256', secret)
    .update(`weft-files-link\n${fileId}\n${what}\n${expires}`)
    .digest('base64url');
}

/**
 * A signed link to `target` of file `id`, at path level (no origin), expiring at `expires` (unix s). Used for the
 * links `POST /files/:id/links` hands out and, with a stable hourly expiry, for the dashboard's thumbnails.
 */
export function signedPath(secret: Buffer, id: string, target: Target, expires: number): string {
  return `/links/${id}/${targetPath(target)}?expires=${expires}&sig=${sign(secret, id, target, expires)}`;
}

/** Reads a small JSON body (the app parses none itself): at most 4 KiB, an object, or nothing. */
async function jsonBody(request: FastifyRequest): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw) {
    size += (chunk as Buffer).length;
    if (size > 4_096)
      throw new FilesError('ERR_WEFT_FILES_BAD_REQUEST', 'The body of a link request is over 4 KiB');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new FilesError('ERR_WEFT_FILES_BAD_REQUEST', 'The body of a link request must be JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new FilesError('ERR_WEFT_FILES_BAD_REQUEST', 'The body of a link request must be a JSON object');
  return body as Record<string, unknown>;
}

const UUID = '^[0-9a-f-]{36}$';

/**
 * Registers `POST /files/:id/links` (the `read` scope, on a file the token may see) and the links themselves,
 * `GET /links/:id/content` and `GET /links/:id/derived/:name` with `?expires=<unix s>&sig=<HMAC>`.
 */
export function linkRoutes(app: FastifyInstance, deps: AppDeps, secret: Buffer): void {
  const { catalog, storage } = deps;
  const read = authorize(accessOf(deps), 'read');
  const at = deps.config.contentOrigin ?? '';

  app.post(
    '/files/:id/links',
    {
      onRequest: read,
      schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: UUID } } } },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = { ...(request.query as Record<string, unknown>), ...(await jsonBody(request)) };
      await visibleFile(catalog, viewerOf(request), id);
      const rawTarget = body.target ?? 'content';
      let target: Target;
      if (rawTarget === 'content') target = { kind: 'content' };
      else if (typeof rawTarget === 'string' && rawTarget.startsWith('derived/') && rawTarget.length > 8) {
        const name = rawTarget.slice(8);
        if (!(await catalog.derived(id)).some((d) => d.name === name))
          throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No derived output ${name} of file ${id}`);
        target = { kind: 'derived', name };
      } else
        throw new FilesError(
          'ERR_WEFT_FILES_BAD_REQUEST',
          'target must be "content" or "derived/<name>" (a name GET /files/:id lists)',
        );
      const ttl = body.expiresIn === undefined ? LINK_DEFAULT_TTL : Number(body.expiresIn);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > LINK_MAX_TTL)
        throw new FilesError(
          'ERR_WEFT_FILES_BAD_REQUEST',
          `expiresIn must be whole seconds, 1 to ${LINK_MAX_TTL} (7 days); got ${JSON.stringify(body.expiresIn)}`,
        );
      const expires = Math.floor(Date.now() / 1000) + ttl;
      const url = `${at}${signedPath(secret, id, target, expires)}`;
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ url, expiresAt: new Date(expires * 1000).toISOString() });
    },
  );

  /** Checks a link's expiry and signature: 403 when altered (checked first: an altered expiry is no news) or expired. */
  const verify = (request: FastifyRequest, id: string, target: Target) => {
    const q = request.query as { expires?: string; sig?: string };
    const expires = Number(q.expires);
    const given = Buffer.from(typeof q.sig === 'string' ? q.sig : '', 'utf8');
    const expected = Buffer.from(
      Number.isSafeInteger(expires) ? sign(secret, id, target, expires) : '',
      'utf8',
    );
    if (expected.length === 0 || given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new FilesError(
        'ERR_WEFT_FILES_LINK_INVALID',
        'The link is not valid: it was altered, or is not a link',
      );
    if (expires * 1000 <= Date.now())
      throw new FilesError(
        'ERR_WEFT_FILES_LINK_EXPIRED',
        `The link expired at ${new Date(expires * 1000).toISOString()}`,
      );
  };

  app.get('/links/:id/content', async (request, reply) => {
    const { id } = request.params as { id: string };
    verify(request, id, { kind: 'content' });
    const file = await catalog.get(id);
    if (!file) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
    return sendContent(request, reply, storage, file);
  });

  app.get('/links/:id/derived/:name', async (request, reply) => {
    const { id, name } = request.params as { id: string; name: string };
    verify(request, id, { kind: 'derived', name });
    return sendDerived(request, reply, deps, id, name);
  });
}
