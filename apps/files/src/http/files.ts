/** `/files` routes: streamed upload, metadata, content and derived outputs, delete. */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Catalog, FileRecord, ListScope } from '../catalog/types.ts';
import { FilesError } from '../errors.ts';
import { ThrottledLog } from '../log-throttle.ts';
import { queueUnavailable } from '../outbox.ts';
import type { Job } from '../queue/types.ts';
import { derivedKey, derivedPrefix, originalKey, type Storage } from '../storage/types.ts';
import { canSee, type Viewer } from '../tokens.ts';
import { Inspector, jobsFor, kindsFor, sanitizeName, sniffType } from '../upload.ts';
import { uploadWebhook } from '../webhooks.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { type BodyLimits, watchBody } from './deadline.ts';
import { asMultipartError, checkMultipartType } from './multipart.ts';
import type { UploadLimit } from './rate-limit.ts';
import { sendObject } from './send.ts';

/**
 * Feeds `source` into the inspector without tying their fates: when the inspector fails (the size limit), the
 * request stream is only unpiped, so the 413 can still be written on its socket; when the request fails (the
 * client went away), the inspector fails with it and storage removes its temp file.
 */
function intake(
  source: Readable,
  inspector: Inspector,
  limits: BodyLimits,
  request: FastifyRequest,
): Readable {
  source.pipe(inspector);
  watchBody(source, inspector, limits);
  finished(source, { writable: false }, (err) => {
    if (err)
      inspector.destroy(
        // A multipart body that arrived whole but did not parse is malformed; anything else was cut off.
        asMultipartError(err, request.raw.complete) ??
          new FilesError('ERR_WEFT_FILES_ABORTED', 'The upload was interrupted', { cause: err }),
      );
  });
  return inspector;
}

function headerName(request: FastifyRequest): string | undefined {
  const q = (request.query as { name?: unknown }).name;
  if (typeof q === 'string') return q;
  const h = request.headers['x-file-name'];
  if (typeof h !== 'string') return undefined;
  try {
    return decodeURIComponent(h);
  } catch {
    return h;
  }
}

function tooLarge(max: number): FilesError {
  return new FilesError('ERR_WEFT_FILES_TOO_LARGE', `The upload is larger than the limit of ${max} bytes`);
}

/**
 * Formats bytes for a message in the units the settings are read in (1024 each: `FILES_TENANT_QUOTA=10GB` is
 * `10.0 GiB`): `600 bytes`, `1.5 KiB`, `9.5 GiB`.
 */
export function bytesText(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * What the uploader's tenant may still store under `tenantQuota` (Infinity without one), checked when an upload
 * starts against what is recorded. Uploads of one tenant running at once may together pass it by what each was let
 * store; the next one is refused.
 */
export async function quotaRoom(
  deps: Pick<AppDeps, 'config' | 'catalog'>,
  tenant: string | null,
): Promise<number> {
  const quota = deps.config.tenantQuota ?? 0;
  if (quota <= 0) return Number.POSITIVE_INFINITY;
  return quota - (await deps.catalog.storedBytes(tenant));
}

/** `507 ERR_WEFT_FILES_QUOTA`, saying what is stored and what the quota is. */
export function overQuota(deps: Pick<AppDeps, 'config'>, tenant: string | null, room: number, size?: number) {
  const quota = deps.config.tenantQuota ?? 0;
  const who = tenant === null ? 'Files of no tenant' : `Tenant ${tenant}`;
  const stored = quota - room;
  return new FilesError(
    'ERR_WEFT_FILES_QUOTA',
    `${who} store ${bytesText(stored)} of a quota of ${bytesText(quota)}: ${size === undefined ? 'no room for this upload' : `this upload of ${bytesText(size)} does not fit`}; delete files to make room`,
  );
}

async function upload(deps: AppDeps, request: FastifyRequest, reply: FastifyReply, errors: ThrottledLog) {
  const { config, storage } = deps;
  const tenant = viewerOf(request).tenant;
  const length = Number(request.headers['content-length']);
  if (length > config.maxUpload) {
    reply.header('connection', 'close'); // the body is not read: this connection cannot carry another request
    throw tooLarge(config.maxUpload);
  }
  // The quota before the body: a refused upload reads nothing and stores nothing.
  const room = await quotaRoom(deps, tenant);
  if (room <= 0 || length > room) {
    reply.header('connection', 'close');
    throw overQuota(deps, tenant, room, Number.isFinite(length) && length > 0 ? length : undefined);
  }
  const max = Math.min(config.maxUpload, room);
  let webhook: string | undefined;
  try {
    webhook = uploadWebhook(config, (request.query as { webhook?: unknown }).webhook);
  } catch (err) {
    reply.header('connection', 'close'); // refused before its body is read, as above
    throw err;
  }
  let source: Readable;
  let name: string | undefined;
  if (request.isMultipart()) {
    checkMultipartType(request.headers['content-type']);
    // One byte over our own limit, so the inspector (not busboy) is what notices, the same way for both kinds.
    const part = await request.file({ limits: { fileSize: max + 1, files: 1 } }).catch((err: unknown) => {
      throw asMultipartError(err, request.raw.complete) ?? err;
    });
    if (!part) throw new FilesError('ERR_WEFT_FILES_EMPTY', 'The multipart request has no file part');
    source = part.file;
    name = part.filename;
  } else {
    source = request.raw;
    name = headerName(request);
  }
  const inspector = new Inspector(max);
  const id = randomUUID();
  const key = originalKey(id);
  try {
    const limits = { idleMs: config.uploadIdleTimeout, totalMs: config.uploadTimeout };
    await storage.put(key, intake(source, inspector, limits, request));
  } catch (err) {
    const code = (err as FilesError).code;
    if (code === 'ERR_WEFT_FILES_TOO_LARGE') reply.header('connection', 'close');
    // Stopped at the tenant's room, not at maxUpload: the quota's answer (the stored bytes are removed either way).
    if (code === 'ERR_WEFT_FILES_TOO_LARGE' && max < config.maxUpload) throw overQuota(deps, tenant, room);
    if (code === 'ERR_WEFT_FILES_TIMEOUT') {
      // The rest of the body is not read: answer 408, then close the socket even if the client never reads.
      reply.header('connection', 'close');
      reply.raw.once('finish', () => request.raw.socket?.destroy());
    }
    throw err;
  }
  const stored = await recordStored(deps, { id, name, inspector, webhook, tenant }, errors);
  reply.code(201).header('location', `/files/${id}`);
  return stored;
}

/** What an upload's answer says: the file, its jobs, and the kinds still waiting in the outbox. */
export interface StoredUpload {
  id: string;
  name: string;
  sha256: string;
  size: number;
  type: string;
  jobs: { id: number; kind: string; state: string }[];
  pending: string[];
}

/**
 * The end of every upload form (POST, PUT, tus), once its bytes are stored under `originalKey(id)` through
 * `inspector`: refused when empty, sniffed, recorded with its jobs (durably: this resolves after the record's
 * fsync), announced, and the runner woken. A failure removes the stored bytes.
 */
export async function recordStored(
  deps: Pick<AppDeps, 'config' | 'storage' | 'catalog' | 'bus' | 'runner' | 'relay' | 'processors'>,
  upload: {
    id: string;
    name: string | undefined;
    inspector: Inspector;
    webhook?: string | undefined;
    /** The uploading token's tenant (null: none). */
    tenant?: string | null;
  },
  errors: ThrottledLog,
): Promise<StoredUpload> {
  const { config, storage, catalog, bus } = deps;
  const { id, name, inspector } = upload;
  const key = originalKey(id);
  if (inspector.size === 0) {
    await storage.delete(key);
    throw new FilesError('ERR_WEFT_FILES_EMPTY', 'The upload is empty');
  }
  const type = await sniffType(inspector.head);
  const file = {
    id,
    name: sanitizeName(name),
    type,
    size: inspector.size,
    sha256: inspector.digest(),
    createdAt: Date.now(),
    // Its own webhook URL (already checked against the allowlist), recorded with it.
    ...(upload.webhook ? { webhook: upload.webhook } : {}),
    tenant: upload.tenant ?? null,
  };
  let recorded: Awaited<ReturnType<typeof catalog.recordUpload>>;
  try {
    recorded = await catalog.recordUpload(file, jobsFor(type, deps.processors), config.maxAttempts);
  } catch (err) {
    await storage.delete(key);
    throw err;
  }
  // `pending`: the queue was unavailable; the upload is durable and its jobs wait in the outbox for the relay.
  const { jobs, pending } = recorded;
  // The upload is recorded: an event that cannot be published (Redis down) is logged, not answered with an error.
  // With its jobs pending the queue's Redis (which carries the bus) has just failed: the answer does not wait for a
  // second deadline on the event (queueing 1 s, then publishing 1 s, would miss the 2 s answer target).
  const published = bus
    .publish('file.uploaded', {
      fileId: id,
      name: file.name,
      type,
      size: file.size,
      jobs: [...jobs.map((j) => j.kind), ...pending],
      tenant: file.tenant,
    })
    .then(
      () => errors.recovered('publish', 'publishing file.uploaded works again'),
      // The bus is on the queue's Redis: while it is away every upload (now accepted) fails here.
      (err) => errors.failure('publish', err, 'publishing file.uploaded failed'),
    );
  if (pending.length > 0) deps.relay?.wake();
  else {
    await published;
    if (jobs.length > 0) deps.runner?.wake();
  }
  return {
    id,
    name: file.name,
    sha256: file.sha256,
    size: file.size,
    type,
    jobs: jobs.map((j) => ({ id: j.id, kind: j.kind, state: j.state })),
    pending,
  };
}

/** A step of a file's chains that has no job yet: `waiting` for the step before it, or `stopped` where one is dead. */
export interface ChainStep {
  kind: string;
  after: string;
  state: 'waiting' | 'stopped';
}

/** The steps of a file's chains not queued yet, and why (the file's page shows them beside its jobs). */
export function chainSteps(
  processors: AppDeps['processors'],
  type: string,
  jobs: readonly Pick<Job, 'kind' | 'state'>[],
  pending: readonly string[],
): ChainStep[] {
  if (!processors) return [];
  const kinds = kindsFor(type, processors);
  const queued = new Set([...jobs.map((j) => j.kind), ...pending]);
  const stopped = (kind: string): boolean => {
    const job = jobs.find((j) => j.kind === kind);
    if (job) return job.state === 'dead';
    const before = processors.after(kind);
    return before !== undefined && kinds.includes(before) && stopped(before);
  };
  return kinds
    .filter((kind) => !queued.has(kind))
    .flatMap((kind) => {
      const after = processors.after(kind);
      return after !== undefined && kinds.includes(after)
        ? [{ kind, after, state: stopped(after) ? ('stopped' as const) : ('waiting' as const) }]
        : [];
    });
}

/** Sends a file's own bytes (its content route, and its signed links). */
export function sendContent(
  request: FastifyRequest,
  reply: FastifyReply,
  storage: Storage,
  file: FileRecord,
) {
  return sendObject(request, reply, storage, {
    key: originalKey(file.id),
    size: file.size,
    type: file.type,
    etag: `"${file.sha256}"`,
    filename: file.name,
    immutable: true,
  });
}

/** Sends the output `name` of file `id`, 404 when it has none of that name (its route, and its signed links). */
export async function sendDerived(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: Pick<AppDeps, 'catalog' | 'storage'>,
  id: string,
  name: string,
) {
  const d = (await deps.catalog.derived(id)).find((x) => x.name === name);
  const info = d ? await deps.storage.stat(derivedKey(id, d.name)) : undefined;
  if (!d || !info)
    throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No derived output ${name} of file ${id}`);
  return sendObject(request, reply, deps.storage, {
    key: derivedKey(id, d.name),
    size: info.size,
    type: d.type,
    etag: `"${info.size.toString(16)}-${Math.round(info.mtimeMs).toString(16)}"`,
  });
}

/** What a viewer's listing shows: every file for an admin, else its tenant's. */
export function listScope(viewer: Viewer): ListScope | undefined {
  return viewer.scopes.has('admin') ? undefined : { tenant: viewer.tenant };
}

/**
 * The file `id` when `viewer` may see it. Another tenant's file is answered exactly as a missing one (404), so ids
 * cannot be probed.
 */
export async function visibleFile(catalog: Catalog, viewer: Viewer, id: string): Promise<FileRecord> {
  const file = await catalog.get(id);
  if (!file || !canSee(viewer, file.tenant))
    throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
  return file;
}

const idParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

export function fileRoutes(app: FastifyInstance, deps: AppDeps, limit?: UploadLimit): void {
  const { catalog, queue, storage, bus } = deps;
  const access = accessOf(deps);
  const auth = authorize(access, 'write');
  const read = authorize(access, 'read');
  const shed = deps.shed;
  // Shed when overloaded, then authenticate, then count against the client's limit (a refused token counts nothing).
  const guards = [
    ...(shed ? [(q: FastifyRequest, r: FastifyReply, done: () => void) => void shed(q, r, done)] : []),
    auth,
    ...(limit ? [limit] : []),
  ] as onRequestHookHandler[];

  const errors = new ThrottledLog(deps.log);
  app.post('/files', { onRequest: guards }, (request, reply) => upload(deps, request, reply, errors));
  // `curl -T file URL` sends PUT: the same upload, so the command people reach for first works.
  app.put('/files', { onRequest: guards }, (request, reply) => upload(deps, request, reply, errors));

  app.get('/files', { onRequest: read }, async (request) => {
    const q = request.query as { limit?: string; before?: string };
    const limit = Math.min(200, Math.max(1, Number(q.limit ?? 50) || 50));
    const files = await catalog.list(
      limit,
      q.before ? Number(q.before) : undefined,
      listScope(viewerOf(request)),
    );
    return { files };
  });

  // With a content origin, the links handed out point there: the bytes never render on the API's origin.
  const at = deps.config.contentOrigin ?? '';
  const found = (request: FastifyRequest, id: string) => visibleFile(catalog, viewerOf(request), id);

  app.get('/files/:id', { onRequest: read, schema: { params: idParams } }, async (request) => {
    const { id } = request.params as { id: string };
    const file = await found(request, id);
    // Kinds still in the outbox (the queue was away at upload) have no job yet: listed as `pending`. A row read
    // just before its jobs were queued and it was deleted names kinds already listed as jobs: those are not pending.
    const waiting = await catalog.pendingKinds(id);
    const jobs = await queue.list({ fileId: id, limit: 100 });
    const pending = waiting.filter((kind) => !jobs.some((j) => j.kind === kind));
    const derived = (await catalog.derived(id)).map((d) => ({
      ...d,
      url: `${at}/files/${id}/derived/${encodeURIComponent(d.name)}`,
    }));
    const chained = chainSteps(deps.processors, file.type, jobs, pending);
    return {
      ...file,
      content: `${at}/files/${id}/content`,
      jobs,
      pending,
      ...(chained.length ? { chained } : {}),
      derived,
    };
  });

  app.get('/files/:id/content', { onRequest: read, schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return sendContent(request, reply, storage, await found(request, id));
  });

  app.get('/files/:id/derived/:name', { onRequest: read }, async (request, reply) => {
    const { id, name } = request.params as { id: string; name: string };
    await found(request, id);
    return sendDerived(request, reply, deps, id, name);
  });

  app.delete('/files/:id', { onRequest: auth, schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const { tenant } = await found(request, id);
    // The bytes first: deleting needs no space, and on a full disk the database may need some for its own write,
    // which the freed bytes then give it. A delete that fails after this is answered with its error; retried, it
    // finishes (a record whose bytes are gone is answered 404 for its content meanwhile).
    await storage.delete(originalKey(id));
    await storage.delete(derivedPrefix(id), { prefix: true });
    // The record goes with its outbox row (jobs never queued are never queued now).
    if (!(await catalog.delete(id))) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
    // With the queue away the file is still deleted: a job of it left in the queue finds its file gone when it
    // runs and removes itself (runner.ts), so the answer is 204 rather than a 503 whose retry would find nothing.
    await queue.removeForFile(id).then(
      () => errors.recovered('remove-jobs', "removing deleted files' jobs works again"),
      (err: unknown) => {
        if (!queueUnavailable(err)) throw err;
        errors.failure(
          'remove-jobs',
          err,
          "removing a deleted file's jobs failed (they remove themselves when run)",
        );
      },
    );
    await bus
      .publish('file.deleted', { fileId: id, tenant: tenant ?? null })
      .catch((err) => request.log.warn({ err }, 'publishing file.deleted failed'));
    return reply.code(204).send();
  });
}
