// The file service with QUEUE_URL=amqp://: uploads processed through RabbitMQ, and RabbitMQ cut away (through a fault
// proxy, so the machine's broker is never touched) while uploads arrive: every upload is still answered 201, and
// every job runs, once, after RabbitMQ is back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultProxy, faultProxy } from './fault-proxy.ts';
import { type Running, startService, until, untilValue } from './helpers.ts';
import { AMQP_URL, DATABASE_URL, pgSchema, rabbitBackends, serviceSkip, via } from './services.ts';

const skip = await serviceSkip({ rabbitmq: AMQP_URL });
const skipPg = await serviceSkip({ rabbitmq: AMQP_URL, postgres: DATABASE_URL });

interface Uploaded {
  id: string;
  jobs: { id: number; kind: string }[];
  pending?: string[];
}

describe('the file service on RabbitMQ', { skip }, () => {
  let s: Running;
  let proxy: FaultProxy;
  let backends: ReturnType<typeof rabbitBackends>;

  before(async () => {
    const broker = new URL(AMQP_URL);
    proxy = await faultProxy({ target: { host: broker.hostname, port: Number(broker.port || 5672) } });
    backends = rabbitBackends('files-service');
    s = await startService({
      queueUrl: via(backends.urls.queueUrl, proxy.port),
      pollMs: 50,
      retryDelayMs: 50,
      queueTimeout: 1_000,
    });
  });
  after(async () => {
    await s?.stop();
    await proxy?.close();
    await backends?.cleanup();
  });

  async function upload(i: number): Promise<Uploaded> {
    const res = await fetch(`${s.url}/files?name=r${i}.csv`, { method: 'POST', body: `a,b\n${i},x\n` });
    const text = await res.text();
    assert.equal(res.status, 201, text);
    return JSON.parse(text) as Uploaded;
  }

  async function completed(fileId: string): Promise<boolean> {
    const file = (await (await fetch(`${s.url}/files/${fileId}`)).json()) as { jobs: { state: string }[] };
    return file.jobs.length > 0 && file.jobs.every((j) => j.state === 'completed');
  }

  it('processes an upload through RabbitMQ', async () => {
    const up = await upload(0);
    assert.deepEqual(
      up.jobs.map((j) => j.kind),
      ['csv'],
    );
    await until(() => completed(up.id), 20_000, 'the CSV job to complete');
    const rows = (await (await fetch(`${s.url}/files/${up.id}/rows`)).json()) as { rows: unknown[] };
    assert.equal(rows.rows.length, 1);
  });

  it('answers 201 while RabbitMQ is cut away, and runs every job once it is back', async () => {
    proxy.set('cut');
    const during: Uploaded[] = [];
    for (let i = 1; i <= 5; i++) during.push(await upload(i));
    proxy.set('pass');
    for (const up of during)
      await until(() => completed(up.id), 30_000, `the job of ${up.id} after RabbitMQ's return`);
    const jobs = (await (await fetch(`${s.url}/jobs?limit=100`)).json()) as {
      jobs: { fileId: string; state: string; attempts: number }[];
    };
    for (const up of during) {
      const mine = jobs.jobs.filter((j) => j.fileId === up.id);
      assert.equal(mine.length, 1, `one job for ${up.id}, not queued twice`);
      assert.equal(mine[0]!.state, 'completed');
    }
  });
});

describe('the file service on RabbitMQ with its jobs in PostgreSQL', { skip: skipPg }, () => {
  let s: Running;
  let proxy: FaultProxy;
  let backends: ReturnType<typeof rabbitBackends>;
  let schema: Awaited<ReturnType<typeof pgSchema>>;

  before(async () => {
    schema = await pgSchema('rabbit_pg_outage');
    const db = new URL(DATABASE_URL);
    proxy = await faultProxy({ target: { host: db.hostname, port: Number(db.port || 5432) } });
    backends = rabbitBackends('files-pg-outage');
    // No runner: the test claims itself, so that every claim is one it counts.
    s = await startService(
      {
        queueUrl: backends.urls.queueUrl,
        databaseUrl: via(schema.url, proxy.port),
        databaseTimeout: 500,
        queueTimeout: 1_000,
        pollMs: 50,
      },
      { runJobs: false },
    );
  });
  after(async () => {
    proxy?.set('pass');
    await s?.stop();
    await proxy?.close();
    await backends?.cleanup();
    await schema?.cleanup();
  });

  it("PostgreSQL away: job reads answer 503 ERR_WEFT_FILES_DATABASE_UNAVAILABLE in time, and claims that meet it count against the database's breaker, not RabbitMQ's", async (t) => {
    const res = await fetch(`${s.url}/files?name=a.csv`, { method: 'POST', body: 'a,b\n1,x\n' });
    assert.equal(res.status, 201);
    const job = ((await res.json()) as Uploaded).jobs[0]!;

    proxy.set('blackhole');
    t.after(() => proxy.set('pass'));
    const sent = performance.now();
    const read = await fetch(`${s.url}/jobs/${job.id}`);
    const ms = performance.now() - sent;
    assert.equal(read.status, 503);
    assert.equal(
      ((await read.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_DATABASE_UNAVAILABLE',
    );
    assert.ok(ms < 2_000, `answered in ${Math.round(ms)} ms`);

    // The job's message is in RabbitMQ: the claims take it (or sweep the store first) and meet PostgreSQL. More of
    // them than the breakers' threshold (5).
    for (let i = 0; i < 8; i++) {
      await assert.rejects(s.queue.claim('test-owner', 1), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE', err.message);
        return true;
      });
    }
    assert.equal(s.guards.database.up, false, "the database's breaker is open");
    assert.equal(s.guards.queue.opens, 0, "RabbitMQ's breaker never opened");
    assert.equal(s.guards.queue.up, true);
    const fast = performance.now();
    assert.equal((await fetch(`${s.url}/jobs?limit=5`)).status, 503);
    assert.ok(performance.now() - fast < 400, 'the open breaker answers at once');

    // Back: the message a failed claim took was given back, and the job is claimed once.
    proxy.set('pass');
    const claimed = await untilValue(
      'the job claimed once PostgreSQL is back',
      async () => {
        const jobs = await s.queue.claim('test-owner', 1).catch(() => []);
        return jobs.length > 0 ? jobs : undefined;
      },
      15_000,
    );
    assert.deepEqual(
      claimed.map((j) => j.id),
      [job.id],
    );
    assert.equal(await s.queue.release(claimed[0]!, 'test-owner'), true);
  });
});
