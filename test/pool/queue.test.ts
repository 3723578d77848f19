import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, QueueFullError } from '../../src/pool/index.ts';
import { TaskQueue } from '../../src/pool/queue.ts';
import { fixture, Gate, nextEvent, rejection, track, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('TaskQueue', () => {
  const item = (priority: number, n: number) => ({ priority, queued: false, n });

  it('orders by priority (lower first), FIFO within a priority', () => {
    const q = new TaskQueue<ReturnType<typeof item>>();
    const input = [item(5, 1), item(1, 2), item(3, 3), item(1, 4), item(0, 5), item(5, 6), item(-2, 7)];
    for (const i of input) q.push(i);
    assert.equal(q.size, 7);
    const out: number[] = [];
    for (let i = q.shift(); i; i = q.shift()) out.push(i.n);
    assert.deepEqual(out, [7, 5, 2, 4, 3, 1, 6]);
    assert.equal(q.size, 0);
  });

  it('removes in O(1) and skips removed items; unshift puts an item first in its priority', () => {
    const q = new TaskQueue<ReturnType<typeof item>>();
    const items = Array.from({ length: 40 }, (_, n) => item(0, n));
    for (const i of items) q.push(i);
    assert.ok(q.remove(items[3]!));
    assert.ok(!q.remove(items[3]!), 'second removal is a no-op');
    q.unshift(item(0, 100));
    assert.equal(q.size, 40);
    const out: number[] = [];
    for (let i = q.shift(); i; i = q.shift()) out.push(i.n);
    assert.deepEqual(out, [100, ...items.map((i) => i.n).filter((n) => n !== 3)]);
  });
});

describe('pool queue', () => {
  it('runs queued tasks by priority, FIFO within a priority', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const gate = new Gate();
    const blocker = pool.run('block', [gate.sab]);
    await gate.started(1);
    const order: string[] = [];
    const submit = (label: string, priority: number) =>
      pool.run('echo', [label], { priority }).then((v) => {
        order.push(String(v));
      });
    const all = [submit('p5', 5), submit('p1-a', 1), submit('p3', 3), submit('p1-b', 1), submit('p0', 0)];
    assert.equal(pool.queueSize, 5);
    gate.open();
    await within(Promise.all([blocker, ...all]), 10_000, 'queued tasks');
    assert.deepEqual(order, ['p0', 'p1-a', 'p1-b', 'p3', 'p5']);
  });

  it('rejects at once with QueueFullError beyond maxQueue, and emits drain when the queue empties', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, maxQueue: 2 }));
    const gate = new Gate();
    const blocker = pool.run('block', [gate.sab]);
    await gate.started(1);
    const queued = [pool.run('add', [1, 1]), pool.run('add', [2, 2])];
    assert.equal(pool.queueSize, 2);
    assert.equal(pool.needsDrain, true);
    const err = await rejection(pool.run('add', [3, 3]), 1_000, 'QueueFullError');
    assert.ok(err instanceof QueueFullError);
    assert.equal(err.code, 'ERR_WEFT_QUEUE_FULL');
    assert.equal(err.maxQueue, 2);
    assert.equal(pool.queueSize, 2, 'the rejected task was not queued');
    const drained = nextEvent(pool, 'drain');
    gate.open();
    await drained;
    assert.equal(pool.queueSize, 0);
    assert.equal(pool.needsDrain, false);
    assert.deepEqual(await Promise.all([blocker, ...queued]), ['released', 2, 4]);
  });

  it('does not count tasks that free threads will take at once against maxQueue', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2, maxQueue: 0 }));
    assert.equal(pool.needsDrain, false, 'an idle pool never needs a drain');
    assert.deepEqual(await Promise.all([pool.run('add', [1, 1]), pool.run('add', [2, 2])]), [2, 4]);
    const third = Promise.allSettled([
      pool.run('sleep', [20]),
      pool.run('sleep', [20]),
      pool.run('sleep', [20]),
    ]);
    const [a, b, c] = await third;
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status, 'fulfilled');
    assert.equal(c.status, 'rejected');
    assert.equal((c as PromiseRejectedResult).reason.code, 'ERR_WEFT_QUEUE_FULL');
  });
});
