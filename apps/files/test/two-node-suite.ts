// The two-node suite (run by two-node.test.ts on Redis and two-node-rabbitmq.test.ts on RabbitMQ).
// Two "machines": two `weft start` supervisors on different ports sharing a queue, PostgreSQL (file records, CSV
// tables) and an S3-compatible server (s3rver on loopback). The queue is Redis (BullMQ queue and event bus), then
// RabbitMQ (jobs' state in PostgreSQL; events stay on each machine). 200 files are uploaded over both; one whole
// supervisor is killed with SIGKILL mid-run; every job still completes exactly once, every file is readable from
// either node (the dead one restarted), and a rolling reload of a node under upload load fails no upload. Needs
// Redis, RabbitMQ and PostgreSQL: skipped with the reason without them, failing under WEFT_REQUIRE_SERVICES=1.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type FilesBus, openFilesBus } from '../src/events/bus.ts';
import type { FilesEvent } from '../src/events/types.ts';
import { silentLogger } from '../src/logger.ts';
import { type Cluster, startCluster, until, uploadLoad, weft } from './cluster-helpers.ts';
import { EventLog, makeImage } from './helpers.ts';
import {
  AMQP_URL,
  DATABASE_URL,
  REDIS_URL,
  rabbitBackends,
  type SharedBackends,
  serviceSkip,
  sharedBackends,
} from './services.ts';

interface Uploaded {
  id: string;
  sha256: string;
  kind: 'image' | 'csv';
  jobs: number[];
}

interface JobView {
  id: number;
  kind: string;
  state: string;
  attempts: number;
  leaseOwner: string | null;
}

const FILES = 200;
const CSVS = 20;

/**
 * The suite on one queue; each has its test file (two-node.test.ts, two-node-rabbitmq.test.ts), as each takes about a
 * minute and a file has 120 s in CI.
 */
export async function twoNodeSuite(queue: 'Redis' | 'RabbitMQ'): Promise<void> {
  const skip =
    queue === 'Redis'
      ? await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL })
      : await serviceSkip({ rabbitmq: AMQP_URL, redis: REDIS_URL, postgres: DATABASE_URL });
  describe(`two nodes sharing ${queue}, PostgreSQL and S3`, {
    skip,
  }, () => {
    let shared: SharedBackends;
    let rabbit: ReturnType<typeof rabbitBackends> | undefined;
    let env: Record<string, string>;
    // With Redis, the test hears both nodes' events on its bus; with RabbitMQ each machine's events stay on it.
    let bus: FilesBus | undefined;
    let log: EventLog | undefined;
    let a: Cluster;
    let b: Cluster;
    const uploaded: Uploaded[] = [];
    const completions = () =>
      (log?.events ?? []).filter(
        (e): e is Extract<FilesEvent, { type: 'job.completed' }> => e.type === 'job.completed',
      );

    before(async () => {
      shared = await sharedBackends('twonode');
      rabbit = queue === 'RabbitMQ' ? rabbitBackends('twonode') : undefined;
      env = {
        ...shared.env,
        ...(rabbit ? { QUEUE_URL: rabbit.urls.queueUrl } : {}),
        // A dead node's jobs come back after their lease; short here so the test does not wait 30 s.
        FILES_LEASE: '2s',
        // Two supervisors and this test share 2 cores: event-loop delay is not what this test is about.
        FILES_MAX_EVENT_LOOP_DELAY: '10s',
        // The S3 server (s3rver) runs in this test's own process, on the same 2 cores as both nodes: during a reload
        // under load it answered a call after the 1 s default (503 ERR_WEFT_FILES_STORAGE_UNAVAILABLE in a CI run).
        // What this test checks is the reload, not the latency of a test S3 server.
        FILES_STORAGE_TIMEOUT: '5s',
        FILES_CONCURRENCY: '1',
      };
      if (!rabbit) {
        bus = await openFilesBus({ queueUrl: shared.env.QUEUE_URL, log: silentLogger });
        log = new EventLog(bus);
        await log.ready;
      }
      [a, b] = await Promise.all([startCluster(env), startCluster(env)]);
    });

    after(async () => {
      log?.close();
      await bus?.close();
      for (const c of [a, b]) {
        if (c && c.child.exitCode === null && c.child.signalCode === null) await weft(c, ['stop']);
      }
      await shared?.cleanup();
      await rabbit?.cleanup();
    });

    it('kill -9 of a whole node mid-run: every job completes exactly once, every file readable from both', async () => {
      // 180 small images and 20 CSVs, alternately to each node, 8 at a time.
      const bodies = await Promise.all(
        Array.from({ length: FILES }, async (_, i) =>
          i % (FILES / CSVS) === 0
            ? { name: `t${i}.csv`, kind: 'csv' as const, body: Buffer.from(csv(i)) }
            : { name: `p${i}.png`, kind: 'image' as const, body: await makeImage('png', 160 + i, 120) },
        ),
      );
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < bodies.length) {
            const i = next++;
            const f = bodies[i]!;
            const node = i % 2 === 0 ? a : b;
            const res = await fetch(`${node.url}/files?name=${f.name}`, { method: 'POST', body: f.body });
            assert.equal(res.status, 201, `upload ${f.name} to ${node.url}`);
            const up = (await res.json()) as { id: string; sha256: string; jobs: { id: number }[] };
            assert.equal(up.sha256, sha(f.body));
            uploaded.push({ id: up.id, sha256: up.sha256, kind: f.kind, jobs: up.jobs.map((j) => j.id) });
          }
        }),
      );
      assert.equal(uploaded.length, FILES);
      const jobIds = uploaded.flatMap((u) => u.jobs);
      assert.equal(jobIds.length, FILES, 'one job per file');

      // Mid-run: node A holds a job while others are done. Then the whole of A dies at once.
      const pidsOfA = await workerPids(a);
      await until(
        async () => ({ counts: await counts(b), active: await activeJobs(b) }),
        (v) =>
          v.counts.completed >= 20 &&
          v.active.some((j) => pidsOfA.includes(ownerPid(j.leaseOwner))) &&
          v.counts.completed < FILES - 20,
        60_000,
        'node A to hold a job mid-run',
      );
      process.kill(-a.child.pid!, 'SIGKILL');
      await a.exit;
      // What A held when it died, read after its death (a job A completed between the check above and the kill is
      // not an orphan): its locks outlive it by up to the 2 s lease, and name its pids.
      const orphans = (await activeJobs(b))
        .filter((j) => pidsOfA.includes(ownerPid(j.leaseOwner)))
        .map((j) => j.id);
      assert.ok(orphans.length > 0, 'A died holding at least one job');

      // B takes over A's jobs once their leases expire, and finishes everything.
      const end = await until(
        () => counts(b),
        (k) => k.completed === FILES,
        120_000,
        'every job to complete on the surviving node',
      );
      assert.deepEqual(end, { queued: 0, active: 0, retrying: 0, completed: FILES, dead: 0 });

      if (!log) {
        // RabbitMQ: no event reaches this test from the nodes. What the store says instead: every orphan was taken
        // again (a second attempt, started after A died) and completed once (a completion is one conditional write).
        for (const orphan of orphans) {
          const job = (await (await fetch(`${b.url}/jobs/${orphan}`)).json()) as JobView & {
            startedAt: number;
          };
          assert.equal(job.state, 'completed', `job ${orphan}, held by A when it died, completed (on B)`);
          assert.ok(job.attempts >= 2, `job ${orphan} ran again after A died (attempts ${job.attempts})`);
        }
      }
      // The counts reach FILES when the last job is moved to completed; its event is published after that and read
      // from the stream after that: wait for the events (an orphan is often among the last jobs). A job A completed as
      // it died may have no event: events are news, published after the completion is recorded.
      if (log) {
        await until(
          async () => [...new Set(completions().map((e) => e.data.jobId))],
          (seen) => orphans.every((id) => seen.includes(id)) && seen.length >= FILES - orphans.length,
          30_000,
          "the completion events of A's orphans and of every job but at most as many",
        );
        // Exactly once: one completion event per job, across both nodes; A's orphans were completed by B.
        const events = completions();
        const perJob = new Map<number, FilesEvent[]>();
        for (const e of events) perJob.set(e.data.jobId, [...(perJob.get(e.data.jobId) ?? []), e]);
        assert.deepEqual(
          [...perJob.entries()].filter(([, list]) => list.length > 1).map(([job]) => job),
          [],
          'no job completed twice',
        );
        // A's every process is dead (above): what completed its orphans is B.
        for (const orphan of orphans) {
          assert.equal(
            perJob.get(orphan)?.length,
            1,
            `job ${orphan}, held by A when it died, completed (on B)`,
          );
        }
        assert.ok(perJob.size >= FILES - orphans.length, 'every job reported its completion');
      }

      // The machine comes back on its port; every file is readable from either node, with its outputs.
      a = await startCluster(env, { port: Number(new URL(a.url).port) });
      for (const node of [a, b]) {
        for (const u of uploaded) {
          const meta = (await (await fetch(`${node.url}/files/${u.id}`)).json()) as {
            jobs: JobView[];
            derived: { name: string }[];
          };
          assert.deepEqual(
            meta.jobs.map((j) => [j.kind, j.state]),
            [[u.kind, 'completed']],
            `file ${u.id}: its one job, completed`,
          );
          const content = Buffer.from(await (await fetch(`${node.url}/files/${u.id}/content`)).arrayBuffer());
          assert.equal(sha(content), u.sha256, `file ${u.id} whole from ${node.url}`);
          if (u.kind === 'image') {
            assert.deepEqual(meta.derived.map((d) => d.name).sort(), ['display.webp', 'thumbnail.webp']);
            const thumb = await fetch(`${node.url}/files/${u.id}/derived/thumbnail.webp`);
            assert.equal(thumb.status, 200);
            await thumb.arrayBuffer();
          }
        }
      }
      // The CSV tables are in PostgreSQL, each loaded once.
      for (const u of uploaded.filter((x) => x.kind === 'csv')) {
        const table = `csv_${u.id.replaceAll('-', '')}`;
        const { rows } = await shared.admin.query(`SELECT count(*)::int AS n FROM ${shared.schema}.${table}`);
        assert.equal(rows[0].n, 50, `table ${table} has each row once`);
      }
    });

    it('rolling reload of a node under upload load: no failed upload', async () => {
      const stop = new AbortController();
      const load = uploadLoad(b.url, 4, stop.signal);
      const reload = await weft(b, ['reload']);
      assert.equal(reload.code, 0, reload.stderr);
      assert.match(reload.stdout, /reloaded: 2 workers replaced/);
      stop.abort();
      const results = await load;
      assert.deepEqual(
        results.filter((r) => r.status !== 201),
        [],
        'every upload during the reload succeeded',
      );
      assert.ok(results.length >= 10, `uploads kept flowing (${results.length})`);
      // What was accepted during the reload is readable from the other node.
      for (const r of results) {
        const content = Buffer.from(await (await fetch(`${a.url}/files/${r.id}/content`)).arrayBuffer());
        assert.equal(sha(content), r.sent, `upload ${r.id} whole from the other node`);
      }
    });
  });
}

function sha(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

function csv(i: number): string {
  const rows = Array.from({ length: 50 }, (_, r) => `${r},item ${i}-${r},${(r * 1.5).toFixed(1)}`);
  return `n,name,price\n${rows.join('\n')}\n`;
}

interface Counts {
  queued: number;
  active: number;
  retrying: number;
  completed: number;
  dead: number;
}

async function counts(c: Cluster): Promise<Counts> {
  return ((await (await fetch(`${c.url}/jobs?limit=1`)).json()) as { counts: Counts }).counts;
}

async function activeJobs(c: Cluster): Promise<JobView[]> {
  return ((await (await fetch(`${c.url}/jobs?state=active`)).json()) as { jobs: JobView[] }).jobs;
}

/** The worker pids of a supervisor, from `weft status --json`. */
async function workerPids(c: Cluster): Promise<number[]> {
  const status = await weft(c, ['status', '--json']);
  assert.equal(status.code, 0, status.stderr);
  return (JSON.parse(status.stdout) as { slots: { pid?: number }[] }).slots
    .map((s) => s.pid)
    .filter((p): p is number => p !== undefined);
}

/** A lease owner is `<host>:<pid>:<id>`. */
function ownerPid(owner: string | null): number {
  return Number(owner?.split(':')[1] ?? Number.NaN);
}
