import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createLifecycle,
  InvalidOptionError,
  type LifecycleOptions,
  type Phase,
} from '../../src/lifecycle/index.ts';
import { Pool } from '../../src/pool/index.ts';
import { fixture, until, within } from '../helpers.ts';
import { memoryLogger } from './helpers.ts';

/** A lifecycle that never exits the test process and listens for no signal. */
function testLifecycle(options: LifecycleOptions = {}) {
  const logger = memoryLogger();
  const life = createLifecycle({ exit: false, signals: [], handleErrors: false, logger, ...options });
  return { life, logger };
}

describe('lifecycle shutdown phases', () => {
  it('runs readiness → listeners → drain → resources → flush, hooks of one phase together, and exits 0', async () => {
    const { life } = testLifecycle();
    const order: string[] = [];
    const phases: Phase[] = [];
    life.on('phase', (p: Phase) => phases.push(p));
    const hook = (name: string) => async () => {
      order.push(`${name}:start`);
      await new Promise((r) => setImmediate(r));
      order.push(`${name}:end`);
    };
    life.onShutdown('flush', hook('flush'), { phase: 'flush' });
    life.onShutdown('db', hook('db'), { phase: 'resources' });
    life.onShutdown('pool', hook('pool'));
    life.onShutdown('queue', hook('queue'), { phase: 'drain' });
    life.onShutdown('ready', hook('ready'), { phase: 'readiness' });
    life.onShutdown('listen', hook('listen'), { phase: 'listeners' });
    await life.ready();
    assert.equal(life.state, 'ready');
    const code = await within(life.shutdown('test'), 5_000, 'shutdown');
    assert.equal(code, 0);
    assert.equal(life.state, 'stopped');
    assert.deepEqual(phases, ['readiness', 'listeners', 'drain', 'resources', 'flush']);
    assert.deepEqual(order, [
      'ready:start',
      'ready:end',
      'listen:start',
      'listen:end',
      'pool:start',
      'queue:start',
      'pool:end',
      'queue:end',
      'db:start',
      'db:end',
      'flush:start',
      'flush:end',
    ]);
    assert.ok(life.signal.aborted, 'the lifecycle signal aborts when shutdown starts');
  });

  it('shutdown() is idempotent: one run, one exit code', async () => {
    const { life } = testLifecycle();
    let runs = 0;
    life.onShutdown('count', () => {
      runs++;
    });
    const a = life.shutdown('a');
    const b = life.shutdown('b');
    assert.equal(a, b);
    assert.equal(await a, 0);
    assert.equal(runs, 1);
  });

  it('a hook that throws is logged, the others still run, and the exit code is 1', async () => {
    const { life, logger } = testLifecycle();
    const ran: string[] = [];
    life.onShutdown('bad', () => {
      throw new Error('db already gone');
    });
    life.onShutdown('good', () => {
      ran.push('good');
    });
    life.onShutdown(
      'later',
      () => {
        ran.push('later');
      },
      { phase: 'flush' },
    );
    assert.equal(await life.shutdown('test'), 1);
    assert.deepEqual(ran, ['good', 'later']);
    const line = logger.lines.find((l) => l.level === 'error' && /"bad" failed/.test(l.msg ?? ''));
    assert.ok(line, 'the failure is logged');
    assert.equal(((line.obj as { err: Error }).err as Error).message, 'db already gone');
  });

  it('a hook that hangs is cut at its own timeout, its signal aborts, and the next phases run', async () => {
    const { life, logger } = testLifecycle({ shutdownTimeout: 10_000 });
    let aborted = false;
    life.onShutdown(
      'stuck',
      ({ signal }) =>
        new Promise(() => {
          signal.addEventListener('abort', () => {
            aborted = true;
          });
        }),
      { timeout: 50 },
    );
    let flushed = false;
    life.onShutdown(
      'flush',
      () => {
        flushed = true;
      },
      { phase: 'flush' },
    );
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 1);
    assert.ok(aborted);
    assert.ok(flushed);
    assert.ok(logger.lines.some((l) => /"stuck" timed out/.test(l.msg ?? '')));
  });

  it('the whole shutdown is bounded by shutdownTimeout: exit code 1, later phases not started', async () => {
    const { life, logger } = testLifecycle({ shutdownTimeout: 100 });
    let flushed = false;
    life.onShutdown('forever', () => new Promise(() => {}));
    life.onShutdown(
      'flush',
      () => {
        flushed = true;
      },
      { phase: 'flush' },
    );
    const t0 = performance.now();
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 1);
    assert.ok(performance.now() - t0 < 2_000);
    assert.equal(flushed, false);
    assert.ok(logger.lines.some((l) => /deadline passed/.test(l.msg ?? '')));
  });

  it('an explicit exit code wins, and the exit function receives it', async () => {
    const codes: number[] = [];
    const { life } = testLifecycle({ exit: (code) => codes.push(code) });
    assert.equal(await life.shutdown('fatal', { exitCode: 3 }), 3);
    assert.deepEqual(codes, [3]);
  });

  it('registers a weft/pool Pool and anything with close() or Symbol.asyncDispose in one line', async () => {
    const { life } = testLifecycle();
    const pool = new Pool({ filename: fixture('tasks.ts'), maxThreads: 1 });
    const pending = pool.run('sleep', [30]);
    let disposed = false;
    life.register(pool);
    life.register(
      {
        async [Symbol.asyncDispose]() {
          disposed = true;
        },
      },
      { phase: 'resources', name: 'file' },
    );
    assert.equal(await life.shutdown('test'), 0);
    assert.equal(await pending, 30, 'the pool finished its task before closing');
    assert.equal(pool.threadCount, 0);
    assert.ok(disposed);
  });

  it('readiness turns 503 at once when shutdown starts, before the drain delay ends', async () => {
    const { life } = testLifecycle({ drainDelay: 200 });
    await life.ready();
    assert.equal((await life.health.report('readiness')).status, 'ok');
    const phases: Phase[] = [];
    life.on('phase', (p: Phase) => phases.push(p));
    const done = life.shutdown('test');
    assert.equal((await life.health.report('readiness')).status, 'fail');
    assert.equal((await life.health.report('liveness')).status, 'ok', 'liveness stays green while draining');
    assert.deepEqual(phases, ['readiness'], 'listeners wait for the drain delay');
    assert.equal(await done, 0);
  });

  it('validates its options and arguments', () => {
    const bad: LifecycleOptions[] = [
      { shutdownTimeout: -1 },
      { shutdownTimeout: 2 ** 31 },
      { signals: ['SIGKILL' as 'SIGTERM'] },
      { logger: {} as never },
      { exit: 'yes' as never },
      { drainDelay: Number.NaN },
    ];
    for (const options of bad) {
      assert.throws(
        () => createLifecycle({ ...options, signals: options.signals ?? [] }),
        InvalidOptionError,
      );
    }
    const { life } = testLifecycle();
    assert.throws(() => life.onShutdown('', () => {}), InvalidOptionError);
    assert.throws(() => life.onShutdown('x', 1 as never), InvalidOptionError);
    assert.throws(() => life.onShutdown('x', () => {}, { phase: 'later' as never }), InvalidOptionError);
    assert.throws(() => life.register({} as never), InvalidOptionError);
    assert.throws(() => life.addServer({} as never), InvalidOptionError);
    life.close();
  });
});

describe('lifecycle drain order', () => {
  it('drain-phase hooks (pools, consumers) start only after every server has drained', async () => {
    const { createServer } = await import('node:http');
    const order: string[] = [];
    const server = createServer((_req, res) => {
      setTimeout(() => {
        order.push('request done');
        res.end('ok');
      }, 100);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const { life } = testLifecycle();
    life.addServer(server);
    life.onShutdown('pool', () => {
      order.push('pool closing');
    });
    const response = fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
    await within(
      new Promise<void>((resolve) => server.once('request', () => resolve())),
      5_000,
      'the request to arrive',
    );
    assert.equal(await life.shutdown('test'), 0);
    assert.equal(await response, 'ok');
    assert.deepEqual(order, ['request done', 'pool closing']);
  });
});

describe('lifecycle edge cases', () => {
  it('a hook with no timeout of its own has its signal aborted at the deadline', async () => {
    const { life } = testLifecycle({ shutdownTimeout: 100 });
    let aborted = false;
    life.onShutdown(
      'waits',
      ({ signal }) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
        }),
    );
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 1);
    assert.ok(aborted);
  });

  it('a drain delay as long as the deadline skips the later phases loudly, with exit code 1', async () => {
    const { life, logger } = testLifecycle({ shutdownTimeout: 100, drainDelay: 1_000 });
    let ran = false;
    life.onShutdown(
      'flush',
      () => {
        ran = true;
      },
      { phase: 'flush' },
    );
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 1);
    assert.equal(ran, false);
    assert.ok(logger.lines.some((l) => /deadline passed/.test(l.msg ?? '')));
  });

  it('one signal during a shutdown started otherwise does not force exit; a second one does', async () => {
    const codes: number[] = [];
    const { life, logger } = testLifecycle({ signals: ['SIGHUP'], exit: (code) => codes.push(code) });
    let release = () => {};
    life.onShutdown(
      'slow',
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
        }),
    );
    const done = life.shutdown('supervisor');
    process.kill(process.pid, 'SIGHUP');
    await until(
      () => logger.lines.some((l) => /already shutting down/.test(l.msg ?? '')),
      5_000,
      'the first signal to be seen',
    );
    assert.deepEqual(codes, [], 'not forced by the first signal');
    process.kill(process.pid, 'SIGHUP');
    await until(() => codes.length > 0, 5_000, 'the second signal to force exit');
    assert.deepEqual(codes, [1]);
    release();
    await done;
  });
});
