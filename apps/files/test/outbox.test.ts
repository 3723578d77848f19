// The transactional outbox (issue 16 item 2): with a remote queue, an upload made while Redis is away (connections
// reset, cut, or a partition that swallows them) is still answered 201 within 2 s, its jobs listed `pending`; it is
// recorded with its outbox row in one transaction, for the SQLite and the PostgreSQL catalog alike. Once Redis is
// back the relays queue those jobs and every such upload is processed exactly once (one job per file, one
// job.completed event), also with two service instances relaying from the same database. Readiness shows the queue
// failing but the node stays ready (degraded) while the outbox absorbs the outage; /metrics counts the rows waiting.
// The relay itself: one stopped between queueing and deleting the row does not queue twice, two relays on one
// database never both add, and a deleted file's pending row is never relayed. Redis is reached through the tests'
// fault proxy: the machine's own services are never touched.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { Health } from 'weftjs/lifecycle';
import { PgCatalog } from '../src/catalog/pg.ts';
import { SqliteCatalog } from '../src/catalog/sqlite.ts';
import type { Catalog, FileRecord } from '../src/catalog/types.ts';
import { openDatabase } from '../src/db.ts';
import { FilesError } from '../src/errors.ts';
import { silentLogger } from '../src/logger.ts';
import { outboxMetrics } from '../src/metrics.ts';
import { OutboxRelay } from '../src/outbox.ts';
import { BullQueue } from '../src/queue/bullmq.ts';
import type { JobQueue } from '../src/queue/types.ts';
import type { Backend } from '../src/resilience.ts';
import { type FaultMode, type FaultProxy, faultProxy } from './fault-proxy.ts';
import { type Running, startService, until } from './helpers.ts';
import {
  DATABASE_URL,
  REDIS_URL,
  type SharedBackends,
  serviceSkip,
  sharedBackends,
  via,
} from './services.ts';

const redisSkip = await serviceSkip({ redis: REDIS_URL });
const pgSkip = redisSkip || (await serviceSkip({ postgres: DATABASE_URL }));
const ANSWER_TARGET_MS = 2_000;
/** Uploads made during each outage. */
const DURING = 6;

interface UploadAnswer {
  status: number;
  ms: number;
  body: { id?: string; jobs?: unknown[]; pending?: string[]; error?: { code: string } };
}

for (const catalog of ['sqlite', 'postgres'] as const) {
  describe(`uploads while Redis is away are kept in the outbox (${catalog} catalog)`, {
    skip: catalog === 'sqlite' ? redisSkip : pgSkip,
  }, () => {
    let shared: SharedBackends;
    let redis: FaultProxy;
    const nodes: Running[] = [];
    const health = new Health();
    const registry = new Registry();
    const figures: string[] = [];

    before(async () => {
      shared = await sharedBackends('outbox');
      const target = new URL(REDIS_URL);
      redis = await faultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
      const config = {
        queueUrl: via(shared.urls.queueUrl, redis.port),
        // Two nodes share the database and the bucket (each has its own disk).
        ...(catalog === 'postgres'
          ? { databaseUrl: shared.urls.databaseUrl, storageUrl: shared.urls.storageUrl }
          : {}),
      };
      nodes.push(
        await startService(config, {
          http: { health: { live: health.handler('liveness'), ready: health.handler('readiness') } },
        }),
      );
      // PostgreSQL: a second node on the same database and queue, whose relay races the first one's.
      if (catalog === 'postgres') nodes.push(await startService(config));
      const s = nodes[0]!;
      for (const [backend, check] of Object.entries(s.checks)) {
        health.addCheck(backend, check, { kind: 'readiness', critical: s.critical[backend as Backend] });
      }
      health.markStarted();
      assert.ok(s.relay, 'a service with a remote queue has an outbox relay');
      outboxMetrics({ registry }, s.relay);
    });
    after(async () => {
      redis?.set('pass');
      for (const node of nodes) await node.stop();
      await redis?.close();
      await shared?.cleanup();
      if (figures.length) console.log(`# ${figures.join('\n# ')}`);
    });

    let n = 0;
    const upload = async (): Promise<UploadAnswer> => {
      const t = performance.now();
      const res = await fetch(`${nodes[0]!.url}/files?name=ob${n++}.csv`, {
        method: 'POST',
        body: `a,b\n1,${n}\n2,${n}\n`,
        signal: AbortSignal.timeout(10_000),
      });
      return {
        status: res.status,
        ms: performance.now() - t,
        body: (await res.json()) as UploadAnswer['body'],
      };
    };
    /** `/health/ready` as a load balancer sees it. */
    const readiness = async () => {
      const res = await fetch(`${nodes[0]!.url}/health/ready`);
      const report = (await res.json()) as {
        status: string;
        degraded?: string[];
        checks: Record<string, { status: string; critical?: false }>;
      };
      return { code: res.status, ...report };
    };
    const pendingGauge = async () => {
      const m = /^weft_files_outbox_pending (\d+)$/m.exec(await registry.metrics());
      return m ? Number(m[1]) : undefined;
    };
    /** job.completed events per file, as every node sees them on the shared bus. */
    const completions = async () => {
      const counts = new Map<string, number>();
      for (const e of nodes[0]!.events.events) {
        if (e.type === 'job.completed') counts.set(e.data.fileId, (counts.get(e.data.fileId) ?? 0) + 1);
      }
      return counts;
    };

    const modes: { mode: FaultMode; what: string }[] = [
      { mode: 'reset', what: 'refuses connections (reset)' },
      { mode: 'cut', what: 'closes connections (cut)' },
      { mode: 'blackhole', what: 'stops answering (blackhole)' },
    ];
    for (const { mode, what } of modes) {
      it(`Redis ${what}: uploads answered 201 in 2 s with jobs pending, node ready (degraded), each processed exactly once after Redis returns`, async (t) => {
        const s = nodes[0]!;
        // Everything works: an upload queues its job at once, nothing pending.
        await until(
          async () => {
            const a = await upload();
            return a.status === 201 && a.body.pending?.length === 0 && a.body.jobs?.length === 1;
          },
          15_000,
          'an upload queued directly before the outage',
        );

        redis.set(mode);
        t.after(() => redis.set('pass'));
        const during: UploadAnswer[] = [];
        for (let i = 0; i < DURING; i++) during.push(await upload());
        for (const a of during) {
          assert.equal(a.status, 201, JSON.stringify(a.body));
          assert.ok(a.ms < ANSWER_TARGET_MS, `answered in ${Math.round(a.ms)} ms`);
          assert.deepEqual(a.body.jobs, []);
          assert.deepEqual(a.body.pending, ['csv']);
        }
        const ids = during.map((a) => a.body.id!);
        for (const id of ids) assert.deepEqual(await s.catalog.pendingKinds(id), ['csv']);
        // Listed (the catalog alone answers the list) and its bytes are there.
        const listed = (await (await fetch(`${s.url}/files?limit=100`)).json()) as {
          files: { id: string }[];
        };
        for (const id of ids)
          assert.ok(
            listed.files.some((f) => f.id === id),
            `${id} listed`,
          );
        const content = await fetch(`${s.url}/files/${ids[0]}/content`);
        assert.equal(content.status, 200);
        assert.match(await content.text(), /^a,b\n/);

        // One of them is deleted while its jobs are still pending: its row goes, it is never processed.
        const deleted = ids.pop()!;
        assert.equal((await fetch(`${s.url}/files/${deleted}`, { method: 'DELETE' })).status, 204);
        assert.deepEqual(await s.catalog.pendingKinds(deleted), []);

        // The queue's check fails, the node stays ready: it takes uploads durably meanwhile.
        await until(() => !s.guards.queue.up, 15_000, 'the queue breaker opens');
        await until(
          async () => {
            const report = await readiness();
            return report.checks.queue?.status !== 'ok';
          },
          5_000,
          'readiness shows the queue failing',
        );
        const report = await readiness();
        assert.equal(report.code, 200, JSON.stringify(report));
        assert.equal(report.status, 'ok');
        assert.deepEqual(report.degraded, ['queue']);
        assert.equal(report.checks.queue?.critical, false);
        assert.equal(report.checks.database?.status, 'ok');
        await until(
          async () => ((await pendingGauge()) ?? 0) >= ids.length,
          5_000,
          'the pending gauge counts',
        );
        const fast = await upload();
        assert.equal(fast.status, 201);
        assert.ok(fast.ms < ANSWER_TARGET_MS, `answered in ${Math.round(fast.ms)} ms with the breaker open`);
        assert.deepEqual(fast.body.pending, ['csv']);
        ids.push(fast.body.id!);
        const maxMs = Math.max(...during.map((a) => a.ms), fast.ms);

        // Back: every accepted upload is processed, exactly once; the outbox empties.
        redis.set('pass');
        const back = performance.now();
        await until(
          async () => {
            // The bus is on the same Redis: unavailable until the queue's breaker has closed again.
            const done = await completions().catch(() => new Map<string, number>());
            return ids.every((id) => done.has(id));
          },
          20_000,
          'every upload made during the outage completes',
        );
        const caughtUpMs = performance.now() - back;
        await until(async () => (await s.catalog.outboxSize()) === 0, 10_000, 'the outbox empties');
        await until(async () => (await s.queue.waiting()) === 0, 10_000, 'no job waits');
        await until(async () => (await pendingGauge()) === 0, 10_000, 'the pending gauge is back to 0');
        const done = await completions();
        for (const id of ids) {
          assert.equal(done.get(id), 1, `${id}: one job.completed`);
          const file = (await (await fetch(`${s.url}/files/${id}`)).json()) as {
            jobs: { state: string }[];
            pending: string[];
          };
          assert.deepEqual(file.pending, []);
          assert.deepEqual(
            file.jobs.map((j) => j.state),
            ['completed'],
            `${id}: one job, completed`,
          );
        }
        assert.equal(done.get(deleted), undefined, 'the deleted file is not processed');
        assert.equal((await s.queue.list({ fileId: deleted })).length, 0, 'nor queued');
        const relayed = nodes.map((node) => node.relay?.relayed ?? 0);
        figures.push(
          `${catalog} ${mode}: ${DURING + 1} uploads 201 during the outage, max ${Math.round(maxMs)} ms (breaker open: ${Math.round(fast.ms)} ms); all completed once ${Math.round(caughtUpMs)} ms after Redis returned; rows relayed per node so far ${relayed.join('/')}`,
        );
      });
    }
  });
}

/** A record to put in a catalog. */
const fileRecord = (createdAt: number): FileRecord => ({
  id: randomUUID(),
  name: `r${createdAt}.csv`,
  type: 'text/csv',
  size: 10,
  sha256: 'ab'.repeat(32),
  createdAt,
});

/** The queue as the guard answers while Redis is away: every add unavailable. */
const awayQueue = (queue: JobQueue): JobQueue =>
  new Proxy(queue, {
    get(target, prop, receiver) {
      if (prop === 'add') {
        return async () => {
          throw new FilesError('ERR_WEFT_FILES_QUEUE_UNAVAILABLE', 'The queue backend is unavailable');
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });

/** `queue`, with its adds counted per file and `hasJobs` answering as `hasJobs` says (default: the queue's). */
function countingQueue(queue: JobQueue, hasJobs?: (fileId: string) => Promise<boolean>) {
  const adds = new Map<string, number>();
  const counted: JobQueue = new Proxy(queue, {
    get(target, prop, receiver) {
      if (prop === 'add') {
        return (fileId: string, ...rest: [never, number]) => {
          adds.set(fileId, (adds.get(fileId) ?? 0) + 1);
          return target.add(fileId, ...rest);
        };
      }
      if (prop === 'hasJobs' && hasJobs) return hasJobs;
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { queue: counted, adds };
}

interface Store {
  /** A catalog on the store's database with `queue` (leases of `leaseMs` for the upload's own row). */
  open(queue: JobQueue, leaseMs?: number): Promise<Catalog>;
  close(): Promise<void>;
}

async function sqliteStore(): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'files-outbox-'));
  const path = join(dir, 'files.db');
  const db = openDatabase(path);
  return {
    open: async (queue, leaseMs = 0) => new SqliteCatalog(db, queue, path, { outboxLeaseMs: leaseMs }),
    async close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function pgStore(): Promise<Store> {
  const shared = await sharedBackends('relay');
  const opened: PgCatalog[] = [];
  return {
    async open(queue, leaseMs = 0) {
      const c = await PgCatalog.open(shared.urls.databaseUrl, queue, { max: 2, outboxLeaseMs: leaseMs });
      opened.push(c);
      return c;
    },
    async close() {
      for (const c of opened) await c.close();
      await shared.cleanup();
    },
  };
}

for (const [name, makeStore, skip] of [
  ['SQLite', sqliteStore, redisSkip],
  ['PostgreSQL', pgStore, pgSkip],
] as const) {
  describe(`the outbox relay (${name} catalog, BullMQ queue)`, { skip }, () => {
    let store: Store;
    let bull: BullQueue;
    const queueUrl = `${REDIS_URL}?queue=relay-${randomUUID().slice(0, 8)}`;
    before(async () => {
      store = await makeStore();
      bull = await BullQueue.open({ url: queueUrl, leaseMs: 5_000, retryDelayMs: 100 });
    });
    after(async () => {
      await bull?.obliterate();
      await bull?.close();
      await store?.close();
    });

    /** `count` uploads recorded while the queue was away: their rows wait, leased to nobody. */
    const recordAway = async (count: number) => {
      const catalog = await store.open(awayQueue(bull));
      const files = Array.from({ length: count }, (_, i) => fileRecord(Date.now() + i));
      for (const f of files) {
        assert.deepEqual(await catalog.recordUpload(f, ['csv'], 3), { jobs: [], pending: ['csv'] });
      }
      return files;
    };
    const relayOf = (catalog: Catalog, queue: JobQueue, owner: string, leaseMs = 10_000, batch = 50) =>
      new OutboxRelay({
        catalog,
        queue,
        log: silentLogger,
        owner,
        leaseMs,
        batch,
        intervalMs: 20,
        idleMs: 20,
      });
    /** Passes of `owner`'s relay until the outbox is empty: the first pass after the rows' lease ran out takes them. */
    const relayUntilEmpty = (catalog: Catalog, queue: JobQueue, owner: string, what: string) =>
      until(
        async () => {
          await relayOf(catalog, queue, owner).pass();
          return (await catalog.outboxSize()) === 0;
        },
        5_000,
        what,
      );

    it('a relay that stopped between queueing and deleting the row does not queue twice', async () => {
      const [f] = await recordAway(1);
      const catalog = await store.open(bull);
      // Relay A queues the jobs, then stops before deleting the row (its process died: the delete never ran).
      const dying = new Proxy(catalog, {
        get(target, prop, receiver) {
          if (prop === 'deleteOutbox') {
            return async () => {
              throw new Error('the process died here');
            };
          }
          const value = Reflect.get(target, prop, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const a = countingQueue(bull);
      await assert.rejects(relayOf(dying, a.queue, 'A', 50).pass(), /died/);
      assert.equal(a.adds.get(f!.id), 1);
      assert.equal(await catalog.outboxSize(), 1, 'the row is still there');
      // Its lease runs out; relay B finds the jobs queued and only deletes the row.
      const b = countingQueue(bull);
      await relayUntilEmpty(catalog, b.queue, 'B', 'relay B takes the row once A lease ran out');
      assert.equal(b.adds.get(f!.id), undefined, 'B did not add');
      // Relay C's add goes through but its answer is lost (a timeout): the row stays.
      const [g] = await recordAway(1);
      const lost = new Proxy(bull, {
        get(target, prop, receiver) {
          if (prop === 'add') {
            return async (...args: Parameters<JobQueue['add']>) => {
              await target.add(...args);
              throw new FilesError('ERR_WEFT_FILES_QUEUE_UNAVAILABLE', 'no answer by the deadline');
            };
          }
          const value = Reflect.get(target, prop, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      await assert.rejects(relayOf(catalog, lost, 'C', 50).pass(), /deadline/);
      assert.equal(await catalog.outboxSize(), 1);
      // Relay D does not see the file's jobs (as if the add had stopped before recording them) and adds again: the
      // queue answers with the job already there (deduplicated per file and kind), nothing new runs.
      const lying = countingQueue(bull, async () => false);
      await relayUntilEmpty(catalog, lying.queue, 'D', 'relay D takes the row once C lease ran out');
      assert.equal(lying.adds.get(g!.id), 1);
      for (const file of [f!, g!]) {
        const jobs = await bull.list({ fileId: file.id });
        assert.equal(jobs.length, 1, `${file.id}: one job`);
      }
      assert.equal(await catalog.outboxSize(), 0);
    });

    it('two relays on the same database never both add a file', async () => {
      const files = await recordAway(40);
      const a = countingQueue(bull);
      const b = countingQueue(bull);
      // Small batches, so both relays take rows while the other one holds some.
      const relays = [
        relayOf(await store.open(bull), a.queue, 'A', 10_000, 3),
        relayOf(await store.open(bull), b.queue, 'B', 10_000, 3),
      ];
      const catalog = await store.open(bull);
      for (const r of relays) r.start();
      try {
        await until(
          async () => (await catalog.outboxSize()) === 0,
          15_000,
          'the two relays drain the outbox',
        );
      } finally {
        await Promise.all(relays.map((r) => r.close()));
      }
      for (const f of files) {
        const added = (a.adds.get(f.id) ?? 0) + (b.adds.get(f.id) ?? 0);
        assert.equal(added, 1, `${f.id} added ${added} times`);
        assert.equal((await bull.list({ fileId: f.id })).length, 1);
      }
      assert.equal(relays[0]!.relayed + relays[1]!.relayed, files.length);
      assert.ok(
        relays.every((r) => r.relayed > 0),
        `both relays took rows: ${relays.map((r) => r.relayed)}`,
      );
    });

    it("a deleted file's pending row is never relayed", async () => {
      const [f] = await recordAway(1);
      const catalog = await store.open(bull);
      assert.equal(await catalog.delete(f!.id), true);
      assert.equal(await catalog.outboxSize(), 0);
      const c = countingQueue(bull);
      await relayOf(catalog, c.queue, 'E').pass();
      assert.equal(c.adds.size, 0);
      assert.equal(await bull.hasJobs(f!.id), false);
    });

    it('close() stops the relay while the queue is away, and leaves the rows for later', async () => {
      await recordAway(2);
      const catalog = await store.open(bull);
      const relay = relayOf(catalog, awayQueue(bull), 'F', 200);
      relay.start();
      await until(() => relay.pending === 2, 5_000, 'the relay counts the rows');
      await relay.close();
      await relay.close(); // idempotent
      assert.equal(await catalog.outboxSize(), 2);
      const drain = relayOf(catalog, bull, 'G');
      await until(
        async () => {
          await drain.pass();
          return (await catalog.outboxSize()) === 0;
        },
        15_000,
        'the rows are relayed once their lease ran out',
      );
    });
  });
}
