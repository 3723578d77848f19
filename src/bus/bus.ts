/**
 * One typed event bus whatever it spans: `createBus<Events>()` for one process, with `clusterTransport()` across the
 * workers of a `weft start`, with `redisTransport()` or `natsTransport()` across machines. The publishers and the
 * subscribers are the same code in every scope; what changes is what a delivery guarantees (docs/bus.md).
 * @module
 */
import { WeftError } from '../errors.ts';

/** A bad argument: `ERR_WEFT_INVALID_ARGUMENT`, naming it, what it must be and what it was. */
function invalid(argument: string, expected: string, actual: unknown): WeftError {
  return new WeftError(
    'ERR_WEFT_INVALID_ARGUMENT',
    `The "${argument}" argument must be ${expected}. Received ${JSON.stringify(actual) ?? String(actual)}`,
  );
}

const closedError = () => new WeftError('ERR_WEFT_BUS_CLOSED', 'The bus is closed');

const notLocal = (scope: string) =>
  new WeftError(
    'ERR_WEFT_INVALID_ARGUMENT',
    `emit() delivers synchronously in one process; this bus is ${scope}-scoped: use publish()`,
  );

import { ProcessTransport } from './process.ts';
import type { BusEvent, EventMap, Handler, SubscribeOptions, Subscription, Transport } from './types.ts';

export interface BusOptions {
  /** What carries the events. Default: this process only (`processTransport()`). */
  transport?: Transport;
  /**
   * Told when a handler throws or rejects. Default: a JSON line on stderr. On an at-least-once transport the event is
   * then delivered again (see docs/bus.md); in the process and cluster scopes it is not.
   */
  onError?: (err: unknown, event: BusEvent) => void;
}

function defaultOnError(err: unknown, event: BusEvent): void {
  const e = err instanceof Error ? { message: err.message, stack: err.stack } : { message: String(err) };
  process.stderr.write(
    `${JSON.stringify({ level: 50, time: Date.now(), name: 'weft', msg: `bus handler for ${event.name} failed`, event: { id: event.id, name: event.name, attempt: event.attempt }, err: e })}\n`,
  );
}

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME.test(name))
    throw invalid('name', 'an event name of 1-128 letters, digits, _ . : or -', name);
}

/**
 * A typed bus: `publish`, `emit` (synchronous, process scope), `subscribe`, `events` (an async iterator).
 *
 * @example
 * ```ts
 * type Events = { orderPlaced: { orderId: string; total: number } };
 * const bus = createBus<Events>();
 * bus.subscribe('orderPlaced', ({ orderId }) => console.log('email for', orderId));
 * await bus.publish('orderPlaced', { orderId: 'o-1', total: 42 });
 * ```
 */
export class Bus<E extends EventMap> {
  readonly transport: Transport;
  readonly #onError: (err: unknown, event: BusEvent) => void;
  readonly #subscriptions = new Set<Subscription>();
  /** The transport, when it is the process one (`emit`). */
  readonly #local: ProcessTransport | undefined;
  #closed = false;

  constructor(options: BusOptions = {}) {
    this.transport = options.transport ?? new ProcessTransport();
    this.#onError = options.onError ?? defaultOnError;
    if (this.transport instanceof ProcessTransport) {
      const local = this.transport;
      this.#local = local;
      local.onError = this.#onError;
      // The process scope's emit, one call from the caller to the handlers: no lookup of the transport per event.
      this.emit = (name, payload) => local.dispatch(name, payload);
    }
  }

  get scope(): Transport['scope'] {
    return this.transport.scope;
  }

  /**
   * Publishes `payload` as `name`; resolves with the event's id once the transport has it: at once in the process
   * scope, once the supervisor has it in the cluster scope, once the broker stored it across machines.
   */
  publish<K extends keyof E & string>(name: K, payload: E[K]): Promise<string> {
    try {
      checkName(name);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) return Promise.reject(closedError());
    return this.transport.publish(name, payload);
  }

  /**
   * EventEmitter's `emit`: delivers to this process's subscribers now, synchronously, and says whether there was one.
   * Process scope only (any other scope publishes asynchronously: use `publish`).
   */
  emit<K extends keyof E & string>(name: K, payload: E[K]): boolean {
    const local = this.#local;
    if (local === undefined) throw notLocal(this.scope);
    return local.dispatch(name, payload);
  }

  /** Calls `handler` with each event `name` (fan-out, or one member of `options.group` per event). */
  subscribe<K extends keyof E & string>(
    name: K,
    handler: Handler<E[K], K>,
    options: SubscribeOptions = {},
  ): Subscription {
    checkName(name);
    if (typeof handler !== 'function') throw invalid('handler', 'a function', typeof handler);
    const onError = this.#onError;
    const deliver = (event: BusEvent): unknown => {
      try {
        const r = handler(event.payload as E[K], event as BusEvent<E[K], K>);
        if (r instanceof Promise)
          return r.catch((err: unknown) => {
            onError(err, event);
            throw err;
          });
        return r;
      } catch (err) {
        onError(err, event);
        throw err;
      }
    };
    // A handler that takes the payload alone: the process scope calls it without making an event (EventEmitter's
    // cost); the event is made only to report an error, which goes no further (nothing retries in that scope).
    const direct =
      handler.length < 2
        ? (payload: unknown, seq: number, n: string): void => {
            try {
              const r = (handler as (p: unknown) => unknown)(payload);
              if (r instanceof Promise)
                r.catch((err: unknown) =>
                  onError(err, { id: String(seq), name: n, payload, time: Date.now(), attempt: 1 }),
                );
            } catch (err) {
              onError(err, { id: String(seq), name: n, payload, time: Date.now(), attempt: 1 });
            }
          }
        : undefined;
    return this.#open(name, deliver, options, undefined, direct);
  }

  /**
   * The events `name` as an async iterator. On an at-least-once transport an event counts as handled when the loop
   * asks for the next one; breaking out of the loop leaves the event in hand unhandled (it is delivered again).
   *
   * @example
   * ```ts
   * for await (const event of bus.events('orderPlaced', { signal })) await ship(event.payload);
   * ```
   */
  events<K extends keyof E & string>(
    name: K,
    options: SubscribeOptions = {},
  ): AsyncIterableIterator<BusEvent<E[K], K>> & { ready: Promise<void> } {
    checkName(name);
    type Item = { event: BusEvent<E[K], K>; done: PromiseWithResolvers<void> };
    const queue: Item[] = [];
    let waiting: PromiseWithResolvers<IteratorResult<BusEvent<E[K], K>>> | undefined;
    let current: Item | undefined;
    let ended = false;
    let closing: Promise<void> = Promise.resolve();
    const finish = (handled: boolean) => {
      if (!current) return;
      if (handled) current.done.resolve();
      else current.done.reject(new Error('the iteration ended before the event was handled'));
      current.done.promise.catch(() => {});
      current = undefined;
    };
    const deliver = (event: BusEvent): Promise<void> => {
      const item: Item = { event: event as BusEvent<E[K], K>, done: Promise.withResolvers<void>() };
      item.done.promise.catch(() => {});
      if (ended) {
        item.done.reject(new Error('the iteration has ended'));
        return item.done.promise;
      }
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        current = item;
        w.resolve({ value: item.event, done: false });
      } else queue.push(item);
      return item.done.promise;
    };
    const end = () => {
      if (ended) return closing;
      ended = true;
      closing = stop();
      return closing;
    };
    const stop = async () => {
      finish(false);
      for (const item of queue.splice(0)) item.done.reject(new Error('the iteration has ended'));
      // Closed before the loop hears it ended: nothing is delivered to this iteration after that.
      await sub.close();
      waiting?.resolve({ value: undefined, done: true });
      waiting = undefined;
    };
    const sub = this.#open(name, deliver, options, end);
    const iterator = {
      ready: sub.ready,
      next: (): Promise<IteratorResult<BusEvent<E[K], K>>> => {
        finish(true);
        if (ended) return closing.then(() => ({ value: undefined, done: true }));
        const item = queue.shift();
        if (item) {
          current = item;
          return Promise.resolve({ value: item.event, done: false });
        }
        waiting = Promise.withResolvers();
        return waiting.promise;
      },
      return: async (): Promise<IteratorResult<BusEvent<E[K], K>>> => {
        await end();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  #open(
    name: string,
    deliver: (event: BusEvent) => unknown,
    options: SubscribeOptions,
    onAbort?: () => Promise<void>,
    direct?: (payload: unknown, seq: number, name: string) => unknown,
  ): Subscription {
    if (this.#closed) throw closedError();
    if (options.group !== undefined && (typeof options.group !== 'string' || !NAME.test(options.group)))
      throw invalid('group', 'a group name of 1-128 letters, digits, _ . : or -', options.group);
    let stop: (() => Promise<void>) | undefined;
    let closed: Promise<void> | undefined;
    const started = this.transport.subscribe({
      name,
      deliver,
      ...(direct ? { direct } : {}),
      ...(options.group === undefined ? {} : { group: options.group }),
      ...(options.from === undefined ? {} : { from: options.from }),
    });
    const ready = started.then((s) => {
      stop = s;
    });
    const subscriptions = this.#subscriptions;
    const sub: Subscription = {
      ready,
      close() {
        closed ??= (async () => {
          subscriptions.delete(sub);
          options.signal?.removeEventListener('abort', abort);
          await ready.catch(() => {});
          await stop?.();
        })();
        return closed;
      },
      [Symbol.asyncDispose]() {
        return sub.close();
      },
    };
    const abort = () => void (onAbort ? onAbort() : sub.close());
    if (options.signal?.aborted) queueMicrotask(abort);
    else options.signal?.addEventListener('abort', abort, { once: true });
    subscriptions.add(sub);
    return sub;
  }

  /** Ends every subscription, then the transport. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
    await this.transport.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * @example
 * ```ts
 * const local = createBus<Events>();                                   // this process
 * const cluster = createBus<Events>({ transport: clusterTransport() }); // every worker of weft start
 * ```
 */
export function createBus<E extends EventMap>(options: BusOptions = {}): Bus<E> {
  return new Bus<E>(options);
}
