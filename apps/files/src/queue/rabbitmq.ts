/**
 * The RabbitMQ queue adapter (`QUEUE_URL=amqp://…`). RabbitMQ delivers; a store keeps each job's state.
 *
 * RabbitMQ cannot list, count, look up or retry a message, and the queue contract needs all of these, so every job is
 * a row in a {@link JobStore} (the service's SQLite file), and RabbitMQ carries one persistent message per job naming
 * its id:
 *
 * - `add` records the jobs, then publishes their messages on a confirm channel (publisher confirms) to the durable
 *   queue `<name>`; a ping on the fanout exchange `<name>.ready` wakes idle processes.
 * - `claim` takes messages with `basic.get` (manual acknowledgement), up to the claim's `limit`, which is the
 *   runner's free concurrency: a process holds at most twice its concurrency of unacknowledged messages (running,
 *   and finishing: their outcome being recorded), a bound as a consumer's prefetch would set. A claim's gets are
 *   spread over {@link GET_CHANNELS} channels, so they do not wait for each other's answers (each message is then
 *   acknowledged on the channel it came on). The store leases each named job (`claimIds`); a message whose job
 *   finished or was removed is acknowledged and dropped, so a duplicate is harmless.
 * - `complete` and `fail` record the outcome first, then acknowledge the message. A retry's message goes, confirmed,
 *   to `<name>.retry.<level>`, a queue without consumers whose per-message TTL (the backoff) dead-letters it back to
 *   `<name>`; only then is the attempt's own message acknowledged. A job that goes dead has its message rejected
 *   without requeue: `<name>`'s dead-letter exchange `<name>.dead` puts it in the queue `<name>.dead` (kept for
 *   RabbitMQ's own tools; the dead letters the service lists and retries are the store's rows).
 * - `release` (graceful shutdown) requeues the message. A process that dies leaves its messages unacknowledged:
 *   RabbitMQ delivers them again when its connection closes, and the store leases them once their lease expired.
 * - Every process sweeps the store every `sweepMs` for jobs no message announces: a process stopped between a commit
 *   and its publish, or one that stopped answering while it held a message (its lease expired, its connection did not
 *   close). Their messages are sent again, so no job waits on a lost message.
 *
 * What follows from it: delivery is at least once, as with the other queues (a job runs again when its process died
 * or lost its lease), and the store, not RabbitMQ, is the source of truth.
 */
import * as amqp from 'amqplib';
import { FilesError } from '../errors.ts';
import type {
  ClaimOptions,
  FailOutcome,
  FollowUps,
  Job,
  JobCounts,
  JobFilter,
  JobKind,
  JobQueue,
  JobStore,
} from './types.ts';

export interface RabbitQueueOptions {
  /** `amqp://user:password@host:port/vhost?queue=name` (or `amqps://`); `queue` names the queues, default `weft-files`. */
  url: string;
  /**
   * Makes the store, given the function it must call with the jobs it made runnable once they are durable (its
   * `announce` option).
   */
  store: (announce: (jobs: readonly Job[]) => void) => JobStore;
  /** First retry delay; the store computes each retry's time, the levels of retry queues follow it. */
  retryDelayMs: number;
  /** Deadline of each call to RabbitMQ (connect, publish confirms, get), ms. Default 5000. */
  timeoutMs?: number;
  /** How often a claim looks for jobs no message announces, ms. Default 1000. */
  sweepMs?: number;
  /** How long a committed job may wait for its message before a sweep sends it again, ms. Default 2 × timeoutMs. */
  graceMs?: number;
  /** Messages a claim may hold for jobs not runnable yet (another owner's live lease, a retry not due). Default 1000. */
  maxHeld?: number;
}

/** The connection's parts, made again after it was lost. */
interface Link {
  model: amqp.ChannelModel;
  /** Publishes, with confirms. */
  pub: amqp.ConfirmChannel;
  /** Gets and acknowledges; its consumer hears the pings. */
  sub: amqp.Channel;
  /**
   * The channels a claim's gets are spread over (`sub` first): amqplib answers one call per channel at a time, so
   * the gets of one claim on one channel would wait for each other, a round trip each.
   */
  gets: amqp.Channel[];
  closed: boolean;
}

/** A message held by this process: the job it names, and the link it came on (an ack must go on that channel). */
interface Held {
  msg: amqp.GetMessage;
  link: Link;
  /** The channel it came on, which must acknowledge it. */
  ch: amqp.Channel;
}

/** Parses `QUEUE_URL` for RabbitMQ: the URL amqplib connects to, and the queue name. */
export function parseAmqpUrl(url: string): { connectUrl: string; name: string; where: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FilesError('ERR_WEFT_FILES_CONFIG', 'QUEUE_URL is not a URL');
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new FilesError(
      'ERR_WEFT_FILES_CONFIG',
      `QUEUE_URL: expected amqp:// or amqps://, got ${parsed.protocol}//`,
    );
  }
  const name = parsed.searchParams.get('queue') ?? 'weft-files';
  if (!/^[\w.:-]{1,200}$/.test(name)) {
    throw new FilesError(
      'ERR_WEFT_FILES_CONFIG',
      'QUEUE_URL: queue= takes letters, digits and . _ - : (up to 200)',
    );
  }
  parsed.searchParams.delete('queue');
  const port = parsed.port || (parsed.protocol === 'amqps:' ? '5671' : '5672');
  return { connectUrl: parsed.toString(), name, where: `${parsed.hostname}:${port}` };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const idOf = (msg: amqp.Message): number => Number(msg.content.toString('utf8'));

/** Channels a claim spreads its gets over (see {@link Link.gets}). */
const GET_CHANNELS = 8;

export class RabbitQueue implements JobQueue {
  readonly #o: Required<Omit<RabbitQueueOptions, 'store' | 'url'>>;
  readonly #url: { connectUrl: string; name: string; where: string };
  readonly #store: JobStore;
  /** Jobs the store made runnable, waiting for their message. */
  #toSend: Job[] = [];
  #link: Link | undefined;
  #connecting: Promise<Link> | undefined;
  /** Leased by this process, by job id. */
  readonly #leased = new Map<number, Held>();
  /** Messages of jobs not runnable yet, by job id. */
  readonly #held = new Map<number, Held>();
  readonly #retryQueues = new Set<string>();
  readonly #listeners = new Set<() => void>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #lastSweep = 0;
  #closed = false;

  private constructor(options: RabbitQueueOptions) {
    this.#url = parseAmqpUrl(options.url);
    const timeoutMs = options.timeoutMs ?? 5_000;
    this.#o = {
      retryDelayMs: options.retryDelayMs,
      timeoutMs,
      sweepMs: options.sweepMs ?? 1_000,
      graceMs: options.graceMs ?? 2 * timeoutMs,
      maxHeld: options.maxHeld ?? 1_000,
    };
    this.#store = options.store((jobs) => void this.#toSend.push(...jobs));
  }

  /** Connects and declares the queues; fails with `ERR_WEFT_FILES_RABBITMQ` (no password in it) when it cannot. */
  static async open(options: RabbitQueueOptions): Promise<RabbitQueue> {
    const queue = new RabbitQueue(options);
    await queue.#connected();
    return queue;
  }

  /** The queue's name (`queue=` of the URL). */
  get name(): string {
    return this.#url.name;
  }

  #error(err: unknown, doing: string): Error {
    if (err instanceof FilesError) return err;
    // The store's own errors (a locked SQLite file) are not RabbitMQ's.
    if ((err as { code?: unknown })?.code === 'ERR_SQLITE_ERROR') return err as Error;
    const message = (err as Error)?.message ?? String(err);
    return new FilesError('ERR_WEFT_FILES_RABBITMQ', `RabbitMQ at ${this.#url.where}, ${doing}: ${message}`, {
      cause: err,
    });
  }

  /** The live link, connecting (again) when there is none. */
  async #connected(): Promise<Link> {
    if (this.#closed) throw new FilesError('ERR_WEFT_FILES_RABBITMQ', 'the RabbitMQ queue is closed');
    if (this.#link && !this.#link.closed) return this.#link;
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<Link> {
    const { timeoutMs } = this.#o;
    const name = this.#url.name;
    let model: amqp.ChannelModel | undefined;
    try {
      const connecting = amqp.connect(this.#url.connectUrl, { timeout: timeoutMs, noDelay: true });
      model = await withTimeout(connecting, timeoutMs, 'connecting');
      const m = model;
      // Errors surface through the calls that fail; the link is marked lost, the next call connects again.
      m.on('error', () => {});
      const [pub, sub, ...more] = await withTimeout(
        Promise.all([
          m.createConfirmChannel(),
          m.createChannel(),
          ...Array.from({ length: GET_CHANNELS - 1 }, () => m.createChannel()),
        ]),
        timeoutMs,
        'opening channels',
      );
      const link: Link = { model: m, pub, sub, gets: [sub, ...more], closed: false };
      const lost = () => {
        if (link.closed) return;
        link.closed = true;
        // The broker gives back every message the link held: they are not ours to acknowledge any more.
        for (const map of [this.#leased, this.#held]) {
          for (const [id, h] of map) if (h.link === link) map.delete(id);
        }
      };
      m.on('close', lost);
      for (const ch of [pub, ...link.gets]) {
        ch.on('error', () => {});
        ch.on('close', () => {
          lost();
          void m.close().catch(() => {});
        });
      }
      await withTimeout(
        (async () => {
          await pub.assertExchange(`${name}.dead`, 'fanout', { durable: true });
          await pub.assertQueue(`${name}.dead`, { durable: true, arguments: { 'x-max-length': 100_000 } });
          await pub.bindQueue(`${name}.dead`, `${name}.dead`, '');
          await pub.assertQueue(name, {
            durable: true,
            arguments: { 'x-dead-letter-exchange': `${name}.dead` },
          });
          await pub.assertExchange(`${name}.ready`, 'fanout', { durable: false });
          const ping = await sub.assertQueue('', { exclusive: true, autoDelete: true });
          await sub.bindQueue(ping.queue, `${name}.ready`, '');
          await sub.consume(ping.queue, () => this.#wake(), { noAck: true });
        })(),
        timeoutMs,
        'declaring the queues',
      );
      this.#retryQueues.clear();
      this.#link = link;
      return link;
    } catch (err) {
      await model?.close().catch(() => {});
      throw this.#error(err, 'connecting');
    }
  }

  #wake(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch {}
    }
  }

  /** A retry queue whose messages return to the main queue when their TTL ends; level k holds delays up to 2^k × the first. */
  async #retryQueue(link: Link, delayMs: number): Promise<string> {
    const level = Math.min(
      30,
      Math.max(0, Math.ceil(Math.log2(Math.max(1, delayMs) / this.#o.retryDelayMs))),
    );
    const queue = `${this.#url.name}.retry.${level}`;
    if (!this.#retryQueues.has(queue)) {
      await link.pub.assertQueue(queue, {
        durable: true,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': this.#url.name },
      });
      this.#retryQueues.add(queue);
    }
    return queue;
  }

  /**
   * `#flush` after an outcome the store has recorded: when RabbitMQ fails, the outcome stands and a sweep sends the
   * messages later, so the caller is not told it failed.
   */
  async #flushAfterOutcome(): Promise<void> {
    try {
      await this.#flush();
    } catch {}
  }

  /** Publishes, confirmed, a message for each job the store made runnable, then records them sent. */
  async #flush(): Promise<void> {
    if (this.#toSend.length === 0) return;
    const jobs = this.#toSend.splice(0);
    const work = this.#publish(jobs);
    this.#inFlight.add(work);
    try {
      await work;
    } catch (err) {
      // Committed but not announced: a sweep sends them once the grace has passed.
      throw this.#error(err, 'publishing');
    } finally {
      this.#inFlight.delete(work);
    }
  }

  async #publish(jobs: readonly Job[]): Promise<void> {
    const link = await this.#connected();
    const now = Date.now();
    let ready = false;
    const sends: Promise<void>[] = [];
    for (const job of jobs) {
      const content = Buffer.from(String(job.id));
      const options: amqp.Options.Publish = { persistent: true, messageId: String(job.id), type: job.kind };
      const delay = job.state === 'active' ? 0 : job.runAt - now;
      const queue = delay > 0 ? await this.#retryQueue(link, delay) : this.#url.name;
      if (delay > 0) options.expiration = String(delay);
      else ready = true;
      sends.push(
        new Promise<void>((resolve, reject) => {
          link.pub.sendToQueue(queue, content, options, (err) => (err ? reject(err) : resolve()));
        }),
      );
    }
    await withTimeout(Promise.all(sends), this.#o.timeoutMs, 'publisher confirms');
    await this.#store.markSent(jobs.map((j) => j.id));
    if (ready) link.pub.publish(`${this.#url.name}.ready`, '', Buffer.alloc(0));
  }

  /** Every `sweepMs`: sends again the messages of jobs none announces (see the module's comment). */
  async #sweep(): Promise<void> {
    const now = Date.now();
    if (now - this.#lastSweep < this.#o.sweepMs) return;
    this.#lastSweep = now;
    const unsent = await this.#store.unsent(this.#o.graceMs);
    if (unsent.length === 0) return;
    this.#toSend.push(...unsent);
    await this.#flush();
  }

  async add(fileId: string, kinds: readonly JobKind[], maxAttempts: number): Promise<Job[]> {
    const jobs = await this.#store.add(fileId, kinds, maxAttempts);
    await this.#flush();
    return jobs;
  }

  hasJobs(fileId: string): Promise<boolean> {
    return this.#store.hasJobs(fileId);
  }

  removeForFile(fileId: string): Promise<void> {
    // Their messages stay in RabbitMQ; a claim finds their jobs gone and drops them.
    return this.#store.removeForFile(fileId);
  }

  waiting(): Promise<number> {
    return this.#store.waiting();
  }

  async claim(owner: string, limit: number, options: ClaimOptions = {}): Promise<Job[]> {
    await this.#sweep();
    const room: Record<string, number> = { ...options.room };
    const taken: Job[] = [];
    const noRoom: Held[] = [];
    const settle = async (held: readonly Held[]) => {
      const byId = new Map(held.map((h) => [idOf(h.msg), h]));
      const result = await this.#store.claimIds(owner, [...byId.keys()], { room });
      for (const job of result.jobs) {
        const h = byId.get(job.id)!;
        this.#held.delete(job.id);
        this.#leased.set(job.id, h);
        taken.push(job);
        if (room[job.kind] !== undefined) room[job.kind]!--;
      }
      for (const id of result.gone) this.#drop(byId.get(id)!, id, 'ack');
      for (const id of result.dead) this.#drop(byId.get(id)!, id, 'dead');
      for (const id of result.later) {
        const h = byId.get(id)!;
        this.#held.set(id, h);
        // Held for want of room: given back at the end of this claim, so another process may run them.
        const kind = h.msg.properties.type as string | undefined;
        if (kind !== undefined && room[kind] !== undefined && room[kind]! <= 0) noRoom.push(h);
      }
    };
    try {
      if (this.#held.size > 0 && limit > 0)
        await settle([...this.#held.values()].filter((h) => !h.link.closed));
      // Messages looked at beyond the held ones, bounded as the SQLite queue bounds its scan: jobs of kinds without
      // room are passed over, up to a point, so that they hold up neither the other kinds nor the broker.
      const scan = limit * 4 + 16;
      let scanned = 0;
      while (taken.length < limit && scanned < scan && this.#held.size < this.#o.maxHeld) {
        const link = await this.#connected();
        const want = Math.min(limit - taken.length, scan - scanned);
        let got: ({ msg: amqp.GetMessage; ch: amqp.Channel } | false)[];
        try {
          got = await withTimeout(
            Promise.all(
              Array.from({ length: want }, async (_, i) => {
                const ch = link.gets[i % link.gets.length]!;
                const msg = await ch.get(this.#url.name, { noAck: false });
                return msg === false ? false : { msg, ch };
              }),
            ),
            this.#o.timeoutMs,
            'getting messages',
          );
        } catch (err) {
          // A get answered after its deadline would hold a message nobody tracks: the connection goes, and with it
          // every message it holds, which RabbitMQ delivers again.
          void link.model.close().catch(() => {});
          throw err;
        }
        const fresh: Held[] = [];
        for (const one of got) {
          if (one === false) continue;
          scanned++;
          const { msg, ch } = one;
          const id = idOf(msg);
          if (!Number.isSafeInteger(id) || this.#leased.has(id) || this.#held.has(id)) {
            // Not a job id, or a second message for a job this process already holds: spent.
            ch.ack(msg);
            continue;
          }
          fresh.push({ msg, link, ch });
        }
        if (fresh.length > 0) {
          try {
            await settle(fresh);
          } catch (err) {
            // The store did not answer (its database is away): the messages are given back, not left unacknowledged
            // and untracked until the connection closes.
            for (const h of fresh) {
              const id = idOf(h.msg);
              if (this.#leased.get(id) !== h && this.#held.get(id) !== h) this.#drop(h, id, 'requeue');
            }
            throw err;
          }
        }
        if (got.some((m) => m === false)) break; // the queue is empty
      }
    } catch (err) {
      throw this.#error(err, 'claiming');
    } finally {
      for (const h of noRoom) {
        const id = idOf(h.msg);
        if (this.#held.get(id) === h) this.#drop(h, id, 'requeue');
      }
    }
    return taken.sort((a, b) => a.id - b.id);
  }

  /** Settles a message this process holds: acknowledged, requeued, or rejected to the dead-letter exchange. */
  #drop(h: Held, id: number, how: 'ack' | 'requeue' | 'dead'): void {
    if (this.#leased.get(id) === h) this.#leased.delete(id);
    if (this.#held.get(id) === h) this.#held.delete(id);
    if (h.link.closed) return; // the broker gave it back already
    try {
      if (how === 'ack') h.ch.ack(h.msg);
      else h.ch.nack(h.msg, false, how === 'requeue');
    } catch {
      // The channel closed meanwhile: the broker delivers it again, and the store decides then.
    }
  }

  #settleLeased(id: number, how: 'ack' | 'requeue' | 'dead'): void {
    const h = this.#leased.get(id);
    if (h) this.#drop(h, id, how);
  }

  async heartbeat(owner: string, ids: number[]): Promise<number[]> {
    const lost = await this.#store.heartbeat(owner, ids);
    // Another process has these now, by a message of its own: this one's is spent.
    for (const id of lost) this.#settleLeased(id, 'ack');
    return lost;
  }

  async complete(job: Job, owner: string, result: unknown, then?: FollowUps): Promise<boolean> {
    const done = await this.#store.complete(job, owner, result, then);
    try {
      await this.#flushAfterOutcome();
    } finally {
      // Acknowledged once the outcome is recorded (and its follow-ups announced, or left to a sweep).
      this.#settleLeased(job.id, 'ack');
    }
    return done;
  }

  async fail(
    job: Job,
    owner: string,
    error: { message: string; code?: string },
    permanent: boolean,
    then?: FollowUps,
  ): Promise<FailOutcome> {
    const outcome = await this.#store.fail(job, owner, error, permanent, then);
    try {
      // The retry's message is confirmed in its retry queue before this attempt's is acknowledged.
      await this.#flushAfterOutcome();
    } finally {
      this.#settleLeased(job.id, outcome === 'dead' ? 'dead' : 'ack');
    }
    return outcome;
  }

  async release(job: Job, owner: string): Promise<boolean> {
    const released = await this.#store.release(job, owner);
    const h = this.#leased.get(job.id);
    if (h) this.#drop(h, job.id, released ? 'requeue' : 'ack');
    if (h && released && !h.link.closed) {
      // A requeue has no answer of its own, but the broker handles a channel's methods in order: once a round trip
      // on the same channel returns, the message is back in the queue, and a claim anywhere can take the job.
      await withTimeout(h.ch.checkQueue(this.#url.name), this.#o.timeoutMs, 'requeueing').catch(() => {});
    }
    return released;
  }

  async retry(id: number): Promise<Job | undefined> {
    const job = await this.#store.retry(id);
    await this.#flushAfterOutcome();
    return job;
  }

  get(id: number): Promise<Job | undefined> {
    return this.#store.get(id);
  }

  list(filter: JobFilter): Promise<Job[]> {
    return this.#store.list(filter);
  }

  counts(filter?: { kind?: JobKind }): Promise<JobCounts> {
    return this.#store.counts(filter);
  }

  onReady(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Messages waiting in `<name>`, in its dead-letter queue and held unacknowledged by consumers, as RabbitMQ counts
   * them (for tests and the benchmark).
   */
  async depth(): Promise<{ ready: number; dead: number }> {
    const link = await this.#connected();
    const [main, dead] = await Promise.all([
      link.pub.checkQueue(this.#url.name),
      link.pub.checkQueue(`${this.#url.name}.dead`),
    ]);
    return { ready: main.messageCount, dead: dead.messageCount };
  }

  /** Deletes the queues and exchanges of this name (tests and benchmarks). */
  async destroy(): Promise<void> {
    const link = await this.#connected();
    const name = this.#url.name;
    for (const queue of [
      name,
      `${name}.dead`,
      ...Array.from({ length: 31 }, (_, k) => `${name}.retry.${k}`),
    ]) {
      await link.pub.deleteQueue(queue);
    }
    await link.pub.deleteExchange(`${name}.dead`);
    await link.pub.deleteExchange(`${name}.ready`);
  }

  /** Gives back the messages it holds and closes the connection; idempotent. The store is its owner's to close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    for (const [id, h] of [...this.#held, ...this.#leased]) this.#drop(h, id, 'requeue');
    const link = this.#link;
    this.#link = undefined;
    if (link && !link.closed) {
      link.closed = true;
      await link.model.close().catch(() => {});
    }
  }
}
