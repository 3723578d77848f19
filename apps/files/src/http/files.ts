/** `/files` routes: streamed upload, metadata, content and derived outputs, delete. */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';
import { ThrottledLog } from '../log-throttle.ts';
import { queueUnavailable } from '../outbox.ts';
import { derivedKey, derivedPrefix, originalKey } from '../storage/types.ts';
import { Inspector, jobsFor, sanitizeName, sniffType } from '../upload.ts';
import { uploadWebhook } from '../webhooks.ts';
import type { AppDeps } from './app.ts';
import { requireToken } from './auth.ts';
import { type BodyLimits, watchBody } from './deadline.ts';
import { asMultipartError, checkMultipartType } from './multipart.ts';
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

async function upload(deps: AppDeps, request: FastifyRequest, reply: FastifyReply, errors: ThrottledLog) {
  const { config, storage } = deps;
  const max = config.maxUpload;
  if (Number(request.headers['content-length']) > max) {
    reply.header('connection', 'close'); // the body is not read: this connection cannot carry another request
    throw tooLarge(max);
  }
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
    if (code === 'ERR_WEFT_FILES_TIMEOUT') {
      // The rest of the body is not read: answer 408, then close the socket even if the client never reads.
      reply.header('connection', 'close');
      reply.raw.once('finish', () => request.raw.socket?.destroy());
    }
    throw err;
  }
  const stored = await recordStored(deps, { id, name, inspector, webhook }, errors);
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
  deps: Pick<AppDeps, 'config' | 'storage' | 'catalog' | 'bus' | 'runner' | 'relay'>,
  upload: { id: string; name: string | undefined; inspector: Inspector; webhook?: string | undefined },
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
  };
  let recorded: Awaited<ReturnType<typeof catalog.recordUpload>>;
  try {
    recorded = await catalog.recordUpload(file, jobsFor(type), config.maxAttempts);
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

const idParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

export function fileRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { catalog, queue, storage, bus } = deps;
  const auth = requireToken(deps.config.token);
  const shed = deps.shed;
  const guards = shed
    ? [(q: FastifyRequest, r: FastifyReply, done: () => void) => void shed(q, r, done), auth]
    : [auth];

  const errors = new ThrottledLog(deps.log);
  app.post('/files', { onRequest: guards }, (request, reply) => upload(deps, request, reply, errors));
  // `curl -T file URL` sends PUT: the same upload, so the command people reach for first works.
  app.put('/files', { onRequest: guards }, (request, reply) => upload(deps, request, reply, errors));

  app.get('/files', async (request) => {
    const q = request.query as { limit?: string; before?: string };
    const limit = Math.min(200, Math.max(1, Number(q.limit ?? 50) || 50));
    const files = await catalog.list(limit, q.before ? Number(q.before) : undefined);
    return { files };
  });

  // With a content origin, the links handed out point there: the bytes never render on the API's origin.
  const at = deps.config.contentOrigin ?? '';
  const found = async (id: string) => {
    const file = await catalog.get(id);
    if (!file) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
    return file;
  };

  app.get('/files/:id', { schema: { params: idParams } }, async (request) => {
    const { id } = request.params as { id: string };
    const file = await found(id);
    // Kinds still in the outbox (the queue was away at upload) have no job yet: listed as `pending`. A row read
    // just before its jobs were queued and it was deleted names kinds already listed as jobs: those are not pending.
    const waiting = await catalog.pendingKinds(id);
    const jobs = await queue.list({ fileId: id, limit: 100 });
    const pending = waiting.filter((kind) => !jobs.some((j) => j.kind === kind));
    const derived = (await catalog.derived(id)).map((d) => ({
      ...d,
      url: `${at}/files/${id}/derived/${encodeURIComponent(d.name)}`,
    }));
    return { ...file, content: `${at}/files/${id}/content`, jobs, pending, derived };
  });

  app.get('/files/:id/content', { schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const file = await found(id);
    return sendObject(request, reply, storage, {
      key: originalKey(id),
      size: file.size,
      type: file.type,
      etag: `"${file.sha256}"`,
      filename: file.name,
      immutable: true,
    });
  });

  app.get('/files/:id/derived/:name', async (request, reply) => {
    const { id, name } = request.params as { id: string; name: string };
    await found(id);
    const d = (await catalog.derived(id)).find((x) => x.name === name);
    const info = d ? await storage.stat(derivedKey(id, d.name)) : undefined;
    if (!d || !info)
      throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No derived output ${name} of file ${id}`);
    return sendObject(request, reply, storage, {
      key: derivedKey(id, d.name),
      size: info.size,
      type: d.type,
      etag: `"${info.size.toString(16)}-${Math.round(info.mtimeMs).toString(16)}"`,
    });
  });

  app.delete('/files/:id', { onRequest: auth, schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    await found(id);
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
      .publish('file.deleted', { fileId: id })
      .catch((err) => request.log.warn({ err }, 'publishing file.deleted failed'));
    return reply.code(204).send();
  });
}
