import { Writable } from 'node:stream';

/** A promise with its resolve and reject in hand. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A source that counts how many items were pulled from it: backpressure keeps `pulled` bounded. */
export class CountingSource {
  pulled = 0;
  readonly #n: number;

  constructor(n: number) {
    this.#n = n;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<number> {
    for (let i = 0; i < this.#n; i++) {
      this.pulled++;
      yield i;
    }
  }
}

/** An object-mode sink collecting what it receives. */
export function collect<T>(): { sink: Writable; items: T[] } {
  const items: T[] = [];
  const sink = new Writable({
    objectMode: true,
    write(chunk: T, _encoding, callback) {
      items.push(chunk);
      callback();
    },
  });
  return { sink, items };
}

/** An object-mode sink that takes one item and then holds its callback forever: a stuck consumer. */
export function stuckSink(): { sink: Writable; received: () => number } {
  let n = 0;
  const sink = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(_chunk, _encoding, _callback) {
      n++;
    },
  });
  return { sink, received: () => n };
}

/** True for the `AbortError` Node destroys a stream with when its signal aborts. */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** A clock tests move by hand. */
export class FakeClock {
  t = 0;
  readonly now = (): number => this.t;

  advance(ms: number): void {
    this.t += ms;
  }
}

/**
 * Lets `turns` turns of the event loop pass, for asserting that something did NOT happen (a source not read
 * further) once every buffer had the chance to fill. Not a wait for an event: nothing here depends on timing.
 */
export async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}
