/** The HTTP API of the file service (fastify), built from its parts so tests can run it in-process. */
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Dashboard } from 'weftjs/dashboard';
import type { Catalog } from '../catalog/types.ts';
import type { FilesConfig } from '../config.ts';
import { type FilesDashboard, routeDashboard } from '../dashboard.ts';
import { FilesError } from '../errors.ts';
import type { FilesBus } from '../events/bus.ts';
import type { Logger } from '../logger.ts';
import type { ProcessorRegistry } from '../processors/registry.ts';
import type { JobQueue } from '../queue/types.ts';
import type { Storage } from '../storage/types.ts';
import type { TokenStore } from '../tokens.ts';
import { accessOf, authorize, requireToken } from './auth.ts';
import { contentOriginGuard } from './content-origin.ts';
import { fileRoutes } from './files.ts';
import { imageRoutes, type ResizeSetup } from './image.ts';
import { jobRoutes } from './jobs.ts';
import { linkRoutes } from './links.ts';
import { type UploadLimitOptions, uploadLimit } from './rate-limit.ts';
import { rowsRoutes } from './rows.ts';
import type { TusSetup } from './tus.ts';

type Handler = (request: FastifyRequest, reply: FastifyReply) => unknown;

export interface AppDeps {
  config: Pick<FilesConfig, 'maxUpload' | 'maxAttempts' | 'token' | 'uploadIdleTimeout' | 'uploadTimeout'> &
    Partial<Pick<FilesConfig, 'contentOrigin' | 'metricsToken' | 'tenantQuota'>> &
    Partial<Pick<FilesConfig, 'webhookUrl' | 'webhookSecret' | 'webhookOrigins'>>;
  catalog: Catalog;
  queue: JobQueue;
  storage: Storage;
  bus: Pick<FilesBus, 'publish'>;
  log: Logger;
  /** Told when jobs were queued here, so they start without waiting for the next poll. */
  runner?: { wake(): void };
  /** Told when an upload's jobs were left in the outbox (the queue unavailable), so it looks at once. */
  relay?: { wake(): void };
  /** An `onRequest` hook that answers 503 when the service is overloaded (uploads only). */
  shed?: (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => unknown;
  /** Liveness and readiness handlers (weft/lifecycle's). */
  health?: { live: Handler; ready: Handler };
  /** Serves `/metrics`. */
  metrics?: Handler;
  /** The live dashboard, served at `/` and `/dashboard/*`. */
  dashboard?: Dashboard | FilesDashboard;
  /** The server's keep-alive timeout, ms. */
  keepAliveTimeout?: number;
  /** Resumable uploads (tus) at `/uploads`: its store, lock and limits. */
  tus?: TusSetup;
  /** Images resized on request at `/files/:id/image`: the thread pool that makes them. */
  resize?: ResizeSetup;
  /** Uploads a minute per client address, and where they are counted (http/rate-limit.ts). */
  uploadLimit?: Omit<UploadLimitOptions, 'log'>;
  /** Scoped tokens (`FILES_TOKENS_FILE`): with them every route needs a token, and files belong to tenants. */
  tokens?: TokenStore;
  /** The processor plug-ins: an upload of a type one matches gets its job too (or later, in a chain). */
  processors?: Pick<ProcessorRegistry, 'kindsFor' | 'startKinds' | 'after'>;
  /** The secret of signed links (`POST /files/:id/links`); without it there are none. */
  linkSecret?: Buffer;
}

/**
 * @example
 * ```ts
 * const app = await buildApp({ config, catalog, queue, storage, bus, log });
 * await app.listen({ port: 3000 });
 * ```
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, keepAliveTimeout: deps.keepAliveTimeout ?? 5_000 });
  // Uploads are streamed: no body parser may read them first. Multipart gets its own parser below.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  await app.register(multipart, { limits: { files: 1, fields: 10, fieldSize: 64 * 1024 } });

  app.setErrorHandler(
    (err: Error & { statusCode?: number; code?: string; validation?: unknown }, request, reply) => {
      let status = 500;
      let code = 'ERR_WEFT_FILES_INTERNAL';
      let message = 'Internal error';
      if (err instanceof FilesError) {
        status = err.statusCode;
        code = err.code;
        message = err.message;
      } else if (err.code === 'FST_REQ_FILE_TOO_LARGE') {
        status = 413;
        code = 'ERR_WEFT_FILES_TOO_LARGE';
        message = `The upload is larger than the limit of ${deps.config.maxUpload} bytes`;
      } else if (
        err.validation ||
        (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500)
      ) {
        status = err.statusCode ?? 400;
        code = 'ERR_WEFT_FILES_BAD_REQUEST';
        message = err.message;
      }
      // Expected outages (a locked database, Redis away, a full disk) are the client's news, not a stack per request.
      if (status === 500) deps.log.error({ err, url: request.url }, `request failed: ${err.message}`);
      else if (status > 500) deps.log.warn({ code, url: request.url }, `request failed: ${message}`);
      if (status === 503) reply.header('retry-after', '1');
      return reply.code(status).send({ error: { code, message } });
    },
  );
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: { code: 'ERR_WEFT_FILES_NOT_FOUND', message: `No route ${request.method} ${request.url}` },
    }),
  );

  if (deps.config.contentOrigin) app.addHook('onRequest', contentOriginGuard(deps.config.contentOrigin));
  const limit = deps.uploadLimit ? await uploadLimit(app, { ...deps.uploadLimit, log: deps.log }) : undefined;
  fileRoutes(app, deps, limit);
  rowsRoutes(app, deps);
  jobRoutes(app, deps);
  if (deps.linkSecret) linkRoutes(app, deps, deps.linkSecret);
  if (deps.resize) imageRoutes(app, deps, deps.resize);
  if (deps.tus) {
    const { tusRoutes } = await import('./tus.ts');
    const endpoint = tusRoutes(app, deps, deps.tus, limit);
    app.addHook('onClose', async () => endpoint.close());
  }
  if (deps.health) {
    app.get('/health/live', deps.health.live);
    app.get('/health/ready', deps.health.ready);
  }
  // /metrics (upload counts, backends, every worker's): its own token when FILES_METRICS_TOKEN is set, else an admin
  // token when tokens are scoped, else open.
  const access = accessOf(deps);
  const metricsGuard =
    deps.config.metricsToken !== undefined || !access.tokens
      ? requireToken(deps.config.metricsToken)
      : authorize(access, 'admin');
  if (deps.metrics) app.get('/metrics', { onRequest: metricsGuard }, deps.metrics);
  // With scoped tokens the dashboard needs a token with the read scope: an admin's sees everything, a tenant's its own
  // files, events and usage (dashboard.ts, `view`). A browser asks for it (Basic, the token as password) and sends it
  // with the page's own requests, its event stream included.
  if (deps.dashboard)
    routeDashboard(app, deps.dashboard, access.tokens ? authorize(access, 'read', 'Basic') : undefined);
  return app;
}
