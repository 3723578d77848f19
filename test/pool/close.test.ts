import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Pool, WeftError } from '../../src/pool/index.ts';
import { fixture, Gate, rejection, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');
const children = new Set<number>();
after(() => {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

describe('pool shutdown', () => {
  it('close() refuses new tasks, finishes queued and running ones, then ends the threads', async () => {
    const pool = new Pool<Tasks>({ filename, maxThreads: 1 });
    const gate = new Gate();
    const running = pool.run('block', [gate.sab, 'done']);
    const queued = [pool.run('add', [1, 1]), pool.run('add', [2, 2])];
    await gate.started(1);
    const closing = pool.close();
    const refused = (await rejection(pool.run('add', [0, 0]), 1_000)) as WeftError;
    assert.equal(refused.code, 'ERR_WEFT_POOL_CLOSED');
    gate.open();
    await within(closing, 10_000, 'close()');
    assert.deepEqual(await Promise.all([running, ...queued]), ['done', 2, 4]);
    assert.equal(pool.threadCount, 0);
  });

  it('close() finishes the queue even when threads are recycled or crash while it waits', async () => {
    const recycled = new Pool<Tasks>({ filename, maxThreads: 1, maxTasksPerWorker: 1 });
    const tasks = [recycled.run('add', [1, 1]), recycled.run('add', [2, 2]), recycled.run('add', [3, 3])];
    await within(recycled.close(), 10_000, 'close() with recycling threads');
    assert.deepEqual(await Promise.all(tasks), [2, 4, 6]);

    const crashing = new Pool<Tasks>({ filename, maxThreads: 1 });
    const crash = rejection(crashing.run('exit', [1]));
    const after = crashing.run('add', [5, 5]);
    await within(crashing.close(), 10_000, 'close() after a crash');
    assert.equal(((await crash) as { code: string }).code, 'ERR_WEFT_WORKER_CRASHED');
    assert.equal(await after, 10);
  });

  it('close({ force: true }) and destroy() reject queued and running tasks with ERR_WEFT_POOL_CLOSED', async () => {
    for (const stop of [(p: Pool<Tasks>) => p.close({ force: true }), (p: Pool<Tasks>) => p.destroy()]) {
      const pool = new Pool<Tasks>({ filename, maxThreads: 1 });
      const gate = new Gate(); // never opened
      const tasks = [pool.run('block', [gate.sab]), pool.run('add', [1, 1])].map((t) => rejection(t, 10_000));
      await gate.started(1);
      await within(stop(pool), 10_000, 'forced close');
      for (const t of tasks) {
        const err = (await t) as WeftError;
        assert.ok(err instanceof WeftError);
        assert.equal(err.code, 'ERR_WEFT_POOL_CLOSED');
      }
      assert.equal(pool.threadCount, 0);
    }
  });

  it('close is idempotent, and a forced close while a graceful one waits forces it', async () => {
    const pool = new Pool<Tasks>({ filename, maxThreads: 1 });
    const gate = new Gate();
    const running = rejection(pool.run('block', [gate.sab]), 10_000);
    await gate.started(1);
    const first = pool.close();
    assert.equal(pool.close(), first);
    const forced = pool.destroy();
    assert.equal(forced, first);
    await within(first, 10_000, 'close');
    assert.equal(((await running) as WeftError).code, 'ERR_WEFT_POOL_CLOSED');
    await pool.close();
  });

  it('await using closes the pool at the end of the block', async (t) => {
    let pool: Pool;
    let result: unknown;
    if (supportsAwaitUsing()) {
      ({ pool, result } = await import('../fixtures/await-using.ts').then((m) =>
        m.runInUsingBlock(filename),
      ));
    } else {
      t.diagnostic(
        `Node ${process.version} cannot parse \`await using\`: checking Symbol.asyncDispose directly`,
      );
      pool = new Pool({ filename, maxThreads: 1 });
      result = await pool.run('add', [1, 2]);
      await pool[Symbol.asyncDispose]();
    }
    assert.equal(result, 3);
    assert.equal(pool.threadCount, 0);
    assert.equal(((await rejection(pool.run('add', [1, 2]))) as WeftError).code, 'ERR_WEFT_POOL_CLOSED');
  });

  it('an idle pool does not keep the process alive', async () => {
    const script = `
      import { Pool } from ${JSON.stringify(new URL('../../src/pool/index.ts', import.meta.url).href)};
      const pool = new Pool({ filename: ${JSON.stringify(filename.href)}, minThreads: 2, maxThreads: 2, eager: true });
      console.log(await pool.run('add', [20, 22]));
      // no close(): the process must still exit by itself`;
    const dir = await mkdtemp(join(tmpdir(), 'weft-idle-'));
    const file = join(dir, 'idle.mjs');
    await writeFile(file, script);
    const child = spawn(
      process.execPath,
      [...process.execArgv.filter((a) => a.startsWith('--conditions')), file],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.add(child.pid!);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    const code = await within(
      new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c))),
      20_000,
      'the child process to exit by itself',
    );
    children.delete(child.pid!);
    assert.equal(code, 0);
    assert.equal(out.trim(), '42');
    await rm(dir, { recursive: true, force: true });
  });
});

function supportsAwaitUsing(): boolean {
  try {
    new Function('return async () => { await using x = null; }');
    return true;
  } catch {
    return false;
  }
}
