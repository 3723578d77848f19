/**
 * The file service on `weftjs/bus`: one bus for its events, whatever it spans. With the embedded queue it is the
 * cluster scope (every worker of this machine's `weft start`, or this process alone); with `QUEUE_URL` it is Redis
 * Streams on the queue's Redis, one stream per event type (`<prefix>:<queue>:bus:<type>`), so every node's
 * dashboard sees every node's events, and the node registry's heartbeats (`node.seen`) go the same way.
 *
 * `FilesBus` is the service's typed view of that bus: `publish` of a file or job event, `on` one type or every one
 * (`'*'`, which the bus has no name for: one subscription per type), and `onPublished`, this process's own events
 * only (what its metrics count).
 */
import { EventEmitter } from 'node:events';
import { type Bus, type BusEvent, clusterTransport, createBus, type Transport } from 'weftjs/bus';
import { ThrottledLog } from '../log-throttle.ts';
import type { Logger } from '../logger.ts';
import type { NodeBeat } from '../nodes.ts';
import {
  EVENT_TYPES,
  type EventListener,
  type EventType,
  type FilesEvent,
  type FilesEvents,
} from './types.ts';

/** Everything on the service's bus: its events and the node registry's heartbeats. */
export type BusEvents = FilesEvents & { 'node.seen': NodeBeat };

/** A stop function that also says when the subscriptions it stops receive events. */
export type Off = (() => void) & { ready: Promise<void> };

/**
 * @example
 * ```ts
 * const bus = new FilesBus(createBus<BusEvents>());
 * const off = bus.on('job.completed', (e) => console.log(e.data.jobId));
 * await bus.publish('file.deleted', { fileId });
 * off(); await bus.close();
 * ```
 */
export class FilesBus {
  readonly bus: Bus<BusEvents>;
  readonly #own = new EventEmitter();
  readonly #closeAlso: (() => Promise<unknown>) | undefined;
  #closing: Promise<void> | undefined;

  /** `closeAlso` runs after the bus closed (a Redis connection the bus does not own). */
  constructor(bus: Bus<BusEvents>, closeAlso?: () => Promise<unknown>) {
    this.bus = bus;
    this.#closeAlso = closeAlso;
    this.#own.setMaxListeners(0);
  }

  /** Where the events reach: `process`, `cluster` or `machines`. */
  get scope(): Bus<BusEvents>['scope'] {
    return this.bus.scope;
  }

  /** Publishes; resolves with the event once the bus has it (the supervisor, or Redis, took it). */
  async publish<K extends EventType>(type: K, data: FilesEvents[K]): Promise<FilesEvent> {
    const at = Date.now();
    const id = await this.bus.publish(type, data as BusEvents[K]);
    const event = { id, type, data, at } as FilesEvent;
    this.#own.emit('event', event);
    return event;
  }

  /** Listens to one type, or to every event with `'*'`, from every process the bus spans. */
  on<K extends EventType | '*'>(type: K, listener: EventListener<K>): Off {
    const fn = listener as (event: FilesEvent) => void;
    const types = type === '*' ? EVENT_TYPES : [type as EventType];
    let on = true;
    // Closing a subscription settles later: nothing reaches the listener once off() returned.
    const subs = types.map((t) =>
      this.bus.subscribe(t, (data: unknown, e: BusEvent) => {
        if (on) fn({ id: e.id, type: t, data, at: e.time } as FilesEvent);
      }),
    );
    const off = () => {
      if (!on) return;
      on = false;
      for (const s of subs) void s.close();
    };
    return Object.assign(off, { ready: Promise.all(subs.map((s) => s.ready)).then(() => {}) });
  }

  /** This process's own events, as each publish succeeds. */
  onPublished(listener: (event: FilesEvent) => void): () => void {
    this.#own.on('event', listener);
    return () => this.#own.off('event', listener);
  }

  /** Ends every subscription and the bus; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#own.removeAllListeners();
      await this.bus.close();
      await this.#closeAlso?.();
    })();
    return this.#closing;
  }
}

export interface OpenBusOptions {
  /** `QUEUE_URL`: the bus spans machines on its Redis. Without it, the cluster scope. */
  queueUrl?: string | undefined;
  /** Bounds each Redis command beyond a read's blocking time, ms. Default 5 000. */
  timeoutMs?: number;
  /** Events kept per type on Redis (`MAXLEN ~`). Default 10 000. */
  keep?: number;
  log: Logger;
}

/**
 * The service's bus: Redis Streams with `queueUrl`, else the workers of this `weft start`.
 *
 * @example
 * ```ts
 * const bus = await openFilesBus({ queueUrl: process.env.QUEUE_URL, log });
 * ```
 */
export async function openFilesBus(options: OpenBusOptions): Promise<FilesBus> {
  const { log } = options;
  const throttled = new ThrottledLog(log);
  const onError = (err: unknown, event: BusEvent) =>
    log.warn({ err, event: { id: event.id, name: event.name } }, `a listener of ${event.name} failed`);
  if (!options.queueUrl)
    return new FilesBus(createBus<BusEvents>({ transport: clusterTransport(), onError }));
  const [{ redisTransport }, { queueRedis }] = await Promise.all([
    import('weftjs/bus/redis'),
    import('../queue/bullmq.ts'),
  ]);
  const blockMs = 1_000;
  // A command survives one failed reconnect (a failover), then rejects; a publish is bounded by its deadline
  // (resilience.ts), a blocking read by `commandTimeout` (a Redis that stops answering without closing the connection).
  const { client, keyPrefix, close } = queueRedis(
    options.queueUrl,
    {
      commandTimeout: blockMs + (options.timeoutMs ?? 5_000),
      // ioredis arms this timer even for a socket already closed: a closed bus does not keep the process for 2 s.
      disconnectTimeout: 250,
    },
    'bus',
  );
  const transport: Transport = redisTransport({
    client,
    prefix: `${keyPrefix}bus:`,
    maxLen: options.keep ?? 10_000,
    blockMs,
    // A read loop retries while Redis is away: logged once a minute, not once per retry.
    onError: (err) => throttled.failure('bus', err, 'reading the event bus on Redis failed'),
  });
  return new FilesBus(createBus<BusEvents>({ transport, onError }), close);
}
