/**
 * `npm run bench -- files --backend redis`: the file service spread over machines, on this machine's Redis and
 * PostgreSQL and an S3-compatible server (s3rver, in this process) on loopback.
 * (1) No-op jobs through our BullMQ adapter, driven by the service's own job runner, against bare BullMQ (a
 *     `Worker` with an async processor): same Redis, same concurrency, jobs queued before the clock starts.
 * (2) Thumbnails per second with two nodes (two `weft start` supervisors, 2 workers each) against one, the photos
 *     uploaded to the nodes in turn. Both nodes run on these same 2 cores.
 * (3) Upload of a 12 MP photo until its thumbnail is servable: the multi-machine configuration (Redis, PostgreSQL,
 *     S3) against the embedded default (SQLite, local disk).
 * Needs REDIS_URL (default redis://127.0.0.1:6379) and DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { FilesBus } from '../apps/files/src/events/bus.ts';
import type { FilesEvent } from '../apps/files/src/events/types.ts';
import { silentLogger } from '../apps/files/src/logger.ts';
import { BullQueue, jobOptions, parseQueueUrl } from '../apps/files/src/queue/bullmq.ts';
import type { JobQueue } from '../apps/files/src/queue/types.ts';
import { JobRunner } from '../apps/files/src/runner.ts';
import { loopbackS3rver } from '../apps/files/test/services.ts';
import { makeJpeg, makeJpegs } from './files-data.ts';
import { measureServiceE2e, SIZES } from './files-measure.ts';
import { agent, type Group, getJson, startService, until, uploadFile } from './files-service.ts';
import { cpuClock } from './lib/cpu.ts';
import { type AreaOptions, alternate, type Series, within } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const NOOP_JOBS = 20_000;
const CONCURRENCY = 8;
const PHOTOS = 24;

/** How fast a queue ran its jobs, and the CPU each job cost while the clock ran. */
export interface QueueRate {
  perSecond: number;
  /** CPU of this process (the consumer and its runner), µs per job. */
  ownUsPerJob: number;
  /** CPU of the servers it talks to (the broker, the database), µs per job. */
  serverUsPerJob: number;
}

/**
 * Times `work` (which runs `jobs` jobs), counting the CPU of this process and of the processes named `servers`.
 */
export async function timeJobs(
  jobs: number,
  servers: readonly string[],
  work: () => Promise<void>,
): Promise<QueueRate> {
  const cpu = cpuClock(servers);
  const t = performance.now();
  await work();
  const seconds = (performance.now() - t) / 1000;
  const spent = cpu();
  return {
    perSecond: jobs / seconds,
    ownUsPerJob: (spent.own * 1e6) / jobs,
    serverUsPerJob: (spent.servers * 1e6) / jobs,
  };
}

/**
 * (1) Bare BullMQ: jobs queued, then a Worker with a no-op processor runs them all. `ourOptions`: each job with the
 * options our adapter gives it (`jobOptions`: the 10,000 newest completed jobs kept, older ones removed at each
 * completion, and a deduplication key per file and kind); else BullMQ's defaults (every completed job kept).
 */
export async function bareBullmq(ourOptions = false): Promise<QueueRate> {
  const name = `bench-bare-${randomUUID()}`;
  const { connection } = parseQueueUrl(REDIS_URL);
  const options = { connection: { ...connection, maxRetriesPerRequest: null } };
  const queue = new Queue(name, options);
  try {
    await fill(NOOP_JOBS, (batch) =>
      queue.addBulk(
        batch.map((i) =>
          ourOptions
            ? { name: 'image', data: { fileId: `f${i}`, kind: 'image' }, opts: jobOptions(1, `f${i}.image`) }
            : { name: 'image', data: { i } },
        ),
      ),
    );
    const worker = new Worker(name, async () => null, {
      ...options,
      concurrency: CONCURRENCY,
      autorun: false,
    });
    let done = 0;
    const finished = new Promise<void>((resolve) => {
      worker.on('completed', () => {
        if (++done === NOOP_JOBS) resolve();
      });
    });
    const rate = await timeJobs(NOOP_JOBS, ['redis-server'], async () => {
      void worker.run();
      await within(finished, 120_000, 'bare BullMQ');
    });
    await worker.close();
    return rate;
  } finally {
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

/** (1) Our adapter under the service's JobRunner, with a no-op job body. */
export async function weftAdapter(): Promise<QueueRate> {
  const url = `${REDIS_URL}?queue=bench-weft-${randomUUID()}`;
  const queue = await BullQueue.open({ url, leaseMs: 30_000, retryDelayMs: 1_000 });
  try {
    await fill(NOOP_JOBS, async (batch) => {
      for (const i of batch) await queue.add(`f${i}`, ['image'], 1);
    });
    return await runNoop(queue, NOOP_JOBS, CONCURRENCY, 'weft BullMQ adapter', ['redis-server']);
  } finally {
    await queue.obliterate();
    await queue.close();
  }
}

/** Runs the `jobs` queued in `queue` through the service's JobRunner with a no-op body: jobs per second. */
export async function runNoop(
  queue: JobQueue,
  jobs: number,
  concurrency: number,
  what: string,
  servers: readonly string[] = [],
): Promise<QueueRate> {
  let done = 0;
  const finished = Promise.withResolvers<void>();
  // The runner publishes each completion; counting them here is the finish line.
  const bus: Pick<FilesBus, 'publish'> = {
    async publish(type, data) {
      if (type === 'job.completed' && ++done === jobs) finished.resolve();
      return { id: String(done), type, data, at: Date.now() } as FilesEvent;
    },
  };
  const runner = new JobRunner({
    queue,
    bus,
    log: silentLogger,
    // Unused with `execute`: the queue is what is measured.
    catalog: undefined as never,
    storage: undefined as never,
    pool: undefined as never,
    config: {
      concurrency,
      pollMs: 250,
      leaseMs: 30_000,
      jobTimeoutMs: 60_000,
      limitInputPixels: 1,
      csvMaxBadRows: 0,
    },
    execute: async () => null,
  });
  const rate = await timeJobs(jobs, servers, async () => {
    runner.start();
    await within(finished.promise, 300_000, what);
  });
  await runner.close();
  return rate;
}

/** Queues `n` jobs in batches of 500 through `add`. */
async function fill(n: number, add: (batch: number[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += 500) {
    await add(Array.from({ length: Math.min(500, n - i) }, (_, k) => i + k));
  }
}

interface Counts {
  queued: number;
  active: number;
  retrying: number;
  completed: number;
  dead: number;
}

async function counts(url: string): Promise<Counts> {
  const { body } = await getJson<{ counts: Counts }>(`${url}/jobs?limit=1`);
  if (!body) throw new Error('GET /jobs answered no JSON');
  return body.counts;
}

/** (2) The photos uploaded 2 at a time to the nodes in turn, until every thumbnail job completed. Images/s. */
async function thumbsPerSecond(nodes: Group[], photos: { path: string; size: number }[]): Promise<number> {
  const before = await counts(nodes[0]!.url);
  const t = performance.now();
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next < photos.length) {
        const i = next++;
        const node = nodes[i % nodes.length]!;
        const { status, body } = await uploadFile<{ id: string }>(
          `${node.url}/files?name=p${i}.jpg`,
          photos[i]!.path,
          photos[i]!.size,
        );
        if (status !== 201) throw new Error(`upload: ${status} ${JSON.stringify(body)}`);
        ids.push(body.id);
      }
    }),
  );
  await until(
    async () => {
      const c = await counts(nodes[0]!.url);
      if (c.dead > before.dead) throw new Error(`image jobs failed: ${JSON.stringify(c)}`);
      return c.completed - before.completed >= photos.length ? c : undefined;
    },
    300_000,
    'every image job to complete',
    50,
  );
  const seconds = (performance.now() - t) / 1000;
  for (const id of ids) await getJson(`${nodes[0]!.url}/files/${id}`, 'DELETE');
  return photos.length / seconds;
}

const summary = (s: Series<number> | undefined) =>
  s?.error ? `failed: ${s.error}` : s ? fmt(median(s.samples)) : '–';

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const scratch = mkdtempSync(join(tmpdir(), 'weft-bench-files-redis-'));
  const s3dir = join(scratch, 's3');
  mkdirSync(s3dir);
  const id = randomUUID().slice(0, 8);
  const schema = `bench_${id}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  const s3 = loopbackS3rver(s3dir, 'bench');
  const groups: Group[] = [];
  const queues: string[] = [];
  try {
    log('  (1) no-op jobs: our adapter under the job runner against bare BullMQ');
    const noop = await alternate(
      [
        { name: 'weft adapter + runner', measure: weftAdapter },
        { name: 'bare BullMQ Worker', measure: () => bareBullmq() },
        { name: 'bare BullMQ Worker, our job options', measure: () => bareBullmq(true) },
      ],
      rounds,
      async (subject) => {
        const { perSecond } = await subject.measure();
        log(`    ${subject.name}: ${fmt(perSecond)} jobs/s`);
        return perSecond;
      },
      log,
    );

    log('  starting s3rver, the PostgreSQL schema and the services');
    const { port } = await s3.run();
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const database = new URL(DATABASE_URL);
    database.searchParams.set('options', `-c search_path=${schema}`);
    const remote = (tag: string) => {
      queues.push(`bench-${tag}-${id}`);
      return {
        QUEUE_URL: `${REDIS_URL}?queue=bench-${tag}-${id}`,
        DATABASE_URL: database.href,
        STORAGE_URL: `s3://S3RVER:S3RVER@bench/${tag}?endpoint=http://127.0.0.1:${port}`,
      };
    };
    const one = await startService(remote('one'));
    groups.push(one);
    const twoEnv = remote('two');
    const two = [await startService(twoEnv), await startService(twoEnv)];
    groups.push(...two);

    mkdirSync(join(scratch, 'photos'));
    const photos = await makeJpegs(join(scratch, 'photos'), PHOTOS, ...SIZES.photo);
    log(`  (2) ${PHOTOS} photos of ${SIZES.photo.join('×')}: two nodes against one`);
    const thumbs = await alternate(
      [
        { name: 'one node (2 workers)', nodes: [one] },
        { name: 'two nodes (2 workers each)', nodes: two },
      ],
      rounds,
      async (subject) => {
        const perSecond = await within(thumbsPerSecond(subject.nodes, photos), 600_000, subject.name);
        log(`    ${subject.name}: ${fmt(perSecond)} images/s`);
        return perSecond;
      },
      log,
    );

    log('  (3) one 12 MP photo: upload to servable thumbnail, Redis + PostgreSQL + S3 against embedded');
    const embedded = await startService();
    groups.push(embedded);
    const big = await makeJpeg(join(scratch, 'big.jpg'), ...SIZES.big, 1_004);
    const e2e = await alternate(
      [
        { name: 'embedded (SQLite, disk)', service: embedded },
        { name: 'Redis + PostgreSQL + S3', service: one },
      ],
      rounds,
      async (subject) => {
        const sample = await within(measureServiceE2e(subject.service, big), 600_000, subject.name);
        log(`    ${subject.name}: ${sample.ms.map((m) => fmt(m)).join(', ')} ms`);
        return sample.ms;
      },
      log,
    );

    const byName = <T>(m: Map<{ name: string }, Series<T>>, name: string) =>
      [...m.entries()].find(([k]) => k.name === name)?.[1];
    const ours = byName(noop, 'weft adapter + runner');
    const bare = byName(noop, 'bare BullMQ Worker');
    const bareSame = byName(noop, 'bare BullMQ Worker, our job options');
    const oneNode = byName(thumbs, 'one node (2 workers)');
    const twoNodes = byName(thumbs, 'two nodes (2 workers each)');
    const e2eOf = (name: string) => byName(e2e, name)?.samples.flat() ?? [];
    const ratio = (a?: Series<number>, b?: Series<number>) =>
      a?.samples.length && b?.samples.length ? times(median(a.samples) / median(b.samples)) : '–';
    const e2eMedian = (name: string) => {
      const ms = e2eOf(name);
      return ms.length ? fmt(median(ms)) : '–';
    };
    return [
      `Rounds: ${rounds}, alternating subjects; medians. Redis ${new URL(REDIS_URL).host}, PostgreSQL ${new URL(DATABASE_URL).host}, S3: s3rver ${'(Node, in the benchmark process)'}.`,
      '',
      `### No-op jobs: our BullMQ adapter against bare BullMQ (${NOOP_JOBS.toLocaleString('en-US')} jobs, concurrency ${CONCURRENCY}, one process)`,
      '',
      table(
        ['subject', 'jobs/s (median)', 'rounds'],
        [
          ['weft adapter + JobRunner', summary(ours), (ours?.samples ?? []).map((v) => fmt(v)).join(', ')],
          ['bare BullMQ Worker', summary(bare), (bare?.samples ?? []).map((v) => fmt(v)).join(', ')],
          [
            'bare BullMQ Worker, jobs with our adapter’s options (10,000 completed kept, deduplication key)',
            summary(bareSame),
            (bareSame?.samples ?? []).map((v) => fmt(v)).join(', '),
          ],
          ['ratio (goal ≥ 0.9×)', ratio(ours, bare), ''],
          ['ratio against the bare Worker with our job options', ratio(ours, bareSame), ''],
        ],
      ),
      '',
      `### Thumbnails: two nodes against one (${PHOTOS} photos of ${SIZES.photo.join('×')}, 2 uploads at a time)`,
      '',
      table(
        ['subject', 'images/s (median)', 'rounds'],
        [
          ['one node, 2 workers', summary(oneNode), (oneNode?.samples ?? []).map((v) => fmt(v)).join(', ')],
          [
            'two nodes, 2 workers each',
            summary(twoNodes),
            (twoNodes?.samples ?? []).map((v) => fmt(v)).join(', '),
          ],
          ['ratio', ratio(twoNodes, oneNode), ''],
        ],
      ),
      '',
      `### Upload of a ${SIZES.big.join('×')} photo until its thumbnail is servable (${SIZES.e2ePerRound} per round)`,
      '',
      table(
        ['configuration', 'median ms', 'samples'],
        [
          [
            'embedded (SQLite, local disk)',
            e2eMedian('embedded (SQLite, disk)'),
            String(e2eOf('embedded (SQLite, disk)').length),
          ],
          [
            'Redis + PostgreSQL + S3 (s3rver)',
            e2eMedian('Redis + PostgreSQL + S3'),
            String(e2eOf('Redis + PostgreSQL + S3').length),
          ],
        ],
      ),
      '',
    ].join('\n');
  } finally {
    for (const g of groups) await g.stop();
    agent.destroy();
    if (queues.length) {
      const redis = new Redis(REDIS_URL);
      for (const q of queues) {
        const keys = await redis.keys(`bull:${q}:*`);
        if (keys.length) await redis.del(...keys);
      }
      redis.disconnect();
    }
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
    await s3.close().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
}
