/**
 * The event bus across machines: events live in a Redis Stream. One Lua script takes the next number from
 * `<stream>:seq` and appends the event under the stream id `<n>-1`, atomically, so every publisher on every machine
 * shares one increasing order and `since(id)` is a plain XRANGE. While something listens, a dedicated connection
 * blocks in XREAD on the stream and re-emits other buses' events; a bus's own events are emitted when published.
 *
 * Connections (ioredis), and why:
 * - `lazyConnect`: `new RedisEventBus(url)` opens nothing; the first command connects. `RedisEventBus.open` connects
 *   at once and fails with `ERR_WEFT_FILES_REDIS` when Redis does not answer.
 * - `enableOfflineQueue: true` (ioredis's default) so the first publish and commands sent while reconnecting wait
 *   for the connection, bounded by `maxRetriesPerRequest: 1` (a command survives one failed reconnect attempt, e.g.
 *   a failover, then rejects) and by `commandTimeout` (`timeoutMs`, for a host that stops answering without closing
 *   the connection). A publish that rejected on a timeout may still have been recorded.
 * - `retryStrategy` is ioredis's default (back off to 2 s, forever): a bus outlives a Redis restart; the tail
 *   resumes from the last id it read, so no event is lost unless it was trimmed meanwhile.
 * - `disconnectTimeout: 250` (ioredis: 2 s, a timer it arms even for a socket already closed): a closed bus does
 *   not keep the process alive for long.
 * - Every connection has an 'error' listener that keeps the last error: failures surface as rejected commands.
 * - The tail's connection is named `<stream>:tail` (CLIENT LIST), has `commandTimeout` = `blockMs + timeoutMs`, and
 *   is disconnected when the last listener goes, which ends its blocked XREAD at once.
 *
 * Redis Cluster is not supported: the stream and its `:seq` key would need one hash tag (`{weft-files}:events`).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import { FilesError } from './errors.ts';
import type { EventBus, EventListener, EventType, FilesEvent, FilesEvents } from './events.ts';

export interface RedisEventBusOptions {
  /** The stream's key; the sequence is `<stream>:seq`. Default `weft-files:events`. */
  stream?: string;
  /** About how many events the stream keeps for late readers (`MAXLEN ~`). Default 10 000. */
  keep?: number;
  /** How long one XREAD of the tail blocks. Default 1 000 ms. */
  blockMs?: number;
  /** Bounds connecting in `open`, each command, and `close`'s QUIT. Default 5 000 ms. */
  timeoutMs?: number;
}

// INCR then XADD in one script: the entry's id is the event's number, in one order for every publisher.
const PUBLISH = `
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], tostring(n) .. '-1', 'e', ARGV[2])
return n
`;

/** What the stream holds for each event: the event without its id, and the publishing bus. */
interface Stored {
  type: EventType;
  data: unknown;
  at: number;
  pid: number;
  src: string;
}

type WithPublish = Redis & {
  weftFilesPublish(stream: string, seq: string, keep: number, json: string): Promise<number>;
};

const noop = () => {};

/**
 * @example
 * ```ts
 * const bus = await RedisEventBus.open('redis://127.0.0.1:6379', { stream: 'weft-files:events' });
 * const off = bus.on('*', (e) => console.log(e.id, e.type));
 * await bus.publish('file.deleted', { fileId });
 * off(); await bus.close();
 * ```
 */
export class RedisEventBus implements EventBus {
  readonly #redis: WithPublish;
  readonly #emitter = new EventEmitter();
  readonly #key: string;
  readonly #seqKey: string;
  readonly #keep: number;
  readonly #blockMs: number;
  readonly #timeoutMs: number;
  /** host:port, for messages: never the URL, which may hold a password. */
  readonly #where: string;
  /** This bus among every publisher, even several in one process: its own events are skipped by the tail. */
  readonly #src = `${process.pid}:${randomUUID()}`;
  #tail: Redis | undefined;
  /** Bumped whenever the tail stops: a loop of an older generation ends. */
  #generation = 0;
  #listeners = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #lastError: Error | undefined;

  constructor(url: string, options: RedisEventBusOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new FilesError(
        'ERR_WEFT_FILES_CONFIG',
        'The event bus URL must be a URL like redis://host:6379/0',
      );
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
      throw new FilesError(
        'ERR_WEFT_FILES_CONFIG',
        `The event bus URL must start with redis:// or rediss://, got ${u.protocol}//`,
      );
    }
    this.#where = `${u.hostname || '127.0.0.1'}:${u.port || 6379}`;
    this.#key = options.stream ?? 'weft-files:events';
    this.#seqKey = `${this.#key}:seq`;
    this.#keep = positive('keep', options.keep ?? 10_000);
    this.#blockMs = positive('blockMs', options.blockMs ?? 1_000);
    this.#timeoutMs = positive('timeoutMs', options.timeoutMs ?? 5_000);
    const connection: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: true,
      maxRetriesPerRequest: 1,
      commandTimeout: this.#timeoutMs,
      connectTimeout: this.#timeoutMs,
      // How long a closing socket may stay half-open before it is destroyed. ioredis arms this timer even for a
      // socket that already closed (after failed reconnects), which would keep the process alive for 2 s.
      disconnectTimeout: 250,
    };
    this.#redis = new Redis(url, connection) as WithPublish;
    this.#redis.on('error', this.#onError);
    this.#redis.defineCommand('weftFilesPublish', { numberOfKeys: 2, lua: PUBLISH });
    this.#emitter.setMaxListeners(0);
  }

  /** A bus whose connection is open: fails with `ERR_WEFT_FILES_REDIS` when Redis does not answer in time. */
  static async open(url: string, options: RedisEventBusOptions = {}): Promise<RedisEventBus> {
    const bus = new RedisEventBus(url, options);
    let cause: Error | undefined;
    const keep = (err: Error) => {
      cause = err;
    };
    bus.#redis.on('error', keep);
    try {
      await withTimeout(
        bus.#redis.connect().then(() => bus.#redis.ping()),
        bus.#timeoutMs,
        `no answer within ${bus.#timeoutMs} ms`,
      );
    } catch (err) {
      await bus.close();
      const reason = cause ?? (err as Error);
      throw new FilesError(
        'ERR_WEFT_FILES_REDIS',
        `Cannot reach Redis at ${bus.#where} for the event bus: ${reason.message}`,
        { cause: reason },
      );
    } finally {
      bus.#redis.off('error', keep);
    }
    return bus;
  }

  async publish<K extends EventType>(type: K, data: FilesEvents[K]): Promise<FilesEvent> {
    if (this.#closed) throw new Error('The event bus is closed');
    const at = Date.now();
    const stored: Stored = { type, data, at, pid: process.pid, src: this.#src };
    const n = await this.#redis.weftFilesPublish(this.#key, this.#seqKey, this.#keep, JSON.stringify(stored));
    const event = { id: Number(n), type, data, at, pid: process.pid } as FilesEvent;
    this.#emit(event);
    return event;
  }

  /**
   * Listens; the first listener starts the tail, which reads events published after the point Redis handles this
   * call's request for the current sequence. That request goes on the bus's command connection, so once any later
   * command of this bus resolved (`await bus.since(...)`, `await bus.publish(...)`), every event published after
   * it reaches the listener.
   */
  on<K extends EventType | '*'>(type: K, listener: EventListener<K>): () => void {
    const fn = listener as (event: FilesEvent) => void;
    this.#emitter.on(type, fn);
    if (this.#listeners++ === 0) this.#startTail();
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      this.#emitter.off(type, fn);
      if (this.#closed) return;
      if (--this.#listeners === 0) this.#stopTail();
    };
  }

  async since(id: number, limit = 500): Promise<FilesEvent[]> {
    if (this.#closed) throw new Error('The event bus is closed');
    if (limit < 1) return [];
    const start = id < 0 ? '-' : `${Math.floor(id) + 1}-0`;
    const entries = await this.#redis.xrange(this.#key, start, '+', 'COUNT', Math.floor(limit));
    const events: FilesEvent[] = [];
    for (const [entryId, fields] of entries) {
      const decoded = decode(entryId, fields);
      if (decoded) events.push(decoded.event);
    }
    return events;
  }

  /**
   * Stops the tail and closes both connections: QUIT when connected (a disconnect after `timeoutMs`), else a
   * disconnect, which rejects the commands still waiting for a connection; idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#stopTail();
    this.#listeners = 0;
    this.#emitter.removeAllListeners();
    const redis = this.#redis;
    if (redis.status === 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        redis.quit().catch(noop),
        new Promise((resolve) => {
          timer = setTimeout(resolve, this.#timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    redis.disconnect();
  }

  /** The last error a connection reported ('error' events are kept here, never thrown). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  readonly #onError = (err: Error) => {
    this.#lastError = err;
  };

  #emit(event: FilesEvent): void {
    this.#emitter.emit(event.type, event);
    this.#emitter.emit('*', event);
  }

  #startTail(): void {
    if (this.#closed) return;
    const generation = ++this.#generation;
    const tail = this.#redis.duplicate({
      connectionName: `${this.#key}:tail`.replace(/[^\x21-\x7e]/g, '_'),
      commandTimeout: this.#blockMs + this.#timeoutMs,
    });
    tail.on('error', this.#onError);
    this.#tail = tail;
    // Sent now, on the command connection, so it is ordered before this bus's later commands.
    const start = this.#lastId();
    void this.#read(generation, tail, start);
  }

  #stopTail(): void {
    this.#generation++;
    // Ends a blocked XREAD at once (it rejects, and its loop sees the new generation).
    this.#tail?.disconnect();
    this.#tail = undefined;
  }

  /** The stream id of the newest event (`0-0` when none), from the sequence. */
  #lastId(): Promise<string> {
    const id = this.#redis.get(this.#seqKey).then((n) => (n === null ? '0-0' : `${n}-1`));
    id.catch(noop); // awaited by the tail, which retries
    return id;
  }

  async #read(generation: number, tail: Redis, start: Promise<string>): Promise<void> {
    let last: string | undefined;
    let failures = 0;
    while (this.#generation === generation) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        last ??= await start;
        reply = await tail.xread('COUNT', 500, 'BLOCK', this.#blockMs, 'STREAMS', this.#key, last);
        failures = 0;
      } catch {
        if (this.#generation !== generation) return;
        // Redis is away: ioredis reconnects; read again from `last` after a pause.
        if (last === undefined) start = this.#lastId();
        await sleep(Math.min(2_000, 100 * 2 ** failures++));
        continue;
      }
      if (this.#generation !== generation) return;
      for (const [, entries] of reply ?? []) {
        for (const [entryId, fields] of entries) {
          last = entryId;
          const decoded = decode(entryId, fields);
          if (!decoded || decoded.src === this.#src) continue; // its own: emitted when it was published
          try {
            this.#emit(decoded.event);
          } catch (err) {
            // A listener threw: like an EventEmitter's listener in a timer, it is the process's uncaught error,
            // but the tail goes on.
            process.nextTick(() => {
              throw err;
            });
          }
          if (this.#generation !== generation) return;
        }
      }
    }
  }
}

/** The event in a stream entry, and which bus published it; undefined for an entry that is not one. */
function decode(entryId: string, fields: string[]): { event: FilesEvent; src: string } | undefined {
  const at = fields.indexOf('e');
  const json = at >= 0 && at % 2 === 0 ? fields[at + 1] : undefined;
  if (json === undefined) return undefined;
  try {
    const s = JSON.parse(json) as Stored;
    const event = { id: Number.parseInt(entryId, 10), type: s.type, data: s.data, at: s.at, pid: s.pid };
    return { event: event as FilesEvent, src: s.src };
  } catch {
    return undefined;
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new FilesError('ERR_WEFT_FILES_CONFIG', `RedisEventBus option ${name} must be a positive integer`);
  }
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
