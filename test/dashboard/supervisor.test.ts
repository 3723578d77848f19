// The supervisor's dashboard (`supervise({ dashboard: true })`, `weft start --dashboard`): the page on the metrics
// port, snapshots from the merged metrics, and a rolling reload shown step by step.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { parseCommandLine, startConfig } from '../../src/cli/config.ts';
import type { SupervisorStatus } from '../../src/cluster/index.ts';
import { resolveSuperviseOptions } from '../../src/cluster/options.ts';
import type { DashboardSnapshot } from '../../src/dashboard/index.ts';
import { invalidOption, within } from '../helpers.ts';
import { openStream } from './helpers.ts';

const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.pid) process.kill(-c.pid, 'SIGKILL');
});

type Line = Record<string, unknown>;

function start() {
  const script = new URL('./fixtures/supervisor.ts', import.meta.url).pathname;
  const conditions = process.execArgv.filter((a) => a.startsWith('--conditions'));
  const child = spawn(process.execPath, [...conditions, script], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  children.add(child);
  const lines: Line[] = [];
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const text = buffered.slice(0, nl);
      // Worker output comes through prefixed with its slot, not as JSON.
      lines.push(text.startsWith('{') ? (JSON.parse(text) as Line) : { text });
      buffered = buffered.slice(nl + 1);
      child.stdout!.emit('line');
    }
  });
  const line = (match: (l: Line) => boolean, what: string, ms = 20_000) =>
    within(
      new Promise<Line>((resolve) => {
        const check = () => {
          const l = lines.find(match);
          if (!l) return;
          child.stdout!.off('line', check);
          resolve(l);
        };
        child.stdout!.on('line', check);
        check();
      }),
      ms,
      what,
    );
  const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { child, lines, line, exit };
}

describe('the supervisor’s dashboard', () => {
  it('serves the page on the metrics port; snapshots of every slot; a reload step by step', async () => {
    const s = start();
    const started = await s.line((l) => Array.isArray(l.started), 'the supervisor to start');
    assert.deepEqual(started.started, ['ready', 'ready']);
    const base = String(started.metricsUrl).replace(/metrics$/, '');
    const logged = await s.line((l) => typeof l.dashboard === 'string', 'the dashboard line');
    assert.equal(logged.dashboard, base);

    const page = await fetch(base, { signal: AbortSignal.timeout(10_000) });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<h2 id="processes-h">Processes<\/h2>/);
    const metrics = await fetch(`${base}metrics`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(metrics.status, 200, 'the metrics are still served next to it');
    await metrics.text();
    // What the dashboards read every second: each worker's snapshot, without the metric families.
    const light = (await (await fetch(`${base}metrics.json?light`)).json()) as {
      slots: { pid: number; metrics?: { pid: number; process?: unknown } }[];
    };
    assert.deepEqual(
      light.slots.map((x) => x.metrics?.pid === x.pid && x.metrics.process !== undefined),
      [true, true],
    );

    const stream = await openStream(`${base}dashboard/events`);
    const [first] = await stream.received(1, 10_000, 'the first snapshot');
    const snap = JSON.parse(first!.data) as DashboardSnapshot;
    assert.equal(snap.scope, 'cluster');
    assert.deepEqual(
      snap.slots.map((x) => [x.index, x.state, typeof x.pid, (x.rss ?? 0) > 0, typeof x.loopP99]),
      [
        [0, 'ready', 'number', true, 'number'],
        [1, 'ready', 'number', true, 'number'],
      ],
    );
    assert.equal(snap.jobs, undefined, 'no application panels on the supervisor');

    process.kill(s.child.pid!, 'SIGHUP');
    const starting = await s.line((l) => l.step === 'starting', 'a new worker during the reload');
    const st = starting.status as SupervisorStatus;
    assert.deepEqual(st.reload && { total: st.reload.total, replaced: st.reload.replaced }, {
      total: 2,
      replaced: 0,
    });
    const replacing = st.slots.find((x) => x.replacement)!;
    assert.deepEqual(replacing.replacement, {
      why: 'reload',
      step: 'starting',
      pid: starting.pid,
      oldPid: replacing.pid,
    });
    const draining = await s.line(
      (l) => l.step === 'draining' && 'status' in l,
      'the first old worker draining',
    );
    const ds = draining.status as SupervisorStatus;
    const d = ds.slots.find((x) => x.replacement)!;
    assert.equal(d.replacement!.step, 'draining');
    assert.equal(d.pid, d.replacement!.pid, 'the new worker has the slot while the old one drains');
    const merged = await s.line((l) => l.step === 'draining' && 'merged' in l, 'the merged snapshot');
    const m = merged.merged as { supervisor: { reload?: unknown }; slots: { replacement?: unknown }[] };
    assert.ok(m.supervisor.reload, 'the merged metrics (what the dashboard reads) carry the reload');
    assert.ok(
      m.slots.some((x) => x.replacement),
      'and the slot being replaced',
    );

    await s.line((l) => l.msg === 'rolling reload finished: 2 workers replaced', 'the reload to finish');
    const after = await stream.received(stream.events.length + 2, 10_000, 'snapshots after the reload');
    const last = JSON.parse(after.at(-1)!.data) as DashboardSnapshot;
    assert.equal(last.cluster?.reload, undefined);
    assert.deepEqual(
      last.cluster?.lastReload && [last.cluster.lastReload.ok, last.cluster.lastReload.replaced],
      [true, 2],
    );

    process.kill(s.child.pid!, 'SIGTERM');
    await within(stream.ended, 10_000, 'the stream to end when the supervisor stops');
    assert.equal(await within(s.exit, 15_000, 'the supervisor to exit'), 0);
  });

  it('dashboard implies the metrics port 9464; --dashboard, WEFT_DASHBOARD and the config key set it', async () => {
    const exec = new URL('../cluster/fixtures/app.ts', import.meta.url).pathname;
    const o = resolveSuperviseOptions({ exec, dashboard: true });
    assert.deepEqual([o.dashboard, o.metricsPort], [true, 9464]);
    assert.equal(resolveSuperviseOptions({ exec, dashboard: true, metricsPort: 0 }).metricsPort, 0);
    assert.equal(resolveSuperviseOptions({ exec }).metricsPort, undefined, 'no endpoint unless asked');
    assert.throws(
      () => resolveSuperviseOptions({ exec, dashboard: 'yes' as never }),
      invalidOption('dashboard'),
    );
    const config = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
      startConfig(parseCommandLine(['start', exec, ...argv]), env);
    assert.equal((await config(['--dashboard'])).dashboard, true);
    assert.equal((await config([], { WEFT_DASHBOARD: '1' })).dashboard, true);
    assert.equal((await config([], { WEFT_DASHBOARD: '0' })).dashboard, false);
    assert.equal((await config([])).dashboard, undefined);
    await assert.rejects(config([], { WEFT_DASHBOARD: 'maybe' }), invalidOption('dashboard'));
  });
});
