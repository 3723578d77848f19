/**
 * `weftjs/bus/redis`: the machines scope on Redis Streams (Redis ≥ 6.2), one stream per event name,
 * `<prefix><name>`. See docs/bus.md, "Across machines: Redis Streams".
 *
 * - publish: one `XADD` with the fields `p` (the payload as JSON) and `t` (epoch ms), trimmed in the same command
 *   (`MAXLEN ~ maxLen`; with `maxAgeMs` alone `MINID ~ now - maxAgeMs`, with both an `XTRIM MINID` sent alongside).
 *   Resolves with the entry id, which is the event's id. A payload `JSON.stringify` cannot encode (a BigInt, a cycle,
 *   a function) rejects with `ERR_WEFT_INVALID_ARGUMENT`; `undefined` is sent as no `p` field.
 * - fan-out (no group): each subscriber `XREAD`s from `from` on a connection of its own (`client.duplicate()`):
 *   `'new'` is the stream's last id when `subscribe` resolves (no later event is missed), `'first'` is `0`, an id means
 *   the entries after it. Deliveries are in id order, one at a time. Nothing is acknowledged: a handler that fails is
 *   reported by the bus and not retried; at-most-once per subscriber, from the moment it subscribed.
 * - group: consumer group `<group>` on the stream (`XGROUP CREATE … MKSTREAM` at `from`; an existing group resumes
 *   where it stopped; a group deleted under it is created again at `0`). `XREADGROUP >`, one delivery at a time,
 *   `XACK` once it settles successfully. A failed delivery stays pending: the consumer reads its own pending entries
 *   again (`XREADGROUP … 0`) after `retryDelayMs · 2^(attempt-1)` (at most 30 s), and every member `XAUTOCLAIM`s entries
 *   idle longer than `claimIdleMs`, so the event of a handler that crashed its process reaches another member:
 *   at-least-once. `event.attempt` is Redis's delivery count. A handler running longer than `claimIdleMs` may see its
 *   event delivered to another member too. Order: id order for one consumer's first deliveries; a retry comes after
 *   the entries read since; across the members of a group there is no order. After `maxAttempts` failed deliveries (or
 *   when a claim finds more), the entry is copied to `<prefix><name>:dead` (fields `p`, `t`, `id`, `group`,
 *   `attempts`, `error`) and acknowledged.
 * - connections: the caller owns `client` (publish, group creation). Each subscription reads and acknowledges on its
 *   own duplicate, which ioredis reconnects; a failed command is retried after a backoff (100 ms doubling to 5 s),
 *   reported to `onError`, never thrown. `close()` stops the loops (cutting a blocking read short by disconnecting),
 *   waits for the deliveries under way and closes the duplicates, never `client`.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../errors.ts';
import {
  type Entry,
  entriesOf,
  eventOf,
  type RedisClient,
  type RedisTransportOptions,
  type ResolvedRedisOptions,
  resolveRedisOptions,
  retryDelay,
  weftFields,
} from './redis-options.ts';
import type { Deliver, Transport, TransportSubscription } from './types.ts';

export type { RedisClient, RedisTransportOptions, ResolvedRedisOptions } from './redis-options.ts';

/** One subscription's state; its loop reads on `conn`, a connection of its own. */
interface Sub {
  name: string;
  key: string;
  group: string | undefined;
  consumer: string;
  deliver: Deliver;
  conn: RedisClient;
  /** Set while a read is in flight on `conn`: stopping then disconnects it rather than waiting `blockMs`. */
  reading: boolean;
  stopped: boolean;
  /** When the consumer reads its own pending entries again (a delivery failed). */
  retryAt: number;
  readonly abort: AbortController;
  loop?: Promise<void>;
  stopping?: Promise<void>;
}

type Args = (string | number)[];

const ID = /^\d+(-\d+)?$/;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
const closedError = () => new WeftError('ERR_WEFT_BUS_CLOSED', 'The Redis transport is closed');
const invalidPayload = (detail: string, cause?: unknown) =>
  new WeftError('ERR_WEFT_INVALID_ARGUMENT', `The "payload" argument must be JSON-serialisable${detail}`, {
    cause,
  });

/**
 * Carries a bus's events across machines on Redis Streams.
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis';
 * const client = new Redis(process.env.REDIS_URL);
 * const bus = createBus<Events>({ transport: redisTransport({ client }) });
 * bus.subscribe('orderPlaced', sendEmail, { group: 'mailer' }); // one member of "mailer" per event
 * await bus.publish('orderPlaced', { orderId: 'o-1', total: 42 });
 * ```
 */
export class RedisTransport implements Transport {
  readonly scope = 'machines' as const;
  readonly options: Readonly<ResolvedRedisOptions>;
  readonly #subs = new Set<Sub>();
  readonly #consumers = new Map<string, number>();
  #closing: Promise<void> | undefined;

  constructor(options: RedisTransportOptions) {
    this.options = resolveRedisOptions(options);
  }

  async publish(name: string, payload: unknown): Promise<string> {
    if (this.#closing) throw closedError();
    let p: string | undefined;
    try {
      p = JSON.stringify(payload);
    } catch (err) {
      throw invalidPayload(`: ${messageOf(err)}`, err); // a BigInt, a cycle
    }
    if (p === undefined && payload !== undefined) throw invalidPayload(''); // a function, a symbol
    const key = this.options.prefix + name;
    const { client } = this.options;
    const fields = p === undefined ? ['t', Date.now()] : ['p', p, 't', Date.now()];
    const trim = this.#trimByAge(key);
    const [id] = await Promise.all([client.call(...this.#xadd(key, fields)), trim && client.call(...trim)]);
    return id as string;
  }

  async subscribe(s: TransportSubscription): Promise<() => Promise<void>> {
    if (this.#closing) throw closedError();
    const from = s.from ?? 'new';
    if (from !== 'new' && from !== 'first' && !(typeof from === 'string' && ID.test(from)))
      throw new WeftError(
        'ERR_WEFT_INVALID_ARGUMENT',
        `The "from" option must be 'new', 'first' or a stream entry id. Received ${JSON.stringify(from)}`,
      );
    const { client, prefix } = this.options;
    const key = prefix + s.name;
    let start = '';
    if (s.group === undefined)
      start = from === 'first' ? '0-0' : from === 'new' ? await this.#lastId(key) : from;
    else await this.#createGroup(client, key, s.group, from === 'first' ? '0' : from === 'new' ? '$' : from);
    if (this.#closing) throw closedError();
    const consumer = s.group === undefined ? this.options.consumer : this.#consumerFor(s.name, s.group);
    // Blocking reads need a connection of their own: ioredis sends a connection's commands one after another.
    const conn = client.duplicate({ connectionName: `weft-bus:${s.name}:${s.group ?? '*'}:${consumer}` });
    conn.on('error', () => {}); // each failed command reaches its loop; ioredis reconnects
    const sub: Sub = {
      name: s.name,
      key,
      group: s.group,
      consumer,
      deliver: s.deliver,
      conn,
      reading: false,
      stopped: false,
      retryAt: 0, // a named consumer first resumes its own pending entries
      abort: new AbortController(),
    };
    sub.loop = s.group === undefined ? this.#fanout(sub, start) : this.#group(sub);
    this.#subs.add(sub);
    return () => this.#stop(sub);
  }

  /** Stops every subscription and closes the connections it opened; `client` stays open. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.all([...this.#subs].map((sub) => this.#stop(sub))).then(() => {});
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Two subscriptions of one group in one transport need two consumer names, or each would retry the other's. */
  #consumerFor(name: string, group: string): string {
    const k = `${name}\n${group}`;
    const n = this.#consumers.get(k) ?? 0;
    this.#consumers.set(k, n + 1);
    return n === 0 ? this.options.consumer : `${this.options.consumer}:${n}`;
  }

  #xadd(key: string, fields: Args): [string, ...Args] {
    const { maxLen, maxAgeMs } = this.options;
    const trim: Args =
      maxLen !== Number.POSITIVE_INFINITY
        ? ['MAXLEN', '~', maxLen]
        : maxAgeMs !== undefined
          ? ['MINID', '~', Date.now() - maxAgeMs]
          : [];
    return ['XADD', key, ...trim, '*', ...fields];
  }

  /** With both limits XADD trims by length and this command, sent alongside, by age. */
  #trimByAge(key: string): [string, ...Args] | undefined {
    const { maxLen, maxAgeMs } = this.options;
    if (maxAgeMs === undefined || maxLen === Number.POSITIVE_INFINITY) return undefined;
    return ['XTRIM', key, 'MINID', '~', Date.now() - maxAgeMs];
  }

  async #lastId(key: string): Promise<string> {
    const last = (await this.options.client.call('XREVRANGE', key, '+', '-', 'COUNT', 1)) as Entry[];
    return last[0]?.[0] ?? '0-0';
  }

  async #createGroup(conn: RedisClient, key: string, group: string, at: string): Promise<void> {
    try {
      await conn.call('XGROUP', 'CREATE', key, group, at, 'MKSTREAM');
    } catch (err) {
      if (!messageOf(err).startsWith('BUSYGROUP')) throw err; // it exists: it resumes where it stopped
    }
  }

  async #stop(sub: Sub): Promise<void> {
    sub.stopping ??= (async () => {
      sub.stopped = true;
      sub.abort.abort();
      if (sub.reading) sub.conn.disconnect(); // rejects the blocking read now rather than after blockMs
      await sub.loop;
      this.#subs.delete(sub);
      const idle = sub.conn.status === 'ready' ? sub.conn : this.options.client;
      if (sub.group !== undefined && idle.status === 'ready') await this.#forget(sub, idle).catch(() => {});
      // disconnect() of an ended connection arms a 2 s timer nothing clears (ioredis AbstractConnector).
      if (sub.conn.status === 'ready') await sub.conn.quit().catch(() => {});
      if (sub.conn.status !== 'end') sub.conn.disconnect();
    })();
    return sub.stopping;
  }

  /** Removes the consumer from its group when it holds no pending entry, so groups do not collect dead names. */
  async #forget({ key, group, consumer }: Sub, conn: RedisClient): Promise<void> {
    const pending = (await conn.call('XPENDING', key, group!, '-', '+', 1, consumer)) as unknown[];
    if (pending.length === 0) await conn.call('XGROUP', 'DELCONSUMER', key, group!, consumer);
  }

  /**
   * Sends a command on the subscription's connection. A reply overdue by 10 s means a socket dead without a reset:
   * reconnect, and ioredis sends the command again. (ioredis's `socketTimeout` would do, but its timer outlives
   * `disconnect()` and holds the process open.) A read is marked, so that stopping cuts it short.
   */
  async #send(sub: Sub, read: boolean, ...command: [string, ...Args]): Promise<unknown> {
    const { conn } = sub;
    const watchdog = setTimeout(() => {
      if (conn.status === 'ready') conn.disconnect(true);
    }, this.options.blockMs + 10_000).unref();
    sub.reading = read;
    try {
      return await conn.call(...command);
    } finally {
      sub.reading = false;
      clearTimeout(watchdog);
    }
  }

  /** After a failed command: wait 100 ms doubling to 5 s (ioredis reconnects meanwhile); stopping ends the wait. */
  async #pause(sub: Sub, failures: number, err: unknown): Promise<void> {
    this.options.onError(err);
    const ms = Math.min(100 * 2 ** failures, 5_000);
    await sleep(ms, undefined, { signal: sub.abort.signal }).catch(() => {});
  }

  async #fanout(sub: Sub, last: string): Promise<void> {
    const { batch, blockMs } = this.options;
    let failures = 0;
    while (!sub.stopped) {
      let entries: Entry[];
      try {
        const read: Args = ['COUNT', batch, 'BLOCK', blockMs, 'STREAMS', sub.key, last];
        entries = entriesOf(await this.#send(sub, true, 'XREAD', ...read));
        failures = 0;
      } catch (err) {
        if (!sub.stopped) await this.#pause(sub, failures++, err);
        continue;
      }
      for (const entry of entries) {
        if (sub.stopped) return;
        last = entry[0];
        const event = eventOf(sub.name, entry, 1);
        if (typeof event === 'string') continue; // not a weft event; fan-out has nowhere to put it
        try {
          await sub.deliver(event);
        } catch {} // reported by the bus; fan-out does not acknowledge, so does not retry
      }
    }
  }

  async #group(sub: Sub): Promise<void> {
    const { blockMs, claimIdleMs, retryDelayMs } = this.options;
    const claimEvery = Math.max(50, Math.floor(claimIdleMs / 2));
    let failures = 0;
    let claimAt = 0;
    let cursor = '0-0';
    while (!sub.stopped) {
      try {
        const now = Date.now();
        if (sub.retryAt <= now) {
          sub.retryAt = Number.POSITIVE_INFINITY;
          await this.#retryOwn(sub);
        } else if (claimAt <= now) {
          cursor = await this.#claim(sub, cursor);
          claimAt = cursor === '0-0' ? now + claimEvery : now; // more to scan: go on at once
        } else {
          const block = Math.max(1, Math.min(blockMs, claimAt - now, sub.retryAt - now));
          await this.#handle(sub, await this.#readGroup(sub, '>', block));
        }
        failures = 0;
      } catch (err) {
        if (sub.stopped) break;
        if (messageOf(err).startsWith('NOGROUP')) {
          // The stream or the group was deleted: what is published from now on is new to the group.
          await this.#createGroup(sub.conn, sub.key, sub.group!, '0').catch(() => {});
        }
        // Entries read but not handled stay pending: look at them again.
        sub.retryAt = Math.min(sub.retryAt, Date.now() + retryDelayMs);
        await this.#pause(sub, failures++, err);
      }
    }
  }

  /** XREADGROUP: `>` for new entries, blocking; an id for this consumer's pending entries after it. */
  async #readGroup(sub: Sub, id: string, block?: number): Promise<Entry[]> {
    const wait = block === undefined ? [] : ['BLOCK', block];
    const args: Args = ['GROUP', sub.group!, sub.consumer, 'COUNT', this.options.batch, ...wait];
    return entriesOf(await this.#send(sub, true, 'XREADGROUP', ...args, 'STREAMS', sub.key, id));
  }

  /** Delivers again this consumer's pending entries (the failed ones; after a restart, a named consumer's). */
  async #retryOwn(sub: Sub): Promise<void> {
    let after = '0';
    while (!sub.stopped) {
      const entries = await this.#readGroup(sub, after);
      if (entries.length === 0) return;
      await this.#handle(sub, entries, await this.#deliveries(sub, entries));
      after = entries.at(-1)![0];
    }
  }

  /** Claims entries idle longer than claimIdleMs (another member's that died, or this one's); the next cursor. */
  async #claim(sub: Sub, cursor: string): Promise<string> {
    const { claimIdleMs, batch } = this.options;
    const args: Args = [sub.key, sub.group!, sub.consumer, claimIdleMs, cursor, 'COUNT', batch];
    const [next, claimed] = (await this.#send(sub, true, 'XAUTOCLAIM', ...args)) as [string, Entry[]];
    const entries = claimed.filter((e): e is Entry => Array.isArray(e)); // Redis 6.2 lists deleted ones as nil
    if (entries.length > 0) await this.#handle(sub, entries, await this.#deliveries(sub, entries));
    return next;
  }

  /** Delivery counts of this consumer's pending entries (XREADGROUP and XAUTOCLAIM do not say). */
  async #deliveries(sub: Sub, entries: Entry[]): Promise<Map<string, number>> {
    const [first, last] = [entries[0]![0], entries.at(-1)![0]];
    const count = entries.length * 2 + 100; // its other pending entries in the range (failed ones) are few
    const args: Args = [sub.key, sub.group!, first, last, count, sub.consumer];
    const rows = (await this.#send(sub, false, 'XPENDING', ...args)) as [string, string, number, number][];
    return new Map(rows.map(([id, , , n]) => [id, n]));
  }

  /**
   * Delivers entries one at a time: acknowledged on success, retried later on failure, dead letter past maxAttempts.
   * `deliveries` has the delivery counts; an entry read with `>` is on its first.
   */
  async #handle(sub: Sub, entries: Entry[], deliveries = new Map<string, number>()): Promise<void> {
    const { maxAttempts, retryDelayMs } = this.options;
    const ack = (id: string) => this.#send(sub, false, 'XACK', sub.key, sub.group!, id);
    for (const entry of entries) {
      if (sub.stopped) return; // the rest stays pending: a member claims it after claimIdleMs
      const [id, fields] = entry;
      const attempt = deliveries.get(id) ?? 1;
      const event = eventOf(sub.name, entry, attempt);
      if (fields === null)
        await ack(id); // trimmed away while pending
      else if (typeof event === 'string') await this.#bury(sub, entry, attempt, event);
      else if (attempt > maxAttempts)
        await this.#bury(sub, entry, attempt - 1, `not acknowledged after ${attempt - 1} deliveries`);
      else {
        try {
          await sub.deliver(event);
        } catch (err) {
          if (attempt >= maxAttempts) await this.#bury(sub, entry, attempt, messageOf(err));
          else sub.retryAt = Math.min(sub.retryAt, Date.now() + retryDelay(retryDelayMs, attempt));
          continue;
        }
        await ack(id);
      }
    }
  }

  /** Copies an entry to `<key>:dead` and acknowledges it: a crash in between dead-letters it twice, never not. */
  async #bury(sub: Sub, [id, fields]: Entry, attempts: number, error: string): Promise<void> {
    const dead = `${sub.key}:dead`;
    const about: Args = ['id', id, 'group', sub.group!, 'attempts', attempts, 'error', error];
    const trim = this.#trimByAge(dead);
    await Promise.all([
      this.#send(sub, false, ...this.#xadd(dead, [...weftFields(fields), ...about])),
      trim && this.#send(sub, false, ...trim),
    ]);
    await this.#send(sub, false, 'XACK', sub.key, sub.group!, id);
  }
}

/**
 * A transport across machines on Redis Streams, for `createBus({ transport })`.
 *
 * @example
 * ```ts
 * const bus = createBus<Events>({ transport: redisTransport({ client: new Redis(url), maxAgeMs: 86_400_000 }) });
 * ```
 */
export function redisTransport(options: RedisTransportOptions): RedisTransport {
  return new RedisTransport(options);
}
