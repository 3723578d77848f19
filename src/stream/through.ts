import { type Duplex, pipeline, Readable } from 'node:stream';
import { InvalidOptionError } from '../errors.ts';
import type { BatchStream } from './batch.ts';
import type { MapStream } from './map.ts';
import type { Meter } from './meter.ts';

/** What {@link through} reads from: a stream, or any (async) iterable. */
export type Source<T = unknown> = Readable | AsyncIterable<T> | Iterable<T>;

type Last<S extends readonly unknown[]> = S extends readonly [...unknown[], infer L] ? L : never;

/** What a stage emits: known for Weft's own streams, `unknown` for any other. */
export type OutputOf<S> =
  S extends MapStream<infer _In, infer O>
    ? O
    : S extends BatchStream<infer T>
      ? T[]
      : S extends Meter<infer T>
        ? T
        : unknown;

/** The last stage of a {@link through} chain, with `for await` typed by what it emits. */
export type Through<S> = Omit<S, typeof Symbol.asyncIterator> & {
  [Symbol.asyncIterator](): AsyncIterator<OutputOf<S>>;
};

/**
 * Runs `source` (a readable stream or any iterable or async iterable) through `stages` and returns the last stage,
 * to read with `for await`. It is `pipeline()` for code that consumes the output itself: an error in any stage
 * makes the loop throw it, and leaving the loop early (`break`, an exception) destroys every stage, which cancels
 * the work in flight in `mapConcurrent` and `poolMap`.
 *
 * @example
 * ```ts
 * import { batch, mapConcurrent, through } from 'weftjs/stream';
 * for await (const saved of through(rows(), batch({ size: 100 }), mapConcurrent(save, { concurrency: 4 }))) {
 *   console.log(`saved ${saved} rows`);
 * }
 * ```
 */
export function through<const S extends readonly [Duplex, ...Duplex[]]>(
  source: Source,
  ...stages: S
): Through<Last<S>> {
  if (stages.length === 0) throw new InvalidOptionError('stages', 'at least one stream', stages.length);
  const input =
    source instanceof Readable ||
    (source !== null && typeof source === 'object' && typeof (source as Readable).pipe === 'function')
      ? (source as Readable)
      : Readable.from(source as Iterable<unknown>);
  // The callback form returns the last stream and destroys it with the first error, which the reader then sees;
  // the callback itself has nothing left to do.
  pipeline([input, ...stages], () => {});
  return stages[stages.length - 1] as unknown as Through<Last<S>>;
}
