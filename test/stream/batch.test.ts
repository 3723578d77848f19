import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, it, mock } from 'node:test';
import { batch, through } from '../../src/stream/index.ts';
import { invalidOption, rejection, until, within } from '../helpers.ts';
import { CountingSource, collect, isAbortError, stuckSink, turns } from './helpers.ts';

async function* range(n: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) yield i;
}

afterEach(() => mock.timers.reset());

describe('batch', () => {
  it('groups items into arrays of size and flushes the tail at the end', async () => {
    const { sink, items } = collect<number[]>();
    await within(pipeline(range(25), batch({ size: 10 }), sink), 5_000, 'the pipeline');
    assert.deepEqual(
      items.map((b) => b.length),
      [10, 10, 5],
    );
    assert.deepEqual(items.flat(), [...Array(25).keys()]);
  });

  it('never emits an empty batch: none for an empty input, none at the end after a full one', async () => {
    const empty = collect<number[]>();
    await within(pipeline(range(0), batch({ size: 3 }), empty.sink), 5_000, 'the empty pipeline');
    assert.deepEqual(empty.items, []);
    const exact = collect<number[]>();
    await within(pipeline(range(6), batch({ size: 3 }), exact.sink), 5_000, 'the pipeline');
    assert.deepEqual(exact.items, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
  });

  it('flushes a partial batch maxWaitMs after its first item while the input stays open', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const stream = batch<string>({ size: 100, maxWaitMs: 500 });
    const seen: string[][] = [];
    stream.on('data', (b: string[]) => seen.push(b));
    stream.write('a');
    mock.timers.tick(300);
    stream.write('b');
    assert.equal(stream.pending, 2);
    mock.timers.tick(199);
    assert.deepEqual(seen, [], 'not before maxWaitMs from the first item');
    mock.timers.tick(1);
    assert.deepEqual(seen, [['a', 'b']]);
    assert.equal(stream.pending, 0);
    // The next batch starts its own clock with its first item.
    stream.write('c');
    mock.timers.tick(499);
    assert.equal(seen.length, 1);
    mock.timers.tick(1);
    assert.deepEqual(seen, [['a', 'b'], ['c']]);
    stream.end();
    await within(once(stream, 'end'), 5_000, 'end');
    assert.equal(seen.length, 2, 'nothing left at the end');
  });

  it('a full batch cancels its timer; destroy clears a pending one', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const stream = batch<number>({ size: 2, maxWaitMs: 100 });
    const seen: number[][] = [];
    stream.on('data', (b: number[]) => seen.push(b));
    stream.write(1);
    stream.write(2);
    mock.timers.tick(1_000);
    assert.deepEqual(seen, [[1, 2]], 'the full batch went out once, the timer did not fire an empty one');
    stream.write(3);
    stream.destroy();
    mock.timers.tick(1_000);
    assert.deepEqual(seen, [[1, 2]], 'a destroyed stream emits nothing more');
  });

  it('honours backpressure: a stuck consumer stops the source after a bounded number of items', async () => {
    const source = new CountingSource(100_000);
    const { sink, received } = stuckSink();
    const ac = new AbortController();
    const done = pipeline(source, batch({ size: 10 }), sink, { signal: ac.signal });
    await until(() => received() === 1, 5_000, 'the sink to receive a batch');
    // Let every buffer fill: the source is only read while someone makes room.
    await turns();
    const pulled = source.pulled;
    assert.ok(pulled < 200, `the source was read ${pulled} times; expected a few batches' worth`);
    ac.abort();
    assert.ok(isAbortError(await rejection(done, 5_000)));
  });

  it('passes an upstream error to the pipeline', async () => {
    async function* failing() {
      yield 1;
      throw new Error('source failed');
    }
    const err = await rejection(pipeline(failing(), batch({ size: 10 }), collect().sink), 5_000);
    assert.equal((err as Error).message, 'source failed');
  });

  it('signal: aborting destroys the stream with an AbortError and rejects the pipeline', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const ac = new AbortController();
    const stream = batch<number>({ size: 10, maxWaitMs: 100, signal: ac.signal });
    const done = pipeline(Readable.from(range(1_000_000)), stream, stuckSink().sink);
    ac.abort();
    const err = await rejection(done, 5_000);
    assert.ok(isAbortError(err), String(err));
    assert.ok(stream.destroyed);
    const already = batch({ size: 1, signal: AbortSignal.abort() });
    assert.ok(isAbortError(await rejection(pipeline(range(3), already, collect().sink), 5_000)));
  });

  it('can be read with for await through through(), typed as arrays', async () => {
    const sizes: number[] = [];
    for await (const rows of through(range(7), batch<number>({ size: 3 }))) sizes.push(rows.length);
    assert.deepEqual(sizes, [3, 3, 1]);
  });

  it('refuses bad options with ERR_WEFT_INVALID_OPTION naming the option', () => {
    assert.throws(() => batch(undefined as never), invalidOption('size'));
    assert.throws(() => batch(5 as never), invalidOption('options'));
    for (const size of [0, -1, 1.5, '10', Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => batch({ size: size as number }), invalidOption('size'));
    }
    for (const maxWaitMs of [-1, Number.NaN, 2 ** 31, '5']) {
      assert.throws(() => batch({ size: 1, maxWaitMs: maxWaitMs as number }), invalidOption('maxWaitMs'));
    }
    assert.throws(() => batch({ size: 1, signal: {} as AbortSignal }), invalidOption('signal'));
    assert.equal(batch({ size: 1, maxWaitMs: Number.POSITIVE_INFINITY }).maxWaitMs, Number.POSITIVE_INFINITY);
    assert.equal(batch({ size: 1, maxWaitMs: 0 }).maxWaitMs, 0);
  });
});
