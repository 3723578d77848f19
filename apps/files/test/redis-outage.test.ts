// With QUEUE_URL set, a Redis that stops answering (or refuses connections) mid-run: an upload is answered 201
// within queueTimeout (plus slack) with its jobs pending, and kept (listed) with its outbox row (it was answered 503
// ERR_WEFT_FILES_QUEUE_UNAVAILABLE and not kept before the outbox); uploads queue their jobs directly again once
// Redis is back. outbox.test.ts follows such uploads to their processing. The machine's Redis is never stopped: the service reaches it through a
// TCP proxy in this test, which can swallow traffic or cut and refuse connections.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { BullQueue } from '../src/queue/bullmq.ts';
import { type Running, startService } from './helpers.ts';
import { REDIS_URL, serviceSkip } from './services.ts';

const skip = await serviceSkip({ redis: REDIS_URL });
const QUEUE_TIMEOUT_MS = 1_000;
const ANSWER_BOUND_MS = QUEUE_TIMEOUT_MS + 3_000;

type Mode = 'pass' | 'blackhole' | 'refuse';

/** A proxy to Redis: `pass` forwards, `blackhole` accepts and swallows, `refuse` closes every connection. */
async function redisProxy(target: URL) {
  let mode: Mode = 'pass';
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    if (mode === 'refuse') return void client.destroy();
    const upstream = new Socket();
    upstream.connect(Number(target.port || 6379), target.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (d) => mode === 'pass' && upstream.write(d));
    upstream.on('data', (d) => mode === 'pass' && client.write(d));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cut = () => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    port: (server.address() as { port: number }).port,
    set(next: Mode) {
      mode = next;
      if (next !== 'blackhole') cut(); // swallowed bytes desynchronised those connections
    },
    close: () => {
      cut();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('Redis unreachable during uploads', { skip }, () => {
  let s: Running;
  let proxy: Awaited<ReturnType<typeof redisProxy>>;
  const queue = `outage-${randomUUID().slice(0, 8)}`;
  before(async () => {
    proxy = await redisProxy(new URL(REDIS_URL));
    s = await startService({
      queueUrl: `redis://127.0.0.1:${proxy.port}?queue=${queue}`,
      queueTimeout: QUEUE_TIMEOUT_MS,
    });
  });
  after(async () => {
    proxy?.set('pass');
    await s?.stop();
    await proxy?.close();
    const q = await BullQueue.open({ url: `${REDIS_URL}?queue=${queue}`, leaseMs: 1_000, retryDelayMs: 100 });
    await q.obliterate();
    await q.close();
    const redis = new Redis(REDIS_URL);
    await redis.del(`bull:${queue}:weft-events`, `bull:${queue}:weft-events:seq`);
    redis.disconnect();
  });

  const upload = (name: string, ms: number) =>
    fetch(`${s.url}/files?name=${name}`, {
      method: 'POST',
      body: `a,b\n1,${name}\n`,
      signal: AbortSignal.timeout(ms),
    });
  const listed = async () =>
    ((await (await fetch(`${s.url}/files`)).json()) as { files: { name: string }[] }).files.map(
      (f) => f.name,
    );

  for (const mode of ['blackhole', 'refuse'] as const) {
    it(`answers 201 with the jobs pending within a bound and keeps the upload when Redis ${mode === 'blackhole' ? 'stops answering' : 'refuses connections'}`, async () => {
      proxy.set('pass');
      // Redis answers again (ioredis reconnects by itself after a cut): a bounded poll until an upload is taken.
      const deadline = Date.now() + 20_000;
      let ok = 0;
      for (let i = 0; ok !== 201; i++) {
        if (Date.now() > deadline) throw new Error('uploads did not work through the proxy within 20 s');
        ok = (await upload(`before-${mode}-${i}.csv`, ANSWER_BOUND_MS).catch(() => undefined))?.status ?? 0;
        if (ok !== 201) await new Promise((r) => setTimeout(r, 200));
      }
      proxy.set(mode);
      const t = performance.now();
      const res = await upload(`during-${mode}.csv`, ANSWER_BOUND_MS).catch((err: Error) => {
        throw new Error(`no answer within ${ANSWER_BOUND_MS} ms while Redis is away (${err.message})`);
      });
      const ms = performance.now() - t;
      const body = (await res.json()) as { id: string; jobs: unknown[]; pending: string[] };
      assert.equal(res.status, 201, JSON.stringify(body));
      assert.deepEqual(body.jobs, []);
      assert.deepEqual(body.pending, ['csv']);
      assert.ok(ms < ANSWER_BOUND_MS, `answered in ${Math.round(ms)} ms`);
      assert.ok((await listed()).includes(`during-${mode}.csv`), 'the upload is kept');
      assert.deepEqual(await s.catalog.pendingKinds(body.id), ['csv'], 'its jobs wait in the outbox');
      proxy.set('pass');
    });
  }
});
