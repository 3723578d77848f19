/**
 * The NATS transport's options and wire format (internal): option validation, JSON bodies, subject and consumer
 * names, event ids. See nats.ts for the semantics.
 * @module
 */
import { createHash } from 'node:crypto';
import type { JsMsg, StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidOptionError, WeftError } from '../errors.ts';
import { MAX_TIMER, timerOption } from '../validate.ts';
import type { BusEvent } from './types.ts';

export interface NatsTransportOptions {
  /** An open connection (`connect()` of `@nats-io/transport-node`). The transport never closes it. */
  connection: NatsConnection;
  /** The JetStream stream that keeps the events. Default `WEFT_BUS`. */
  stream?: string;
  /** Subjects are `<subjectPrefix>.<name>`; the stream takes `<subjectPrefix>.>`. Default `weft.bus`. */
  subjectPrefix?: string;
  /** Retention: the stream keeps at most this many events (the oldest go first). */
  maxMsgs?: number;
  /** Retention: the stream drops events older than this. */
  maxAgeMs?: number;
  /** Retention: the stream keeps at most this many bytes. */
  maxBytes?: number;
  /** Groups: how long a member has to settle a delivery before another member gets it. Default 30 000. */
  ackWaitMs?: number;
  /** Groups: deliveries of one event at most (its `max_deliver`). Default 10. */
  maxAttempts?: number;
  /** Groups: delay before a failed event comes again; doubles per attempt, at most 60 000. Default 1 000. */
  retryDelayMs?: number;
}

export interface Config {
  nc: NatsConnection;
  stream: string;
  prefix: string;
  limits: Partial<Pick<StreamConfig, 'max_msgs' | 'max_age' | 'max_bytes'>>;
  ackWaitMs: number;
  maxAttempts: number;
  retryDelayMs: number;
}

const STREAM = /^[A-Za-z0-9_-]{1,64}$/;
const PREFIX = /^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/;
export const MAX_RETRY_DELAY = 60_000;
export const NS = 1_000_000;
const encoder = new TextEncoder();

function positiveInt(
  options: NatsTransportOptions,
  key: 'maxMsgs' | 'maxBytes' | 'maxAttempts',
): number | undefined {
  const value = options[key];
  if (value !== undefined && !(Number.isSafeInteger(value) && value > 0))
    throw new InvalidOptionError(key, 'a positive integer', value);
  return value;
}

export function config(options: NatsTransportOptions): Readonly<Config> {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const nc = options.connection;
  if (typeof nc !== 'object' || nc === null || typeof nc.request !== 'function')
    throw new InvalidOptionError('connection', 'a NatsConnection', nc);
  const stream = options.stream ?? 'WEFT_BUS';
  if (typeof stream !== 'string' || !STREAM.test(stream))
    throw new InvalidOptionError('stream', 'a stream name of 1-64 letters, digits, _ or -', stream);
  const prefix = options.subjectPrefix ?? 'weft.bus';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix))
    throw new InvalidOptionError(
      'subjectPrefix',
      'subject tokens of letters, digits, _ : or - joined by .',
      prefix,
    );
  const maxAgeMs = options.maxAgeMs;
  if (maxAgeMs !== undefined && !(typeof maxAgeMs === 'number' && maxAgeMs >= 1 && Number.isFinite(maxAgeMs)))
    throw new InvalidOptionError('maxAgeMs', 'a number of ms of at least 1', maxAgeMs);
  const limits: Config['limits'] = {};
  const maxMsgs = positiveInt(options, 'maxMsgs');
  const maxBytes = positiveInt(options, 'maxBytes');
  if (maxMsgs !== undefined) limits.max_msgs = maxMsgs;
  if (maxBytes !== undefined) limits.max_bytes = maxBytes;
  if (maxAgeMs !== undefined) limits.max_age = Math.round(maxAgeMs * NS);
  const ackWaitMs = timerOption(options, 'ackWaitMs', 30_000);
  if (ackWaitMs < 1)
    throw new InvalidOptionError('ackWaitMs', `a number of ms from 1 to ${MAX_TIMER}`, ackWaitMs);
  return Object.freeze({
    nc,
    stream,
    prefix,
    limits: Object.freeze(limits),
    ackWaitMs,
    maxAttempts: positiveInt(options, 'maxAttempts') ?? 10,
    retryDelayMs: timerOption(options, 'retryDelayMs', 1_000),
  });
}

export function invalid(message: string, cause?: unknown): WeftError {
  return new WeftError('ERR_WEFT_INVALID_ARGUMENT', message, cause === undefined ? undefined : { cause });
}

/** JSON bytes of `payload`; what JSON would silently drop or cannot hold is refused. */
export function encode(payload: unknown): Uint8Array {
  if (payload === undefined) return new Uint8Array(0);
  try {
    const text = JSON.stringify(payload, (_key, value: unknown) => {
      const t = typeof value;
      if (t === 'bigint' || t === 'function' || t === 'symbol') throw new TypeError(`a ${t} is not JSON`);
      return value;
    });
    return encoder.encode(text);
  } catch (err) {
    throw invalid(`The "payload" argument must be JSON-serialisable: ${(err as Error).message}`, err);
  }
}

/** The event in `m`, or undefined when its body is not JSON (something else published on the bus's subjects). */
export function decode(m: JsMsg, name: string): BusEvent | undefined {
  let payload: unknown;
  try {
    payload = m.data.length === 0 ? undefined : m.json<unknown>();
  } catch {
    return undefined;
  }
  return { id: String(m.seq), name, payload, time: m.time.getTime(), attempt: m.info.deliveryCount };
}

/**
 * The durable consumer of `group` on event `name` (at `subject`): readable (what a consumer name may not hold, `.`
 * and `:` among them, becomes `-`), and a hash of the pair so that no two share one (`a.b` and `a:b` would).
 */
export function durableName(group: string, name: string, subject: string): string {
  const readable = `${group}_${name}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 80);
  const hash = createHash('sha256').update(`${group}\0${subject}`).digest('hex').slice(0, 12);
  return `weft_${readable}_${hash}`;
}

/** The stream sequence an event id names. */
export function sequenceOf(id: string): number {
  const seq = /^\d{1,15}$/.test(id) ? Number(id) : Number.NaN;
  if (!Number.isSafeInteger(seq))
    throw invalid(
      `The "from" option must be 'new', 'first' or an event id (a stream sequence). Received ${JSON.stringify(id)}`,
    );
  return seq;
}

export function apiCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export const STREAM_NOT_FOUND = 10059;
export const CONSUMER_NOT_FOUND = 10014;
