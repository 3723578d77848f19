import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, Gate, nextEvent, rejection, track, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool cancellation', () => {
  it('an already aborted signal rejects at once with its reason', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const reason = new Error('caller gave up');
    assert.equal(await rejection(pool.run('add', [1, 2], { signal: AbortSignal.abort(reason) })), reason);
    assert.equal(pool.queueSize, 0);
    assert.equal(pool.threadCount, 0, 'nothing was started for it');
  });

  it('aborting a queued task removes it at once', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const gate = new Gate();
    const blocker = pool.run('block', [gate.sab]);
    await gate.started(1);
    const ac = new AbortController();
    const queued = pool.run('countIn', [gate.sab, 'x'], { signal: ac.signal });
    const other = pool.run('countIn', [gate.sab, 'y']);
    assert.equal(pool.queueSize, 2);
    ac.abort();
    const err = (await rejection(queued, 1_000)) as Error;
    assert.equal(err.name, 'AbortError');
    assert.equal(pool.queueSize, 1);
    gate.open();
    assert.equal(await other, 'y');
    await blocker;
    assert.equal(gate.count, 2, 'the cancelled task never ran (1 blocker + 1 other)');
    assert.equal(pool.stats().cancelled, 1);
  });

  it('aborting a running synchronous task rejects at once and replaces its thread', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const before = await pool.run('threadId');
    const gate = new Gate(); // never opened: the task is stuck in Atomics.wait, like a busy loop
    const ac = new AbortController();
    const running = pool.run('block', [gate.sab], { signal: ac.signal });
    await gate.started(1);
    const exited = nextEvent<WorkerInfo>(pool, 'workerExit');
    const reason = new Error('stop');
    ac.abort(reason);
    assert.equal(await rejection(running, 1_000), reason);
    const info = await exited;
    assert.equal(info.threadId, before);
    assert.equal(info.reason, 'cancelled');
    const after = await within(pool.run('threadId'), 10_000, 'a task on the new thread');
    assert.notEqual(after, before);
    assert.equal(pool.stats().cancelled, 1);
  });

  it('a cooperative async task sees its signal and stops; its thread is kept', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, cancelGrace: 5_000 }));
    const before = await pool.run('threadId');
    let exits = 0;
    pool.on('workerExit', () => exits++);
    const ac = new AbortController();
    const gate = new Gate();
    const task = pool.run('cooperative', [gate.sab, 60_000], { signal: ac.signal });
    await gate.started(1); // running, and awaiting

    ac.abort();
    assert.equal(((await rejection(task, 1_000)) as Error).name, 'AbortError');
    // The thread finishes the task cooperatively and keeps serving.
    assert.equal(await within(pool.run('threadId'), 5_000, 'next task'), before);
    assert.equal(exits, 0);
  });

  it('an async task that ignores its signal is terminated after cancelGrace', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, cancelGrace: 30 }));
    const gate = new Gate(); // never opened
    const ac = new AbortController();
    const task = pool.run('blockAsync', [gate.sab], { signal: ac.signal });
    await gate.started(1);
    const exited = nextEvent<WorkerInfo>(pool, 'workerExit');
    ac.abort();
    await rejection(task, 1_000);
    assert.equal((await exited).reason, 'cancelled');
    assert.equal(await pool.run('add', [1, 1]), 2);
  });

  it('a task handed to a busy thread but not started is skipped there, and the thread is kept', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    // Tiny tasks first, so the pool hands a busy thread several tasks in one message.
    await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run('add', [i, i])));
    let exits = 0;
    pool.on('workerExit', () => exits++);
    const gate = new Gate();
    const blocker = pool.run('block', [gate.sab]);
    const ac = new AbortController();
    const labels = ['a', 'b', 'c', 'd'];
    const tasks = labels.map((l) =>
      pool.run('countIn', [gate.sab, l], l === 'c' ? { signal: ac.signal } : {}),
    );
    await gate.started(1);
    assert.equal(pool.queueSize, 0, 'all handed to the thread');
    ac.abort();
    assert.equal(((await rejection(tasks[2]!, 1_000)) as Error).name, 'AbortError');
    gate.open();
    await blocker;
    assert.equal(await tasks[0], 'a');
    assert.equal(await tasks[1], 'b');
    assert.equal(await tasks[3], 'd');
    assert.equal(gate.count, 4, 'blocker + a, b, d: c never ran');
    assert.equal(exits, 0);
  });
});
