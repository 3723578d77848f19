import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type WeftError, WorkerCrashedError, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, rejection, track, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool crash recovery', () => {
  it('process.exit in a task rejects it with WorkerCrashedError within 100 ms and replaces the thread', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const before = await pool.run('threadId');
    const death = new SharedArrayBuffer(8);
    const err = await rejection(
      pool.run('exitAt', [death, 3]).catch((e: unknown) => {
        const latency = performance.timeOrigin + performance.now() - new Float64Array(death)[0]!;
        assert.ok(latency < 100, `rejected ${latency.toFixed(1)} ms after the thread died`);
        throw e;
      }),
    );
    assert.ok(err instanceof WorkerCrashedError);
    assert.equal(err.code, 'ERR_WEFT_WORKER_CRASHED');
    assert.equal(err.exitCode, 3);
    const after = await within(pool.run('threadId'), 10_000, 'a task after the crash');
    assert.notEqual(after, before);
    assert.equal(pool.stats().crashed, 1);
  });

  it('an error thrown outside any task crashes the thread: in-flight tasks reject with it as cause', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const errors: unknown[] = [];
    pool.on('error', (e) => errors.push(e));
    const exits: WorkerInfo[] = [];
    pool.on('workerExit', (info: WorkerInfo) => exits.push(info));
    const err = (await rejection(pool.run('throwLater', ['escaped']))) as WorkerCrashedError;
    assert.ok(err instanceof WorkerCrashedError);
    assert.equal(err.exitCode, 1);
    assert.match(err.message, /escaped/);
    assert.equal((err.cause as Error).message, 'escaped');
    assert.equal(errors.length, 1, 'the error event was emitted');
    assert.equal(await pool.run('add', [2, 2]), 4);
    assert.deepEqual(
      exits.map((e) => e.reason),
      ['crashed'],
    );
  });

  it('an uncaught error with no error listener does not crash the caller', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    assert.ok((await rejection(pool.run('throwLater', ['quiet']))) instanceof WorkerCrashedError);
  });

  it('tasks handed to a thread that crashed before starting them run again on the new thread', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run('add', [i, i])));
    const crash = pool.run('exit', [9]);
    const rest = Array.from({ length: 10 }, (_, i) => pool.run('add', [i, 100]));
    assert.equal(((await rejection(crash)) as WorkerCrashedError).exitCode, 9);
    assert.deepEqual(
      await within(Promise.all(rest), 10_000, 'the re-queued tasks'),
      Array.from({ length: 10 }, (_, i) => i + 100),
    );
  });

  it('out of memory under resourceLimits rejects with WorkerCrashedError and the pool recovers', async () => {
    const pool = track(
      new Pool<Tasks>({
        filename,
        maxThreads: 1,
        resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
      }),
    );
    const err = (await rejection(pool.run('allocate', [512]), 60_000)) as WorkerCrashedError;
    assert.ok(err instanceof WorkerCrashedError);
    assert.equal((err.cause as { code?: string }).code, 'ERR_WORKER_OUT_OF_MEMORY');
    assert.equal(await pool.run('add', [1, 2]), 3);
  });

  it('a module that throws at load rejects every queued task with the load error, without respawning forever', async () => {
    const pool = track(new Pool({ filename: fixture('load-error.ts'), maxThreads: 2 }));
    let starts = 0;
    pool.on('workerStart', () => starts++);
    const results = await within(
      Promise.allSettled(Array.from({ length: 20 }, () => pool.run('never'))),
      10_000,
      'queued tasks to reject',
    );
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const err = (r as PromiseRejectedResult).reason as WeftError;
      assert.equal(err.code, 'ERR_WEFT_MODULE_LOAD');
      assert.ok(err.cause instanceof TypeError);
      assert.equal((err.cause as Error).message, 'broken at load');
    }
    assert.equal(starts, 0);
    // During the back-off a new task is refused at once, with no new thread.
    const again = (await rejection(pool.run('never'), 1_000)) as WeftError;
    assert.equal(again.code, 'ERR_WEFT_MODULE_LOAD');
    assert.ok(pool.stats().crashed <= 2, `threads started: ${pool.stats().crashed}`);
  });

  it('a module that exits while loading rejects with ERR_WEFT_MODULE_LOAD and the exit code', async () => {
    const pool = track(new Pool({ filename: fixture('exit-at-load.ts'), maxThreads: 1 }));
    const err = (await rejection(pool.run('anything'))) as WeftError;
    assert.equal(err.code, 'ERR_WEFT_MODULE_LOAD');
    assert.match(err.message, /exit code 7/);
  });

  it('a missing module rejects with ERR_WEFT_MODULE_LOAD', async () => {
    const pool = track(new Pool({ filename: fixture('does-not-exist.ts'), maxThreads: 1 }));
    const err = (await rejection(pool.run('anything'))) as WeftError;
    assert.equal(err.code, 'ERR_WEFT_MODULE_LOAD');
    assert.equal((err.cause as { code?: string }).code, 'ERR_MODULE_NOT_FOUND');
  });
});

describe('pool thread start failures', () => {
  it('a thread the platform refuses to start (bad execArgv) rejects waiting tasks instead of hanging', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, execArgv: ['--use-largepages=off'] }));
    const err = (await rejection(pool.run('add', [1, 2]), 5_000)) as WeftError;
    assert.equal(err.code, 'ERR_WEFT_MODULE_LOAD');
    assert.equal((err.cause as { code?: string }).code, 'ERR_WORKER_INVALID_EXEC_ARGV');
    assert.equal(pool.threadCount, 0);
  });
});
