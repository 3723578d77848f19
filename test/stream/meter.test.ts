import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { BackpressureMonitor, type Meter, type MeterSnapshot, meter } from '../../src/stream/index.ts';
import { invalidOption, rejection, within } from '../helpers.ts';
import { collect, FakeClock, isAbortError, stuckSink } from './helpers.ts';

/** Writes `chunk` and reads everything out at once, so the meter counts it at the fake clock's current time. */
function pass<T>(m: Meter<T>, chunk: T): void {
  m.write(chunk);
  while (m.read() !== null);
}

describe('meter', () => {
  it('passes everything through unchanged and counts items and bytes', async () => {
    const m = meter();
    const chunks = [Buffer.from('abc'), 'héllo', new Uint16Array(4), { row: 1 }, new ArrayBuffer(10)];
    const { sink, items } = collect<unknown>();
    await within(pipeline(Readable.from(chunks), m, sink), 5_000, 'the pipeline');
    assert.deepEqual(items, chunks);
    const s = m.snapshot();
    assert.equal(s.name, 'stream');
    assert.equal(s.items, 5);
    assert.equal(s.bytes, 3 + 6 + 8 + 0 + 10, 'strings count their UTF-8 bytes, plain objects 0');
    assert.ok(m.done);
  });

  it('a byte stream with objectMode: false; custom items and bytes functions', async () => {
    const bytesIn = meter({ objectMode: false, name: 'file' });
    const out: Buffer[] = [];
    const data = Buffer.alloc(100_000, 'x');
    await within(
      pipeline(Readable.from([data.subarray(0, 60_000), data.subarray(60_000)]), bytesIn, async (source) => {
        for await (const chunk of source) out.push(chunk as Buffer);
      }),
      5_000,
      'the byte pipeline',
    );
    assert.equal(Buffer.concat(out).length, 100_000);
    assert.equal(bytesIn.snapshot().bytes, 100_000);
    const rows = meter<string[]>({ items: (b) => b.length, bytes: (b) => b.join('').length });
    await within(pipeline(Readable.from([['ab', 'c'], ['d']]), rows, collect().sink), 5_000, 'the pipeline');
    assert.equal(rows.snapshot().items, 3);
    assert.equal(rows.snapshot().bytes, 4);
  });

  it('snapshot has exactly the MeterSnapshot shape weft/metrics reads', async () => {
    const m = meter({ name: 'rows', total: 10, totalBytes: 100 });
    const keys: (keyof MeterSnapshot)[] = [
      'name',
      'items',
      'bytes',
      'elapsedMs',
      'itemsPerSecond',
      'bytesPerSecond',
      'total',
      'totalBytes',
      'percent',
      'pauses',
      'pausedMs',
    ];
    assert.deepEqual(Object.keys(m.snapshot()).sort(), [...keys].sort(), 'etaMs only once a rate is known');
    const plain = meter({ name: 'plain' }).snapshot();
    assert.deepEqual(plain, {
      name: 'plain',
      items: 0,
      bytes: 0,
      elapsedMs: 0,
      itemsPerSecond: 0,
      bytesPerSecond: 0,
      pauses: 0,
      pausedMs: 0,
    });
  });

  it('rates follow the recent window, not the average; percent and ETA from the totals; frozen at the end', async () => {
    const clock = new FakeClock();
    const m = meter<number>({ clock: clock.now, windowMs: 5_000, total: 2_000 });
    // 100 items/s for 10 s...
    for (let i = 0; i < 1_000; i++) {
      pass(m, i);
      clock.advance(10);
    }
    let s = m.snapshot();
    assert.equal(s.elapsedMs, 10_000, 'from the first chunk');
    assert.ok(Math.abs(s.itemsPerSecond - 100) < 1, `rate ${s.itemsPerSecond}`);
    assert.equal(s.percent, 50);
    assert.ok(Math.abs(s.etaMs! - 10_000) < 200, `eta ${s.etaMs}`);
    // ...then 10 items/s for 10 s: the rate drops to 10/s, while the average since the start is 55/s.
    for (let i = 0; i < 100; i++) {
      pass(m, i);
      clock.advance(100);
    }
    s = m.snapshot();
    assert.ok(Math.abs(s.itemsPerSecond - 10) < 0.5, `rate ${s.itemsPerSecond}`);
    assert.equal(s.items, 1_100);
    assert.ok(Math.abs(s.etaMs! - 90_000) < 2_000, `eta ${s.etaMs}`);
    // A stall: the rate decays to 0 and the ETA disappears.
    clock.advance(60_000);
    s = m.snapshot();
    assert.equal(s.itemsPerSecond, 0);
    assert.equal(s.etaMs, undefined);
    m.end();
    m.resume();
    await within(once(m, 'end'), 5_000, 'end');
    const final = m.snapshot();
    clock.advance(5_000);
    assert.deepEqual(m.snapshot(), final, 'frozen once the input ended');
    assert.equal(final.etaMs, 0);
  });

  it('totalBytes wins over total; totals can be set later and are validated', () => {
    const clock = new FakeClock();
    const m = meter<Buffer>({ clock: clock.now, total: 1_000 });
    pass(m, Buffer.alloc(250));
    clock.advance(1_000);
    assert.equal(m.snapshot().percent, 0.1, '1 of 1000 items');
    m.totalBytes = 1_000;
    assert.equal(m.totalBytes, 1_000);
    const s = m.snapshot();
    assert.equal(s.percent, 25, '250 of 1000 bytes');
    assert.equal(s.etaMs, 3_000, '750 bytes left at 250 B/s');
    pass(m, Buffer.alloc(2_000));
    assert.equal(m.snapshot().percent, 100, 'capped at 100 when the total was an underestimate');
    assert.equal(m.snapshot().etaMs, 0);
    m.total = undefined;
    assert.equal(m.total, undefined);
    assert.throws(() => {
      m.totalBytes = -1;
    }, invalidOption('totalBytes'));
    assert.throws(() => {
      m.total = Number.NaN;
    }, invalidOption('total'));
    assert.equal(meter({ total: 0 }).snapshot().percent, 100);
  });

  it('emits progress at most every progressIntervalMs while chunks flow, and once at the end', async () => {
    const clock = new FakeClock();
    const m = meter<number>({ clock: clock.now, progressIntervalMs: 1_000 });
    const events: MeterSnapshot[] = [];
    m.on('progress', (s: MeterSnapshot) => events.push(s));
    for (let i = 0; i < 30; i++) {
      pass(m, i);
      clock.advance(100);
    }
    assert.deepEqual(
      events.map((e) => e.items),
      [1, 11, 21],
    );
    m.end();
    m.resume();
    await within(once(m, 'end'), 5_000, 'end');
    assert.equal(events.length, 4);
    assert.equal(events[3]!.items, 30);
  });

  it('counts backpressure: pauses and time the downstream made it wait', async () => {
    const clock = new FakeClock();
    const m = meter<number>({ clock: clock.now });
    const callbacks: (() => void)[] = [];
    const slow = new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(_chunk, _encoding, callback) {
        callbacks.push(callback);
      },
    });
    const done = pipeline(Readable.from([...Array(50).keys()]), m, slow);
    // Release the sink one item at a time, 10 ms of fake time each: the meter waits in between.
    let released = 0;
    while (released < 50) {
      await within(
        new Promise<void>((resolve) => {
          const check = () => (callbacks.length > 0 ? resolve() : setImmediate(check));
          check();
        }),
        5_000,
        `item ${released}`,
      );
      clock.advance(10);
      callbacks.shift()!();
      released++;
    }
    await within(done, 5_000, 'the pipeline');
    const s = m.snapshot();
    assert.ok(s.pauses >= 1, `pauses ${s.pauses}`);
    assert.ok(s.pausedMs >= 10 && s.pausedMs <= 500, `pausedMs ${s.pausedMs}`);
    const free = meter<number>({ clock: clock.now });
    await within(pipeline(Readable.from([1, 2, 3]), free, collect().sink), 5_000, 'the pipeline');
    assert.equal(free.snapshot().pausedMs, 0, 'a fast reader never makes it wait long');
  });

  it('a throwing items or bytes function rejects the pipeline with its error', async () => {
    const m = meter({
      items: () => {
        throw new Error('cannot count');
      },
    });
    const err = await rejection(pipeline(Readable.from([1]), m, collect().sink), 5_000);
    assert.equal((err as Error).message, 'cannot count');
  });

  it('signal: aborting destroys it with an AbortError; a pause in progress is closed', async () => {
    const ac = new AbortController();
    const m = meter({ signal: ac.signal });
    const { sink, received } = stuckSink();
    const done = pipeline(Readable.from([...Array(1_000).keys()]), m, sink);
    await within(
      new Promise<void>((resolve) => {
        const check = () => (received() > 0 && m.snapshot().pauses > 0 ? resolve() : setImmediate(check));
        check();
      }),
      5_000,
      'the meter to wait for its reader',
    );
    ac.abort();
    assert.ok(isAbortError(await rejection(done, 5_000)));
    const pausedMs = m.snapshot().pausedMs;
    assert.equal(m.snapshot().pausedMs, pausedMs, 'the pause ended with the stream');
  });

  it('refuses bad options with ERR_WEFT_INVALID_OPTION naming the option', () => {
    assert.throws(() => meter('x' as never), invalidOption('options'));
    assert.throws(() => meter({ name: 5 as never }), invalidOption('name'));
    assert.throws(() => meter({ total: -1 }), invalidOption('total'));
    assert.throws(() => meter({ totalBytes: Number.POSITIVE_INFINITY }), invalidOption('totalBytes'));
    assert.throws(() => meter({ items: 1 as never }), invalidOption('items'));
    assert.throws(() => meter({ bytes: 'n' as never }), invalidOption('bytes'));
    assert.throws(() => meter({ objectMode: 'no' as never }), invalidOption('objectMode'));
    assert.throws(() => meter({ windowMs: 0 }), invalidOption('windowMs'));
    assert.throws(() => meter({ progressIntervalMs: -5 }), invalidOption('progressIntervalMs'));
    assert.throws(() => meter({ clock: 0 as never }), invalidOption('clock'));
    assert.throws(() => meter({ signal: true as never }), invalidOption('signal'));
  });
});

describe('BackpressureMonitor', () => {
  it('counts waits and their time; repeated pause or resume calls are one wait', () => {
    const clock = new FakeClock();
    const m = new BackpressureMonitor(clock.now);
    assert.deepEqual(m.snapshot(), { pauses: 0, pausedMs: 0, paused: false });
    m.resume();
    m.pause();
    clock.advance(5);
    m.pause();
    assert.deepEqual(m.snapshot(), { pauses: 1, pausedMs: 5, paused: true }, 'a wait going on counts');
    clock.advance(5);
    m.resume();
    m.resume();
    clock.advance(100);
    assert.deepEqual(m.snapshot(), { pauses: 1, pausedMs: 10, paused: false });
    m.pause();
    clock.advance(1);
    m.resume();
    assert.equal(m.pauses, 2);
    assert.equal(m.pausedMs, 11);
  });
});
