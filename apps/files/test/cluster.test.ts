// The service as users run it: `weft start` with two worker processes sharing one SQLite database and data
// directory. kill -9 of a worker holding jobs, SIGTERM under upload load, and `weft reload` under upload load.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { type Outcome, startCluster, until, uploadLoad, weft } from './cluster-helpers.ts';
import { makeImage } from './helpers.ts';

/** Every accepted upload is recorded and stored whole: same bytes as sent, no temp file left. */
function assertDurable(dataDir: string, accepted: Outcome[]): void {
  const db = new DatabaseSync(join(dataDir, 'files.db'), { readOnly: true });
  try {
    for (const a of accepted) {
      const row = db.prepare('SELECT sha256, size FROM files WHERE id = ?').get(a.id!) as
        | { sha256: string; size: number }
        | undefined;
      assert.ok(row, `accepted upload ${a.id} is recorded`);
      assert.equal(row.sha256, a.sent, 'the recorded hash is the hash of what was sent');
      const stored = readFileSync(join(dataDir, 'objects', 'originals', a.id!));
      assert.equal(createHash('sha256').update(stored).digest('hex'), a.sent, `upload ${a.id} stored whole`);
    }
    const rows = db.prepare('SELECT count(*) AS n FROM files').get() as { n: number };
    const objects = readdirSync(join(dataDir, 'objects', 'originals'));
    assert.equal(
      objects.length,
      Number(rows.n),
      'no stored object without its record, and no record without it',
    );
  } finally {
    db.close();
  }
  assert.deepEqual(
    readdirSync(join(dataDir, 'tmp')).filter((f) => f.endsWith('.part')),
    [],
    'no half-written upload left in tmp',
  );
}

describe('files under weft start (2 workers)', () => {
  it('kill -9 of a worker holding jobs: every job still completes exactly once', async () => {
    const c = await startCluster({ FILES_LEASE: '2s', WEFT_METRICS_PORT: '0' });
    // No token configured: the start says so, loudly (a warning, once for the cluster, by its first worker).
    const loud = /NO TOKEN CONFIGURED: anyone who can reach this service/;
    await until(
      async () => c.output(),
      (out) => loud.test(out),
      10_000,
      'the open-service warning',
    );
    assert.equal(c.output().split('NO TOKEN CONFIGURED').length - 1, 1, c.output());
    const jpeg = await makeImage('jpeg', 2400, 1800);
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${c.url}/files?name=p${i}.jpg`, { method: 'POST', body: jpeg });
      assert.equal(res.status, 201);
      ids.push(...((await res.json()) as { jobs: { id: number }[] }).jobs.map((j) => j.id));
    }
    const active = await until(
      async () =>
        (
          (await (await fetch(`${c.url}/jobs?state=active`)).json()) as {
            jobs: { id: number; leaseOwner: string }[];
          }
        ).jobs,
      (jobs) => jobs.length > 0,
      30_000,
      'a job to be running',
    );
    const victim = Number(active[0]!.leaseOwner.split(':')[1]);
    process.kill(victim, 'SIGKILL');

    const counts = await until(
      async () =>
        ((await (await fetch(`${c.url}/jobs`)).json()) as { counts: Record<string, number> }).counts,
      (k) => k.completed === ids.length,
      90_000,
      'every job to complete',
    );
    assert.equal(counts.dead, 0);
    assert.match(c.output(), /worker \d exited \(signal SIGKILL\)/);

    // Any worker's /metrics is the whole cluster's, merged by the supervisor.
    const metrics = await until(
      async () => (await fetch(`${c.url}/metrics`)).text(),
      (t) => t.includes('worker="0"') && t.includes('worker="1"'),
      10_000,
      'merged metrics from both workers',
    );
    assert.match(
      metrics,
      /^files_jobs_finished_total\{kind="image",outcome="completed",worker="\d",pid="\d+"\} \d+$/m,
    );
    assert.match(metrics, /^files_jobs_finished_cluster_total\{kind="image",outcome="completed"\} \d+$/m);
    assert.match(metrics, /^weft_pool_threads\{/m);

    const db = new DatabaseSync(join(c.dataDir, 'files.db'), { readOnly: true });
    try {
      // Completed once each: a job is completed by the one process whose lease is current (queue.complete refuses
      // the others); the runner publishes job.completed only then. What the victim held ran twice, the rest once.
      const jobs = db.prepare('SELECT id, state, attempts FROM jobs ORDER BY id').all() as {
        id: number;
        state: string;
        attempts: number;
      }[];
      assert.deepEqual(
        jobs.map((j) => j.id),
        ids,
        'every job',
      );
      assert.ok(
        jobs.every((j) => j.state === 'completed'),
        'every job completed',
      );
      assert.ok(
        jobs.every((j) => j.attempts === 1 || j.attempts === 2),
        'no job ran more than twice',
      );
      const retried = db.prepare('SELECT id, attempts FROM jobs WHERE id = ?').get(active[0]!.id) as {
        attempts: number;
      };
      assert.equal(retried.attempts, 2, 'the job the killed worker held ran again after its lease expired');
      const derived = db.prepare('SELECT count(*) AS n FROM derived').get() as { n: number };
      assert.equal(Number(derived.n), ids.length * 2, 'two outputs per image, none duplicated');
    } finally {
      db.close();
    }
    assert.equal((await weft(c, ['stop'])).code, 0);
    assert.equal(await c.exit, 0);
  });

  // These two are about draining. Shedding (a clean 503 with Retry-After) has its own test; here its event-loop limit
  // is raised, since a 2-core machine also running this test's load can delay a worker's loop past 500 ms.
  const noShedding = { FILES_MAX_EVENT_LOOP_DELAY: '10s' };

  it('SIGTERM under upload load: every accepted upload is complete, nothing half-written', async () => {
    const c = await startCluster(noShedding);
    const stop = new AbortController();
    const load = uploadLoad(c.url, 6, stop.signal);
    await until(
      async () =>
        (await fetch(`${c.url}/jobs`).then((r) => r.json())) as {
          counts: { queued: number; completed: number };
        },
      (k) => k.counts.queued + k.counts.completed >= 20,
      30_000,
      'uploads under way',
    );
    process.kill(c.child.pid!, 'SIGTERM');
    const code = await c.exit;
    stop.abort();
    const results = await load;
    assert.equal(code, 0, c.output());
    const accepted = results.filter((r) => r.status === 201);
    assert.ok(accepted.length >= 20);
    assert.deepEqual(
      results.filter((r) => typeof r.status === 'number' && r.status !== 201),
      [],
      'no upload answered with an error',
    );
    assertDurable(c.dataDir, accepted);
  });

  it('weft reload under upload load: no failed upload', async () => {
    const c = await startCluster(noShedding);
    const stop = new AbortController();
    const load = uploadLoad(c.url, 6, stop.signal);
    const reload = await weft(c, ['reload']);
    assert.equal(reload.code, 0, reload.stderr);
    assert.match(reload.stdout, /reloaded: 2 workers replaced/);
    const afterReload = await weft(c, ['reload']);
    assert.equal(afterReload.code, 0, afterReload.stderr);
    stop.abort();
    const results = await load;
    const failed = results.filter((r) => r.status !== 201);
    const log = c
      .output()
      .split('\n')
      .filter((l) => /replaced|overloaded|exited/.test(l));
    assert.deepEqual(
      failed,
      [],
      `every upload during two reloads succeeded; supervisor log:\n${log.join('\n')}`,
    );
    assert.ok(results.length >= 10, `uploads kept flowing (${results.length})`);
    assert.equal((await weft(c, ['stop'])).code, 0);
    assert.equal(await c.exit, 0);
    assertDurable(c.dataDir, results);
  });
});
