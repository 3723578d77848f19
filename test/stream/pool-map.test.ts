import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { Pool, type TaskName } from '../../src/pool/index.ts';
import { poolMap, through, transferable } from '../../src/stream/index.ts';
import { Gate, invalidOption, rejection, track, until, within } from '../helpers.ts';
import { CountingSource, collect, isAbortError, turns } from './helpers.ts';

type Tasks = typeof import('./fixtures/tasks.ts');
const filename = new URL('./fixtures/tasks.ts', import.meta.url);
const newPool = (maxThreads = 2) => track(new Pool<Tasks>({ filename, maxThreads }));

async function* range(n: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) yield i;
}

async function mapAll<T>(pool: Pool<Tasks>, task: TaskName<Tasks>, items: unknown[]): Promise<T[]> {
  const out: T[] = [];
  for await (const r of through(Readable.from(items), poolMap(pool, task))) out.push(r as T);
  return out;
}

describe('poolMap', () => {
  it('maps items through a pool task on every thread, in input order by default', async () => {
    const pool = newPool();
    const stage = poolMap(pool, 'double');
    assert.equal(stage.concurrency, 4, 'default: twice the task slots of the pool');
    const { sink, items } = collect<number>();
    await within(pipeline(range(500), stage, sink), 10_000, 'the pipeline');
    assert.deepEqual(
      items,
      [...Array(500).keys()].map((i) => i * 2),
    );
    assert.equal(pool.stats().completed, 500);
    const unordered = collect<number>();
    await within(
      pipeline(range(100), poolMap(pool, 'double', { ordered: false, concurrency: 3 }), unordered.sink),
      10_000,
      'the unordered pipeline',
    );
    assert.deepEqual(
      unordered.items.sort((a, b) => a - b),
      [...Array(100).keys()].map((i) => i * 2),
    );
  });

  it('moves whole buffers to the thread: ArrayBuffers and views that cover their buffer are detached', async () => {
    const pool = newPool(1);
    const ab = new ArrayBuffer(1024);
    const whole = new Uint8Array(2048).fill(7);
    const own = Buffer.alloc(4096, 1); // Buffer.alloc never uses the shared pool
    const seen = await mapAll<{ byteLength: number; bufferByteLength: number }>(pool, 'describeBytes', [
      ab,
      whole,
      own,
    ]);
    assert.deepEqual(
      seen.map((s) => [s.byteLength, s.bufferByteLength]),
      [
        [1024, 1024],
        [2048, 2048],
        [4096, 4096],
      ],
    );
    assert.equal(ab.byteLength, 0, 'the ArrayBuffer was moved');
    assert.equal(whole.byteLength, 0, 'the Uint8Array was moved');
    assert.equal(own.byteLength, 0, 'the Buffer with its own memory was moved');
  });

  it('copies only the bytes of a partial view and moves the copy: a pooled Buffer slab is never detached', async () => {
    const pool = newPool(1);
    const pooled = Buffer.from('hello'); // a view into Node's shared 8 KiB slab
    assert.ok(pooled.buffer.byteLength > pooled.byteLength, 'precondition: a pooled Buffer');
    const neighbour = Buffer.from('world'); // often in the same slab
    const big = new Uint8Array(1 << 20).fill(9);
    const floats = new Float64Array(16).fill(1.5);
    const view = new DataView(new ArrayBuffer(64), 8, 16);
    const seen = await mapAll<{ type: string; byteLength: number; bufferByteLength: number; first: number }>(
      pool,
      'describeBytes',
      [pooled, big.subarray(10, 20), floats.subarray(2, 4), view],
    );
    assert.deepEqual(seen, [
      { type: 'Uint8Array', byteLength: 5, bufferByteLength: 5, shared: false, first: 104 },
      { type: 'Uint8Array', byteLength: 10, bufferByteLength: 10, shared: false, first: 9 },
      { type: 'Float64Array', byteLength: 16, bufferByteLength: 16, shared: false, first: 0 },
      { type: 'DataView', byteLength: 16, bufferByteLength: 16, shared: false, first: 0 },
    ]);
    assert.equal(pooled.toString(), 'hello', 'the pooled Buffer is intact');
    assert.equal(neighbour.toString(), 'world', 'and so is its neighbour in the slab');
    assert.equal(big.byteLength, 1 << 20, 'the parent of a subarray is not detached');
    assert.equal(floats.byteLength, 128);
  });

  it('transfer: false copies (the whole buffer behind a view, hence the default); a function picks the list', async () => {
    const pool = newPool(1);
    const whole = new Uint8Array(256);
    const part = new Uint8Array(4096).subarray(0, 16);
    const copied: { bufferByteLength: number }[] = [];
    for await (const r of through(
      Readable.from([whole, part]),
      poolMap(pool, 'describeBytes', { transfer: false }),
    )) {
      copied.push(r);
    }
    assert.equal(whole.byteLength, 256, 'not moved');
    assert.equal(
      copied[1]!.bufferByteLength,
      4096,
      'a structured clone sends the whole buffer behind a view',
    );
    const picked = new Uint8Array(32);
    const lists: unknown[] = [];
    const stage = poolMap(pool, 'describeBytes', {
      transfer: (item) => {
        lists.push(item);
        return [(item as Uint8Array<ArrayBuffer>).buffer];
      },
    });
    await within(pipeline(Readable.from([picked]), stage, collect().sink), 10_000, 'the pipeline');
    assert.equal(lists.length, 1);
    assert.equal(picked.byteLength, 0, 'moved by the list the function returned');
  });

  it('shares SharedArrayBuffer views instead of moving them, and results can come back moved', async () => {
    const pool = newPool(1);
    const shared = new Uint8Array(new SharedArrayBuffer(8));
    const counts = await mapAll<number>(pool, 'bumpShared', [shared]);
    assert.deepEqual(counts, [8]);
    assert.ok(
      shared.every((b) => b === 1),
      'the thread wrote to the caller memory',
    );
    const inverted = await mapAll<Uint8Array>(pool, 'invert', [new Uint8Array([0, 1, 255])]);
    assert.deepEqual([...inverted[0]!], [255, 254, 0]);
  });

  it('a failing task rejects the pipeline with the task error', async () => {
    const pool = newPool();
    const err = await rejection(pipeline(range(10), poolMap(pool, 'failOn3'), collect().sink), 10_000);
    assert.ok(err instanceof RangeError, String(err));
    assert.equal(err.message, 'bad item 3');
    assert.equal((err as RangeError & { code?: string }).code, 'E_BAD_ITEM');
  });

  it('pauses the source while the pool is saturated', async () => {
    const pool = newPool(2);
    const gate = new Gate();
    const source = new CountingSource(10_000);
    const items = Readable.from(
      (async function* () {
        for await (const n of source) yield { sab: gate.sab, n };
      })(),
    );
    const stage = poolMap(pool, 'gated', { concurrency: 2 });
    const { sink, items: out } = collect<number>();
    const done = pipeline(items, stage, sink);
    await gate.started(2);
    await turns();
    assert.equal(stage.stats().inFlight, 2, 'never more than concurrency tasks');
    assert.equal(pool.stats().queued, 0, 'nothing piles up in the pool queue');
    assert.ok(source.pulled < 100, `the source was read ${source.pulled} times while the pool was busy`);
    assert.equal(stage.stats().paused, true);
    gate.open();
    await within(done, 30_000, 'the pipeline');
    assert.equal(out.length, 10_000);
    assert.ok(stage.stats().pauses >= 1);
  });

  it('signal: aborting cancels the tasks in flight through the pool and rejects with an AbortError', async () => {
    const pool = newPool(2);
    const gate = new Gate();
    const ac = new AbortController();
    const items = Readable.from(Array.from({ length: 10 }, () => gate.sab));
    const done = pipeline(
      items,
      poolMap(pool, 'waitForAbort', { concurrency: 2, signal: ac.signal }),
      collect().sink,
    );
    await gate.started(2);
    ac.abort();
    const err = await rejection(done, 10_000);
    assert.ok(isAbortError(err), String(err));
    await until(() => pool.stats().cancelled === 2, 5_000, 'two cancelled tasks');
    assert.equal(pool.stats().completed, 0);
  });

  it('a closed pool rejects the pipeline with ERR_WEFT_POOL_CLOSED', async () => {
    const pool = newPool(1);
    await pool.close();
    const err = await rejection(pipeline(range(3), poolMap(pool, 'double'), collect().sink), 5_000);
    assert.equal((err as { code?: string }).code, 'ERR_WEFT_POOL_CLOSED');
  });

  it('refuses bad arguments and options with ERR_WEFT_INVALID_OPTION', () => {
    const pool = newPool(1);
    assert.throws(() => poolMap({} as never, 'double' as never), invalidOption('pool'));
    assert.throws(() => poolMap(null as never, 'double' as never), invalidOption('pool'));
    assert.throws(() => poolMap(pool, '' as never), invalidOption('taskName'));
    assert.throws(() => poolMap(pool, 3 as never), invalidOption('taskName'));
    assert.throws(() => poolMap(pool, 'double', { concurrency: 0 }), invalidOption('concurrency'));
    assert.throws(() => poolMap(pool, 'double', { ordered: 'yes' as never }), invalidOption('ordered'));
    assert.throws(() => poolMap(pool, 'double', { transfer: 'auto' as never }), invalidOption('transfer'));
    assert.throws(() => poolMap(pool, 'double', { signal: {} as never }), invalidOption('signal'));
    assert.throws(() => poolMap(pool, 'double', 1 as never), invalidOption('options'));
  });
});

describe('transferable', () => {
  it('moves whole buffers, copies partial views into their own buffer, leaves the rest alone', () => {
    const ab = new ArrayBuffer(4);
    assert.deepEqual(transferable(ab), { value: ab, transfer: [ab] });
    const whole = new Int16Array(4);
    assert.deepEqual(transferable(whole), { value: whole, transfer: [whole.buffer] });
    const part = Buffer.from('abc');
    const { value, transfer } = transferable(part);
    assert.ok(Buffer.isBuffer(value) && value !== part && value.toString() === 'abc');
    assert.equal(value.buffer.byteLength, 3);
    assert.deepEqual(transfer, [value.buffer]);
    const sab = new Uint8Array(new SharedArrayBuffer(4));
    assert.deepEqual(transferable(sab), { value: sab, transfer: [] });
    const obj = { a: 1 };
    assert.deepEqual(transferable(obj), { value: obj, transfer: [] });
    assert.deepEqual(transferable('text'), { value: 'text', transfer: [] });
  });
});
