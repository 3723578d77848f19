/** The Redis transport's options, validated once, and how its stream entries read. Internal. */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { InvalidOptionError } from '../errors.ts';
import { timerOption } from '../validate.ts';
import type { BusEvent } from './types.ts';

/**
 * The ioredis methods the transport calls: an ioredis `Redis` fits (ioredis stays the caller's dependency). Redis
 * Cluster is not supported.
 */
export interface RedisClient {
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  duplicate(override?: { connectionName?: string }): RedisClient;
  disconnect(reconnect?: boolean): void;
  quit(): Promise<unknown>;
  on(event: 'error', listener: (err: Error) => void): unknown;
  readonly status: string;
}

export interface RedisTransportOptions {
  /** An ioredis `Redis` the caller owns (and closes). */
  client: RedisClient;
  /** Key prefix: the stream of event `name` is `<prefix><name>`. Default `weft:bus:`. */
  prefix?: string;
  /** Keep about this many entries per stream (`MAXLEN ~`). Default 100 000; `Infinity`: no length limit. */
  maxLen?: number;
  /** Also drop entries older than this (`MINID ~`, by the publisher's clock). Default: none. */
  maxAgeMs?: number;
  /** How long a group's delivered, unacknowledged entry waits before another member claims it. Default 30 000. */
  claimIdleMs?: number;
  /** How long one `XREAD`/`XREADGROUP` blocks; also bounds how long `close()` waits. Default 1 000. */
  blockMs?: number;
  /** This process's consumer name in groups. Default `<hostname>:<pid>:<random>`. */
  consumer?: string;
  /** Entries read per command (`COUNT`). Default 100. */
  batch?: number;
  /** Deliveries of a group's entry before it goes to `<prefix><name>:dead`. Default 10. */
  maxAttempts?: number;
  /** First delay before a consumer retries its failed entries, doubled per attempt up to 30 s. Default 1 000. */
  retryDelayMs?: number;
  /** Told when a Redis command of a read loop fails (it is retried). Default: a JSON line on stderr. */
  onError?: (err: unknown) => void;
}

export interface ResolvedRedisOptions extends Required<Omit<RedisTransportOptions, 'maxAgeMs'>> {
  maxAgeMs: number | undefined;
}

function integer(options: object, key: string, fallback: number, min: number, infinite = false): number {
  const value = (options as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (infinite && value === Number.POSITIVE_INFINITY) return value;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new InvalidOptionError(key, `an integer ≥ ${min}${infinite ? ' or Infinity' : ''}`, value);
  return value;
}

const CONSUMER = /^[\x21-\x7e]{1,200}$/; // a Redis connection name allows no space

export function resolveRedisOptions(options: RedisTransportOptions): Readonly<ResolvedRedisOptions> {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const { client, prefix = 'weft:bus:', consumer, maxAgeMs, onError } = options;
  if (typeof client?.call !== 'function' || typeof client.duplicate !== 'function')
    throw new InvalidOptionError('client', 'an ioredis Redis', client);
  if (typeof prefix !== 'string') throw new InvalidOptionError('prefix', 'a string', prefix);
  if (consumer !== undefined && (typeof consumer !== 'string' || !CONSUMER.test(consumer)))
    throw new InvalidOptionError(
      'consumer',
      'a name of 1-200 printable ASCII characters, no space',
      consumer,
    );
  if (maxAgeMs !== undefined && (typeof maxAgeMs !== 'number' || !Number.isFinite(maxAgeMs) || maxAgeMs <= 0))
    throw new InvalidOptionError('maxAgeMs', 'a positive number of ms', maxAgeMs);
  if (onError !== undefined && typeof onError !== 'function')
    throw new InvalidOptionError('onError', 'a function', onError);
  const host = hostname().replace(/[^\x21-\x7e]/g, '_');
  return Object.freeze({
    client,
    prefix,
    maxLen: integer(options, 'maxLen', 100_000, 1, true),
    maxAgeMs,
    claimIdleMs: Math.max(1, timerOption(options, 'claimIdleMs', 30_000)),
    blockMs: Math.max(1, timerOption(options, 'blockMs', 1_000)), // BLOCK 0 would block forever
    consumer: consumer ?? `${host}:${process.pid}:${randomBytes(4).toString('hex')}`,
    batch: integer(options, 'batch', 100, 1),
    maxAttempts: integer(options, 'maxAttempts', 10, 1),
    retryDelayMs: timerOption(options, 'retryDelayMs', 1_000),
    onError: onError ?? defaultOnError,
  });
}

function defaultOnError(err: unknown): void {
  const e = err instanceof Error ? { message: err.message, stack: err.stack } : { message: String(err) };
  const line = {
    level: 40,
    time: Date.now(),
    name: 'weft',
    msg: 'redis bus command failed; retrying',
    err: e,
  };
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

/** `[id, [field, value, …] | null]`, as XREAD, XREADGROUP and XAUTOCLAIM reply (null: deleted while pending). */
export type Entry = [string, string[] | null];

/** The entries of the one stream in an XREAD/XREADGROUP reply (null when the block timed out). */
export function entriesOf(reply: unknown): Entry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  return ((reply[0] as [string, Entry[] | null])[1] ?? []) as Entry[];
}

function field(fields: string[] | null, name: string): string | undefined {
  for (let i = 0; fields && i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** The event of an entry, or why it is not one (a `p` that is not JSON: something else wrote to the stream). */
export function eventOf(name: string, [id, fields]: Entry, attempt: number): BusEvent | string {
  const p = field(fields, 'p');
  let payload: unknown;
  try {
    payload = p === undefined ? undefined : JSON.parse(p);
  } catch {
    return `entry ${id} of ${name} is not a weft event: its "p" field is not JSON`;
  }
  const time = Number(field(fields, 't') ?? Number.parseInt(id, 10));
  return { id, name, payload, time, attempt };
}

/** The fields `p` (payload) and `t` (time) of an entry, to copy it. */
export function weftFields(fields: string[] | null): string[] {
  const kept: string[] = [];
  for (let i = 0; fields && i + 1 < fields.length; i += 2)
    if (fields[i] === 'p' || fields[i] === 't') kept.push(fields[i]!, fields[i + 1]!);
  return kept;
}

/** The delay before a consumer retries an entry whose `attempt`th delivery failed. */
export function retryDelay(base: number, attempt: number): number {
  return Math.min(base * 2 ** (attempt - 1), Math.max(base, 30_000));
}
