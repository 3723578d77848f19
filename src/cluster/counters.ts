/**
 * Shared counters: named numbers whose state lives in the supervisor, so every worker of one `weft start` adds to and
 * reads the same value (a rate limit, a quota, a count of something the workers do together). The supervisor is one
 * thread and handles one message at a time, so each call is atomic. The values outlive a worker's crash and a rolling
 * reload; they are lost when the supervisor itself stops (keep what must outlive it in a database or Redis).
 *
 * Outside a supervised worker (a plain `node app.js`, tests in one process) the counters are this process's own, with
 * the same API and the same semantics.
 * @module
 */
import { WeftError } from '../errors.ts';
import { supervised } from './ipc.ts';

/** What a counter holds: its value, and when it goes back to 0 (epoch ms; undefined: never). */
export interface CounterValue {
  value: number;
  /** When the current window ends and the counter starts again from 0 (epoch ms); undefined when it has no TTL. */
  resetAt: number | undefined;
}

export interface CounterAddOptions {
  /**
   * A window: when the counter is 0 (new, reset or expired), this add starts a window of `ttlMs`, after which the
   * counter goes back to 0. Adds within the window do not extend it (a fixed window, as a rate limit counts).
   */
  ttlMs?: number;
}

/** A named shared counter. Every call is one round trip to the supervisor and atomic there. */
export interface Counter {
  readonly name: string;
  /** Adds `n` (default 1, may be negative); resolves with the value after it. */
  add(n?: number, options?: CounterAddOptions): Promise<CounterValue>;
  /** The current value (0 for a counter never added to, or whose window ended). */
  get(): Promise<CounterValue>;
  /** Back to 0, and no window. */
  reset(): Promise<void>;
}

/** A worker's counter request to the supervisor (under the `weft` key, as every Weft IPC message). */
export type CounterRequest =
  | { weft: 'counter'; op: 'add'; id: number; name: string; n: number; ttlMs?: number }
  | { weft: 'counter'; op: 'get' | 'reset'; id: number; name: string };

/** Counter messages between a worker and the supervisor. */
export type CounterWireMessage =
  | CounterRequest
  | { weft: 'counter'; op: 'result'; id: number; value: number; resetAt?: number };

type Distribute<T> = T extends unknown ? Omit<T, 'id' | 'weft'> : never;

const NAME = /^[\x21-\x7e]{1,200}$/;
/** The longest window: a year. */
const MAX_TTL = 366 * 24 * 3_600_000;

function invalid(argument: string, expected: string, actual: unknown): WeftError {
  return new WeftError(
    'ERR_WEFT_INVALID_ARGUMENT',
    `The "${argument}" argument must be ${expected}. Received ${JSON.stringify(actual) ?? String(actual)}`,
  );
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME.test(name))
    throw invalid('name', 'a counter name of 1-200 printable ASCII characters, no space', name);
}

function checkAdd(n: unknown, options: unknown): { n: number; ttlMs: number | undefined } {
  if (typeof n !== 'number' || !Number.isFinite(n)) throw invalid('n', 'a finite number', n);
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw invalid('options', 'an object', options);
  const ttlMs = (options as CounterAddOptions | undefined)?.ttlMs;
  if (
    ttlMs !== undefined &&
    (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL)
  )
    throw invalid('options.ttlMs', `an integer number of ms from 1 to ${MAX_TTL}`, ttlMs);
  return { n, ttlMs };
}

/**
 * The counters themselves: in the supervisor for every worker, or in a process nothing supervises. Internal; the
 * supervisor answers its workers' messages with it (`onMessage`).
 */
export class CounterStore {
  readonly #counters = new Map<string, { value: number; resetAt: number | undefined }>();
  readonly #clock: () => number;
  #sweep: NodeJS.Timeout | undefined;

  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  #current(name: string): { value: number; resetAt: number | undefined } | undefined {
    const c = this.#counters.get(name);
    if (c?.resetAt !== undefined && c.resetAt <= this.#clock()) {
      this.#counters.delete(name);
      return undefined;
    }
    return c;
  }

  add(name: string, n: number, ttlMs: number | undefined): CounterValue {
    let c = this.#current(name);
    if (!c) {
      c = { value: 0, resetAt: ttlMs === undefined ? undefined : this.#clock() + ttlMs };
      this.#counters.set(name, c);
      if (c.resetAt !== undefined) this.#sweepLater();
    }
    c.value += n;
    return { value: c.value, resetAt: c.resetAt };
  }

  get(name: string): CounterValue {
    const c = this.#current(name);
    return { value: c?.value ?? 0, resetAt: c?.resetAt };
  }

  reset(name: string): void {
    this.#counters.delete(name);
  }

  /** How many counters are held (expired ones are dropped by a sweep every minute while any has a window). */
  get size(): number {
    return this.#counters.size;
  }

  #sweepLater(): void {
    if (this.#sweep) return;
    this.#sweep = setInterval(() => {
      const now = this.#clock();
      let windows = 0;
      for (const [name, c] of this.#counters) {
        if (c.resetAt === undefined) continue;
        if (c.resetAt <= now) this.#counters.delete(name);
        else windows++;
      }
      if (windows === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
      }
    }, 60_000);
    this.#sweep.unref();
  }

  /** Answers a worker's counter message; false when it is not one. */
  onMessage(msg: unknown, reply: (m: CounterWireMessage) => void): boolean {
    const m = msg as CounterRequest;
    if (typeof m !== 'object' || m === null || m.weft !== 'counter') return false;
    let value: CounterValue;
    try {
      checkName(m.name);
      if (m.op === 'add') {
        const { n, ttlMs } = checkAdd(m.n, m.ttlMs === undefined ? undefined : { ttlMs: m.ttlMs });
        value = this.add(m.name, n, ttlMs);
      } else if (m.op === 'get') value = this.get(m.name);
      else if (m.op === 'reset') {
        this.reset(m.name);
        value = { value: 0, resetAt: undefined };
      } else return true;
    } catch {
      return true; // the worker checked its arguments; a malformed message gets no answer (its call times out)
    }
    reply({
      weft: 'counter',
      op: 'result',
      id: m.id,
      value: value.value,
      ...(value.resetAt === undefined ? {} : { resetAt: value.resetAt }),
    });
    return true;
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }
}

/** How long a worker waits for the supervisor's answer. */
const TIMEOUT_MS = 5_000;

/** The worker's side: requests to the supervisor, matched to their answers by id. */
class CounterClient {
  readonly #pending = new Map<
    number,
    { resolve: (v: CounterValue) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  #next = 0;
  #listening = false;
  readonly #onMessage = (msg: unknown) => {
    const m = msg as CounterWireMessage;
    if (typeof m !== 'object' || m === null || m.weft !== 'counter' || m.op !== 'result') return;
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    clearTimeout(p.timer);
    this.#unlistenWhenIdle();
    p.resolve({ value: m.value, resetAt: m.resetAt });
  };

  #unlistenWhenIdle(): void {
    // Listening keeps the IPC channel referenced: only while an answer is awaited, so an idle worker can exit.
    if (this.#pending.size > 0 || !this.#listening) return;
    this.#listening = false;
    process.off('message', this.#onMessage);
  }

  request(msg: Distribute<CounterRequest>): Promise<CounterValue> {
    return new Promise((resolve, reject) => {
      if (!process.connected || !process.send) {
        reject(
          new WeftError(
            'ERR_WEFT_IPC',
            'The supervisor is not connected: the shared counter cannot be reached',
          ),
        );
        return;
      }
      const id = ++this.#next;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        this.#unlistenWhenIdle();
        reject(
          new WeftError(
            'ERR_WEFT_IPC',
            `The supervisor did not answer the counter "${msg.name}" within ${TIMEOUT_MS} ms`,
          ),
        );
      }, TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      if (!this.#listening) {
        this.#listening = true;
        process.on('message', this.#onMessage);
      }
      process.send({ weft: 'counter', id, ...msg }, undefined, {}, (err: Error | null) => {
        if (!err) return;
        const p = this.#pending.get(id);
        if (!p) return;
        this.#pending.delete(id);
        clearTimeout(p.timer);
        this.#unlistenWhenIdle();
        p.reject(
          new WeftError('ERR_WEFT_IPC', `Sending to the supervisor failed: ${err.message}`, { cause: err }),
        );
      });
    });
  }
}

let client: CounterClient | undefined;
let local: CounterStore | undefined;

/**
 * The counter `name`, shared by every worker of this `weft start` (this process's own when nothing supervises it).
 *
 * @example
 * ```ts
 * import { worker } from 'weftjs/cluster';
 * const { value, resetAt } = await worker.counter(`uploads:${ip}`).add(1, { ttlMs: 60_000 });
 * if (value > 100) reply.code(429).header('retry-after', Math.ceil((resetAt! - Date.now()) / 1000)).send();
 * ```
 */
export function counter(name: string): Counter {
  checkName(name);
  return {
    name,
    add(n = 1, options) {
      let checked: { n: number; ttlMs: number | undefined };
      try {
        checked = checkAdd(n, options);
      } catch (err) {
        return Promise.reject(err);
      }
      if (!supervised()) {
        local ??= new CounterStore();
        return Promise.resolve(local.add(name, checked.n, checked.ttlMs));
      }
      client ??= new CounterClient();
      return client.request({
        op: 'add',
        name,
        n: checked.n,
        ...(checked.ttlMs === undefined ? {} : { ttlMs: checked.ttlMs }),
      });
    },
    get() {
      if (!supervised()) {
        local ??= new CounterStore();
        return Promise.resolve(local.get(name));
      }
      client ??= new CounterClient();
      return client.request({ op: 'get', name });
    },
    async reset() {
      if (!supervised()) {
        local ??= new CounterStore();
        local.reset(name);
        return;
      }
      client ??= new CounterClient();
      await client.request({ op: 'reset', name });
    },
  };
}
