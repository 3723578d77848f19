/**
 * The NATS JetStream transport: the bus across machines, on a connection the caller owns (and closes).
 *
 * - One stream per bus (`stream`, default `WEFT_BUS`) keeps every event under `<subjectPrefix>.>` (default
 *   `weft.bus.>`); it is created at first use, or updated to take the subject and the retention options given
 *   (`maxMsgs`, `maxAgeMs`, `maxBytes`; the ones not given stay as the stream has them: unlimited when created).
 * - Event `name` is subject `<subjectPrefix>.<name>` unchanged: NATS forbids only whitespace, `*` and `>` in a
 *   subject and uses `.` between tokens, so `:`, `_` and `-` pass as they are (the mapping is the identity, hence
 *   reversible), and a dotted name is a hierarchy (`order.placed` → `weft.bus.order.placed`). A name with an empty
 *   token (leading, trailing or doubled `.`) is no subject: it is refused with `ERR_WEFT_INVALID_ARGUMENT`.
 * - `publish` resolves once the stream stored the event (JetStream's ack), with its stream sequence as the id. The
 *   payload travels as JSON (`undefined` as an empty body); one that is not JSON (a bigint, a function, a symbol,
 *   a cycle) rejects with `ERR_WEFT_INVALID_ARGUMENT`. `event.time` is when the stream stored it.
 * - Fan-out (no group): an ordered consumer, ephemeral, in memory, per subscription, starting at `from` (`'new'`,
 *   `'first'`, or the event after an id); events in stream order, each handler awaited before the next. At most
 *   once: a handler that fails is reported to the bus's `onError`, never called again with that event.
 * - Groups: a durable consumer per group and event name (`weft_<group>_<name>_<hash>`, sanitised) with explicit
 *   acks, `ack_wait` = `ackWaitMs` and `max_deliver` = `maxAttempts`; every member, in any process or machine,
 *   pulls from it, so each event goes to one member. The event is acked when its delivery settles, nak'ed with a
 *   delay (`retryDelayMs`, doubling per attempt, at most a minute) when it fails, so it comes again with
 *   `event.attempt` = the delivery count; its last attempt failing terminates it. A member that dies, or whose
 *   handler outlasts `ackWaitMs`, has its event given to another after `ack_wait`: at-least-once. A group that
 *   exists resumes where it stopped, whatever `from` says; its consumer stays on the server when members close.
 * - The client reconnects by itself; the consumers resume after it (an ordered consumer from the event after the
 *   last one it delivered).
 * - `close()` stops pulling, waits for the deliveries under way (at most `ackWaitMs`: after that the server gives a
 *   group's event to another member anyway), nak's a group event pulled but not started (another member takes it
 *   now), deletes the fan-out consumers, and never closes the connection.
 * - A message on the bus's subjects that is not JSON (something else published it) is skipped, and terminated in a
 *   group.
 * @module
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type OrderedConsumerOptions,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import { WeftError } from '../errors.ts';
import {
  apiCode,
  CONSUMER_NOT_FOUND,
  type Config,
  config,
  decode,
  durableName,
  encode,
  invalid,
  MAX_RETRY_DELAY,
  type NatsTransportOptions,
  NS,
  STREAM_NOT_FOUND,
  sequenceOf,
} from './nats-wire.ts';
import type { Transport, TransportSubscription } from './types.ts';

export type { NatsTransportOptions } from './nats-wire.ts';

/** A running consumer loop. */
interface Running {
  stop(): Promise<void>;
}

/**
 * @example
 * ```ts
 * import { connect } from '@nats-io/transport-node';
 * const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
 * const bus = createBus<Events>({ transport: natsTransport({ connection: nc }) });
 * bus.subscribe('orderPlaced', sendEmail, { group: 'email' }); // one machine sends each email
 * ```
 */
export class NatsTransport implements Transport {
  readonly scope = 'machines' as const;
  readonly #config: Readonly<Config>;
  readonly #js: JetStreamClient;
  readonly #running = new Set<Running>();
  #jsm: Promise<JetStreamManager> | undefined;
  #streamReady: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: NatsTransportOptions) {
    this.#config = config(options);
    this.#js = jetstream(this.#config.nc);
  }

  #manager(): Promise<JetStreamManager> {
    this.#jsm ??= jetstreamManager(this.#config.nc).catch((err: unknown) => {
      this.#jsm = undefined;
      throw err;
    });
    return this.#jsm;
  }

  #ensureStream(): Promise<void> {
    this.#streamReady ??= this.#createOrUpdateStream().catch((err: unknown) => {
      this.#streamReady = undefined;
      throw err;
    });
    return this.#streamReady;
  }

  async #createOrUpdateStream(): Promise<void> {
    const { stream, prefix, limits } = this.#config;
    const jsm = await this.#manager();
    const subject = `${prefix}.>`;
    const info = () =>
      jsm.streams.info(stream).then(
        (i) => i.config,
        (err: unknown) => {
          if (apiCode(err) !== STREAM_NOT_FOUND) throw err;
          return undefined;
        },
      );
    const add = () =>
      jsm.streams
        .add({
          name: stream,
          subjects: [subject],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          ...limits,
        })
        .then(
          () => undefined,
          // Another process created it meanwhile (with other limits): update it as below.
          async (err: unknown) => (await info()) ?? Promise.reject(err),
        );
    const current = (await info()) ?? (await add());
    if (!current) return; // made now, as configured
    const subjects = current.subjects ?? [];
    const update: Partial<StreamConfig> = {};
    if (!subjects.includes(subject)) update.subjects = [...subjects, subject];
    for (const key of ['max_msgs', 'max_age', 'max_bytes'] as const) {
      if (limits[key] !== undefined && limits[key] !== current[key]) update[key] = limits[key];
    }
    if (Object.keys(update).length > 0) await jsm.streams.update(stream, update);
  }

  #subject(name: string): string {
    if (name.split('.').includes(''))
      throw invalid(
        `The event name ${JSON.stringify(name)} has an empty subject token (a leading, trailing or doubled ".")`,
      );
    return `${this.#config.prefix}.${name}`;
  }

  async publish(name: string, payload: unknown): Promise<string> {
    if (this.#closed) throw new WeftError('ERR_WEFT_BUS_CLOSED', 'The bus is closed');
    const subject = this.#subject(name);
    const data = encode(payload);
    await this.#ensureStream();
    const opts = { expect: { streamName: this.#config.stream } };
    try {
      return String((await this.#js.publish(subject, data, opts)).seq);
    } catch (err) {
      // The stream was deleted since we made it (an operator, a test): make it again, once.
      const jsm = await this.#manager();
      const gone = await jsm.streams.info(this.#config.stream).then(
        () => false,
        (e: unknown) => apiCode(e) === STREAM_NOT_FOUND,
      );
      if (!gone) throw err;
      this.#streamReady = undefined;
      await this.#ensureStream();
      return String((await this.#js.publish(subject, data, opts)).seq);
    }
  }

  async subscribe(s: TransportSubscription): Promise<() => Promise<void>> {
    if (this.#closed) throw new WeftError('ERR_WEFT_BUS_CLOSED', 'The bus is closed');
    const subject = this.#subject(s.name);
    const from = s.from ?? 'new';
    const after = from === 'new' || from === 'first' ? undefined : sequenceOf(from);
    await this.#ensureStream();
    const running =
      s.group === undefined
        ? await this.#fanout(subject, s, from, after)
        : await this.#group(subject, s, s.group, from, after);
    if (this.#closed) {
      await running.stop();
      throw new WeftError('ERR_WEFT_BUS_CLOSED', 'The bus is closed');
    }
    this.#running.add(running);
    return async () => {
      this.#running.delete(running);
      await running.stop();
    };
  }

  async #fanout(
    subject: string,
    s: TransportSubscription,
    from: string,
    after: number | undefined,
  ): Promise<Running> {
    const opts: Partial<OrderedConsumerOptions> = { filter_subjects: subject };
    if (from === 'first') opts.deliver_policy = DeliverPolicy.All;
    else {
      // 'new' as a start sequence, not DeliverPolicy.New: an ordered consumer recreated (a reconnect) before its
      // first event would otherwise restart from sequence 1 and replay the whole stream.
      const jsm = await this.#manager();
      opts.deliver_policy = DeliverPolicy.StartSequence;
      opts.opt_start_seq = (after ?? (await jsm.streams.info(this.#config.stream)).state.last_seq) + 1;
    }
    const consumer = await this.#js.consumers.get(this.#config.stream, opts);
    const messages = await consumer.consume({ max_messages: 100 });
    return this.#loop(
      messages,
      async (m) => {
        const event = decode(m, s.name);
        if (!event) return;
        try {
          await s.deliver(event);
        } catch {} // reported by the bus; fan-out does not deliver again
      },
      () => {},
      () =>
        consumer.delete().then(
          () => {},
          () => {}, // gone with the connection: the server drops it when inactive
        ),
    );
  }

  async #group(
    subject: string,
    s: TransportSubscription,
    group: string,
    from: string,
    after: number | undefined,
  ): Promise<Running> {
    const { stream, ackWaitMs, maxAttempts, retryDelayMs } = this.#config;
    const jsm = await this.#manager();
    const durable = durableName(group, s.name, subject);
    const wanted = { ack_wait: ackWaitMs * NS, max_deliver: maxAttempts };
    const existing = async () => {
      const info = await jsm.consumers.info(stream, durable).catch((err: unknown) => {
        if (apiCode(err) !== CONSUMER_NOT_FOUND) throw err;
      });
      if (
        info &&
        (info.config.ack_wait !== wanted.ack_wait || info.config.max_deliver !== wanted.max_deliver)
      )
        await jsm.consumers.update(stream, durable, wanted);
      return info;
    };
    if (!(await existing())) {
      try {
        await jsm.consumers.add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          filter_subject: subject,
          ...wanted,
          ...(from === 'first'
            ? { deliver_policy: DeliverPolicy.All }
            : after === undefined
              ? { deliver_policy: DeliverPolicy.New }
              : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: after + 1 }),
        });
      } catch (err) {
        // Another member created it meanwhile (with another `from`): join it.
        if (!(await existing())) throw err;
      }
    }
    const consumer = await this.#js.consumers.get(stream, durable);
    // One at a time: what a member holds waits while its ack_wait runs, and the other members could take it.
    const messages = await consumer.consume({ max_messages: 1 });
    return this.#loop(
      messages,
      async (m) => {
        const event = decode(m, s.name);
        if (!event) return settle(() => m.term());
        try {
          await s.deliver(event);
          settle(() => m.ack());
        } catch {
          const attempt = event.attempt;
          if (attempt >= maxAttempts) settle(() => m.term());
          else settle(() => m.nak(Math.min(retryDelayMs * 2 ** (attempt - 1), MAX_RETRY_DELAY)));
        }
      },
      (m) => settle(() => m.nak()), // pulled but not started when the member stopped: another member's now
      async () => {},
    );
  }

  /** Runs `handle` on each message in turn until stopped; `stop` waits for the one under way, at most ackWaitMs. */
  #loop(
    messages: AsyncIterable<JsMsg> & { stop(): void },
    handle: (m: JsMsg) => Promise<void>,
    leftOver: (m: JsMsg) => void,
    cleanup: () => Promise<void>,
  ): Running {
    let stopped = false;
    const loop = (async () => {
      try {
        for await (const m of messages) {
          if (stopped) leftOver(m);
          else await handle(m);
        }
      } catch {} // the connection closed under it: nothing more comes
    })();
    let stopping: Promise<void> | undefined;
    const ackWaitMs = this.#config.ackWaitMs;
    return {
      stop() {
        stopping ??= (async () => {
          stopped = true;
          messages.stop();
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([loop, new Promise((resolve) => (timer = setTimeout(resolve, ackWaitMs)))]);
          clearTimeout(timer);
          await cleanup();
        })();
        return stopping;
      },
    };
  }

  /** Stops every subscription (see `stop` above); the connection stays open. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const running = [...this.#running];
      this.#running.clear();
      await Promise.all(running.map((r) => r.stop()));
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Acks and naks are fire-and-forget; on a closed connection they throw, and the server redelivers anyway. */
function settle(fn: () => void): void {
  try {
    fn();
  } catch {}
}

/**
 * A transport across machines on NATS JetStream: at-least-once for groups, replayable (`from`).
 *
 * @example
 * ```ts
 * const bus = createBus<Events>({ transport: natsTransport({ connection: nc, maxAgeMs: 86_400_000 }) });
 * ```
 */
export function natsTransport(options: NatsTransportOptions): NatsTransport {
  return new NatsTransport(options);
}
