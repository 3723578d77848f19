import { InvalidOptionError } from '../errors.ts';
import { formatBytes, formatCount, formatDuration } from './format.ts';
import { Meter, type MeterSnapshot } from './meter.ts';
import { boolOption, optionsObject, periodOption } from './options.ts';

/** Where a progress bar writes: `process.stderr` or any writable with `write(string)`. */
export interface ProgressOutput {
  write(text: string): unknown;
  /** A terminal: redraw one line. Otherwise log a line every `intervalMs`. */
  isTTY?: boolean;
  /** Terminal width, to keep the line on one row. */
  columns?: number;
}

/** Options of {@link progressBar}. */
export interface ProgressBarOptions {
  /** Default: `process.stderr` (stdout stays free for the program's output). */
  stream?: ProgressOutput;
  /** Redraw (terminal) or log (otherwise) this often, in ms. Default: 200 on a terminal, 10 000 otherwise. */
  intervalMs?: number;
  /** What the items are called. Default: `'items'`. */
  unit?: string;
  /** Force terminal or log output instead of asking `stream.isTTY`. */
  tty?: boolean;
}

/** A running progress display. See {@link progressBar}. */
export interface ProgressBar {
  /** True on a terminal (one redrawn line), false when logging lines. */
  readonly tty: boolean;
  /** Draws once now, whatever the interval. */
  draw(): void;
  /** Stops: draws the final state, ends the line, clears the timer. Idempotent; also runs on end, error, close. */
  close(): void;
  [Symbol.dispose](): void;
}

const BAR_WIDTH = 20;

/**
 * One line describing a meter's snapshot, as the progress bar prints it: name, bar and percent (with a total),
 * bytes and rate, items and rate, elapsed, ETA, backpressure waits, and `state` (`done`, `failed`, ...) if given.
 *
 * @example
 * ```ts
 * import { formatProgress } from 'weftjs/stream';
 * logger.info(formatProgress(rows.snapshot(), 'rows'));
 * // "rows  120,345 rows 1,450/s  elapsed 1m23s"
 * ```
 */
export function formatProgress(s: MeterSnapshot, unit = 'items', state = ''): string {
  const parts: string[] = [s.name];
  if (s.percent !== undefined) {
    const filled = Math.round((s.percent / 100) * BAR_WIDTH);
    parts.push(`[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${s.percent.toFixed(1)}%`);
  }
  if (s.bytes > 0 || s.totalBytes !== undefined) {
    const of = s.totalBytes !== undefined ? ` / ${formatBytes(s.totalBytes)}` : '';
    parts.push(`${formatBytes(s.bytes)}${of} ${formatBytes(s.bytesPerSecond)}/s`);
  }
  const of = s.total !== undefined ? ` / ${formatCount(s.total)}` : '';
  parts.push(`${formatCount(s.items)}${of} ${unit} ${formatCount(s.itemsPerSecond)}/s`);
  parts.push(`elapsed ${formatDuration(s.elapsedMs)}`);
  if (s.etaMs !== undefined && !state) parts.push(`ETA ${formatDuration(s.etaMs)}`);
  if (s.pauses > 0) parts.push(`waited ${formatDuration(s.pausedMs)} (${formatCount(s.pauses)}×)`);
  if (state) parts.push(state);
  return parts.join('  ');
}

/**
 * Shows a meter's progress. On a terminal it redraws one line (percent bar, bytes, rates, ETA) every `intervalMs`;
 * elsewhere (a log file, a pipe, CI) it writes a plain line every `intervalMs`. It stops by itself when the meter
 * ends, fails or closes, writing a last line, and its timer never keeps the process alive.
 *
 * @example
 * ```ts
 * import { meter, progressBar } from 'weftjs/stream';
 * const input = meter({ name: 'import', objectMode: false, totalBytes: (await stat(file)).size });
 * progressBar(input, { unit: 'chunks' });
 * await pipeline(createReadStream(file), input, parse(), sink);
 * ```
 */
export function progressBar<T>(meter: Meter<T>, options?: ProgressBarOptions): ProgressBar {
  if (!(meter instanceof Meter)) throw new InvalidOptionError('meter', 'a Meter made by meter()', meter);
  const opts = optionsObject(options);
  const stream = opts.stream ?? process.stderr;
  if (typeof stream !== 'object' || stream === null || typeof stream.write !== 'function') {
    throw new InvalidOptionError('stream', 'a writable with write(text)', stream);
  }
  const tty = boolOption(opts, 'tty', stream.isTTY === true);
  const intervalMs = periodOption(opts, 'intervalMs', tty ? 200 : 10_000);
  const unit = opts.unit ?? 'items';
  if (typeof unit !== 'string') throw new InvalidOptionError('unit', 'a string', unit);

  let closed = false;
  const line = (state = '') => {
    const text = formatProgress(meter.snapshot(), unit, state);
    const width = stream.columns;
    return tty && width && text.length >= width ? text.slice(0, width - 1) : text;
  };
  const draw = (state = '') => {
    if (closed) return;
    // \r and "erase to end of line" redraw in place; a log gets whole lines.
    stream.write(tty ? `\r${line(state)}\x1b[K` : `${line(state)}\n`);
  };
  const timer = setInterval(() => draw(), intervalMs);
  timer.unref();
  const finish = (state: string) => {
    if (closed) return;
    draw(state);
    if (tty) stream.write('\n');
    closed = true;
    clearInterval(timer);
    meter.off('end', onEnd);
    meter.off('close', onClose);
  };
  // 'close' follows an error too; listening to 'error' itself would mark the error handled and hide it.
  const state = () => (meter.errored ? 'failed' : meter.done ? 'done' : 'stopped');
  const onEnd = () => finish('done');
  const onClose = () => finish(state());
  meter.once('end', onEnd);
  meter.once('close', onClose);
  if (meter.destroyed) queueMicrotask(onClose);

  const bar: ProgressBar = {
    tty,
    draw: () => draw(),
    close: () => finish(state()),
    [Symbol.dispose]: () => bar.close(),
  };
  return bar;
}
