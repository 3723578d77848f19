// What the RabbitMQ adapter adds to the queue contract (queue-contract.test.ts runs that on it): the messages in
// RabbitMQ itself (dead-letter exchange, retry queues), a process killed while it holds a message, a message lost
// between a commit and its publish, wake-ups, and the errors of a bad URL or an absent broker.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { openDatabase } from '../src/db.ts';
import { FilesError } from '../src/errors.ts';
import { parseAmqpUrl, RabbitQueue, type RabbitQueueOptions } from '../src/queue/rabbitmq.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';
import { untilValue as until } from './helpers.ts';
import { AMQP_URL, serviceSkip } from './services.ts';

const LEASE = 600;
const dir = mkdtempSync(join(tmpdir(), 'files-rabbit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const skip = await serviceSkip({ rabbitmq: AMQP_URL });

/** A fresh queue name and SQLite file; `node()` opens a process's adapter on them. */
function world(options: Partial<RabbitQueueOptions> = {}) {
  const path = join(dir, `${randomUUID()}.db`);
  const url = `${AMQP_URL}?queue=rabbit-${randomUUID()}`;
  const opened: { q: RabbitQueue; db: ReturnType<typeof openDatabase> }[] = [];
  const stores: SqliteQueue[] = [];
  return {
    path,
    url,
    stores,
    async node(extra: Partial<RabbitQueueOptions> = {}) {
      const db = openDatabase(path);
      const q = await RabbitQueue.open({
        url,
        retryDelayMs: 100,
        sweepMs: 100,
        ...options,
        ...extra,
        store: (announce) => {
          const store = new SqliteQueue(db, { leaseMs: LEASE, retryDelayMs: 100, announce });
          stores.push(store);
          return store;
        },
      });
      opened.push({ q, db });
      return q;
    },
    async close() {
      await Promise.all(opened.map(({ q }) => q.close()));
      const db = openDatabase(path);
      const cleaner = await RabbitQueue.open({
        url,
        retryDelayMs: 100,
        store: (announce) => new SqliteQueue(db, { leaseMs: LEASE, retryDelayMs: 100, announce }),
      });
      await cleaner.destroy();
      await cleaner.close();
      db.close();
      for (const { db } of opened) db.close();
    },
  };
}

describe('RabbitQueue specifics', { skip }, () => {
  it("puts a dead job's message in <name>.dead through the dead-letter exchange, and a retry's in a retry queue", async () => {
    const w = world();
    try {
      const a = await w.node();
      const [added] = await a.add('f', ['image'], 2);
      assert.deepEqual(await a.depth(), { ready: 1, dead: 0 }, 'one persistent message per job');
      const [job] = await a.claim('A', 1);
      assert.equal(job?.id, added?.id);
      assert.deepEqual(await a.depth(), { ready: 0, dead: 0 }, 'held, unacknowledged, by the claimer');
      assert.equal(await a.fail(job!, 'A', { message: 'flaky' }, false), 'retrying');
      // The retry waits in a retry queue, then its TTL sends it back to the main queue.
      const again = await until(
        'the retry back from its retry queue',
        async () => (await a.claim('A', 1))[0],
      );
      assert.equal(again.id, job!.id);
      assert.equal(again.attempts, 2);
      assert.equal(await a.fail(again, 'A', { message: 'broken', code: 'E_BAD' }, false), 'dead');
      await until('the message in the dead-letter queue', async () =>
        (await a.depth()).dead === 1 ? true : undefined,
      );
      assert.equal(
        (await a.get(job!.id))?.state,
        'dead',
        'the store keeps the dead letter the service lists',
      );
      // Retried from the dead letters: a new message, and it runs again.
      assert.equal((await a.retry(job!.id))?.state, 'queued');
      const third = await until('the retried job', async () => (await a.claim('A', 1))[0]);
      assert.equal(third.attempts, 1);
      assert.equal(await a.complete(third, 'A', { ok: true }), true);
      assert.deepEqual(await a.depth(), { ready: 0, dead: 1 });
    } finally {
      await w.close();
    }
  });

  it('a process killed (SIGKILL) while it holds a job: RabbitMQ delivers it again, and it runs once its lease expired', async () => {
    const w = world();
    try {
      // No sweep after the first: the job can only come back by RabbitMQ's own redelivery.
      const b = await w.node({ sweepMs: 60_000 });
      const [added] = await b.add('f', ['image'], 3);
      const child = spawn(
        process.execPath,
        [
          '--conditions=weft-source',
          join(import.meta.dirname, 'fixtures', 'rabbit-holder.ts'),
          w.path,
          w.url,
          String(LEASE),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        const claimed = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the holder did not claim within 20 s')), 20_000);
          child.stdout!.on('data', (chunk: Buffer) => {
            const line = chunk.toString().trim().split('\n').at(-1)!;
            clearTimeout(timer);
            resolve((JSON.parse(line) as { claimed: number }).claimed);
          });
          child.once('exit', (code) => reject(new Error(`the holder exited with ${code}`)));
        });
        assert.equal(claimed, added?.id);
        assert.deepEqual(await b.claim('B', 1), [], 'not while the holder holds it');
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      const again = await until('the job of the killed process', async () => (await b.claim('B', 1))[0]);
      assert.equal(again.id, added?.id);
      assert.equal(again.attempts, 2);
      assert.equal(again.leaseOwner, 'B');
      assert.equal(await b.complete(again, 'B', {}), true);
      assert.deepEqual(await b.depth(), { ready: 0, dead: 0 }, 'no message left behind');
    } finally {
      await w.close();
    }
  });

  it('a job committed without its message (a crash between the two) is announced by a sweep', async () => {
    const w = world({ graceMs: 200 });
    try {
      const a = await w.node();
      // The store alone, as a process that stopped before publishing leaves it.
      const db = openDatabase(w.path);
      const [lost] = new SqliteQueue(db, { leaseMs: LEASE, retryDelayMs: 100 }).addSync('f', ['csv'], 3);
      db.close();
      assert.deepEqual(await a.depth(), { ready: 0, dead: 0 });
      const job = await until('the sweep to send it', async () => (await a.claim('A', 1))[0]);
      assert.equal(job.id, lost?.id);
      assert.equal(await a.complete(job, 'A', {}), true);
    } finally {
      await w.close();
    }
  });

  it('a second message for one job (a sweep that raced a slow owner) is dropped, not run twice', async () => {
    const w = world();
    try {
      const [a, b] = [await w.node(), await w.node()];
      const [added] = await a.add('f', ['image'], 3);
      const [job] = await a.claim('A', 1);
      assert.ok(job);
      // A's lease expires while it holds the message: B's sweep sends another, and B runs it.
      const taken = await until('B to take the expired job', async () => (await b.claim('B', 1))[0]);
      assert.equal(taken.id, added?.id);
      assert.equal(
        await a.complete(job, 'A', {}),
        false,
        "A's late completion is refused, its message acknowledged",
      );
      assert.equal(await b.complete(taken, 'B', { by: 'B' }), true);
      assert.deepEqual(await b.claim('B', 5), []);
      assert.deepEqual(await a.claim('A', 5), []);
      assert.deepEqual(await a.depth(), { ready: 0, dead: 0 });
      assert.deepEqual((await a.get(job.id))?.result, { by: 'B' });
    } finally {
      await w.close();
    }
  });

  it("spreads a claim's gets over several channels, and acknowledges each message on the channel it came on", async () => {
    const w = world();
    // amqplib's Channel, whose get and ack are watched: which channel got each message, and which acknowledged it.
    const probe = await amqp.connect(AMQP_URL);
    const proto = Object.getPrototypeOf(await probe.createChannel()) as {
      get(this: amqp.Channel, ...args: unknown[]): Promise<amqp.GetMessage | false>;
      ack(this: amqp.Channel, msg: amqp.Message, ...rest: unknown[]): void;
    };
    await probe.close();
    const get = proto.get;
    const ack = proto.ack;
    const from = new Map<string, unknown>();
    const wrong: string[] = [];
    let acked = 0;
    proto.get = async function (this: amqp.Channel, ...args: unknown[]) {
      const msg = await get.apply(this, args);
      if (msg) from.set(msg.content.toString(), this);
      return msg;
    };
    proto.ack = function (this: amqp.Channel, msg: amqp.Message, ...rest: unknown[]) {
      acked++;
      if (from.get(msg.content.toString()) !== this) wrong.push(msg.content.toString());
      return ack.call(this, msg, ...rest);
    };
    try {
      const a = await w.node();
      for (let i = 0; i < 8; i++) await a.add(`f${i}`, ['image'], 3);
      const jobs = await a.claim('A', 8);
      assert.equal(jobs.length, 8);
      assert.ok(
        new Set(from.values()).size > 1,
        `the gets went out on ${new Set(from.values()).size} channel(s)`,
      );
      for (const job of jobs) assert.equal(await a.complete(job, 'A', {}), true);
      assert.equal(acked, 8);
      assert.deepEqual(wrong, [], 'acknowledged on another channel than the one it came on');
      // Nothing came back to the queue, as it would if a channel had been closed by a wrong acknowledgement.
      assert.deepEqual(await a.claim('A', 8), []);
      assert.deepEqual(await a.depth(), { ready: 0, dead: 0 });
    } finally {
      proto.get = get;
      proto.ack = ack;
      await w.close();
    }
  });

  it('wakes an idle process when another queues a job (onReady)', async () => {
    const w = world();
    try {
      const [a, b] = [await w.node(), await w.node()];
      const woken = new Promise<void>((resolve) => {
        const off = b.onReady(() => {
          off();
          resolve();
        });
      });
      await a.add('f', ['image'], 3);
      await Promise.race([
        woken,
        new Promise((_, reject) => setTimeout(() => reject(new Error('no wake-up within 5 s')), 5_000)),
      ]);
      assert.equal((await b.claim('B', 1)).length, 1);
    } finally {
      await w.close();
    }
  });

  it('fails with ERR_WEFT_FILES_RABBITMQ, without the password, when RabbitMQ does not answer', async () => {
    const db = openDatabase(join(dir, `${randomUUID()}.db`));
    try {
      const err = await RabbitQueue.open({
        url: 'amqp://weft:s3cret@127.0.0.1:1/?queue=nowhere',
        retryDelayMs: 100,
        timeoutMs: 2_000,
        store: (announce) => new SqliteQueue(db, { leaseMs: LEASE, retryDelayMs: 100, announce }),
      }).then(
        () => assert.fail('opened'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof FilesError);
      assert.equal(err.code, 'ERR_WEFT_FILES_RABBITMQ');
      assert.match(err.message, /127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /s3cret/);
    } finally {
      db.close();
    }
  });

  it('refuses new calls with ERR_WEFT_FILES_RABBITMQ once closed', async () => {
    const w = world();
    try {
      const a = await w.node();
      await a.close();
      await assert.rejects(a.claim('A', 1), { code: 'ERR_WEFT_FILES_RABBITMQ' });
    } finally {
      await w.close();
    }
  });
});

describe('parseAmqpUrl', () => {
  it('reads the queue name and leaves the rest for amqplib', () => {
    const u = parseAmqpUrl('amqp://u:p@mq.example:5673/vhost?queue=files.prod&heartbeat=10');
    assert.equal(u.name, 'files.prod');
    assert.equal(u.where, 'mq.example:5673');
    assert.equal(u.connectUrl, 'amqp://u:p@mq.example:5673/vhost?heartbeat=10');
    assert.equal(parseAmqpUrl('amqps://h').name, 'weft-files');
    assert.equal(parseAmqpUrl('amqps://h').where, 'h:5671');
  });

  it('refuses what is not an AMQP URL, or a queue name RabbitMQ would not take, with ERR_WEFT_FILES_CONFIG', () => {
    for (const url of ['redis://h', 'not a url', 'amqp://h?queue=a b', `amqp://h?queue=${'x'.repeat(201)}`]) {
      assert.throws(() => parseAmqpUrl(url), { code: 'ERR_WEFT_FILES_CONFIG' }, url);
    }
  });
});
