import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, TaskTimeoutError, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, Gate, nextEvent, rejection, track } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool timeouts', () => {
  it('a task past its timeout rejects with TaskTimeoutError; its thread is replaced; the pool keeps serving', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const before = await pool.run('threadId');
    const gate = new Gate(); // never opened
    const exited = nextEvent<WorkerInfo>(pool, 'workerExit');
    const err = await rejection(pool.run('block', [gate.sab], { timeout: 50 }), 5_000);
    assert.ok(err instanceof TaskTimeoutError);
    assert.equal(err.code, 'ERR_WEFT_TASK_TIMEOUT');
    assert.equal(err.timeout, 50);
    assert.match(err.message, /"block"/);
    const info = await exited;
    assert.equal(info.reason, 'timeout');
    assert.notEqual(await pool.run('threadId'), before);
    assert.equal(pool.stats().timedOut, 1);
  });

  it('timeout Infinity means none; timers Node cannot honour are refused', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, timeout: Number.POSITIVE_INFINITY }));
    assert.equal(pool.options.timeout, 0);
    assert.equal(await pool.run('sleep', [20], { timeout: Number.POSITIVE_INFINITY }), 20);
    const err = (await rejection(pool.run('sleep', [1], { timeout: 2 ** 31 }))) as { code: string };
    assert.equal(err.code, 'ERR_WEFT_INVALID_ARGUMENT');
  });

  it('uses the pool default timeout; a per-task timeout overrides it, 0 disables it', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, timeout: 40 }));
    assert.ok((await rejection(pool.run('sleep', [10_000]), 5_000)) instanceof TaskTimeoutError);
    assert.equal(await pool.run('sleep', [60], { timeout: 0 }), 60);
    assert.equal(await pool.run('sleep', [60], { timeout: 5_000 }), 60);
  });

  it('a timed-out task does not fail the other tasks waiting for its thread', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const gate = new Gate();
    const stuck = pool.run('block', [gate.sab], { timeout: 50 });
    const next = [pool.run('add', [1, 2]), pool.run('add', [3, 4])];
    assert.ok((await rejection(stuck, 5_000)) instanceof TaskTimeoutError);
    assert.deepEqual(await Promise.all(next), [3, 7]);
  });
});

describe('pool timeouts and hand-over', () => {
  it('a task waiting behind a busy thread is timed from its start, not from its submission', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    // Tiny tasks first, so the pool hands several tasks to the thread in one message.
    await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run('add', [i, i])));
    const gate = new Gate();
    const blocker = pool.run('block', [gate.sab]);
    const behind = pool.run('sleep', [60], { timeout: 100 });
    const untimed = pool.run('add', [20, 22]);
    await gate.started(1);
    // Keep the thread blocked past the waiting task's timeout (a deliberate delay: that is what is under test).
    await new Promise((resolve) => setTimeout(resolve, 150));
    gate.open();
    assert.equal(await blocker, 'released');
    assert.equal(await behind, 60, 'it ran 60 ms of its 100 ms, however long it waited');
    assert.equal(await untimed, 42);
  });
});
