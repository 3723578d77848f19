/**
 * `npm run bench -- files-queues`: no-op jobs per second through each remote queue adapter of the file service,
 * driven by the service's own job runner, against the bare library with the same acknowledgement mode, in one run,
 * subjects alternating:
 *
 * - our BullMQ adapter against a bare BullMQ `Worker` (as in `files --backend redis`);
 * - our RabbitMQ adapter, its jobs' state in PostgreSQL (the several-machines configuration) and in SQLite (one
 *   machine), against a bare amqplib consumer: persistent messages published with confirms before the clock
 *   starts, `prefetch` = the concurrency, manual acknowledgement after the (no-op) work; and bare `basic.get`s, the
 *   way our claims take messages, as the ceiling of that way.
 *
 * Each row also gives the CPU each job cost while the clock ran, in this process and in the servers (RabbitMQ,
 * Redis, PostgreSQL), and the report the bound those figures put on any RabbitMQ adapter that keeps its jobs' state.
 *
 * Needs Redis, RabbitMQ and PostgreSQL (REDIS_URL, AMQP_URL, DATABASE_URL; this machine's ports by default).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import pg from 'pg';
import { openDatabase } from '../apps/files/src/db.ts';
import { PgJobStore } from '../apps/files/src/queue/pg-store.ts';
import { RabbitQueue } from '../apps/files/src/queue/rabbitmq.ts';
import { SqliteQueue } from '../apps/files/src/queue/sqlite.ts';
import type { Job, JobQueue, JobStore } from '../apps/files/src/queue/types.ts';
import { bareBullmq, type QueueRate, runNoop, timeJobs, weftAdapter } from './files-redis.ts';
import { type AreaOptions, alternate, type Series, within } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const JOBS = 20_000;
const CONCURRENCY = 8;
/** The server processes whose CPU a subject's row counts (by `/proc/<pid>/comm`). */
const RABBITMQ = 'beam.smp';
const POSTGRES = 'postgres';

/** Declares the durable queue `name` and publishes {@link JOBS} persistent messages to it, confirmed 500 at a time. */
async function publishJobs(model: amqp.ChannelModel, name: string): Promise<amqp.ConfirmChannel> {
  const pub = await model.createConfirmChannel();
  await pub.assertQueue(name, { durable: true });
  for (let i = 0; i < JOBS; i += 500) {
    for (let k = i; k < Math.min(JOBS, i + 500); k++) {
      pub.sendToQueue(name, Buffer.from(String(k)), { persistent: true });
    }
    await pub.waitForConfirms();
  }
  return pub;
}

/** Bare amqplib: persistent messages published with confirms, then a consumer (prefetch, manual ack) takes them all. */
async function bareAmqp(): Promise<QueueRate> {
  const name = `bench-bare-${randomUUID()}`;
  const model = await amqp.connect(AMQP_URL);
  try {
    const pub = await publishJobs(model, name);
    const sub = await model.createChannel();
    await sub.prefetch(CONCURRENCY);
    let done = 0;
    const finished = Promise.withResolvers<void>();
    const rate = await timeJobs(JOBS, [RABBITMQ], async () => {
      await sub.consume(
        name,
        (msg) => {
          if (!msg) return;
          // The same shape as a job: an async no-op, then the acknowledgement.
          void Promise.resolve().then(() => {
            sub.ack(msg);
            if (++done === JOBS) finished.resolve();
          });
        },
        { noAck: false },
      );
      await within(finished.promise, 300_000, 'bare amqplib');
    });
    await pub.deleteQueue(name);
    return rate;
  } finally {
    await model.close();
  }
}

/**
 * Bare amqplib taking the same messages as our claims do, with `basic.get` (manual acknowledgement): {@link
 * CONCURRENCY} gets at a time, one on each of as many channels, each message acknowledged on its channel once the
 * batch is in. Nothing is recorded: the ceiling of a claim made of gets, beside the consumer's.
 */
async function bareGets(): Promise<QueueRate> {
  const name = `bench-gets-${randomUUID()}`;
  const model = await amqp.connect(AMQP_URL, { noDelay: true });
  try {
    const pub = await publishJobs(model, name);
    const channels = await Promise.all(Array.from({ length: CONCURRENCY }, () => model.createChannel()));
    let done = 0;
    const deadline = performance.now() + 300_000;
    const rate = await timeJobs(JOBS, [RABBITMQ], async () => {
      while (done < JOBS) {
        if (performance.now() > deadline) throw new Error('bare basic.get: not done within 300 s');
        const got = await Promise.all(
          channels.map(async (ch) => {
            const msg = await ch.get(name, { noAck: false });
            return msg === false ? undefined : { ch, msg };
          }),
        );
        for (const g of got) {
          if (!g) continue;
          g.ch.ack(g.msg);
          done++;
        }
      }
    });
    await pub.deleteQueue(name);
    return rate;
  } finally {
    await model.close();
  }
}

/** Queues {@link JOBS} jobs before the clock starts, as the bare consumer's messages are: 8 uploads at a time. */
async function fill(queue: Pick<JobQueue, 'add'>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < JOBS) await queue.add(`f${next++}`, ['image'], 1);
    }),
  );
}

/** Our RabbitMQ adapter under the service's JobRunner, a no-op job body, its jobs' state in `store`. */
async function weftRabbit(store: 'postgres' | 'sqlite', pgUrl: string): Promise<QueueRate> {
  const url = `${AMQP_URL}?queue=bench-weft-${randomUUID()}`;
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-rabbit-'));
  const db = store === 'sqlite' ? openDatabase(join(dir, 'files.db')) : undefined;
  let tell: (jobs: readonly Job[]) => void = () => {};
  const pgStore =
    store === 'postgres'
      ? await PgJobStore.open(pgUrl, { leaseMs: 30_000, retryDelayMs: 1_000, announce: (jobs) => tell(jobs) })
      : undefined;
  const queue = await RabbitQueue.open({
    url,
    retryDelayMs: 1_000,
    store: (announce): JobStore => {
      if (pgStore) {
        tell = announce;
        return pgStore;
      }
      return new SqliteQueue(db!, { leaseMs: 30_000, retryDelayMs: 1_000, announce });
    },
  });
  try {
    await fill(queue);
    const servers = store === 'postgres' ? [RABBITMQ, POSTGRES] : [RABBITMQ];
    const rate = await runNoop(queue, JOBS, CONCURRENCY, `weft RabbitMQ adapter (${store})`, servers);
    await queue.destroy();
    return rate;
  } finally {
    await queue.close();
    await pgStore?.clear();
    await pgStore?.close();
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The service's own SQLite queue under the same JobRunner, no broker: what keeping each job's state costs alone (a
 * lease and a completion per job, each a transaction), the work the RabbitMQ adapter's store also does per job.
 */
async function storeAlone(): Promise<QueueRate> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-store-'));
  const db = openDatabase(join(dir, 'files.db'));
  try {
    const queue = new SqliteQueue(db, { leaseMs: 30_000, retryDelayMs: 1_000 });
    await fill(queue);
    return await runNoop(queue, JOBS, CONCURRENCY, 'weft SQLite queue alone');
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const schema = `bench_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const database = new URL(DATABASE_URL);
  database.searchParams.set('options', `-c search_path=${schema}`);
  try {
    const subjects = [
      { name: 'weft BullMQ adapter + runner', measure: weftAdapter },
      { name: 'bare BullMQ Worker', measure: () => bareBullmq() },
      {
        name: 'weft RabbitMQ adapter + runner, jobs in PostgreSQL',
        measure: () => weftRabbit('postgres', database.href),
      },
      {
        name: 'weft RabbitMQ adapter + runner, jobs in SQLite',
        measure: () => weftRabbit('sqlite', database.href),
      },
      { name: 'bare amqplib consumer', measure: bareAmqp },
      { name: 'weft SQLite queue + runner, no broker', measure: storeAlone },
      { name: 'bare amqplib basic.get', measure: bareGets },
      { name: 'bare BullMQ Worker, our job options', measure: () => bareBullmq(true) },
    ];
    const results = await alternate(
      subjects,
      rounds,
      async (subject) => {
        const rate = await subject.measure();
        log(
          `    ${subject.name}: ${fmt(rate.perSecond)} jobs/s; CPU per job ${fmt(rate.ownUsPerJob)} µs here, ${fmt(rate.serverUsPerJob)} µs in the servers`,
        );
        return rate;
      },
      log,
    );
    const of = (i: number) => results.get(subjects[i]!);
    const med = (s: Series<QueueRate> | undefined, f: (r: QueueRate) => number) =>
      s?.samples.length ? median(s.samples.map(f)) : undefined;
    const rate = (s: Series<QueueRate> | undefined) => med(s, (r) => r.perSecond);
    const ratio = (a?: Series<QueueRate>, b?: Series<QueueRate>) => {
      const x = rate(a);
      const y = rate(b);
      return x !== undefined && y !== undefined ? times(x / y) : '–';
    };
    const shown = (s: Series<QueueRate> | undefined, f: (r: QueueRate) => number) => {
      const v = med(s, f);
      return v === undefined ? '–' : fmt(v);
    };
    const row = (label: string, s: Series<QueueRate> | undefined, vs: string) => [
      label,
      s?.error ? `failed: ${s.error}` : shown(s, (r) => r.perSecond),
      (s?.samples ?? []).map((v) => fmt(v.perSecond)).join(', '),
      vs,
      shown(s, (r) => r.ownUsPerJob),
      shown(s, (r) => r.serverUsPerJob),
    ];
    // Any RabbitMQ adapter that keeps the jobs' state does, on this process's one thread, at least what the bare
    // consumer does with each message and what the store and runner do alone with each job.
    const bareOwn = med(of(4), (r) => r.ownUsPerJob);
    const storeOwn = med(of(5), (r) => r.ownUsPerJob);
    const bareRate = rate(of(4));
    const bound =
      bareOwn !== undefined && storeOwn !== undefined && bareRate !== undefined
        ? `The CPU this process spends per job gives a bound from the same run: a RabbitMQ adapter that records its jobs in this store, under this runner, does on one thread at least the bare consumer's work per message (${fmt(bareOwn)} µs) and the store's and runner's work per job without a broker (${fmt(storeOwn)} µs): ${fmt(bareOwn + storeOwn)} µs, so at most ${fmt(1e6 / (bareOwn + storeOwn))} jobs/s, ${times(1e6 / (bareOwn + storeOwn) / bareRate)} the bare consumer, when this process is what limits it.`
        : 'No bound: the bare consumer or the store alone did not finish.';
    return [
      `Rounds: ${rounds}, the eight subjects alternating in a rotated order each round; medians. ${JOBS.toLocaleString('en-US')} no-op jobs queued before the clock starts, ${CONCURRENCY} at a time, one process. Redis ${new URL(REDIS_URL).host}, RabbitMQ ${new URL(AMQP_URL).host} (classic durable queues, persistent messages), PostgreSQL ${new URL(DATABASE_URL).host}, all on this machine. CPU per job: user + system time while the clock ran, divided by the jobs; "here" is the benchmark's process (every thread), "servers" the processes of the servers the subject talks to, from /proc (\`redis-server\`; RabbitMQ's \`beam.smp\`; every \`postgres\` process), at 10 ms resolution.`,
      '',
      table(
        [
          'subject',
          'jobs/s (median)',
          'rounds',
          'against the bare library (goal ≥ 0.9×)',
          'CPU µs per job, here',
          'CPU µs per job, servers',
        ],
        [
          row('weft BullMQ adapter + JobRunner', of(0), ratio(of(0), of(1))),
          row('bare BullMQ `Worker`', of(1), ''),
          row(
            'bare BullMQ `Worker`, jobs with our adapter’s options (10,000 completed kept, a deduplication key each)',
            of(7),
            `ours ÷ this: ${ratio(of(0), of(7))}`,
          ),
          row('weft RabbitMQ adapter + JobRunner, jobs in PostgreSQL', of(2), ratio(of(2), of(4))),
          row('weft RabbitMQ adapter + JobRunner, jobs in SQLite', of(3), ratio(of(3), of(4))),
          row('bare amqplib consumer (prefetch 8, manual ack)', of(4), ''),
          row(
            'weft SQLite queue + JobRunner, no broker (the service’s one-machine queue: a job store’s work alone)',
            of(5),
            ratio(of(5), of(4)),
          ),
          row(
            `bare amqplib \`basic.get\`, ${CONCURRENCY} at a time on ${CONCURRENCY} channels, manual ack (the ceiling of a claim made of gets)`,
            of(6),
            ratio(of(6), of(4)),
          ),
        ],
      ),
      '',
      bound,
      '',
    ].join('\n');
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
  }
}
