import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pool, WeftError } from '../../src/pool/index.ts';
import { fixture, rejection, track } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool.run', () => {
  it('runs sync and async tasks and infers their result types', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2 }));
    const sum: number = await pool.run('add', [2, 40]);
    assert.equal(sum, 42);
    assert.equal(await pool.run('sleep', [5]), 5);
    assert.deepEqual(await pool.run('echo', [{ a: [1, 2], d: new Date(0) }]), { a: [1, 2], d: new Date(0) });
    const many = await Promise.all(Array.from({ length: 1000 }, (_, i) => pool.run('add', [i, 1])));
    assert.deepEqual(
      many,
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
  });

  it('rejects an unknown task name with ERR_WEFT_UNKNOWN_TASK and keeps serving', async () => {
    const pool = track(new Pool({ filename, maxThreads: 1 }));
    const err = await rejection(pool.run('nope', []));
    assert.ok(err instanceof WeftError, 'a WeftError');
    assert.equal(err.code, 'ERR_WEFT_UNKNOWN_TASK');
    assert.match(err.message, /"nope"/);
    assert.match(err.message, /"add"/, 'lists the exported tasks');
    assert.equal(await pool.run('add', [1, 1]), 2);
  });

  it('rejects bad arguments of run itself with ERR_WEFT_INVALID_ARGUMENT', async () => {
    const pool = track(new Pool({ filename, maxThreads: 1 }));
    const cases: unknown[][] = [
      [42, []],
      ['add', 'not an array'],
      ['add', [], 'options'],
      ['add', [], { priority: Number.NaN }],
      ['add', [], { timeout: -1 }],
      ['add', [], { signal: {} }],
      ['add', [], { transfer: 'x' }],
    ];
    for (const args of cases) {
      const err = await rejection((pool.run as (...a: unknown[]) => Promise<unknown>)(...args));
      assert.equal((err as WeftError).code, 'ERR_WEFT_INVALID_ARGUMENT', JSON.stringify(args));
    }
  });

  it('delivers task errors with name, message, worker stack, code, cause and own properties', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const err = (await rejection(pool.run('fail', ['boom']))) as RangeError & Record<string, unknown>;
    assert.ok(err instanceof RangeError);
    assert.equal(err.name, 'RangeError');
    assert.equal(err.message, 'boom');
    assert.equal(err.code, 'E_CUSTOM');
    assert.deepEqual(err.detail, { retry: true });
    assert.match(String(err.stack), /fixtures\/tasks\.ts/, 'the stack has the worker frames');
    assert.ok(err.cause instanceof Error);
    assert.equal((err.cause as Error).message, 'inner cause');
  });

  it('passes through thrown non-errors', async () => {
    const url = new URL(
      `data:text/javascript,${encodeURIComponent('export function t(){ throw { reason: "plain" } }; export function s(){ throw "str" }')}`,
    );
    const pool = track(new Pool({ filename: url, maxThreads: 1 }));
    assert.deepEqual(await rejection(pool.run('t')), { reason: 'plain' });
    assert.equal(await rejection(pool.run('s')), 'str');
  });

  it('rejects uncloneable arguments with ERR_WEFT_DATA_CLONE naming the task, without failing the batch', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const good = pool.run('add', [1, 2]);
    const bad = pool.run('echo', [() => 1]);
    const good2 = pool.run('add', [3, 4]);
    const err = (await rejection(bad)) as WeftError;
    assert.equal(err.code, 'ERR_WEFT_DATA_CLONE');
    assert.match(err.message, /task "echo"/);
    assert.equal(await good, 3);
    assert.equal(await good2, 7);
  });

  it('rejects an uncloneable result with ERR_WEFT_DATA_CLONE', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const [bad, good] = await Promise.allSettled([pool.run('returnFunction'), pool.run('add', [1, 1])]);
    assert.equal(bad.status, 'rejected');
    assert.equal((bad as PromiseRejectedResult).reason.code, 'ERR_WEFT_DATA_CLONE');
    assert.match((bad as PromiseRejectedResult).reason.message, /result of task "returnFunction"/);
    assert.ok((bad as PromiseRejectedResult).reason.cause instanceof Error, 'the clone error is the cause');
    assert.deepEqual(good, { status: 'fulfilled', value: 2 });
  });

  it('types: wrong task names and argument types do not compile', () => {
    // Checked by `tsc --noEmit`: each line below must be a type error, or the build fails.
    const typed = (pool: Pool<Tasks>) => {
      // @ts-expect-error: unknown task name
      void pool.run('nope', []);
      // @ts-expect-error: wrong argument type
      void pool.run('add', ['1', 2]);
      // @ts-expect-error: missing argument
      void pool.run('add', [1]);
      // @ts-expect-error: the result is a number, not a string
      const s: Promise<string> = pool.run('add', [1, 2]);
      return s;
    };
    assert.equal(typeof typed, 'function');
  });
});
