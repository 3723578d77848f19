/**
 * The machines scope of the `bus` area, on Redis Streams: weftjs/bus's `redisTransport()` against the same streams
 * driven by hand with ioredis. Publisher and subscriber are separate clients (two "machines") in this process, so
 * the subscriber's handled count bounds the publisher directly. Streams live under a prefix of this run's own,
 * deleted at the end.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { type Bus, createBus } from 'weftjs/bus';
import { redisTransport } from 'weftjs/bus/redis';
import type { RunResult } from './bus-cluster.ts';
import { within } from './lib/harness.ts';
import { percentile } from './lib/stats.ts';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** What both sides use: the transport's defaults (`batch`, `blockMs`, `maxLen`). */
const BATCH = 100;
const BLOCK_MS = 1_000;
const MAX_LEN = 100_000;

type Payload = { r: number; n: number; t: number };
type Events = { group: Payload; fanout: Payload };

/** `false` when Redis answers PING within 3 s; else why not. */
export async function redisUnreachable(): Promise<string | false> {
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
  });
  probe.on('error', () => {});
  try {
    await within(
      probe.connect().then(() => probe.ping()),
      3_000,
      'PING',
    );
    return false;
  } catch (err) {
    return `Redis at ${new URL(REDIS_URL).host} did not answer (${err instanceof Error ? err.message : String(err)}); set REDIS_URL to point elsewhere`;
  } finally {
    probe.disconnect();
  }
}

/**
 * Counts the events of the current run as a handler sees them: latency from the `t` in the payload, and a wake-up
 * for a publisher waiting for room in its window.
 */
class Meter {
  #run = 0;
  #count = 0;
  #handled = 0;
  #first = 0;
  #latency = new Float64Array(0);
  #wake: (() => void) | undefined;
  #done: PromiseWithResolvers<RunResult> | undefined;

  readonly onEvent = (p: Payload): void => {
    const t = performance.now();
    if (p.r !== this.#run || this.#done === undefined) return;
    if (p.n === 0) this.#first = p.t;
    this.#latency[this.#handled++] = t - p.t;
    this.#wake?.();
    this.#wake = undefined;
    if (this.#handled === this.#count) {
      const sorted = Array.from(this.#latency);
      this.#done.resolve({
        rate: this.#count / ((t - this.#first) / 1000),
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
      });
      this.#done = undefined;
    }
  };

  /** Publishes `count` events, awaiting each publish, with at most `window` of them unhandled. */
  async drive(publish: (p: Payload) => Promise<unknown>, count: number, window: number): Promise<RunResult> {
    this.#run++;
    this.#count = count;
    this.#handled = 0;
    this.#latency = new Float64Array(count);
    const done = Promise.withResolvers<RunResult>();
    this.#done = done;
    for (let n = 0; n < count; n++) {
      while (n - this.#handled >= window) await new Promise<void>((resolve) => (this.#wake = resolve));
      await publish({ r: this.#run, n, t: performance.now() });
    }
    return within(done.promise, 30_000, `${count} events handled`);
  }
}

/** A subject of this scope: started once, measured in rounds, stopped at the end. */
export interface RedisSubject {
  name: string;
  kind: 'ours' | 'floor';
  mode: 'group' | 'fanout';
  start(world: RedisWorld): Promise<Started>;
}

export interface Started {
  run(count: number, window: number): Promise<RunResult>;
  stop(): Promise<void>;
}

/** The scope's clients and key prefix; `close()` deletes the keys and disconnects. */
export class RedisWorld {
  readonly prefix = `weft:bench:bus:${randomUUID().slice(0, 8)}:`;
  readonly #clients: Redis[] = [];

  client(): Redis {
    const c = new Redis(REDIS_URL);
    c.on('error', () => {});
    this.#clients.push(c);
    return c;
  }

  async close(): Promise<void> {
    const admin = this.client();
    const keys = await admin.keys(`${this.prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    for (const c of this.#clients) c.disconnect();
  }
}

function ours(mode: 'group' | 'fanout'): RedisSubject {
  return {
    name: `weftjs/bus \`redisTransport()\`, ${mode === 'group' ? 'group' : 'fan-out'}`,
    kind: 'ours',
    mode,
    async start(world) {
      const meter = new Meter();
      const publisher: Bus<Events> = createBus({
        transport: redisTransport({ client: world.client(), prefix: world.prefix }),
      });
      const subscriber: Bus<Events> = createBus({
        transport: redisTransport({ client: world.client(), prefix: world.prefix }),
      });
      await subscriber.subscribe(mode, meter.onEvent, mode === 'group' ? { group: 'bench' } : {}).ready;
      return {
        run: (count, window) => meter.drive((p) => publisher.publish(mode, p), count, window),
        async stop() {
          await within(Promise.all([subscriber.close(), publisher.close()]), 10_000, 'the buses to close');
        },
      };
    },
  };
}

type Reply = [string, [string, string[]][]][] | null;

/** Hand-written: XADD as the transport writes it; XREADGROUP (or XREAD) on a connection of its own, XACK each. */
function bare(mode: 'group' | 'fanout'): RedisSubject {
  return {
    name: `ioredis by hand: XADD + ${mode === 'group' ? 'XREADGROUP/XACK' : 'XREAD'}`,
    kind: 'floor',
    mode,
    async start(world) {
      const meter = new Meter();
      const key = `${world.prefix}bare-${mode}`;
      const client = world.client();
      const conn = world.client();
      let last = '0-0';
      if (mode === 'group') await client.call('XGROUP', 'CREATE', key, 'bench', '$', 'MKSTREAM');
      else {
        const top = (await client.call('XREVRANGE', key, '+', '-', 'COUNT', 1)) as [string][];
        last = top[0]?.[0] ?? '0-0';
      }
      let stopped = false;
      const read =
        mode === 'group'
          ? () =>
              conn.call(
                'XREADGROUP',
                'GROUP',
                'bench',
                'bare',
                'COUNT',
                BATCH,
                'BLOCK',
                BLOCK_MS,
                'STREAMS',
                key,
                '>',
              )
          : () => conn.call('XREAD', 'COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', key, last);
      const loop = (async () => {
        while (!stopped) {
          const reply = (await read()) as Reply;
          for (const [id, fields] of reply?.[0]?.[1] ?? []) {
            meter.onEvent(JSON.parse(fields[1]!) as Payload);
            if (mode === 'group') await conn.call('XACK', key, 'bench', id);
            else last = id;
          }
        }
      })();
      loop.catch(() => {}); // disconnecting ends it
      return {
        run: (count, window) =>
          meter.drive(
            (p) =>
              client.call('XADD', key, 'MAXLEN', '~', MAX_LEN, '*', 'p', JSON.stringify(p), 't', Date.now()),
            count,
            window,
          ),
        async stop() {
          stopped = true;
          conn.disconnect(); // cuts the blocking read short
          await loop.catch(() => {});
        },
      };
    },
  };
}

export const REDIS_SUBJECTS: RedisSubject[] = [ours('group'), bare('group'), ours('fanout'), bare('fanout')];
