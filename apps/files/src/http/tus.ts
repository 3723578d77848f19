/**
 * Resumable uploads with the tus 1.0 protocol (`@tus/server`), at `/uploads`: creation (with upload, with deferred
 * length), termination, expiration, and checksum (which `@tus/server` does not implement: verified here, before
 * the bytes reach the tus store). Uppy and tus-js-client resume an interrupted upload where it stopped.
 *
 * A tus upload's bytes wait in the tus store (files under `dataDir/uploads`, or the S3 bucket under
 * `<prefix>uploads/`). When the last byte arrives they go through the same pipeline as every other upload form
 * (`recordStored`): hashed and sniffed while copied to storage, recorded with their jobs, durable before the final
 * PATCH is answered. The tus upload's id is the file's id, so finishing it twice (a lost answer, a second node
 * recovering it) records one file. Once recorded, the upload's bytes leave the tus store, and the upload URL keeps
 * answering for the file: HEAD says it is complete, so a client that retries after a lost answer finishes instead
 * of starting again.
 * @module
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Server } from '@tus/server';
import { type DataStore, EXPOSED_HEADERS, type Locker, type Upload } from '@tus/utils';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';
import { ThrottledLog } from '../log-throttle.ts';
import { originalKey } from '../storage/types.ts';
import { canSee, type Viewer } from '../tokens.ts';
import { Inspector } from '../upload.ts';
import { uploadWebhook } from '../webhooks.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { overQuota, quotaRoom, recordStored, type StoredUpload } from './files.ts';
import type { UploadLimit } from './rate-limit.ts';

/** Where tus clients point: `new tus.Upload(file, { endpoint: 'http://host:3000/uploads/' })`. */
export const TUS_PATH = '/uploads';

/** `Upload-Checksum` algorithms accepted (the tus checksum extension; `sha1` is the one it requires). */
const CHECKSUM_ALGORITHMS = ['sha1', 'sha256', 'sha512', 'md5'] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Headers a browser client may read from the answers (CORS), besides tus's own. */
const WEFT_HEADERS = ['X-Weft-File-Id', 'X-Weft-File'];

/** What the tus endpoint needs besides the app's parts. */
export interface TusSetup {
  /** The tus store: `@tus/file-store`'s FileStore or `@tus/s3-store`'s S3Store (both read an upload back). */
  datastore: DataStore & { read(id: string): Readable | Promise<Readable> };
  /** Put before an upload's id to make its key in the store (`<prefix>uploads/` in a bucket; '' for files). */
  storePrefix: string;
  /** Excludes two requests on one upload across processes and nodes (tus-lock.ts). */
  locker: Locker;
  /** Where a PATCH body with a checksum is held until it is verified. */
  tmpDir: string;
  /** Unfinished uploads older than this are removed, ms. */
  expiryMs: number;
}

/**
 * tus uploads: mounted by `buildApp` when `deps.tus` is given; `close()` stops the expiry sweep. `@tus/server` is
 * loaded with the first request to `/uploads`: it brings web `Request`, `Headers` and `Response` (Node's undici),
 * about 4 MB of memory a worker that never sees a tus upload does not need (docs/files.md#memory).
 */
export interface TusEndpoint {
  close(): void;
}

/** Hashes what passes and counts it; fails past `limit` bytes. */
class Hasher extends Transform {
  readonly hash;
  bytes = 0;
  readonly #limit: number;

  constructor(algorithm: string, limit: number) {
    super();
    this.hash = createHash(algorithm);
    this.#limit = limit;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) {
      done(
        new FilesError(
          'ERR_WEFT_FILES_TOO_LARGE',
          `The upload is larger than the limit of ${this.#limit} bytes`,
        ),
      );
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** `Upload-Checksum: <algorithm> <base64>` parsed; 400 for an algorithm not supported (as the extension says). */
function parseChecksum(header: string): { algorithm: string; digest: string } {
  const m = /^([a-z0-9-]+) ([A-Za-z0-9+/=]+)$/.exec(header.trim());
  if (!m)
    throw new FilesError(
      'ERR_WEFT_FILES_BAD_REQUEST',
      'Upload-Checksum must be "<algorithm> <base64 digest>"',
    );
  const algorithm = m[1]!.toLowerCase();
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm))
    throw new FilesError(
      'ERR_WEFT_FILES_BAD_REQUEST',
      `Checksum algorithm ${algorithm} is not supported (${CHECKSUM_ALGORITHMS.join(', ')})`,
    );
  return { algorithm, digest: m[2]! };
}

/** The request as a web `Request` for `@tus/server`, with `body` (a verified copy) in place of the socket's. */
function webRequest(request: FastifyRequest, body?: Readable): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const hasBody = request.method === 'POST' || request.method === 'PATCH';
  const init: RequestInit & { duplex?: 'half' } = { method: request.method, headers };
  if (hasBody) {
    init.body = Readable.toWeb(body ?? request.raw) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  return new Request(`http://${request.headers.host ?? 'localhost'}${request.url}`, init);
}

/**
 * Registers `/uploads` and `/uploads/:uploadId` (POST, PATCH, HEAD, DELETE, OPTIONS). Writes need the token, as the
 * other uploads do (OPTIONS, a browser's preflight, does not); creating and appending are shed under overload.
 */
export function tusRoutes(
  app: FastifyInstance,
  deps: AppDeps,
  setup: TusSetup,
  limit?: UploadLimit,
): TusEndpoint {
  const { catalog, config, storage, log } = deps;
  const { datastore, storePrefix, locker } = setup;
  const errors = new ThrottledLog(log);
  const storeId = (fileId: string) => `${storePrefix}${fileId}`;
  const fileIdOf = (id: string) => id.slice(storePrefix.length);
  /** Who sent each request handed to @tus/server, for `onUploadCreate`. */
  const creators = new WeakMap<Request, Viewer>();
  /** Ingests in progress in this process, by file id (a HEAD recovering while the final PATCH ingests). */
  const ingesting = new Map<string, Promise<StoredUpload | undefined>>();

  /**
   * Copies a finished upload out of the tus store into storage and records it, once: under the upload's lock (so
   * no other process does it at the same time), and not again when the file is already recorded.
   */
  const ingest = (upload: Upload): Promise<StoredUpload | undefined> => {
    const fileId = fileIdOf(upload.id);
    let running = ingesting.get(fileId);
    if (!running) {
      running = (async () => {
        const lock = locker.newLock(upload.id);
        await lock.lock(AbortSignal.timeout(60_000), () => {});
        try {
          if (await catalog.get(fileId)) return undefined;
          const current = await datastore.getUpload(upload.id);
          if (current.size === undefined || current.offset !== current.size)
            throw new FilesError('ERR_WEFT_FILES_CONFLICT', 'The upload is not complete');
          const inspector = new Inspector(config.maxUpload);
          const source = await datastore.read(upload.id);
          await storage.put(originalKey(fileId), source.pipe(inspector));
          const meta = upload.metadata ?? {};
          let webhook: string | undefined;
          try {
            webhook = uploadWebhook(config, meta.webhook ?? undefined);
          } catch (err) {
            // Allowed at creation, no longer now (the allowlist changed): the file is kept, without its webhook.
            log.warn({ err, upload: upload.id }, 'a tus upload’s webhook URL is no longer allowed');
          }
          const stored = await recordStored(
            deps,
            {
              id: fileId,
              name: meta.filename ?? meta.name ?? undefined,
              inspector,
              webhook,
              tenant: meta.tenant ?? null,
            },
            errors,
          );
          // The bytes are in storage now; the tus copy goes (the upload URL answers from the record from now on).
          await datastore.remove(upload.id).catch((err: unknown) => {
            log.warn({ err, upload: upload.id }, 'removing a finished tus upload failed');
          });
          return stored;
        } finally {
          await lock.unlock();
        }
      })().finally(() => ingesting.delete(fileId));
      ingesting.set(fileId, running);
    }
    return running;
  };

  const makeServer = (Server: typeof import('@tus/server').Server): Server =>
    new Server({
      path: TUS_PATH,
      datastore,
      locker,
      relativeLocation: true,
      maxSize: config.maxUpload,
      exposedHeaders: WEFT_HEADERS,
      allowedHeaders: ['Authorization'],
      disableTerminationForFinishedUploads: true,
      namingFunction: () => storeId(randomUUID()),
      // Its own webhook URL (`webhook` metadata), checked against the allowlist when the upload is created.
      // The tenant of the token that creates it, in its metadata (whatever the client put there): the upload, and
      // the file it becomes, are that tenant's.
      async onUploadCreate(req, upload) {
        uploadWebhook(config, upload.metadata?.webhook ?? undefined);
        const viewer = creators.get(req);
        if (!viewer)
          throw new FilesError('ERR_WEFT_FILES_UNAUTHORIZED', 'The upload has no authenticated creator');
        // The tenant's quota at creation, against the length announced (or, deferred, against nothing yet).
        const room = await quotaRoom(deps, viewer.tenant);
        if (room <= 0 || (upload.size !== undefined && upload.size > room))
          throw overQuota(deps, viewer.tenant, room, upload.size);
        return { metadata: { ...upload.metadata, tenant: viewer.tenant } };
      },
      generateUrl: (_req, { path, id }) => `${path}/${fileIdOf(id)}`,
      getFileIdFromRequest: (_req, last) => (last && UUID.test(last) ? storeId(last) : undefined),
      async onUploadFinish(_req, upload) {
        const fileId = fileIdOf(upload.id);
        await ingest(upload);
        return { headers: { 'X-Weft-File-Id': fileId, 'X-Weft-File': `/files/${fileId}` } };
      },
      onResponseError(_req, err) {
        if (err instanceof FilesError) {
          return {
            status_code: err.statusCode,
            body: `${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`,
          };
        }
        if (err instanceof Error && !('status_code' in err)) {
          log.error({ err }, `tus request failed: ${err.message}`);
        }
        return undefined;
      },
    });

  /** `@tus/server`, loaded and made on the first request that needs it (concurrent first requests share it). */
  let server: Promise<Server> | undefined;
  const tusServer = (): Promise<Server> => {
    server ??= import('@tus/server').then(({ Server }) => makeServer(Server));
    return server;
  };

  /** The answer for an upload already recorded as a file: complete, whatever the client asks. */
  const recorded = async (request: FastifyRequest, reply: FastifyReply, fileId: string): Promise<boolean> => {
    const file = await catalog.get(fileId);
    if (!file) return false;
    if (!canSee(viewerOf(request), file.tenant))
      throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No upload ${fileId}`);
    reply
      .header('tus-resumable', '1.0.0')
      .header('x-weft-file-id', fileId)
      .header('x-weft-file', `/files/${fileId}`)
      .header('cache-control', 'no-store');
    if (request.method === 'DELETE') {
      throw new FilesError(
        'ERR_WEFT_FILES_BAD_REQUEST',
        'The upload is complete: delete its file with DELETE /files/:id',
      );
    }
    if (request.method === 'PATCH' && Number(request.headers['upload-offset']) !== file.size) {
      reply.header('upload-offset', String(file.size));
      throw new FilesError(
        'ERR_WEFT_FILES_CONFLICT',
        `Upload-Offset must be ${file.size}: the upload is complete`,
      );
    }
    reply.header('upload-offset', String(file.size)).header('upload-length', String(file.size));
    await reply.code(request.method === 'HEAD' ? 200 : 204).send();
    return true;
  };

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    // `/uploads/` (the endpoint as tus clients are usually given it) is the collection, not an upload named ''.
    const uploadId = (request.params as { uploadId?: string }).uploadId || undefined;
    if (uploadId !== undefined && !UUID.test(uploadId))
      throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No upload ${uploadId}`);
    if (uploadId !== undefined && request.method !== 'OPTIONS') {
      if (await recorded(request, reply, uploadId)) return reply;
      // An upload in progress is its creator's tenant's: another's is answered as a missing one.
      const viewer = viewerOf(request);
      if (!viewer.scopes.has('admin')) {
        const upload = await datastore.getUpload(storeId(uploadId)).catch(() => undefined);
        if (upload && !canSee(viewer, upload.metadata?.tenant ?? null))
          throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No upload ${uploadId}`);
      }
      if (request.method === 'HEAD') {
        // A finished upload whose recording did not happen (the process died, or the answer failed): recorded now,
        // before the client is told it is complete.
        const upload = await datastore.getUpload(storeId(uploadId)).catch(() => undefined);
        if (upload?.size !== undefined && upload.offset === upload.size) {
          await ingest(upload);
          if (await recorded(request, reply, uploadId)) return reply;
        }
      }
    }
    let body: Readable | undefined;
    let spooled: string | undefined;
    const checksum = request.headers['upload-checksum'];
    const hasBody =
      request.method === 'PATCH' ||
      (request.method === 'POST' && request.headers['content-type'] === 'application/offset+octet-stream');
    try {
      if (typeof checksum === 'string' && hasBody) {
        // The bytes are verified before the tus store sees them: a mismatch leaves the upload where it was.
        const { algorithm, digest } = parseChecksum(checksum);
        await mkdir(setup.tmpDir, { recursive: true });
        spooled = join(setup.tmpDir, `tus-${randomUUID()}`);
        const hasher = new Hasher(algorithm, config.maxUpload);
        await pipeline(request.raw, hasher, createWriteStream(spooled));
        if (hasher.hash.digest('base64') !== digest)
          throw new FilesError(
            'ERR_WEFT_FILES_CHECKSUM',
            `Checksum Mismatch: the ${algorithm} of the body is not the one given`,
          );
        body = createReadStream(spooled);
      }
      const web = webRequest(request, body);
      creators.set(web, viewerOf(request));
      const response = await (await tusServer()).handleWeb(web);
      reply.code(response.status);
      for (const [name, value] of response.headers) reply.header(name, value);
      if (request.method === 'OPTIONS' || response.headers.has('tus-extension')) {
        const extensions = response.headers.get('tus-extension');
        if (extensions) reply.header('tus-extension', `${extensions},checksum`);
        reply.header('tus-checksum-algorithm', CHECKSUM_ALGORITHMS.join(','));
      }
      // A request answered before its body was read (a wrong offset, a lock timeout): the connection cannot carry
      // another request.
      if (hasBody && !request.raw.complete && response.status >= 400) reply.header('connection', 'close');
      const text = await response.text();
      return reply.send(text === '' ? undefined : text);
    } finally {
      if (spooled) await rm(spooled, { force: true });
    }
  };

  const authorized = authorize(accessOf(deps), 'write');
  const auth = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) =>
    void authorized(request, reply).then(() => done(), done);
  const shed = deps.shed;
  for (const url of [TUS_PATH, `${TUS_PATH}/:uploadId`]) {
    app.route({
      method: ['POST', 'PATCH', 'HEAD', 'DELETE', 'OPTIONS'],
      url,
      onRequest: (request, reply, done) => {
        if (request.method === 'OPTIONS') return done();
        // A creation (POST) is an upload, counted against its client's limit once authenticated; its PATCHes are not.
        const authed = (err?: Error) => {
          if (err || !limit || request.method !== 'POST') return done(err);
          limit(request, reply).then(() => done(), done);
        };
        if (shed && (request.method === 'POST' || request.method === 'PATCH'))
          return void shed(request, reply, (err) => (err ? done(err) : auth(request, reply, authed)));
        auth(request, reply, authed);
      },
      // Answers made here rather than by @tus/server (an upload already recorded, a refused request) carry the same
      // CORS headers, or a browser could not read them.
      onSend: async (_request, reply, payload) => {
        if (!reply.hasHeader('access-control-allow-origin')) {
          reply.header('access-control-allow-origin', '*');
          reply.header('access-control-expose-headers', [EXPOSED_HEADERS, ...WEFT_HEADERS].join(', '));
        }
        return payload;
      },
      handler: handle,
    });
  }

  // Unfinished uploads past their expiry are removed, every hour (or sooner when the expiry is shorter), by the
  // store, as `Server#cleanUpExpiredUploads` does.
  const sweep = setInterval(
    () => {
      if (!datastore.hasExtension('expiration')) return;
      datastore.deleteExpired().catch((err: unknown) => {
        errors.failure('tus-expiry', err, 'removing expired tus uploads failed');
      });
    },
    Math.min(3_600_000, Math.max(1_000, setup.expiryMs)),
  ).unref();
  return { close: () => clearInterval(sweep) };
}
