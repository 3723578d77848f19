import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, Gate, nextEvent, track, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool threads', () => {
  it('lazy start: no thread until the first task', async () => {
    const pool = track(new Pool<Tasks>({ filename, minThreads: 2, maxThreads: 2 }));
    assert.equal(pool.threadCount, 0);
    await pool.run('add', [1, 1]);
    assert.equal(pool.threadCount, 2, 'the first task brings up minThreads threads');
  });

  it('eager start: minThreads threads start at construction', async () => {
    const started: number[] = [];
    const pool = track(new Pool<Tasks>({ filename, minThreads: 2, maxThreads: 3, eager: true }));
    assert.equal(pool.threadCount, 2);
    pool.on('workerStart', (info: WorkerInfo) => started.push(info.threadId));
    await within(
      new Promise<void>((resolve) => {
        const check = () => (started.length === 2 ? resolve() : setImmediate(check));
        check();
      }),
      10_000,
      'two workerStart events',
    );
    assert.equal(new Set(started).size, 2);
  });

  it('never runs more than maxThreads threads; the rest waits in the queue', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2 }));
    const gate = new Gate();
    const tasks = Array.from({ length: 5 }, (_, i) => pool.run('block', [gate.sab, i]));
    await gate.started(2);
    assert.equal(pool.threadCount, 2);
    assert.equal(pool.queueSize, 3);
    assert.deepEqual(pool.stats().threads, { total: 2, idle: 0, busy: 2 });
    gate.open();
    assert.deepEqual(await within(Promise.all(tasks), 10_000, 'tasks'), [0, 1, 2, 3, 4]);
  });

  it('fills idle threads before handing tasks ahead to busy ones', async () => {
    const pool = track(new Pool<Tasks>({ filename, minThreads: 2, maxThreads: 2 }));
    // 1 ms tasks: short enough that busy threads are handed one task ahead.
    await Promise.all(Array.from({ length: 40 }, () => pool.run('spin', [1])));
    const gate = new Gate();
    const tasks = [pool.run('block', [gate.sab, 'a']), pool.run('block', [gate.sab, 'b'])];
    await gate.started(2); // both run at once: neither waits behind the other
    gate.open();
    assert.deepEqual(await Promise.all(tasks), ['a', 'b']);
  });

  it('shrinks to minThreads after idleTimeout', async () => {
    const pool = track(new Pool<Tasks>({ filename, minThreads: 1, maxThreads: 2, idleTimeout: 50 }));
    const gate = new Gate();
    const tasks = [pool.run('block', [gate.sab]), pool.run('block', [gate.sab])];
    await gate.started(2);
    assert.equal(pool.threadCount, 2);
    const exit = nextEvent<WorkerInfo>(pool, 'workerExit');
    gate.open();
    await Promise.all(tasks);
    const info = await exit;
    assert.equal(info.reason, 'idle');
    assert.equal(pool.threadCount, 1);
  });

  it('runs up to concurrentTasksPerWorker async tasks on one thread', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, concurrentTasksPerWorker: 3 }));
    const gate = new Gate();
    const tasks = Array.from({ length: 4 }, (_, i) => pool.run('blockAsync', [gate.sab, i]));
    await gate.started(3);
    assert.equal(pool.threadCount, 1);
    assert.equal(pool.stats().running, 3);
    assert.equal(pool.queueSize, 1);
    gate.open();
    assert.deepEqual(await within(Promise.all(tasks), 10_000, 'tasks'), [0, 1, 2, 3]);
  });

  it('passes workerData, env and execArgv to the threads', async () => {
    const src = `import { workerData } from 'node:worker_threads';
      export function data() { return workerData; }
      export function env(k) { return process.env[k]; }
      export function argv() { return process.execArgv; }`;
    const pool = track(
      new Pool({
        filename: new URL(`data:text/javascript,${encodeURIComponent(src)}`),
        maxThreads: 1,
        workerData: { answer: 42 },
        env: { WEFT_TEST_VAR: 'yes' },
        execArgv: ['--no-warnings'],
      }),
    );
    assert.deepEqual(await pool.run('data'), { answer: 42 });
    assert.equal(await pool.run('env', ['WEFT_TEST_VAR']), 'yes');
    assert.deepEqual(await pool.run('argv'), ['--no-warnings']);
  });
});
