import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Supervisor, supervise } from '../../src/cluster/index.ts';
import { WeftError } from '../../src/errors.ts';
import { until, within } from '../helpers.ts';
import { freePort } from './helpers.ts';

const exec = new URL('./fixtures/app.ts', import.meta.url);
const quiet = { info() {}, warn() {}, error() {} };

async function withSupervisor(
  env: Record<string, string>,
  body: (s: Supervisor) => Promise<void>,
): Promise<void> {
  const s = await supervise({
    exec,
    workers: 2,
    env: { PORT: String(await freePort()), ...env },
    exit: false,
    handleSignals: false,
    prefixOutput: false,
    statsInterval: 100,
    logger: quiet,
  });
  try {
    await body(s);
  } finally {
    assert.equal(await within(s.stop(), 20_000, 'stop'), 0);
  }
}

describe('supervisor IPC', () => {
  it('request/response with a timeout, broadcast, worker messages and stats', async () => {
    await withSupervisor({}, async (s) => {
      assert.equal(await s.request(0, 'double', 21), 42);
      assert.equal(await s.request(1, 'double', 5), 10);
      await assert.rejects(s.request(0, 'fail'), (err: unknown) => {
        return err instanceof WeftError && err.code === 'ERR_WEFT_IPC' && /handler failed/.test(err.message);
      });
      await assert.rejects(s.request(0, 'nope'), /no handler for request "nope"/);
      await assert.rejects(
        s.request(0, 'slow', undefined, { timeout: 100 }),
        /did not answer "slow" within 100 ms/,
      );
      await assert.rejects(s.request(7, 'double', 1), /worker 7 is not connected/);

      const echoes: unknown[] = [];
      const both = new Promise<void>((resolve) =>
        s.on('message', (_slot: number, data: unknown) => {
          echoes.push(data);
          if (echoes.length === 2) resolve();
        }),
      );
      assert.equal(s.broadcast({ hello: 1 }), 2);
      await within(both, 5_000, 'echoes from both workers');
      assert.deepEqual(echoes.map((e) => (e as { index: number }).index).sort(), [0, 1]);

      await until(() => s.status().slots.every((x) => x.stats), 5_000, 'stats from every worker');
      const stats = s.status().slots[0]!.stats!;
      assert.ok(stats.rss > 0 && stats.heapUsed > 0);
      assert.ok(stats.eventLoopUtilization >= 0 && stats.eventLoopUtilization <= 1);
      assert.deepEqual(stats.custom, { gauge: 7 });
      const before = s.status().slots.reduce((n, x) => n + (x.stats?.requests ?? 0), 0);
      const port = Number((s.options.env as { PORT: string }).PORT);
      for (let i = 0; i < 10; i++) await (await fetch(`http://127.0.0.1:${port}/pid`)).text();
      await until(
        () => s.status().slots.reduce((n, x) => n + (x.stats?.requests ?? 0), 0) >= before + 10,
        5_000,
        'the requests to show in the stats',
      );
    });
  });

  it('a worker that never listens becomes ready by calling worker.ready()', async () => {
    await withSupervisor({ NO_LISTEN: '1' }, async (s) => {
      assert.deepEqual(
        s.status().slots.map((x) => x.state),
        ['ready', 'ready'],
      );
    });
  });

  it('validates its options', async () => {
    const bad: object[] = [
      { exec: 'relative.js' },
      { exec: exec.pathname, workers: 0 },
      { exec: exec.pathname, workers: 'many' },
      { exec: exec.pathname, killTimeout: -1 },
      { exec: exec.pathname, maxMemory: Number.NaN },
      { exec: exec.pathname, maxSurge: 0 },
      { exec: exec.pathname, crashLoop: { max: -1, windowMs: 1 } },
    ];
    for (const options of bad) {
      await assert.rejects(
        supervise(options as never),
        { code: 'ERR_WEFT_INVALID_OPTION' },
        JSON.stringify(options),
      );
    }
  });
});
