import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { type MapContext, mapConcurrent, through } from '../../src/stream/index.ts';
import { invalidOption, rejection, until, within } from '../helpers.ts';
import {
  CountingSource,
  collect,
  type Deferred,
  deferred,
  isAbortError,
  stuckSink,
  turns,
} from './helpers.ts';

async function* range(n: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) yield i;
}

/** A mapping function whose calls the test settles by hand, in any order. */
function controlled<T>() {
  const calls: { item: T; context: MapContext; done: Deferred<unknown> }[] = [];
  let running = 0;
  let maxRunning = 0;
  const fn = async (item: T, context: MapContext) => {
    const done = deferred<unknown>();
    calls.push({ item, context, done });
    running++;
    maxRunning = Math.max(maxRunning, running);
    try {
      return await done.promise;
    } finally {
      running--;
    }
  };
  return { fn, calls, maxRunning: () => maxRunning, running: () => running };
}

describe('mapConcurrent', () => {
  it('never runs more than concurrency calls at once, and pauses the source meanwhile', async () => {
    const c = controlled<number>();
    const source = new CountingSource(20);
    const stage = mapConcurrent(c.fn, { concurrency: 3, ordered: false });
    const { sink, items } = collect<number>();
    const done = pipeline(source, stage, sink);
    await until(() => c.calls.length === 3, 5_000, 'three calls');
    await turns();
    assert.equal(c.calls.length, 3, 'no fourth call while three run');
    assert.ok(source.pulled <= 3 + 17, 'the source is not drained into memory');
    assert.equal(stage.stats().paused, true, 'the input waits for a slot');
    // Settle calls one at a time: each frees exactly one slot.
    for (let i = 0; i < 20; i++) {
      await until(() => c.calls.length > i, 5_000, `call ${i}`);
      c.calls[i]!.done.resolve(c.calls[i]!.item * 10);
    }
    await within(done, 5_000, 'the pipeline');
    assert.equal(c.maxRunning(), 3);
    assert.deepEqual(
      [...items].sort((a, b) => a - b),
      [...Array(20).keys()].map((i) => i * 10),
    );
    const stats = stage.stats();
    assert.equal(stats.started, 20);
    assert.equal(stats.settled, 20);
    assert.equal(stats.inFlight, 0);
    assert.ok(stats.pauses >= 1 && stats.pausedMs >= 0 && !stats.paused, JSON.stringify(stats));
  });

  it('ordered: emits in input order whatever the completion order, with a bounded reorder buffer', async () => {
    const c = controlled<number>();
    const source = new CountingSource(8);
    const stage = mapConcurrent(c.fn, { concurrency: 4 });
    const { sink, items } = collect<string>();
    const done = pipeline(source, stage, sink);
    await until(() => c.calls.length === 4, 5_000, 'four calls');
    // The last three finish first; they wait for call 0 and keep their slots, so nothing new starts.
    for (const i of [3, 2, 1]) c.calls[i]!.done.resolve(`r${i}`);
    await turns();
    assert.deepEqual(items, [], 'nothing passes before the first result');
    assert.equal(stage.stats().reorderBuffered, 3);
    assert.equal(c.calls.length, 4, 'finished results waiting in order still hold their slots');
    c.calls[0]!.done.resolve('r0');
    await until(() => items.length === 4, 5_000, 'the first four results');
    assert.deepEqual(items, ['r0', 'r1', 'r2', 'r3']);
    await until(() => c.calls.length === 8, 5_000, 'the next four calls');
    for (const i of [7, 5, 6, 4]) c.calls[i]!.done.resolve(`r${i}`);
    await within(done, 5_000, 'the pipeline');
    assert.deepEqual(items, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']);
    assert.equal(c.maxRunning(), 4);
  });

  it('unordered: emits results as they complete', async () => {
    const c = controlled<number>();
    const { sink, items } = collect<number>();
    const done = pipeline(range(3), mapConcurrent(c.fn, { concurrency: 3, ordered: false }), sink);
    await until(() => c.calls.length === 3, 5_000, 'three calls');
    for (const i of [2, 0, 1]) {
      c.calls[i]!.done.resolve(i);
      await until(() => items.length > 0 && items.at(-1) === i, 5_000, `result ${i}`);
    }
    await within(done, 5_000, 'the pipeline');
    assert.deepEqual(items, [2, 0, 1]);
  });

  it('gives fn the item index and a signal; drops undefined and null results, so it can end a pipeline', async () => {
    const seen: number[] = [];
    const stage = mapConcurrent(
      (item: number, { index, signal }: MapContext) => {
        assert.ok(signal instanceof AbortSignal && !signal.aborted);
        seen.push(index);
        return item % 3 === 0 ? undefined : item % 3 === 1 ? null : item;
      },
      { concurrency: 2 },
    );
    const { sink, items } = collect<number>();
    await within(pipeline(range(9), stage, sink), 5_000, 'the pipeline');
    assert.deepEqual(seen, [...Array(9).keys()]);
    assert.deepEqual(items, [2, 5, 8]);
    // As the last stage: it writes, returns nothing, and the pipeline ends.
    let written = 0;
    const last = mapConcurrent(
      async () => {
        written++;
      },
      { concurrency: 4 },
    );
    await within(pipeline(range(100), last), 5_000, 'a pipeline ending with mapConcurrent');
    assert.equal(written, 100);
  });

  it('a rejection of fn rejects the pipeline with that error, aborts the others and waits for them', async () => {
    const c = controlled<number>();
    const stage = mapConcurrent(c.fn, { concurrency: 3 });
    let settledBeforeReject = 0;
    const done = pipeline(range(100), stage, collect().sink);
    await until(() => c.calls.length === 3, 5_000, 'three calls');
    for (const call of [c.calls[0]!, c.calls[2]!]) {
      call.context.signal.addEventListener('abort', () => {
        // Cancelled work settles a little later, as a database driver would.
        setImmediate(() => {
          settledBeforeReject++;
          call.done.reject(call.context.signal.reason);
        });
      });
    }
    const boom = new TypeError('insert failed');
    c.calls[1]!.done.reject(boom);
    const err = await rejection(done, 5_000);
    assert.equal(err, boom, 'the error of fn, as is');
    assert.equal(c.calls[0]!.context.signal.reason, boom, 'the others see why they were aborted');
    assert.equal(settledBeforeReject, 2, 'the pipeline rejected only after the aborted calls settled');
    assert.equal(c.calls.length, 3, 'no call started after the failure');
    assert.equal(c.running(), 0);
  });

  it('a synchronous throw of fn, and a non-Error rejection, reject the pipeline', async () => {
    const thrown = await rejection(
      pipeline(
        range(5),
        mapConcurrent(
          () => {
            throw new RangeError('sync');
          },
          { concurrency: 2 },
        ),
        collect().sink,
      ),
      5_000,
    );
    assert.ok(thrown instanceof RangeError && thrown.message === 'sync');
    const odd = await rejection(
      pipeline(
        range(5),
        mapConcurrent(() => Promise.reject('nope'), { concurrency: 2 }),
        collect().sink,
      ),
      5_000,
    );
    assert.ok(odd instanceof Error && odd.message === 'nope' && odd.cause === 'nope', String(odd));
  });

  it('signal: aborting rejects the pipeline with an AbortError and aborts the calls in flight', async () => {
    const c = controlled<number>();
    const ac = new AbortController();
    const stage = mapConcurrent(c.fn, { concurrency: 2, signal: ac.signal });
    const done = pipeline(range(10), stage, collect().sink);
    await until(() => c.calls.length === 2, 5_000, 'two calls');
    for (const call of c.calls) {
      call.context.signal.addEventListener('abort', () => call.done.reject(call.context.signal.reason));
    }
    ac.abort(new Error('user gave up'));
    const err = await rejection(done, 5_000);
    assert.ok(isAbortError(err), String(err));
    assert.equal(((err as Error).cause as Error).message, 'user gave up');
    assert.ok(c.calls.every((call) => call.context.signal.aborted));
    assert.equal(c.running(), 0);
  });

  it('holds its input while the output is not read: a stuck consumer stops the source', async () => {
    const source = new CountingSource(100_000);
    const { sink, received } = stuckSink();
    const ac = new AbortController();
    const stage = mapConcurrent(async (x: number) => x, { concurrency: 8 });
    const done = pipeline(source, stage, sink, { signal: ac.signal });
    await until(() => received() === 1, 5_000, 'the sink to receive an item');
    await turns();
    assert.ok(source.pulled < 100, `the source was read ${source.pulled} times`);
    assert.ok(stage.readableLength <= stage.readableHighWaterMark + stage.concurrency);
    ac.abort();
    assert.ok(isAbortError(await rejection(done, 5_000)));
  });

  it('through(): for await over the output; leaving the loop early destroys the stages and aborts work', async () => {
    const results: number[] = [];
    for await (const v of through(
      range(10),
      mapConcurrent(async (x: number) => x * 2, { concurrency: 3 }),
    )) {
      results.push(v);
    }
    assert.deepEqual(results, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);

    const signals: AbortSignal[] = [];
    const stage = mapConcurrent(
      (x: number, { signal }: MapContext) => {
        signals.push(signal);
        return x === 0
          ? x
          : new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
      { concurrency: 3, ordered: false },
    );
    for await (const v of through(range(10), stage)) {
      assert.equal(v, 0);
      break;
    }
    await until(() => stage.destroyed && stage.stats().inFlight === 0, 5_000, 'the stage to close');
    assert.ok(signals.length >= 1 && signals.every((s) => s.aborted));

    async function* failing() {
      yield 1;
      throw new Error('source failed');
    }
    const err = await rejection(
      (async () => {
        for await (const _ of through(
          failing(),
          mapConcurrent(async (x: number) => x, { concurrency: 2 }),
        )) {
          // consume
        }
      })(),
      5_000,
    );
    assert.equal((err as Error).message, 'source failed');
  });

  it('refuses bad arguments and options with ERR_WEFT_INVALID_OPTION', () => {
    const fn = async (x: unknown) => x;
    assert.throws(() => mapConcurrent('f' as never, { concurrency: 1 }), invalidOption('fn'));
    assert.throws(() => mapConcurrent(fn, undefined as never), invalidOption('concurrency'));
    assert.throws(() => mapConcurrent(fn, null as never), invalidOption('options'));
    for (const concurrency of [0, -2, 1.5, '4', Number.POSITIVE_INFINITY]) {
      assert.throws(
        () => mapConcurrent(fn, { concurrency: concurrency as number }),
        invalidOption('concurrency'),
      );
    }
    assert.throws(() => mapConcurrent(fn, { concurrency: 1, ordered: 1 as never }), invalidOption('ordered'));
    assert.throws(() => mapConcurrent(fn, { concurrency: 1, signal: 'x' as never }), invalidOption('signal'));
    const stage = mapConcurrent(fn, { concurrency: 5 });
    assert.equal(stage.concurrency, 5);
    assert.equal(stage.ordered, true, 'ordered by default');
  });
});
