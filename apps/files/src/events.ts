/**
 * The service's typed event bus. `EventBus` is the contract: events get increasing numeric ids in one order for
 * every process and node; a listener anywhere (the dashboard's live feed) sees every process's events.
 * `SqliteEventBus` is the embedded one: events are emitted at once in the process that publishes them and appended
 * to the shared database, which every other process tails while something listens. `RedisEventBus`
 * (events-redis.ts) spans machines.
 */
import { EventEmitter } from 'node:events';
import type { DatabaseSync } from 'node:sqlite';
import type { JobKind } from './queue/types.ts';

export interface FilesEvents {
  'file.uploaded': { fileId: string; name: string; type: string; size: number; jobs: JobKind[] };
  'file.deleted': { fileId: string };
  'job.completed': { jobId: number; fileId: string; kind: JobKind; attempts: number; ms: number };
  'job.failed': {
    jobId: number;
    fileId: string;
    kind: JobKind;
    attempts: number;
    error: string;
    code: string | null;
    /** True when it went to the dead-letter state; false when it will be retried. */
    dead: boolean;
  };
}

export type EventType = keyof FilesEvents;

export type FilesEvent = {
  [K in EventType]: { id: number; type: K; data: FilesEvents[K]; at: number; pid: number };
}[EventType];

export interface EventBusOptions {
  /** How often other processes' events are read while something listens. Default 250 ms. */
  pollMs?: number;
  /** Events kept in the table for late readers. Default 10 000. */
  keep?: number;
}

/** A listener of one event type, or of every event (`'*'`). */
export type EventListener<K extends EventType | '*'> = (
  event: K extends EventType ? Extract<FilesEvent, { type: K }> : FilesEvent,
) => void;

export interface EventBus {
  /** Records the event for every process and emits it to this process's listeners; resolves with it. */
  publish<K extends EventType>(type: K, data: FilesEvents[K]): Promise<FilesEvent>;
  /** Listens to one type, or every event with `'*'`; returns the function that stops listening. */
  on<K extends EventType | '*'>(type: K, listener: EventListener<K>): () => void;
  /** The recorded events after `id` (all processes), oldest first, at most `limit` (default 500). */
  since(id: number, limit?: number): Promise<FilesEvent[]>;
  /** Stops reading other processes' events and releases connections; idempotent. */
  close(): Promise<void>;
}

/**
 * @example
 * ```ts
 * const bus = new SqliteEventBus(db);
 * const off = bus.on('job.completed', (e) => console.log(e.data.jobId));
 * await bus.publish('file.uploaded', { fileId, name, type, size, jobs: ['image'] });
 * off(); await bus.close();
 * ```
 */
export class SqliteEventBus implements EventBus {
  readonly #db: DatabaseSync;
  readonly #emitter = new EventEmitter();
  readonly #pollMs: number;
  readonly #keep: number;
  #timer: NodeJS.Timeout | undefined;
  #last = 0;
  #listeners = 0;
  #published = 0;
  #closed = false;

  constructor(db: DatabaseSync, options: EventBusOptions = {}) {
    this.#db = db;
    this.#pollMs = options.pollMs ?? 250;
    this.#keep = options.keep ?? 10_000;
    this.#emitter.setMaxListeners(0);
  }

  async publish<K extends EventType>(type: K, data: FilesEvents[K]): Promise<FilesEvent> {
    return this.publishSync(type, data);
  }

  /** `publish`, at once. */
  publishSync<K extends EventType>(type: K, data: FilesEvents[K]): FilesEvent {
    const at = Date.now();
    const row = this.#db
      .prepare('INSERT INTO events (type, data, at) VALUES (?, ?, ?) RETURNING id')
      .get(type, JSON.stringify({ pid: process.pid, data }), at) as { id: number };
    const event = { id: Number(row.id), type, data, at, pid: process.pid } as FilesEvent;
    if (++this.#published % 1_000 === 0) {
      // Housekeeping, after the event is recorded: a failure here (a locked database) must not fail the publish,
      // which a retry would then record twice. The next thousandth publish trims instead.
      try {
        this.#db.prepare('DELETE FROM events WHERE id <= ?').run(event.id - this.#keep);
      } catch {}
    }
    this.#emitter.emit(type, event);
    this.#emitter.emit('*', event);
    return event;
  }

  on<K extends EventType | '*'>(type: K, listener: EventListener<K>): () => void {
    const fn = listener as (event: FilesEvent) => void;
    this.#emitter.on(type, fn);
    if (this.#listeners++ === 0) this.#startTail();
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      this.#emitter.off(type, fn);
      if (--this.#listeners === 0) this.#stopTail();
    };
  }

  async since(id: number, limit = 500): Promise<FilesEvent[]> {
    return this.sinceSync(id, limit);
  }

  sinceSync(id: number, limit = 500): FilesEvent[] {
    const rows = this.#db
      .prepare('SELECT id, type, data, at FROM events WHERE id > ? ORDER BY id LIMIT ?')
      .all(id, limit) as { id: number; type: EventType; data: string; at: number }[];
    return rows.map((r) => {
      const { pid, data } = JSON.parse(r.data) as { pid: number; data: unknown };
      return { id: Number(r.id), type: r.type, data, at: Number(r.at), pid } as FilesEvent;
    });
  }

  #startTail(): void {
    if (this.#closed) return;
    const row = this.#db.prepare('SELECT max(id) AS id FROM events').get() as { id: number | null };
    this.#last = Number(row.id ?? 0);
    this.#timer = setInterval(() => this.#poll(), this.#pollMs);
    this.#timer.unref();
  }

  #stopTail(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #poll(): void {
    let events: FilesEvent[];
    try {
      events = this.sinceSync(this.#last);
    } catch {
      return; // a locked or failing database: the next tick reads from the same id
    }
    for (const event of events) {
      this.#last = event.id;
      if (event.pid === process.pid) continue; // emitted when it was published
      this.#emitter.emit(event.type, event);
      this.#emitter.emit('*', event);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stopTail();
    this.#emitter.removeAllListeners();
  }
}
