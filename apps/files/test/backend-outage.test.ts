// A backend that stops answering or refuses connections while the service runs (issue 16 items 2, 5, 6): uploads
// are answered 503 naming the backend within 2 s (at once once its breaker is open), never 500 and never left
// hanging; readiness answers 503 and names the backend, liveness stays 200; /metrics shows it down; reads that do
// not need it keep working; within 5 s of its return the breaker closes by itself and uploads succeed. The queue
// (Redis) is the exception for uploads and readiness: its uploads are kept with their jobs pending in the outbox,
// answered 201, and the node stays ready with the queue's check failing (degraded); outbox.test.ts follows them. The
// machine's Redis and PostgreSQL are never touched: the service reaches them through the tests' fault proxy
// (fault-proxy.ts), which can pass traffic, hold it (blackhole: a partition) or reset connections (refused). Default settings throughout (deadlines 1 s,
// breaker threshold 5, half-open after 2 s): they are what the targets are promised for.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { BackendView } from 'weftjs/dashboard';
import { Health } from 'weftjs/lifecycle';
import { backendMetrics } from '../src/metrics.ts';
import type { Backend } from '../src/resilience.ts';
import { type FaultProxy, faultProxy } from './fault-proxy.ts';
import { type Running, startService, until } from './helpers.ts';
import {
  DATABASE_URL,
  REDIS_URL,
  type SharedBackends,
  serviceSkip,
  sharedBackends,
  via,
} from './services.ts';

const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });
const ANSWER_TARGET_MS = 2_000;
const RECOVERY_TARGET_MS = 5_000;

describe('a backend fails while the service runs', { skip }, () => {
  let shared: SharedBackends;
  let redis: FaultProxy;
  let postgres: FaultProxy;
  let s: Running;
  const figures: string[] = [];

  before(async () => {
    shared = await sharedBackends('outage');
    const target = (url: string, port: number) => ({
      host: new URL(url).hostname,
      port: Number(new URL(url).port || port),
    });
    redis = await faultProxy({ target: target(REDIS_URL, 6379) });
    postgres = await faultProxy({ target: target(DATABASE_URL, 5432) });
    const health = new Health();
    const registry = new Registry();
    s = await startService(
      {
        queueUrl: via(shared.urls.queueUrl, redis.port),
        databaseUrl: via(shared.urls.databaseUrl, postgres.port),
      },
      {
        http: {
          health: { live: health.handler('liveness'), ready: health.handler('readiness') },
          metrics: async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()),
        },
      },
    );
    // As server.ts adds them: the queue's check is not critical (its uploads wait in the outbox meanwhile).
    for (const [backend, check] of Object.entries(s.checks)) {
      health.addCheck(backend, check, { critical: s.critical[backend as Backend] });
    }
    backendMetrics({ registry }, s.guards);
    health.markStarted();
  });
  after(async () => {
    redis?.set('pass');
    postgres?.set('pass');
    await s?.stop();
    await redis?.close();
    await postgres?.close();
    await shared?.cleanup();
    if (figures.length) console.log(`# ${figures.join('\n# ')}`);
  });

  let n = 0;
  const upload = async () => {
    const t = performance.now();
    const res = await fetch(`${s.url}/files?name=o${n++}.csv`, {
      method: 'POST',
      body: `a,b\n1,${n}\n`,
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { id?: string; pending?: string[]; error?: { code: string } };
    return {
      status: res.status,
      ms: performance.now() - t,
      body,
      retryAfter: res.headers.get('retry-after'),
    };
  };
  const status = async (path: string) => (await fetch(`${s.url}${path}`)).status;
  /** The backends as the dashboard's first snapshot shows them (its event stream, read until that event). */
  const dashboardBackends = async () => {
    const stop = new AbortController();
    const res = await fetch(`${s.url}/dashboard/events`, {
      signal: AbortSignal.any([stop.signal, AbortSignal.timeout(5_000)]),
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the event stream ended before a snapshot: ${text}`);
        text += value;
        const m = /event: snapshot\ndata: (.*)\n\n/.exec(text);
        if (m) return (JSON.parse(m[1]!) as { files?: { backends?: BackendView[] } }).files?.backends;
      }
    } finally {
      stop.abort();
      await reader.cancel().catch(() => {});
    }
  };
  const up = async (backend: Backend) => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    const m = new RegExp(`^weft_files_backend_up\\{backend="${backend}"\\} (\\d)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };

  const cases: { backend: Backend; proxy: () => FaultProxy; mode: 'blackhole' | 'reset'; code: string }[] = [
    { backend: 'queue', proxy: () => redis, mode: 'blackhole', code: 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE' },
    { backend: 'queue', proxy: () => redis, mode: 'reset', code: 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE' },
    {
      backend: 'database',
      proxy: () => postgres,
      mode: 'blackhole',
      code: 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE',
    },
    {
      backend: 'database',
      proxy: () => postgres,
      mode: 'reset',
      code: 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE',
    },
  ];
  for (const { backend, proxy, mode, code } of cases) {
    // Uploads need the database; while the queue is away they are kept in the outbox instead.
    const kept = backend === 'queue';
    /** An upload made while `backend` is away, answered as it should be, within 2 s. */
    const during = (a: Awaited<ReturnType<typeof upload>>, what: string) => {
      if (kept) {
        assert.equal(a.status, 201, JSON.stringify(a.body));
        assert.deepEqual(a.body.pending, ['csv']);
      } else {
        assert.equal(a.status, 503, JSON.stringify(a.body));
        assert.equal(a.body.error?.code, code);
        assert.ok(a.retryAfter, 'Retry-After is set');
      }
      assert.ok(a.ms < ANSWER_TARGET_MS, `${what} answered in ${Math.round(a.ms)} ms`);
    };
    it(`${backend} ${mode === 'blackhole' ? 'stops answering' : 'refuses connections'}: ${kept ? '201 with jobs pending, ready (degraded)' : `503 ${code}, not ready`} within 2 s, down in /metrics; heals by itself within 5 s`, async (t) => {
      // Everything works, and a file is stored to read during the outage.
      await until(async () => (await upload()).status === 201, 10_000, 'uploads before the outage');
      await until(async () => (await status('/health/ready')) === 200, 5_000, 'ready before the outage');
      const stored = await upload();
      assert.equal(stored.status, 201);

      proxy().set(mode);
      t.after(() => proxy().set('pass')); // when an assertion fails, the next case starts with the backend back
      const first = await upload();
      during(first, 'the first upload');

      // Uploads go on the same way, each within 2 s, until the breaker opens (the runner's claims count too).
      let refused = 1;
      await until(
        async () => {
          if (!s.guards[backend].up) return true;
          during(await upload(), 'an upload');
          refused++;
          return false;
        },
        15_000,
        `${backend} breaker opens`,
      );
      const fast = await upload();
      during(fast, 'an upload with the breaker open');

      // Readiness results are reused for up to a second (the lifecycle's cacheFor): polled, bounded.
      const readiness = async () => {
        const res = await fetch(`${s.url}/health/ready`);
        return {
          code: res.status,
          ...((await res.json()) as { degraded?: string[]; checks: Record<string, { status: string }> }),
        };
      };
      await until(
        async () => (await readiness()).checks[backend]?.status !== 'ok',
        3_000,
        `readiness shows ${backend} failing`,
      );
      const report = await readiness();
      assert.equal(report.code, kept ? 200 : 503, JSON.stringify(report));
      if (kept) assert.deepEqual(report.degraded, ['queue']);
      assert.equal(await status('/health/live'), 200);
      assert.equal(await up(backend), 0);
      assert.equal(await up(backend === 'queue' ? 'database' : 'queue'), 1);
      assert.ok(s.guards[backend].opens >= 1);
      const shown = await dashboardBackends();
      assert.deepEqual(
        shown?.map((b) => [b.name, b.up]),
        [
          ['queue', backend !== 'queue'],
          ['database', backend !== 'database'],
          ['storage', true],
        ],
      );

      // Reads that do not need the failed backend keep working; those that do answer 503, never 500.
      const content = await fetch(`${s.url}/files/${stored.body.id}/content`);
      if (backend === 'queue') {
        assert.equal(content.status, 200);
        assert.match(await content.text(), /^a,b\n/);
      } else {
        assert.equal(content.status, 503);
        assert.equal(((await content.json()) as { error: { code: string } }).error.code, code);
      }

      // Back: no restart; the breaker closes (half-open probe), readiness is green and uploads work within 5 s.
      proxy().set('pass');
      const back = performance.now();
      await until(() => s.guards[backend].up, RECOVERY_TARGET_MS, `${backend} breaker closes`);
      const closedMs = performance.now() - back;
      await until(
        async () => {
          const a = await upload();
          return a.status === 201 && a.body.pending?.length === 0;
        },
        RECOVERY_TARGET_MS,
        'uploads again (their jobs queued at once)',
      );
      await until(
        async () => {
          const r = await readiness();
          return r.code === 200 && r.degraded === undefined;
        },
        RECOVERY_TARGET_MS,
        'ready again, every check passing',
      );
      const healedMs = performance.now() - back;
      assert.ok(healedMs < RECOVERY_TARGET_MS, `healed in ${Math.round(healedMs)} ms`);
      assert.equal(await up(backend), 1);
      assert.ok(s.guards[backend].halfOpens >= 1);
      figures.push(
        `${backend} ${mode}: first ${first.status} in ${Math.round(first.ms)} ms, breaker open after ${refused} uploads, then ${fast.status} in ${Math.round(fast.ms)} ms; breaker closed ${Math.round(closedMs)} ms and uploads + readiness back ${Math.round(healedMs)} ms after the return`,
      );
    });
  }
});
