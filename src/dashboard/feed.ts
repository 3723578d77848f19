/**
 * Server-sent events for the dashboard: one snapshot per interval, computed once and written to every open stream.
 * Internal; see `createDashboard()`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Options of {@link SnapshotFeed}, validated by `createDashboard()`. */
export interface FeedOptions {
  /** Makes one snapshot (any JSON-serialisable value). */
  snapshot: () => unknown;
  intervalMs: number;
  heartbeatMs: number;
  retryMs: number;
  /**
   * What one client may see of a snapshot (`req` is its request): applied per client, so one snapshot serves viewers
   * who may see different parts of it. Default: the snapshot as it is, serialised once for everyone.
   */
  view?: ((snapshot: unknown, req: IncomingMessage) => unknown) | undefined;
  /** Called when the first stream opens (start what only the feed needs), and when the last one closes. */
  onActive?: (() => void) | undefined;
  onIdle?: (() => void) | undefined;
}

/** A snapshot (or a failure to make or view one) as JSON, and as the SSE event to write. */
interface Rendered {
  /** False for a failure: `json` is then `{ message }`, and `text` a `problem` event. */
  ok: boolean;
  json: string;
  /** The SSE event, ready to write. */
  text: string;
}

function snapshotEvent(value: unknown): Rendered {
  const json = JSON.stringify(value);
  return { ok: true, json, text: `event: snapshot\ndata: ${json}\n\n` };
}

function problemEvent(err: unknown): Rendered {
  const json = JSON.stringify({ message: err instanceof Error ? err.message : String(err) });
  return { ok: false, json, text: `event: problem\ndata: ${json}\n\n` };
}

interface Frame extends Rendered {
  /** `performance.now()` when it was made. */
  at: number;
  seq: number;
  /** The snapshot itself, for per-client views; undefined when `snapshot()` failed. */
  value: unknown;
}

interface Client {
  req: IncomingMessage;
  res: ServerResponse;
  /** The last frame written to it. */
  seq: number;
  lastWrite: number;
  /** Its socket's buffer is full: frames are skipped (not queued) until it drains. */
  blocked: boolean;
}

/** How long `close()` lets a stream flush before destroying it. */
const CLOSE_GRACE_MS = 1_000;

/**
 * The snapshot stream. Snapshots are made only while a stream is open (the timer stops with the last one), at most
 * once per `intervalMs` whatever the number of streams, and never two at once: a slow `snapshot()` delays the next
 * tick rather than piling up.
 */
export class SnapshotFeed {
  readonly #o: FeedOptions;
  readonly #clients = new Set<Client>();
  #latest: Frame | undefined;
  #making: Promise<Frame> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The id of the running tick loop, 0 when none: a tick of a stopped loop that was awaiting its snapshot ends. */
  #loop = 0;
  #loops = 0;
  #seq = 0;
  #closed: Promise<void> | undefined;

  constructor(options: FeedOptions) {
    this.#o = options;
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** True while the tick loop runs (a stream is open). */
  get running(): boolean {
    return this.#loop !== 0;
  }

  /** Serves one event stream on `res` until the client leaves or `close()`. */
  attach(req: IncomingMessage, res: ServerResponse): void {
    if (this.#closed) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' });
      res.end('the dashboard is closing\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // A stream is the last response on its connection: when it ends (the server drains), the browser reconnects
      // on a new connection, which reaches a process that still accepts, not this one.
      connection: 'close',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${this.#o.retryMs}\n: weft dashboard\n\n`);
    const client: Client = { req, res, seq: 0, lastWrite: performance.now(), blocked: false };
    this.#clients.add(client);
    res.once('close', () => this.#detach(client));
    req.socket.setNoDelay(true);
    if (this.#clients.size === 1) this.#o.onActive?.();
    // A new stream gets the latest snapshot at once when it is fresh; otherwise the next tick comes now.
    const fresh = this.#latest && performance.now() - this.#latest.at < this.#o.intervalMs;
    if (fresh) this.#write(client, this.#latest!);
    if (this.#loop === 0) {
      this.#loop = ++this.#loops;
      this.#schedule(this.#loop, fresh ? this.#o.intervalMs : 0);
    }
  }

  /** The latest snapshot as JSON (as `req` may see it), made now only when the last one is older than the interval. */
  async current(req?: IncomingMessage): Promise<{ ok: boolean; json: string }> {
    const frame = await this.#frame();
    return req ? this.#viewed(frame, req) : { ok: frame.ok, json: frame.json };
  }

  /**
   * What `req` may see of `frame`: the frame itself without a view. A view that fails shows that client the problem,
   * never the whole snapshot.
   */
  #viewed(frame: Frame, req: IncomingMessage): Rendered {
    const view = this.#o.view;
    if (!frame.ok || !view) return frame;
    try {
      return snapshotEvent(view(frame.value, req));
    } catch (err) {
      return problemEvent(err);
    }
  }

  #frame(): Promise<Frame> {
    const latest = this.#latest;
    if (latest && performance.now() - latest.at < this.#o.intervalMs) return Promise.resolve(latest);
    this.#making ??= this.#make().finally(() => {
      this.#making = undefined;
    });
    return this.#making;
  }

  async #make(): Promise<Frame> {
    const at = performance.now();
    let value: unknown;
    let made: Rendered;
    try {
      value = await this.#o.snapshot();
      made = snapshotEvent(value);
    } catch (err) {
      // The page shows why; the stream stays open and the next tick tries again.
      made = problemEvent(err);
    }
    this.#latest = { at, seq: ++this.#seq, ...made, value };
    return this.#latest;
  }

  #schedule(loop: number, ms: number): void {
    this.#timer = setTimeout(() => void this.#tick(loop), ms);
    // Open streams keep the process alive, not this timer.
    this.#timer.unref();
  }

  async #tick(loop: number): Promise<void> {
    if (loop !== this.#loop) return;
    const frame = await this.#frame();
    if (loop !== this.#loop) return;
    const now = performance.now();
    for (const c of this.#clients) {
      if (c.seq !== frame.seq) this.#write(c, frame);
      else if (now - c.lastWrite >= this.#o.heartbeatMs) this.#send(c, ': heartbeat\n\n');
    }
    this.#schedule(loop, Math.max(0, frame.at + this.#o.intervalMs - performance.now()));
  }

  #stop(): void {
    this.#loop = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #write(c: Client, frame: Frame): void {
    if (this.#send(c, this.#viewed(frame, c.req).text)) c.seq = frame.seq;
  }

  /** Writes unless the client is behind: a slow reader skips snapshots instead of buffering them. */
  #send(c: Client, text: string): boolean {
    if (c.blocked || c.res.destroyed) return false;
    c.lastWrite = performance.now();
    if (!c.res.write(text)) {
      c.blocked = true;
      c.res.once('drain', () => {
        c.blocked = false;
      });
    }
    return true;
  }

  #detach(c: Client): void {
    if (!this.#clients.delete(c)) return;
    if (this.#clients.size > 0) return;
    this.#stop();
    this.#o.onIdle?.();
  }

  /** Ends every stream (the browser reconnects elsewhere) and refuses new ones. Idempotent. */
  close(): Promise<void> {
    this.#stop();
    this.#closed ??= Promise.all(
      [...this.#clients].map(
        ({ res }) =>
          new Promise<void>((resolve) => {
            if (res.destroyed) return resolve();
            const timer = setTimeout(() => res.destroy(), CLOSE_GRACE_MS);
            timer.unref();
            res.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            res.end();
          }),
      ),
    ).then(() => this.#stop());
    return this.#closed;
  }
}
