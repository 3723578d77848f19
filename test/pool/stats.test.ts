import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, Gate, rejection, track } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool stats and events', () => {
  it('counts completed, failed, cancelled, timed out and crashed tasks, with wait and run histograms', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2 }));
    const empty = pool.stats();
    assert.equal(empty.completed, 0);
    assert.equal(empty.runTime.count, 0);
    assert.equal(empty.threads.total, 0);

    await Promise.all(Array.from({ length: 50 }, (_, i) => pool.run('add', [i, 1])));
    await Promise.all(Array.from({ length: 4 }, () => pool.run('spin', [20])));
    await rejection(pool.run('fail', ['x']));
    await rejection(pool.run('sleep', [10_000], { timeout: 20 }));
    await rejection(pool.run('add', [1, 1], { signal: AbortSignal.abort() }));
    await rejection(pool.run('exit', [2]));

    const s = pool.stats();
    assert.equal(s.completed, 54);
    assert.equal(s.failed, 2, 'the thrown error and the crash');
    assert.equal(s.timedOut, 1);
    assert.equal(s.cancelled, 1);
    assert.equal(s.crashed, 1);
    assert.equal(s.queued, 0);
    assert.equal(s.running, 0);
    assert.equal(s.runTime.count, 55, 'every task that reported a run time');
    assert.ok(s.runTime.max >= 19, `the 20 ms spins show in the max run time (${s.runTime.max})`);
    assert.ok(
      s.runTime.p50 <= s.runTime.p90 && s.runTime.p90 <= s.runTime.p99 && s.runTime.p99 <= s.runTime.max,
    );
    assert.ok(s.waitTime.count === 55 && s.waitTime.p50 >= 0);
    assert.ok(s.utilization >= 0 && s.utilization <= 1);
    assert.equal(s.threads.total, s.threads.idle + s.threads.busy);
  });

  it('reports busy threads and the queue while tasks run', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const gate = new Gate();
    const tasks = [pool.run('block', [gate.sab]), pool.run('add', [1, 1])];
    await gate.started(1);
    const s = pool.stats();
    assert.deepEqual(s.threads, { total: 1, idle: 0, busy: 1 });
    assert.equal(s.running, 1);
    assert.equal(s.queued, 1);
    gate.open();
    await Promise.all(tasks);
  });

  it('emits workerStart and workerExit with the thread id and the reason', async () => {
    const events: string[] = [];
    const pool = new Pool<Tasks>({ filename, maxThreads: 1, maxTasksPerWorker: 1 });
    pool.on('workerStart', (i: WorkerInfo) => events.push(`start:${i.threadId}`));
    pool.on('workerExit', (i: WorkerInfo) => events.push(`exit:${i.threadId}:${i.reason}`));
    const a = await pool.run('threadId');
    const b = await pool.run('threadId');
    await pool.close();
    assert.deepEqual(events, [`start:${a}`, `exit:${a}:recycled`, `start:${b}`, `exit:${b}:recycled`]);
  });
});
