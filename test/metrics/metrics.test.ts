import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Counter, Registry, register } from 'prom-client';
import { createLifecycle, LoadShedder } from '../../src/lifecycle/index.ts';
import { createMetrics, defaultMetrics, type MeterSnapshot, type Metrics } from '../../src/metrics/index.ts';
import { Pool } from '../../src/pool/index.ts';
import { fixture, invalidOption, rejection, track, until } from '../helpers.ts';
import { find, parseExposition, value } from './helpers.ts';

const silent = { info() {}, warn() {}, error() {} };

/** A Metrics instance closed after the test whatever happens. */
function tracked(m: Metrics): Metrics {
  track({ destroy: async () => m.close() });
  return m;
}

function meter(over: Partial<MeterSnapshot> = {}) {
  const snap: MeterSnapshot = {
    name: 'uploads',
    items: 40,
    bytes: 4096,
    elapsedMs: 2_000,
    itemsPerSecond: 20,
    bytesPerSecond: 2048,
    pauses: 3,
    pausedMs: 250,
    ...over,
  };
  return { name: snap.name, snapshot: () => snap };
}

const zero = { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
const idleStats = () => ({
  threads: { total: 1, idle: 1, busy: 0 },
  queued: 0,
  running: 0,
  completed: 0,
  failed: 0,
  cancelled: 0,
  timedOut: 0,
  crashed: 0,
  utilization: 0,
  waitTime: zero,
  runTime: zero,
});

describe('metrics of a pool, a lifecycle, a shedder and a meter', () => {
  it('reports a real pool that ran N tasks: threads, queue, tasks by outcome, crashes, wait and run summaries', async () => {
    const pool = track(
      new Pool<typeof import('../fixtures/tasks.ts')>({ filename: fixture('tasks.ts'), maxThreads: 2 }),
    );
    const m = tracked(createMetrics({ collectProcess: false }));
    m.addPool(pool, { name: 'images' });
    await Promise.all(Array.from({ length: 7 }, (_, i) => pool.run('add', [i, i])));
    await Promise.all([1, 2].map(() => rejection(pool.run('fail', ['nope']))));
    const crash = await rejection(pool.run('exit', [3]));
    assert.equal((crash as { code?: string }).code, 'ERR_WEFT_WORKER_CRASHED');

    const e = parseExposition(await m.metrics());
    const stats = pool.stats();
    const images = { pool: 'images' };
    assert.equal(value(e, 'weft_pool_tasks_total', { ...images, outcome: 'completed' }), 7);
    assert.equal(value(e, 'weft_pool_tasks_total', { ...images, outcome: 'failed' }), stats.failed);
    assert.ok(stats.failed >= 2, 'the two failed tasks count as failed');
    assert.equal(value(e, 'weft_pool_tasks_total', { ...images, outcome: 'cancelled' }), 0);
    assert.equal(value(e, 'weft_pool_tasks_total', { ...images, outcome: 'timed_out' }), 0);
    assert.equal(value(e, 'weft_pool_thread_crashes_total', images), 1);
    assert.equal(value(e, 'weft_pool_queued_tasks', images), 0);
    assert.equal(value(e, 'weft_pool_running_tasks', images), 0);
    assert.equal(
      value(e, 'weft_pool_threads', { ...images, state: 'busy' }) +
        value(e, 'weft_pool_threads', { ...images, state: 'idle' }),
      stats.threads.total,
    );
    assert.equal(e.types.get('weft_pool_tasks_total'), 'counter');
    assert.equal(e.types.get('weft_pool_task_wait_seconds'), 'summary');
    assert.equal(value(e, 'weft_pool_task_run_seconds_count', images), stats.runTime.count);
    assert.equal(value(e, 'weft_pool_task_wait_seconds_count', images), stats.waitTime.count);
    assert.ok(stats.waitTime.count >= 7);
    assert.equal(
      value(e, 'weft_pool_task_wait_seconds', { ...images, quantile: '1' }),
      stats.waitTime.max / 1000,
    );
    assert.equal(
      find(e, 'weft_pool_task_run_seconds', images)
        .map((s) => s.labels.quantile)
        .join(),
      '0.5,0.9,0.99,1',
    );
    const u = value(e, 'weft_pool_utilization_ratio', images);
    assert.ok(u >= 0 && u <= 1, `utilization ${u}`);
    assert.deepEqual(m.snapshot().pools.images?.completed, 7);
  });

  it('reports the lifecycle state as it changes, one series per state', async () => {
    const life = createLifecycle({ signals: [], handleErrors: false, exit: false, logger: silent });
    const m = tracked(createMetrics({ collectProcess: false }));
    m.addLifecycle(life, { name: 'api' });
    const state = async () =>
      Object.fromEntries(
        find(parseExposition(await m.metrics()), 'weft_lifecycle_state', { lifecycle: 'api' }).map((s) => [
          s.labels.state,
          s.value,
        ]),
      );
    assert.deepEqual(await state(), { starting: 1, ready: 0, 'shutting-down': 0, stopped: 0 });
    await life.ready();
    assert.deepEqual(await state(), { starting: 0, ready: 1, 'shutting-down': 0, stopped: 0 });
    await life.shutdown('test');
    assert.deepEqual(await state(), { starting: 0, ready: 0, 'shutting-down': 0, stopped: 1 });
    assert.deepEqual(m.snapshot().lifecycles, { api: { state: 'stopped' } });
  });

  it("reports a load shedder's 503s and whether it sheds", async () => {
    let delay = 500;
    const shedder = new LoadShedder({
      timer: false,
      sampler: () => ({ eventLoopDelayP99: delay, eventLoopUtilization: 0, heapUsedRatio: 0, gauges: {} }),
    });
    track({ destroy: async () => shedder.close() });
    const m = tracked(createMetrics({ collectProcess: false }));
    m.addShedder(shedder, { name: 'http' });
    shedder.sample();
    const res = { writeHead: () => res, end: () => res };
    assert.equal(shedder.handler()({ url: '/upload' }, res), true, 'the guard sheds');
    let e = parseExposition(await m.metrics());
    assert.equal(value(e, 'weft_lifecycle_shed_requests_total', { shedder: 'http' }), 1);
    assert.equal(value(e, 'weft_lifecycle_overloaded', { shedder: 'http' }), 1);
    delay = 0;
    shedder.sample();
    shedder.sample();
    e = parseExposition(await m.metrics());
    assert.equal(value(e, 'weft_lifecycle_overloaded', { shedder: 'http' }), 0);
    assert.deepEqual(m.snapshot().shedders, { http: { shed: 1, overloaded: false } });
  });

  it('reports a meter-like object; optional numbers appear only when the meter has them', async () => {
    const m = tracked(createMetrics({ collectProcess: false }));
    m.addMeter(meter());
    m.addMeter(meter({ name: 'export', total: 100, totalBytes: 10_240, percent: 40, etaMs: 3_000 }));
    const e = parseExposition(await m.metrics());
    const up = { meter: 'uploads' };
    assert.equal(value(e, 'weft_stream_items_total', up), 40);
    assert.equal(value(e, 'weft_stream_bytes_total', up), 4096);
    assert.equal(value(e, 'weft_stream_items_per_second', up), 20);
    assert.equal(value(e, 'weft_stream_bytes_per_second', up), 2048);
    assert.equal(value(e, 'weft_stream_elapsed_seconds', up), 2);
    assert.equal(value(e, 'weft_stream_pauses_total', up), 3);
    assert.equal(value(e, 'weft_stream_paused_seconds_total', up), 0.25);
    for (const name of ['expected_items', 'expected_bytes', 'progress_ratio', 'eta_seconds'])
      assert.equal(find(e, `weft_stream_${name}`, up).length, 0, name);
    const ex = { meter: 'export' };
    assert.equal(value(e, 'weft_stream_expected_items', ex), 100);
    assert.equal(value(e, 'weft_stream_expected_bytes', ex), 10_240);
    assert.equal(value(e, 'weft_stream_progress_ratio', ex), 0.4);
    assert.equal(value(e, 'weft_stream_eta_seconds', ex), 3);
    assert.equal(m.snapshot().meters.export?.percent, 40);
  });

  it('each add* returns a function that removes that source (and not a later one of the same name)', async () => {
    const m = tracked(createMetrics({ collectProcess: false }));
    const removeFirst = m.addMeter(meter());
    removeFirst();
    assert.equal(find(parseExposition(await m.metrics()), 'weft_stream_items_total').length, 0);
    m.addMeter(meter({ items: 7 }));
    removeFirst();
    assert.equal(
      value(parseExposition(await m.metrics()), 'weft_stream_items_total', { meter: 'uploads' }),
      7,
    );
    const removePool = m.addPool({ stats: idleStats }, { name: 'x' });
    assert.deepEqual(Object.keys(m.snapshot().pools), ['x']);
    removePool();
    assert.deepEqual(m.snapshot().pools, {});
  });

  it('a source that throws or answers the wrong shape is skipped and counted; the scrape still answers', async () => {
    const m = tracked(createMetrics({ collectProcess: false }));
    m.addMeter({
      name: 'boom',
      snapshot: () => {
        throw new Error('meter broke');
      },
    });
    m.addMeter(meter({ name: 'nan', items: Number.NaN }));
    m.addPool({ stats: () => ({}) as never }, { name: 'fake' });
    m.addLifecycle({ state: 42 } as never, { name: 'odd' });
    m.addMeter(meter({ name: 'fine' }));
    const e = parseExposition(await m.metrics());
    assert.equal(value(e, 'weft_metrics_collect_errors_total'), 4);
    assert.deepEqual(
      find(e, 'weft_stream_items_total').map((s) => s.labels.meter),
      ['fine'],
    );
    const snap = m.snapshot();
    assert.equal(snap.collectErrors, 8, 'every reading counts');
    assert.deepEqual(Object.keys(snap.meters), ['fine']);
    assert.deepEqual(snap.pools, {});
  });

  it("includes the application's own metrics of the registry, and collect() gives both forms of one reading", async () => {
    const registry = new Registry();
    const m = tracked(createMetrics({ registry, collectProcess: false }));
    new Counter({ name: 'app_jobs_total', help: 'Jobs', registers: [registry] }).inc(5);
    let reads = 0;
    m.addMeter({ name: 'counting', snapshot: () => ({ ...meter().snapshot(), items: ++reads }) });
    const { snapshot, families } = await m.collect();
    const items = families.find((f) => f.name === 'weft_stream_items_total');
    assert.equal(reads, 1, 'one reading for the snapshot and every family');
    assert.equal(items?.values[0]?.value, snapshot.meters.counting?.items);
    assert.equal(families.find((f) => f.name === 'app_jobs_total')?.values[0]?.value, 5);
    assert.deepEqual(JSON.parse(JSON.stringify(snapshot)), snapshot, 'the snapshot is plain JSON');
    assert.equal(value(parseExposition(await registry.metrics()), 'app_jobs_total'), 5);
    assert.equal(reads, 2, 'a later scrape reads again');
  });
});

describe('process collectors', () => {
  it('event-loop delay and utilization cover the last interval; a 60 ms block shows in the max', async () => {
    const m = tracked(createMetrics({ interval: 100 }));
    const end = performance.now() + 60;
    while (performance.now() < end) {}
    // The blocked window closes on the collector's next tick; wait for it.
    await until(() => (m.snapshot().process?.eventLoop.delayMax ?? 0) >= 40, 5_000, 'the blocked window');
    const e = parseExposition(await m.metrics());
    for (const q of ['p50', 'p99', 'max', 'mean'])
      assert.ok(value(e, `weft_eventloop_delay_${q}_seconds`) >= 0, q);
    const elu = value(e, 'weft_eventloop_utilization_ratio');
    assert.ok(elu >= 0 && elu <= 1, `utilization ${elu}`);
    const loop = m.snapshot().process!.eventLoop;
    assert.ok(loop.intervalMs > 0 && loop.delayP50 <= loop.delayP99 && loop.delayP99 <= loop.delayMax);
  });

  it('memory, CPU, start time and active resources by type', async () => {
    const m = tracked(createMetrics());
    const timer = setTimeout(() => {}, 60_000);
    try {
      const e = parseExposition(await m.metrics());
      assert.ok(value(e, 'weft_process_resident_memory_bytes') > 1e6);
      assert.ok(value(e, 'weft_process_heap_used_bytes') > 0);
      assert.ok(value(e, 'weft_process_heap_total_bytes') >= value(e, 'weft_process_heap_used_bytes'));
      assert.ok(value(e, 'weft_process_external_memory_bytes') >= 0);
      assert.ok(value(e, 'weft_process_cpu_seconds_total', { mode: 'user' }) > 0);
      assert.ok(value(e, 'weft_process_cpu_seconds_total', { mode: 'system' }) >= 0);
      const start = value(e, 'weft_process_start_time_seconds');
      assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) < 2, `start time ${start}`);
      assert.ok(value(e, 'weft_process_active_resources', { type: 'Timeout' }) >= 1);
      assert.equal(e.types.get('weft_process_cpu_seconds_total'), 'counter');
    } finally {
      clearTimeout(timer);
    }
  });

  it('GC pauses, by kind, in a histogram (and as counts and totals in the snapshot)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const m = tracked(createMetrics());
    gc();
    await until(() => (m.snapshot().process?.gc.major?.count ?? 0) >= 1, 5_000, 'the GC observer');
    const e = parseExposition(await m.metrics());
    assert.equal(e.types.get('weft_gc_pause_seconds'), 'histogram');
    const count = value(e, 'weft_gc_pause_seconds_count', { kind: 'major' });
    assert.equal(count, m.snapshot().process?.gc.major?.count);
    assert.equal(value(e, 'weft_gc_pause_seconds_bucket', { kind: 'major', le: '+Inf' }), count);
    assert.ok(value(e, 'weft_gc_pause_seconds_sum', { kind: 'major' }) > 0);
  });

  it('collectProcess: false has no process series and no process section', async () => {
    const m = tracked(createMetrics({ collectProcess: false }));
    const e = parseExposition(await m.metrics());
    assert.equal(e.samples.filter((s) => /^weft_(eventloop|process|gc)_/.test(s.name)).length, 0);
    assert.equal(m.snapshot().process, undefined);
  });
});

describe('registry, prefix, defaultMetrics and close', () => {
  it('a prefix renames every metric; a second instance with the same prefix on one registry is refused', () => {
    const registry = new Registry();
    const m = tracked(createMetrics({ registry, prefix: 'files_', collectProcess: false }));
    assert.ok(registry.getSingleMetric('files_pool_tasks_total'));
    assert.throws(() => createMetrics({ registry, prefix: 'files_' }), invalidOption('prefix'));
    assert.ok(registry.getSingleMetric('files_pool_tasks_total'), 'the refused one removed nothing');
    tracked(createMetrics({ registry, prefix: 'other_', collectProcess: false }));
    m.close();
    assert.equal(registry.getSingleMetric('files_pool_tasks_total'), undefined, 'close removes its metrics');
    assert.ok(registry.getSingleMetric('other_pool_tasks_total'), 'and only its own');
  });

  it('close is idempotent; a closed instance refuses work with ERR_WEFT_METRICS_CLOSED', async () => {
    const m = createMetrics();
    m.close();
    m.close();
    await m[Symbol.asyncDispose]();
    const closed = (err: unknown) => (err as { code?: string }).code === 'ERR_WEFT_METRICS_CLOSED';
    assert.throws(() => m.addMeter(meter()), closed);
    assert.throws(() => m.snapshot(), closed);
    await assert.rejects(m.metrics(), closed);
    await assert.rejects(m.collect(), closed);
    assert.equal(m.closed, true);
  });

  it('defaultMetrics() is one instance per process in the global register, created again after close', () => {
    const a = defaultMetrics();
    try {
      assert.equal(defaultMetrics(), a);
      assert.equal(a.registry, register);
      assert.throws(() => defaultMetrics({ prefix: 'x_' }), invalidOption('options'));
    } finally {
      a.close();
    }
    const b = defaultMetrics({ collectProcess: false });
    try {
      assert.notEqual(b, a);
      assert.equal(b.options.collectProcess, false);
    } finally {
      b.close();
    }
  });
});
