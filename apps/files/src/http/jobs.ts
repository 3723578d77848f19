/** `/jobs` routes: list by state, one job, the dead-letter list, retry. */
import type { FastifyInstance } from 'fastify';
import { FilesError } from '../errors.ts';
import { JOB_STATES, type JobState } from '../queue/types.ts';
import type { AppDeps } from './app.ts';
import { requireToken } from './auth.ts';

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
  const { queue } = deps;
  const auth = requireToken(deps.config.token);

  app.get('/jobs', { schema: { querystring: listQuery } }, async (request) => {
    const q = request.query as { state?: JobState; limit: number; before?: number };
    const [jobs, counts] = await Promise.all([queue.list(q), queue.counts()]);
    return { counts, jobs };
  });

  app.get('/jobs/dead', async () => ({ jobs: await queue.list({ state: 'dead', limit: 500 }) }));

  app.get('/jobs/:id', { schema: { params: idParams } }, async (request) => {
    const { id } = request.params as { id: number };
    const job = await queue.get(id);
    if (!job) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No job ${id}`);
    return job;
  });

  app.post('/jobs/:id/retry', { onRequest: auth, schema: { params: idParams } }, async (request, reply) => {
    const { id } = request.params as { id: number };
    const job = await queue.retry(id);
    if (!job) {
      const existing = await queue.get(id);
      if (!existing) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No job ${id}`);
      throw new FilesError(
        'ERR_WEFT_FILES_CONFLICT',
        `Job ${id} is ${existing.state}; only a dead job can be retried`,
      );
    }
    deps.runner?.wake();
    return reply.code(202).send(job);
  });
}
