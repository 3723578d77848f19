import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, type WorkerInfo } from '../../src/pool/index.ts';
import { fixture, nextEvent, track } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool memory limits', () => {
  it('maxTasksPerWorker replaces a thread after that many tasks, between tasks', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, maxTasksPerWorker: 3 }));
    const ids: number[] = [];
    for (let i = 0; i < 7; i++) ids.push(await pool.run('threadId'));
    assert.equal(new Set(ids.slice(0, 3)).size, 1);
    assert.equal(new Set(ids.slice(3, 6)).size, 1);
    assert.notEqual(ids[0], ids[3]);
    assert.notEqual(ids[3], ids[6]);
  });

  it('maxTasksPerWorker holds when tiny tasks are handed over in batches', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2, maxTasksPerWorker: 10 }));
    const ids = await Promise.all(Array.from({ length: 300 }, () => pool.run('threadId')));
    const perThread = new Map<number, number>();
    for (const id of ids) perThread.set(id, (perThread.get(id) ?? 0) + 1);
    assert.ok(perThread.size >= 30, `300 tasks need at least 30 threads, used ${perThread.size}`);
    for (const [id, n] of perThread) assert.ok(n <= 10, `thread ${id} ran ${n} tasks`);
  });

  it('maxHeapUsed recycles a leaking thread after the task that passed it', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1, maxHeapUsed: 48 * 1024 * 1024 }));
    const first = await pool.run('threadId');
    const exited = nextEvent<WorkerInfo>(pool, 'workerExit');
    // Each call keeps 8 MiB more; the thread must be recycled before it grows without bound.
    let recycled = false;
    // `leak` returns how many chunks its thread holds: 1 again means a fresh thread took over.
    for (let i = 0; i < 20 && !recycled; i++) recycled = (await pool.run('leak', [8])) === 1 && i > 0;
    assert.ok(recycled, 'the leaking thread was replaced within 20 tasks (160 MiB)');
    const info = await exited;
    assert.equal(info.threadId, first);
    assert.equal(info.reason, 'recycled');
    assert.notEqual(await pool.run('threadId'), first);
  });

  it('only a pool with maxHeapUsed loads node:v8 into its threads', async () => {
    const src = `export function loaded() { return process.moduleLoadList.includes('NativeModule v8'); }`;
    const url = new URL(`data:text/javascript,${encodeURIComponent(src)}`);
    const plain = track(new Pool<{ loaded(): boolean }>({ filename: url, maxThreads: 1 }));
    // Asked twice: the second task runs after the first one's result was recorded.
    assert.equal(await plain.run('loaded'), false);
    assert.equal(await plain.run('loaded'), false);
    const limited = track(
      new Pool<{ loaded(): boolean }>({ filename: url, maxThreads: 1, maxHeapUsed: 1024 * 1024 * 1024 }),
    );
    assert.equal(await limited.run('loaded'), true);
  });

  it('resourceLimits are applied to each thread', async () => {
    const src = `import { resourceLimits } from 'node:worker_threads'; export function limits() { return resourceLimits; }`;
    const pool = track(
      new Pool({
        filename: new URL(`data:text/javascript,${encodeURIComponent(src)}`),
        maxThreads: 1,
        resourceLimits: { maxOldGenerationSizeMb: 64, stackSizeMb: 2 },
      }),
    );
    const limits = (await pool.run('limits')) as { maxOldGenerationSizeMb: number; stackSizeMb: number };
    assert.equal(limits.maxOldGenerationSizeMb, 64);
    assert.equal(limits.stackSizeMb, 2);
  });
});
