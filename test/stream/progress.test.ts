import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, it, mock } from 'node:test';
import { formatBytes, formatCount, formatDuration } from '../../src/stream/format.ts';
import { formatProgress, type MeterSnapshot, meter, progressBar } from '../../src/stream/index.ts';
import { invalidOption, rejection, within } from '../helpers.ts';
import { collect, FakeClock } from './helpers.ts';

/** A fake output that records what was written. */
function output(isTTY: boolean, columns?: number) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns, write: (text: string) => writes.push(text) } };
}

afterEach(() => mock.timers.reset());

describe('progressBar', () => {
  it('on a terminal: redraws one line in place every intervalMs and ends it with a newline', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const clock = new FakeClock();
    const m = meter<Buffer>({ name: 'upload', clock: clock.now, totalBytes: 4096 });
    const out = output(true, 200);
    const bar = progressBar(m, { stream: out.stream, unit: 'chunks' });
    assert.equal(bar.tty, true);
    m.write(Buffer.alloc(1024));
    m.read();
    clock.advance(1_000);
    mock.timers.tick(200);
    assert.equal(out.writes.length, 1);
    const line = out.writes[0]!;
    assert.ok(line.startsWith('\rupload'), JSON.stringify(line));
    assert.ok(line.endsWith('\x1b[K'), 'erases what a longer previous line left');
    assert.ok(line.includes('25.0%') && line.includes('1.0 KiB / 4.0 KiB') && line.includes('ETA 3s'), line);
    assert.ok(line.includes('1 chunks'), line);
    mock.timers.tick(400);
    assert.equal(out.writes.length, 3);
    m.end();
    m.resume();
    await within(once(m, 'close'), 5_000, 'close');
    assert.ok(out.writes.at(-2)!.includes('done'), JSON.stringify(out.writes.at(-2)));
    assert.equal(out.writes.at(-1), '\n');
    const count = out.writes.length;
    mock.timers.tick(10_000);
    bar.close();
    assert.equal(out.writes.length, count, 'stopped: no more drawing, close() again does nothing');
  });

  it('keeps the line within the terminal width', () => {
    const m = meter({ name: 'x'.repeat(100) });
    const out = output(true, 40);
    const bar = progressBar(m, { stream: out.stream });
    bar.draw();
    assert.equal(out.writes[0]!.replace('\r', '').replace('\x1b[K', '').length, 39);
    bar.close();
  });

  it('not a terminal: a plain log line every intervalMs (10 s by default), and a last one', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const m = meter({ name: 'import' });
    const out = output(false);
    const bar = progressBar(m, { stream: out.stream });
    assert.equal(bar.tty, false);
    mock.timers.tick(9_999);
    assert.equal(out.writes.length, 0);
    mock.timers.tick(1);
    assert.equal(out.writes.length, 1);
    assert.ok(out.writes[0]!.startsWith('import') && out.writes[0]!.endsWith('\n'));
    assert.ok(!out.writes[0]!.includes('\r') && !out.writes[0]!.includes('\x1b'));
    const { sink } = collect();
    await within(pipeline(Readable.from([1, 2, 3]), m, sink), 5_000, 'the pipeline');
    assert.match(out.writes.at(-1)!, /^import {2}3 items .* done\n$/);
    const count = out.writes.length;
    mock.timers.tick(60_000);
    assert.equal(out.writes.length, count, 'no timer left');
  });

  it('says failed when the stream errors, and stops', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const m = meter({ name: 'rows' });
    const out = output(false);
    progressBar(m, { stream: out.stream, intervalMs: 50 });
    async function* failing() {
      yield 1;
      throw new Error('bad input');
    }
    await rejection(pipeline(failing(), m, collect().sink), 5_000);
    assert.match(out.writes.at(-1)!, /failed\n$/);
    const count = out.writes.length;
    mock.timers.tick(1_000);
    assert.equal(out.writes.length, count);
  });

  it('close() before the end says stopped; a meter already destroyed stops the bar at once', async () => {
    const m = meter({ name: 'a' });
    const out = output(false);
    const bar = progressBar(m, { stream: out.stream });
    bar.close();
    bar[Symbol.dispose]();
    assert.equal(out.writes.length, 1);
    assert.match(out.writes[0]!, /stopped\n$/);
    const gone = meter({ name: 'b' });
    gone.destroy();
    const late = output(false);
    progressBar(gone, { stream: late.stream });
    await within(once(gone, 'close'), 5_000, 'close');
    assert.equal(late.writes.length, 1);
    assert.match(late.writes[0]!, /stopped\n$/);
  });

  it('refuses bad arguments and options with ERR_WEFT_INVALID_OPTION', () => {
    const m = meter();
    assert.throws(() => progressBar({} as never), invalidOption('meter'));
    assert.throws(() => progressBar(m, 3 as never), invalidOption('options'));
    assert.throws(() => progressBar(m, { stream: {} as never }), invalidOption('stream'));
    assert.throws(() => progressBar(m, { intervalMs: 0 }), invalidOption('intervalMs'));
    assert.throws(() => progressBar(m, { unit: 1 as never }), invalidOption('unit'));
    assert.throws(() => progressBar(m, { tty: 'yes' as never }), invalidOption('tty'));
  });
});

describe('progress formatting', () => {
  const base: MeterSnapshot = {
    name: 'csv',
    items: 120_345,
    bytes: 12.5 * 2 ** 20,
    elapsedMs: 83_000,
    itemsPerSecond: 1_450.4,
    bytesPerSecond: 2 ** 20,
    pauses: 0,
    pausedMs: 0,
  };

  it('shows what is known: bar and ETA with a total, waits when there were some', () => {
    assert.equal(
      formatProgress(base, 'rows'),
      'csv  12.5 MiB 1.0 MiB/s  120,345 rows 1,450/s  elapsed 1m23s',
    );
    const withTotal = {
      ...base,
      totalBytes: 50 * 2 ** 20,
      percent: 25,
      etaMs: 37_500,
      pauses: 3,
      pausedMs: 1_200,
    };
    assert.equal(
      formatProgress(withTotal, 'rows'),
      'csv  [#####---------------] 25.0%  12.5 MiB / 50.0 MiB 1.0 MiB/s  120,345 rows 1,450/s  elapsed 1m23s  ETA 38s  waited 1s (3×)',
    );
    assert.ok(formatProgress({ ...withTotal, etaMs: 0 }, 'rows', 'done').endsWith('waited 1s (3×)  done'));
  });

  it('formats bytes, counts and durations', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(150 * 2 ** 20), '150 MiB');
    assert.equal(formatBytes(-1), '?');
    assert.equal(formatCount(1234567.8), '1,234,568');
    assert.equal(formatCount(Number.NaN), '?');
    assert.equal(formatDuration(4_200), '4s');
    assert.equal(formatDuration(83_000), '1m23s');
    assert.equal(formatDuration(3_723_000), '1h02m');
    assert.equal(formatDuration(Number.POSITIVE_INFINITY), '?');
  });
});
