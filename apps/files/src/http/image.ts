/**
 * `GET /files/:id/image?w=&h=&fit=&format=`: an image resized on request, within limits. Each size is made once, in
 * the thread pool (ahead of queued jobs: someone is waiting for it), from the original, then kept in storage with
 * the file's derived outputs (and deleted with them), so the next request for it is a plain read. Identical
 * requests made at the same time share one resize, and at most `maxPending` distinct sizes are being made per
 * process: past that the answer is 503 with Retry-After, not a growing queue.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from 'weftjs/pool';
import { FilesError } from '../errors.ts';
import { IMAGE_TYPES } from '../processors/builtin.ts';
import { loadSharp, type ProcessorTasks } from '../processors/index.ts';
import { MAX_RESIZE } from '../processors/limits.ts';
import { derivedKey, originalKey } from '../storage/types.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { visibleFile } from './files.ts';
import { sendObject } from './send.ts';

const FITS = ['inside', 'cover', 'contain'] as const;
const FORMATS = ['webp', 'jpeg', 'png', 'avif'] as const;

/** What the resize route needs besides the app's parts. */
export interface ResizeSetup {
  pool: Pool<ProcessorTasks>;
  /** sharp's pixel limit of the input (the service's `limitInputPixels`, as its image jobs use). */
  limitInputPixels: number;
  /** Longest one resize may take, ms (the service's `jobTimeoutMs`). */
  timeoutMs: number;
  /** Distinct sizes being made at once in this process, beyond which requests are answered 503. Default 8. */
  maxPending?: number;
}

interface Query {
  w?: number;
  h?: number;
  fit: (typeof FITS)[number];
  format: (typeof FORMATS)[number];
}

const schema = {
  params: {
    type: 'object',
    properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
    required: ['id'],
  },
  querystring: {
    type: 'object',
    properties: {
      w: { type: 'integer', minimum: 1, maximum: MAX_RESIZE },
      h: { type: 'integer', minimum: 1, maximum: MAX_RESIZE },
      fit: { type: 'string', enum: FITS, default: 'inside' },
      format: { type: 'string', enum: FORMATS, default: 'webp' },
    },
    anyOf: [{ required: ['w'] }, { required: ['h'] }],
  },
} as const;

/** The codes a resize task fails with that are the image's fault, not the service's. */
const IMAGE_FAULTS = new Set(['ERR_WEFT_FILES_BAD_IMAGE', 'ERR_WEFT_FILES_PIXEL_LIMIT']);

export function imageRoutes(app: FastifyInstance, deps: AppDeps, setup: ResizeSetup): void {
  const { catalog, storage } = deps;
  const maxPending = setup.maxPending ?? 8;
  /** Sizes being made, by storage key: a second request for one waits for the first. */
  const making = new Map<string, Promise<void>>();

  const make = async (fileId: string, key: string, q: Query): Promise<void> => {
    await loadSharp(); // before the pool's first thread loads it (processors/index.ts)
    const source = await storage.localPath(originalKey(fileId));
    const scratch = await storage.scratch(`resize-${randomUUID()}`);
    try {
      const output = join(scratch.dir, `out.${q.format}`);
      await setup.pool
        .run(
          'resizeImage',
          [
            {
              input: source.path,
              output,
              fit: q.fit,
              format: q.format,
              limitInputPixels: setup.limitInputPixels,
              ...(q.w === undefined ? {} : { width: q.w }),
              ...(q.h === undefined ? {} : { height: q.h }),
            },
          ],
          { priority: -1, timeout: setup.timeoutMs },
        )
        .catch((err: { code?: string; message?: string }) => {
          if (err.code && IMAGE_FAULTS.has(err.code))
            throw new FilesError('ERR_WEFT_FILES_BAD_IMAGE', `The image cannot be resized: ${err.message}`);
          throw err;
        });
      await storage.putFile(key, output);
      // Deleted meanwhile: the delete removed the derived outputs before this one was stored.
      if (!(await catalog.get(fileId))) {
        await storage.delete(key);
        throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${fileId}`);
      }
    } finally {
      await scratch.release();
      await source.release();
    }
  };

  const read = authorize(accessOf(deps), 'read');
  app.get(
    '/files/:id/image',
    { onRequest: read, schema },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const { id } = request.params as { id: string };
      const q = request.query as Query;
      const file = await visibleFile(catalog, viewerOf(request), id);
      if (!IMAGE_TYPES.has(file.type))
        throw new FilesError('ERR_WEFT_FILES_UNSUPPORTED', `File ${id} is ${file.type}, not an image`);
      const name = `sized/${q.w ?? ''}x${q.h ?? ''}-${q.fit}.${q.format}`;
      const key = derivedKey(id, name);
      let info = await storage.stat(key);
      if (!info) {
        let pending = making.get(key);
        if (!pending) {
          if (making.size >= maxPending)
            throw new FilesError(
              'ERR_WEFT_FILES_OVERLOADED',
              `${making.size} resized images are being made; try again shortly`,
            );
          pending = make(id, key, q).finally(() => making.delete(key));
          making.set(key, pending);
        }
        await pending;
        info = await storage.stat(key);
        if (!info) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
      }
      return sendObject(request, reply, storage, {
        key,
        size: info.size,
        type: `image/${q.format}`,
        // The original's hash and the size asked for name these bytes for good.
        etag: `"${file.sha256.slice(0, 32)}-${name.slice(6)}"`,
        immutable: true,
      });
    },
  );
}
