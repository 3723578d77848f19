// The file service with QUEUE_URL=amqp://: uploads processed through RabbitMQ, and RabbitMQ cut away (through a fault
// proxy, so the machine's broker is never touched) while uploads arrive: every upload is still answered 201, and
// every job runs, once, after RabbitMQ is back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultProxy, faultProxy } from './fault-proxy.ts';
import { type Running, startService, until } from './helpers.ts';
import { AMQP_URL, rabbitBackends, serviceSkip, via } from './services.ts';

const skip = await serviceSkip({ rabbitmq: AMQP_URL });

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
