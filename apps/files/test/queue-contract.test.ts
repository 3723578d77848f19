// The JobQueue contract, run against the embedded SQLite queue and the BullMQ adapter alike: two instances on one
// store stand for two processes (or machines). Leases, stalled-job recovery, retries with backoff, dead letters,
// release, retry, listing and counts. Time is real here (BullMQ keeps its own clock in Redis), so leases and retry
// delays are short and every wait polls a condition with a deadline.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openDatabase } from '../src/db.ts';
import { BullQueue, parseQueueUrl } from '../src/queue/bullmq.ts';
import { PgJobStore } from '../src/queue/pg-store.ts';
import { RabbitQueue } from '../src/queue/rabbitmq.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';
import type { FollowUp, Job, JobQueue } from '../src/queue/types.ts';
import { untilValue as until } from './helpers.ts';
import { AMQP_URL, DATABASE_URL, pgSchema, REDIS_URL, serviceSkip } from './services.ts';

const LEASE = 600;
const RETRY = 100;

interface Pair {
  a: JobQueue;
  b: JobQueue;
  close(): Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), 'files-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function sqlitePair(): Promise<Pair> {
  const path = join(dir, `${randomUUID()}.db`);
  const dbs = [openDatabase(path), openDatabase(path)];
  const options = { leaseMs: LEASE, retryDelayMs: RETRY };
  return {
    a: new SqliteQueue(dbs[0]!, options),
    b: new SqliteQueue(dbs[1]!, options),
    async close() {
      for (const db of dbs) db.close();
    },
  };
}

async function bullPair(): Promise<Pair> {
  const url = `${REDIS_URL}?queue=contract-${randomUUID()}`;
  const options = { url, leaseMs: LEASE, retryDelayMs: RETRY, stalledIntervalMs: LEASE / 2 };
  const a = await BullQueue.open(options);
  const b = await BullQueue.open(options);
  return {
    a,
    b,
    async close() {
      // Both closed first (closing gives prefetched jobs back), then a fresh connection deletes the queue.
      await Promise.all([a.close(), b.close()]);
      const cleaner = await BullQueue.open(options);
      await cleaner.obliterate();
      await cleaner.close();
    },
  };
}

/** Two processes on RabbitMQ: a queue name of their own, each with its own connection to one SQLite store. */
async function rabbitPair(): Promise<Pair> {
  const path = join(dir, `${randomUUID()}.db`);
  const dbs = [openDatabase(path), openDatabase(path)];
  const url = `${AMQP_URL}?queue=contract-${randomUUID()}`;
  const open = (db: (typeof dbs)[number]) =>
    RabbitQueue.open({
      url,
      retryDelayMs: RETRY,
      sweepMs: LEASE / 4,
      store: (announce) => new SqliteQueue(db, { leaseMs: LEASE, retryDelayMs: RETRY, announce }),
    });
  const [a, b] = await Promise.all(dbs.map(open));
  return {
    a: a!,
    b: b!,
    async close() {
      await Promise.all([a!.close(), b!.close()]);
      const cleaner = await open(dbs[0]!);
      await cleaner.destroy();
      await cleaner.close();
      for (const db of dbs) db.close();
    },
  };
}

/** Two machines on RabbitMQ: a queue name of their own, each with its own pool to one PostgreSQL schema. */
async function rabbitPgPair(): Promise<Pair> {
  const db = await pgSchema('contract');
  const url = `${AMQP_URL}?queue=contract-${randomUUID()}`;
  const stores: PgJobStore[] = [];
  const open = async () => {
    let announce: (jobs: readonly Job[]) => void = () => {};
    const store = await PgJobStore.open(db.url, {
      leaseMs: LEASE,
      retryDelayMs: RETRY,
      announce: (jobs) => announce(jobs),
    });
    stores.push(store);
    return RabbitQueue.open({
      url,
      retryDelayMs: RETRY,
      sweepMs: LEASE / 4,
      store: (told) => {
        announce = told;
        return store;
      },
    });
  };
  const [a, b] = await Promise.all([open(), open()]);
  return {
    a: a!,
    b: b!,
    async close() {
      await Promise.all([a!.close(), b!.close()]);
      const cleaner = await open();
      await cleaner.destroy();
      await cleaner.close();
      await Promise.all(stores.map((s) => s.close()));
      await db.cleanup();
    },
  };
}

const claimOne = (q: JobQueue, owner: string, what: string, ms?: number) =>
  until(what, async () => (await q.claim(owner, 1))[0], ms);

function contract(name: string, make: () => Promise<Pair>, skip: string | false) {
  describe(`JobQueue contract: ${name}`, { skip }, () => {
    const withPair = (fn: (p: Pair) => Promise<void>) => async () => {
      const p = await make();
      try {
        await fn(p);
      } finally {
        await p.close();
      }
    };

    it(
      'hands each job to one process only, oldest first',
      withPair(async ({ a, b }) => {
        for (let i = 0; i < 5; i++) await a.add(`f${i}`, ['image'], 3);
        const first = await a.claim('A', 3);
        const second = await b.claim('B', 10);
        assert.deepEqual(
          first.map((j) => j.fileId),
          ['f0', 'f1', 'f2'],
        );
        assert.deepEqual(
          second.map((j) => j.fileId),
          ['f3', 'f4'],
        );
        assert.ok(first.every((j) => j.state === 'active' && j.attempts === 1 && j.leaseOwner === 'A'));
        assert.deepEqual(await a.claim('A', 5), []);
        const counts = await b.counts();
        assert.equal(counts.active, 5);
        assert.equal(await a.waiting(), 0);
      }),
    );

    it(
      'queues nothing, without an error, for a file with no jobs',
      withPair(async ({ a, b }) => {
        assert.deepEqual(await a.add('f', [], 3), []);
        assert.equal(await b.waiting(), 0);
        assert.deepEqual(await a.list({ fileId: 'f' }), []);
        await a.removeForFile('f');
        assert.deepEqual(await b.claim('B', 5), []);
      }),
    );

    it(
      'completes a job for its owner only, with its result',
      withPair(async ({ a, b }) => {
        const [added] = await a.add('f', ['csv'], 3);
        assert.equal(added?.state, 'queued');
        assert.equal(added?.kind, 'csv');
        assert.equal(await a.waiting(), 1);
        const [job] = await a.claim('A', 1);
        assert.ok(job);
        assert.equal(await b.complete(job, 'B', { rows: 1 }), false, 'another process cannot complete it');
        assert.equal(await a.complete(job, 'A', { rows: 2 }), true);
        const done = await b.get(job.id);
        assert.equal(done?.state, 'completed');
        assert.deepEqual(done?.result, { rows: 2 });
        assert.equal(done?.attempts, 1);
        assert.ok(done?.finishedAt);
        assert.equal(await a.complete(job, 'A', {}), false, 'twice is refused');
      }),
    );

    it(
      'keeps a job leased while its owner beats, and gives it to another process once the beats stop',
      withPair(async ({ a, b }) => {
        await a.add('f', ['image'], 3);
        const [job] = await a.claim('A', 1);
        assert.ok(job);
        // Beat for twice the lease: nobody else gets it meanwhile.
        const end = Date.now() + 2 * LEASE;
        while (Date.now() < end) {
          assert.deepEqual(await a.heartbeat('A', [job.id]), []);
          assert.deepEqual(await b.claim('B', 1), []);
          await new Promise((r) => setTimeout(r, LEASE / 4));
        }
        // "Process A dies": no more beats. B gets the job back, on its second attempt.
        const again = await claimOne(b, 'B', 'the stalled job to come back to another process');
        assert.equal(again.id, job.id);
        assert.equal(again.leaseOwner, 'B');
        assert.equal(await a.complete(job, 'A', {}), false, 'the old owner lost it');
        assert.ok((await a.heartbeat('A', [job.id])).includes(job.id), 'its heartbeat says so');
        assert.equal(await b.complete(again, 'B', { ok: true }), true);
        assert.equal((await a.get(job.id))?.state, 'completed');
      }),
    );

    it(
      'retries a failed attempt after a backoff, then dead-letters it with its error when attempts run out',
      withPair(async ({ a, b }) => {
        await a.add('f', ['image'], 2);
        const [job] = await a.claim('A', 1);
        assert.ok(job);
        assert.equal(await a.fail(job, 'A', { message: 'flaky', code: 'E_FLAKY' }, false), 'retrying');
        const waitingRetry = await b.get(job.id);
        assert.equal(waitingRetry?.state, 'retrying');
        assert.equal(waitingRetry?.lastError, 'flaky');
        assert.equal(await b.waiting(), 1, 'a job waiting for its retry counts as waiting');
        const second = await claimOne(b, 'B', 'the retry after its backoff');
        assert.equal(second.id, job.id);
        assert.equal(second.attempts, 2);
        assert.equal(await b.fail(second, 'B', { message: 'flaky again', code: 'E_FLAKY' }, false), 'dead');
        const dead = await a.get(job.id);
        assert.equal(dead?.state, 'dead');
        assert.equal(dead?.lastError, 'flaky again');
        assert.equal(dead?.errorCode, 'E_FLAKY');
        assert.deepEqual(
          (await a.list({ state: 'dead' })).map((j) => j.id),
          [job.id],
        );
        assert.equal((await a.counts()).dead, 1);
        assert.equal(
          await a.fail(second, 'B', { message: 'x' }, false),
          'lost',
          'a finished job cannot fail',
        );
      }),
    );

    it(
      'dead-letters a permanent error at once, and retry() puts it back with fresh attempts',
      withPair(async ({ a }) => {
        await a.add('f', ['image'], 5);
        const [job] = await a.claim('A', 1);
        assert.ok(job);
        assert.equal(await a.fail(job, 'A', { message: 'bad image', code: 'E_BAD' }, true), 'dead');
        assert.equal((await a.get(job.id))?.state, 'dead');
        const again = await a.retry(job.id);
        assert.equal(again?.state, 'queued');
        assert.equal(again?.attempts, 0);
        assert.equal(await a.retry(job.id), undefined, 'only a dead job can be retried');
        assert.equal(await a.retry(999_999), undefined);
        const [next] = await a.claim('A', 1);
        assert.equal(next?.id, job.id);
        assert.equal(next?.attempts, 1);
      }),
    );

    it(
      'releases a job at shutdown without counting the attempt',
      withPair(async ({ a, b }) => {
        await a.add('f', ['image'], 3);
        const [job] = await a.claim('A', 1);
        assert.ok(job);
        assert.equal(await b.release(job, 'B'), false, 'not its to release');
        assert.equal(await a.release(job, 'A'), true);
        assert.equal((await a.get(job.id))?.state, 'queued');
        const [again] = await b.claim('B', 1);
        assert.equal(again?.id, job.id);
        assert.equal(again?.attempts, 1, 'the released attempt did not count');
      }),
    );

    it(
      "lists jobs by state and by file, newest first, pages with `before`, and removes a file's jobs",
      withPair(async ({ a, b }) => {
        const [x1, x2] = await a.add('x', ['image', 'csv'], 3);
        const [y1] = await b.add('y', ['image'], 3);
        assert.ok(x1 && x2 && y1);
        assert.deepEqual((await a.list({ fileId: 'x' })).map((j) => j.kind).sort(), ['csv', 'image']);
        assert.deepEqual(
          (await a.list({ state: 'queued' })).map((j) => j.id),
          [y1.id, x2.id, x1.id],
        );
        assert.deepEqual(
          (await a.list({ limit: 2 })).map((j) => j.id),
          [y1.id, x2.id],
        );
        assert.deepEqual(
          (await a.list({ before: x2.id })).map((j) => j.id),
          [x1.id],
        );
        assert.equal(await a.get(123_456_789), undefined);
        await a.removeForFile('x');
        assert.deepEqual(await a.list({ fileId: 'x' }), []);
        assert.equal(await a.get(x1.id), undefined);
        assert.equal((await b.counts()).queued, 1);
        assert.equal(await a.waiting(), 1);
      }),
    );

    it(
      "queues follow-ups with the outcome they follow, apart from the file's jobs, and none after a follow-up's own",
      withPair(async ({ a, b }) => {
        const hook = (fileId: string, key: string, payload: unknown): FollowUp => ({
          kind: 'webhook',
          fileId,
          payload,
          maxAttempts: 2,
          key,
        });
        // processed: only by the completion of the file's last job, with the file's jobs all completed.
        await a.add('x', ['image', 'csv'], 3);
        const seen: string[][] = [];
        const processed = (jobs: Job[]) => {
          seen.push(jobs.map((j) => `${j.kind}:${j.state}`));
          return [hook('x', 'processed:x', { jobs: jobs.length })];
        };
        const [image] = await a.claim('A', 1);
        assert.equal(image?.kind, 'image');
        assert.equal(await a.complete(image, 'A', { w: 1 }, { processed }), true);
        assert.deepEqual(seen, [], "not while another of the file's jobs is not completed");
        assert.deepEqual(await a.list({ kind: 'webhook' }), []);
        // The same process: BullMQ's completion fetched the next job for it.
        const [csv] = await a.claim('A', 1);
        assert.equal(csv?.kind, 'csv');
        assert.equal(await a.complete(csv, 'A', { rows: 1 }, { processed }), true);
        assert.deepEqual(seen, [['image:completed', 'csv:completed']]);
        const [delivery, ...more] = await a.list({ kind: 'webhook' });
        assert.deepEqual(more, []);
        assert.equal(delivery?.state, 'queued');
        assert.equal(delivery?.fileId, 'x');
        assert.equal(delivery?.maxAttempts, 2);
        assert.deepEqual(delivery?.payload, { jobs: 2 });
        assert.equal((await a.get(image.id))?.payload, null, 'a processing job has no payload');
        assert.deepEqual(await b.counts({ kind: 'webhook' }), {
          queued: 1,
          active: 0,
          retrying: 0,
          completed: 0,
          dead: 0,
        });
        assert.equal((await b.counts({ kind: 'image' })).completed, 1);
        assert.deepEqual(
          (await b.list({ fileId: 'x' })).map((j) => j.kind).sort(),
          ['csv', 'image'],
          "a delivery is not one of its file's jobs",
        );
        await a.removeForFile('x');
        assert.equal(await a.hasJobs('x'), false);
        assert.equal((await b.get(delivery.id))?.state, 'queued', 'it outlives their removal');

        // dead: queued by the failure that makes a job dead, not by one that will be retried.
        await a.add('y', ['image'], 2);
        const dead = { dead: [hook('y', 'dead:y', { dead: 'y' })] };
        const claimed = await a.claim('A', 5);
        const y = claimed.find((j) => j.fileId === 'y');
        const sending = claimed.find((j) => j.kind === 'webhook');
        if (!y || !sending)
          assert.fail(
            `claim('A', 5) took ${JSON.stringify(claimed.map((j) => [j.id, j.kind, j.fileId]))}; the store has ${JSON.stringify((await b.list({})).map((j) => [j.id, j.kind, j.state, j.runAt - Date.now()]))}`,
          );
        assert.equal(sending.id, delivery.id);
        assert.equal(await a.fail(y, 'A', { message: 'flaky' }, false, dead), 'retrying');
        assert.equal((await a.list({ kind: 'webhook' })).length, 1, 'nothing while it will be retried');
        const again = await claimOne(b, 'B', "y's retry");
        assert.equal(await b.fail(again, 'B', { message: 'broken', code: 'E' }, false, dead), 'dead');
        assert.deepEqual(
          (await a.list({ kind: 'webhook' })).map((j) => j.payload),
          [{ dead: 'y' }, { jobs: 2 }],
        );
        // A follow-up's own death is followed by nothing (no webhook about a webhook).
        const loop = { dead: [hook('x', 'loop', { loop: true })] };
        assert.equal(await a.fail(sending, 'A', { message: 'receiver said 400' }, true, loop), 'dead');
        assert.equal((await a.list({ kind: 'webhook' })).length, 2);
        assert.equal((await b.counts({ kind: 'webhook' })).dead, 1);
        assert.equal((await b.counts()).dead, 2, 'the counts of every kind include them');
      }),
    );

    it(
      'closes idempotently',
      withPair(async ({ a }) => {
        await Promise.all([a.close(), a.close()]);
      }),
    );
  });
}

const redisSkip = await serviceSkip({ redis: REDIS_URL });
const rabbitSkip = await serviceSkip({ rabbitmq: AMQP_URL });
contract('SQLite (embedded)', sqlitePair, false);
contract('BullMQ on Redis', bullPair, redisSkip);
contract('RabbitMQ, jobs in SQLite', rabbitPair, rabbitSkip);
const rabbitPgSkip = await serviceSkip({ rabbitmq: AMQP_URL, postgres: DATABASE_URL });
contract('RabbitMQ, jobs in PostgreSQL', rabbitPgPair, rabbitPgSkip);

describe('BullQueue specifics', { skip: redisSkip }, () => {
  it('wakes an idle node when another node queues a job (onReady)', async () => {
    const { a, b, close } = await bullPair();
    try {
      let fired = 0;
      const off = a.onReady?.(() => fired++);
      assert.ok(off, 'the BullMQ queue has onReady');
      // QueueEvents reads only events newer than its first read: queue one job at a time until one wakes A.
      const woke = await until(
        'onReady to fire for a job queued by another node',
        async () => {
          await b.add(`f${Date.now()}`, ['image'], 1);
          const deadline = Date.now() + 500;
          while (fired === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
          return fired > 0 ? fired : undefined;
        },
        5_000,
      );
      assert.ok(woke >= 1);
      off();
    } finally {
      await close();
    }
  });

  it('gives back at the next heartbeat a job whose claim its runner never saw, not after its lease', async () => {
    // A claim abandoned at its deadline (Redis away) that Redis carried out late: the job is held by A, whose runner
    // does not run it. With a 30 s lease, only the heartbeat's sweep can give it back within this test.
    const url = `${REDIS_URL}?queue=contract-${randomUUID()}`;
    const options = { url, leaseMs: 30_000, retryDelayMs: RETRY, orphanGraceMs: 0 };
    const a = await BullQueue.open(options);
    const b = await BullQueue.open(options);
    try {
      await a.add('f', ['image'], 3);
      const [orphan] = await a.claim('A', 1);
      assert.ok(orphan);
      assert.deepEqual(await b.claim('B', 1), [], 'held by A');
      assert.deepEqual(await a.heartbeat('A', []), [], "A's runner runs nothing");
      const [again] = await b.claim('B', 1);
      assert.equal(again?.id, orphan.id, 'B gets the orphaned job at once');
      assert.equal(await b.complete(again!, 'B', {}), true);
      assert.equal(await a.complete(orphan, 'A', {}), false, 'A no longer holds it');
    } finally {
      await Promise.all([a.close(), b.close()]);
      const cleaner = await BullQueue.open(options);
      await cleaner.obliterate();
      await cleaner.close();
    }
  });

  it("adding a file's job of a kind again returns the job queued before, even once it completed (outbox relay)", async () => {
    const { a, b, close } = await bullPair();
    try {
      assert.equal(await a.hasJobs('f'), false);
      const [first] = await a.add('f', ['csv'], 3);
      assert.ok(first);
      assert.equal(await b.hasJobs('f'), true);
      // Another node repeats the add (its answer was lost): the same job, nothing new to run.
      const [again] = await b.add('f', ['csv'], 3);
      assert.equal(again?.id, first.id);
      assert.equal(await a.waiting(), 1);
      const [claimed] = await a.claim('A', 5);
      assert.equal(claimed?.id, first.id);
      assert.equal(await a.complete(claimed!, 'A', { ok: true }), true);
      const [late] = await b.add('f', ['csv'], 3);
      assert.equal(late?.id, first.id, 'a completed job is not queued again');
      assert.deepEqual(await b.claim('B', 5), []);
      assert.deepEqual(
        (await a.list({ fileId: 'f' })).map((j) => [j.id, j.state]),
        [[first.id, 'completed']],
      );
      // Another kind of the same file is a job of its own.
      const [image] = await a.add('f', ['image'], 3);
      assert.notEqual(image?.id, first.id);
      await a.removeForFile('f');
      assert.equal(await a.hasJobs('f'), false);
    } finally {
      await close();
    }
  });

  it('hands out the job fetched with a completion first, and gives it back at close', async () => {
    const { a, b, close } = await bullPair();
    try {
      await a.add('f1', ['image'], 3);
      await a.add('f2', ['image'], 3);
      const [first] = await a.claim('A', 1);
      assert.ok(first);
      assert.equal(await a.complete(first, 'A', null), true);
      // f2 was taken with the completion: B cannot have it, A's next claim has it without asking Redis.
      assert.deepEqual(await b.claim('B', 1), []);
      assert.equal((await a.counts()).active, 1);
      await a.close();
      const [second] = await b.claim('B', 1);
      assert.equal(second?.fileId, 'f2');
      assert.equal(second?.attempts, 1, 'a job given back at close was not an attempt');
    } finally {
      await close();
    }
  });

  it('refuses new jobs with ERR_WEFT_FILES_REDIS once its connections are gone', async () => {
    const { a, close } = await bullPair();
    try {
      await a.close();
      await assert.rejects(a.add('f', ['image'], 1), { code: 'ERR_WEFT_FILES_REDIS' });
    } finally {
      await close();
    }
  });

  it('fails with ERR_WEFT_FILES_REDIS, without the password, when Redis does not answer', async () => {
    const started = Date.now();
    await assert.rejects(
      BullQueue.open({ url: 'redis://user:s3cret@127.0.0.1:1', leaseMs: 1_000, retryDelayMs: 100 }, 1_500),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_REDIS');
        assert.match(err.message, /127\.0\.0\.1:1/);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      },
    );
    assert.ok(Date.now() - started < 5_000, 'gave up in bounded time');
  });
});

describe('parseQueueUrl', () => {
  it('reads host, port, db, credentials, queue name and prefix', () => {
    const p = parseQueueUrl('redis://u:p%40ss@redis.internal:6380/2?queue=files&prefix=wf');
    assert.deepEqual(p, {
      connection: { host: 'redis.internal', port: 6380, db: 2, username: 'u', password: 'p@ss' },
      name: 'files',
      prefix: 'wf',
    });
    assert.equal(parseQueueUrl('redis://127.0.0.1').name, 'weft-files');
  });

  it('refuses what is not a Redis URL with ERR_WEFT_FILES_CONFIG', () => {
    for (const url of ['http://x', 'not a url', 'redis://h/abc']) {
      assert.throws(() => parseQueueUrl(url), { code: 'ERR_WEFT_FILES_CONFIG' });
    }
  });
});
