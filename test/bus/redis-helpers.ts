/**
 * What the Redis bus tests share: the server's URL (`REDIS_URL`, default this machine's), whether to skip when it does
 * not answer (never under `WEFT_REQUIRE_SERVICES=1`), a key prefix of each test's own whose keys are deleted after it,
 * clients and transports closed after it, and bounded waits that say what they waited for.
 */
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { Bus, type EventMap } from '../../src/bus/index.ts';
import { type RedisTransport, type RedisTransportOptions, redisTransport } from '../../src/bus/redis.ts';
import { serviceSkip, within } from '../helpers.ts';

export { eventually as until } from '../helpers.ts';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** `false` when Redis answers; else the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` it throws. */
export const redisSkip = (): Promise<string | false> => serviceSkip('Redis', REDIS_URL, 6379, 'REDIS_URL');

/**
 * One test's world: a key prefix of its own, `machine()` for a bus on a client of its own (as on another machine),
 * `admin` for the test's own commands; `cleanup()` closes everything (bounded) and deletes the prefix's keys.
 */
export class World {
  readonly prefix = `weft:test:${randomUUID().slice(0, 8)}:`;
  readonly admin = new Redis(REDIS_URL, { lazyConnect: true });
  readonly #clients: Redis[] = [this.admin];
  readonly #closers: (() => Promise<void>)[] = [];

  /** A client of its own, closed by `cleanup()`. */
  client(options: RedisOptions = {}): Redis {
    const client = new Redis(REDIS_URL, options);
    this.#clients.push(client);
    return client;
  }

  /** A transport on a new client, with this world's prefix. */
  transport(options: Partial<RedisTransportOptions> = {}, client: RedisOptions = {}): RedisTransport {
    const transport = redisTransport({ client: this.client(client), prefix: this.prefix, ...options });
    this.#closers.push(() => transport.close());
    return transport;
  }

  /** A bus on a transport of its own ("another machine"). */
  machine<E extends EventMap>(
    options: Partial<RedisTransportOptions> = {},
    client: RedisOptions = {},
  ): Bus<E> {
    const bus = new Bus<E>({ transport: this.transport(options, client), onError: () => {} });
    this.#closers.push(() => bus.close());
    return bus;
  }

  async cleanup(): Promise<void> {
    const closing = Promise.all(this.#closers.reverse().map((close) => close().catch(() => {})));
    // A test may leave a handler that never settles: its transport's close() would wait for it.
    await within(closing, 5_000, 'the transports to close').catch(() => {});
    const keys = await this.admin.keys(`${this.prefix}*`);
    if (keys.length > 0) await this.admin.del(...keys);
    for (const client of this.#clients) client.disconnect();
  }
}
