/** `/jobs` routes: list by state, one job, the dead-letter list, retry. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FilesError } from '../errors.ts';
import { JOB_STATES, type JobState } from '../queue/types.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { visibleFile } from './files.ts';

const idParams = {
  type: 'object',
  properties: { id: { type: 'integer', minimum: 1 } },
  required: ['id'],
} as const;

const listQuery = {
  type: 'object',
  properties: {
    state: { type: 'string', enum: JOB_STATES },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
    before: { type: 'integer', minimum: 1 },
  },
  additionalProperties: false,
} as const;

export function jobRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { queue, catalog } = deps;
  const access = accessOf(deps);
  const auth = authorize(access, 'write');
  const read = authorize(access, 'read');
  // Every job of every tenant: the administrators' (with scoped tokens; open reads otherwise, as before them).
  const admin = authorize(access, 'admin');

  /** The job `id` when its file is one the viewer may see; another tenant's job is answered as a missing one. */
  const visibleJob = async (request: FastifyRequest, id: number) => {
    const job = await queue.get(id);
    if (!job) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No job ${id}`);
    const viewer = viewerOf(request);
    if (!viewer.scopes.has('admin')) {
      await visibleFile(catalog, viewer, job.fileId).catch(() => {
        throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No job ${id}`);
      });
    }
    return job;
  };

  app.get('/jobs', { onRequest: admin, schema: { querystring: listQuery } }, async (request) => {
    const q = request.query as { state?: JobState; limit: number; before?: number };
    const [jobs, counts] = await Promise.all([queue.list(q), queue.counts()]);
    return { counts, jobs };
  });

  app.get('/jobs/dead', { onRequest: admin }, async () => ({
    jobs: await queue.list({ state: 'dead', limit: 500 }),
  }));

  app.get('/jobs/:id', { onRequest: read, schema: { params: idParams } }, async (request) => {
    const { id } = request.params as { id: number };
    return visibleJob(request, id);
  });

  app.post('/jobs/:id/retry', { onRequest: auth, schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: number };
    const existing = await visibleJob(request, id);
    const job = await queue.retry(id);
    if (!job) {
      throw new FilesError(
        'ERR_WEFT_FILES_CONFLICT',
        `Job ${id} is ${existing.state}; only a dead job can be retried`,
      );
    }
    deps.runner?.wake();
    return reply.code(202).send(job);
  });
}
