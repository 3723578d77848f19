import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { supervise } from '../../src/cluster/index.ts';
import { within } from '../helpers.ts';
import { find, parseExposition, value } from '../metrics/helpers.ts';
import { freePort, get, killAll, startSupervisor } from './helpers.ts';

after(killAll);

const exec = new URL('./fixtures/metrics-app.ts', import.meta.url).pathname;
const started = (l: Record<string, unknown>) => Array.isArray(l.started);
const msg = (re: RegExp) => (l: Record<string, unknown>) => typeof l.msg === 'string' && re.test(l.msg);
const completed = { pool: 'work', outcome: 'completed' };

async function scrape(port: number, path = '/metrics'): Promise<string> {
  const r = await get(port, path);
  assert.ok('status' in r && r.status === 200, `GET ${path}: ${JSON.stringify(r)}`);
  return r.body;
}

describe('the merged metrics endpoint of a cluster', () => {
  it('one scrape has both workers (worker and pid labels), counter totals and the supervisor’s own metrics', async () => {
    const metricsPort = await freePort();
    const s = await startSupervisor({ exec, metricsPort, livenessTimeout: 0 });
    assert.deepEqual((await s.line(started, 'start')).started, ['ready', 'ready']);
    const url = await s.line(msg(/^metrics on /), 'the metrics line');
    assert.equal(url.metrics, `http://127.0.0.1:${metricsPort}/metrics`);

    let e = parseExposition(await scrape(metricsPort));
    const pids = [0, 1].map(
      (w) => find(e, 'weft_pool_tasks_total', { ...completed, worker: String(w) })[0]?.labels.pid,
    );
    assert.ok(pids.every((p) => /^\d+$/.test(p ?? '')) && pids[0] !== pids[1], `two pids: ${pids}`);
    // The fixture's worker N ran (N + 1) × 2 tasks before it listened.
    assert.equal(value(e, 'weft_pool_tasks_total', { ...completed, worker: '0', pid: pids[0]! }), 2);
    assert.equal(value(e, 'weft_pool_tasks_total', { ...completed, worker: '1', pid: pids[1]! }), 4);
    assert.equal(value(e, 'weft_pool_tasks_cluster_total', completed), 6);
    assert.equal(value(e, 'weft_lifecycle_state', { lifecycle: 'default', state: 'ready', worker: '1' }), 1);
    assert.ok(value(e, 'weft_process_resident_memory_bytes', { worker: '0' }) > 0, 'process collectors');
    assert.equal(find(e, 'app_hits_total').length, 2, "the application's own counter, from each worker");
    assert.equal(value(e, 'weft_cluster_workers'), 2);
    assert.equal(value(e, 'weft_cluster_state', { state: 'running' }), 1);
    assert.equal(value(e, 'weft_cluster_slot_state', { worker: '0', state: 'ready' }), 1);
    assert.equal(value(e, 'weft_cluster_slot_restarts_total', { worker: '1' }), 0);
    assert.equal(value(e, 'weft_metrics_scrape_errors_total', { worker: '0' }), 0);
    assert.equal(value(e, 'weft_metrics_scrape_success', { worker: '1' }), 1);

    const json = JSON.parse(await scrape(metricsPort, '/metrics.json')) as {
      supervisor: { state: string; scrapeErrors: Record<string, number> };
      slots: {
        index: number;
        pid: number;
        metrics?: { pid: number; pools: Record<string, { completed: number }> };
      }[];
      totals: { name: string; labels: Record<string, string>; value: number }[];
    };
    assert.equal(json.supervisor.state, 'running');
    assert.deepEqual(
      json.slots.map((x) => [x.index, x.metrics?.pools.work?.completed, x.metrics?.pid === x.pid]),
      [
        [0, 2, true],
        [1, 4, true],
      ],
    );
    assert.equal(
      json.totals.find((t) => t.name === 'weft_pool_tasks_cluster_total' && t.labels.outcome === 'completed')
        ?.value,
      6,
    );

    // A crashed worker's counts stay in the total; its replacement (a new pid) adds its own.
    await get(s.port, '/crash');
    const exited = await s.line(msg(/^worker \d exited/), 'the crash');
    await s.line(
      (l) => l.msg === `worker ${exited.slot} ready` && s.lines.indexOf(l) > s.lines.indexOf(exited),
      'the restart',
    );
    e = parseExposition(await scrape(metricsPort));
    const slot = String(exited.slot);
    assert.equal(value(e, 'weft_cluster_slot_restarts_total', { worker: slot }), 1);
    assert.equal(value(e, 'weft_pool_tasks_cluster_total', completed), 6 + (Number(slot) + 1) * 2);
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'supervisor exit'), 0);
  });

  it('a worker that never answers, or fails, is skipped and counted; the scrape returns within the timeout', async () => {
    const metricsPort = await freePort();
    const s = await startSupervisor(
      { exec, metricsPort, metricsTimeout: 500, livenessTimeout: 0, workers: 3 },
      { STUCK_SLOT: '1', FAIL_SLOT: '2' },
    );
    await s.line(started, 'start');
    for (let round = 1; round <= 2; round++) {
      const t0 = performance.now();
      const e = parseExposition(await scrape(metricsPort));
      const ms = performance.now() - t0;
      assert.ok(ms < 3_000, `the scrape took ${Math.round(ms)} ms`);
      assert.equal(value(e, 'weft_pool_tasks_total', { ...completed, worker: '0' }), 2);
      assert.equal(
        find(e, 'weft_pool_tasks_total', { worker: '1' }).length,
        0,
        'nothing from the stuck worker',
      );
      assert.equal(
        find(e, 'weft_pool_tasks_total', { worker: '2' }).length,
        0,
        'nothing from the failing worker',
      );
      assert.equal(value(e, 'weft_metrics_scrape_success', { worker: '1' }), 0);
      assert.equal(value(e, 'weft_metrics_scrape_errors_total', { worker: '1' }), round);
      assert.equal(value(e, 'weft_metrics_scrape_errors_total', { worker: '2' }), round);
      assert.equal(value(e, 'weft_metrics_scrape_errors_total', { worker: '0' }), 0);
    }
    const json = JSON.parse(await scrape(metricsPort, '/metrics.json')) as { slots: { error?: string }[] };
    assert.match(json.slots[1]?.error ?? '', /did not answer "weft:metrics" within 500 ms/);
    assert.match(json.slots[2]?.error ?? '', /broken collect/);
    assert.equal(json.slots[0]?.error, undefined);
    s.child.kill('SIGTERM');
    await within(s.exit, 20_000, 'supervisor exit');
  });

  it('a metrics port in use fails supervise() before any worker starts', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    try {
      const { port } = busy.address() as { port: number };
      await assert.rejects(
        supervise({ exec, workers: 1, metricsPort: port, exit: false, handleSignals: false }),
        { code: 'EADDRINUSE' },
      );
    } finally {
      await new Promise((r) => busy.close(r));
    }
  });
});
