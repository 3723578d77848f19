import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { Pool, type PoolOptions } from '../../src/pool/index.ts';
import { fixture, invalidOption, track } from '../helpers.ts';

const filename = fixture('tasks.ts');

describe('pool options', () => {
  it('defaults: maxThreads = available parallelism, one min thread, lazy start', async () => {
    const pool = track(new Pool({ filename }));
    assert.equal(pool.options.maxThreads, availableParallelism());
    assert.equal(pool.options.minThreads, 1);
    assert.equal(pool.options.eager, false);
    assert.equal(pool.options.concurrentTasksPerWorker, 1);
    assert.equal(pool.options.maxQueue, Number.POSITIVE_INFINITY);
    assert.equal(pool.threadCount, 0, 'lazy: no thread before the first task');
    assert.ok(Object.isFrozen(pool.options));
  });

  it('defaults maxThreads to the supervisor budget WEFT_THREADS when set', () => {
    const saved = process.env.WEFT_THREADS;
    try {
      process.env.WEFT_THREADS = '3';
      assert.equal(new Pool({ filename }).options.maxThreads, 3);
      process.env.WEFT_THREADS = 'nonsense';
      assert.equal(new Pool({ filename }).options.maxThreads, availableParallelism());
    } finally {
      if (saved === undefined) delete process.env.WEFT_THREADS;
      else process.env.WEFT_THREADS = saved;
    }
  });

  it('accepts a file URL, a file: string and an absolute path', async () => {
    for (const f of [filename, filename.href, filename.pathname]) {
      const pool = track(new Pool({ filename: f, maxThreads: 1 }));
      assert.equal(await pool.run('add', [2, 3]), 5);
    }
  });

  const bad: [string, Partial<PoolOptions>][] = [
    ['filename', { filename: '' }],
    ['filename', { filename: 'relative/tasks.js' }],
    ['filename', { filename: new URL('https://example.invalid/tasks.js') }],
    ['maxThreads', { maxThreads: 0 }],
    ['maxThreads', { maxThreads: 1.5 }],
    ['maxThreads', { maxThreads: Number.POSITIVE_INFINITY }],
    ['concurrentTasksPerWorker', { concurrentTasksPerWorker: Number.POSITIVE_INFINITY }],
    ['idleTimeout', { idleTimeout: 2 ** 31 }],
    ['cancelGrace', { cancelGrace: 2 ** 40 }],
    ['timeout', { timeout: 2 ** 31 }],
    ['minThreads', { minThreads: 3, maxThreads: 2 }],
    ['minThreads', { minThreads: -1 }],
    ['idleTimeout', { idleTimeout: -1 }],
    ['concurrentTasksPerWorker', { concurrentTasksPerWorker: 0 }],
    ['maxQueue', { maxQueue: -1 }],
    ['timeout', { timeout: Number.NaN }],
    ['cancelGrace', { cancelGrace: -5 }],
    ['maxTasksPerWorker', { maxTasksPerWorker: 0 }],
    ['maxHeapUsed', { maxHeapUsed: -1 }],
    ['eager', { eager: 'yes' as unknown as boolean }],
    ['execArgv', { execArgv: [1] as unknown as string[] }],
  ];
  for (const [option, opts] of bad) {
    it(`rejects a bad ${option}: ${JSON.stringify(opts, (_, v) => (v instanceof URL ? v.href : v))}`, () => {
      assert.throws(() => new Pool({ filename, ...opts } as PoolOptions), invalidOption(option));
    });
  }

  it('accepts Infinity where it means "never" or "unbounded"', async () => {
    const inf = Number.POSITIVE_INFINITY;
    const pool = track(
      new Pool({
        filename,
        maxThreads: 1,
        idleTimeout: inf,
        cancelGrace: inf,
        maxQueue: inf,
        maxTasksPerWorker: inf,
      }),
    );
    assert.equal(await pool.run('add', [1, 1]), 2);
  });

  it('rejects a missing options object', () => {
    assert.throws(() => new Pool(undefined as unknown as PoolOptions), { code: 'ERR_WEFT_INVALID_OPTION' });
  });
});
