import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseCommandLine, startConfig } from '../../src/cli/config.ts';
import { freePort, get } from '../cluster/helpers.ts';
import { invalidOption, within } from '../helpers.ts';
import { find, parseExposition } from '../metrics/helpers.ts';
import { killStarted, runWeft, startWeft } from './helpers.ts';

const app = new URL('../cluster/fixtures/metrics-app.ts', import.meta.url).pathname;
const runtime = mkdtempSync(join(tmpdir(), 'weft-cli-metrics-'));
const env = { ...process.env, WEFT_RUNTIME_DIR: join(runtime, 'run') };
after(() => {
  killStarted();
  rmSync(runtime, { recursive: true, force: true });
});

const weft = (args: string[]) => runWeft(args, env);

describe('weft start --metrics-port and weft status --json', () => {
  it('serves the merged scrape on --metrics-port; status --json carries each worker’s snapshot', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const { exit, output } = await startWeft(
      [app, '--workers', '2', '--name', 'metricscli', '--metrics-port', String(metricsPort)],
      { env: { ...env, PORT: String(port) } },
    );
    const out = output();
    assert.match(out, new RegExp(`"msg":"metrics on http://127\\.0\\.0\\.1:${metricsPort}/metrics"`));

    const r = await get(metricsPort, '/metrics');
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    const e = parseExposition(r.body);
    assert.deepEqual(
      find(e, 'weft_pool_tasks_total', { outcome: 'completed' })
        .map((x) => `${x.labels.worker}=${x.value}`)
        .sort(),
      ['0=2', '1=4'],
    );

    const status = await weft(['status', '--name', 'metricscli', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as {
      slots: { pid: number; metrics?: { pid: number; pools: Record<string, { completed: number }> } }[];
      metricsTotals: { name: string; value: number; labels: Record<string, string> }[];
    };
    assert.deepEqual(
      parsed.slots.map((s) => [s.metrics?.pid === s.pid, s.metrics?.pools.work?.completed]),
      [
        [true, 2],
        [true, 4],
      ],
    );
    assert.ok(parsed.metricsTotals.some((t) => t.name === 'weft_pool_tasks_cluster_total' && t.value === 6));
    const table = await weft(['status', '--name', 'metricscli']);
    assert.match(
      table.stdout,
      /^slot +pid +state +uptime +restarts +rss +loop p99 +elu +req\/s +last exit$/m,
    );

    await weft(['stop', '--name', 'metricscli']);
    assert.equal(await within(exit, 20_000, 'weft start to exit'), 0);
  });

  it('takes the port from WEFT_METRICS_PORT or the config file; the flag wins; a bad one exits 2', async () => {
    const dir = mkdtempSync(join(runtime, 'cfg-'));
    const cfg = join(dir, 'weft.config.json');
    writeFileSync(cfg, JSON.stringify({ exec: app, metricsPort: 9101, metricsHost: '0.0.0.0' }));
    const config = (argv: string[], e: NodeJS.ProcessEnv = {}) =>
      startConfig(parseCommandLine(['start', '--config', cfg, ...argv]), e);
    assert.deepEqual(
      [(await config([])).metricsPort, (await config([])).metricsHost],
      [9101, '0.0.0.0'],
      'from the file',
    );
    assert.equal((await config([], { WEFT_METRICS_PORT: '9102' })).metricsPort, 9102, 'env over the file');
    assert.equal(
      (await config(['--metrics-port', '9103', '--metrics-host', '::1'], { WEFT_METRICS_PORT: '9102' }))
        .metricsPort,
      9103,
      'the flag over both',
    );
    await assert.rejects(config(['--metrics-port', 'abc']), invalidOption('metrics-port'));
    await assert.rejects(config(['--metrics-port', '70000']), invalidOption('metrics-port'));
    const bad = await weft(['start', app, '--metrics-port', 'nine']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"metrics-port" option must be a TCP port/);
  });

  it('--crash-loop-retry (or WEFT_CRASH_LOOP_RETRY) sets crashLoop.retryAfter; a bad duration exits 2', async () => {
    const config = (argv: string[], e: NodeJS.ProcessEnv = {}) =>
      startConfig(parseCommandLine(['start', app, ...argv]), e);
    assert.deepEqual((await config(['--crash-loop-retry', '30s'])).crashLoop, {
      max: 5,
      windowMs: 60_000,
      retryAfter: 30_000,
    });
    assert.equal((await config([], { WEFT_CRASH_LOOP_RETRY: '2m' })).crashLoop?.retryAfter, 120_000);
    assert.equal((await config([])).crashLoop, undefined, 'no retry unless asked');
    await assert.rejects(config(['--crash-loop-retry', 'soon']), invalidOption('crash-loop-retry'));
  });
});
