import type { EventEmitter } from 'node:events';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach } from 'node:test';
import { InvalidOptionError, WeftError } from '../src/errors.ts';

/** Resolves with `promise`, or fails with a message naming `what` after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` (which may be async: a request, a file) every 20 ms until it is true; fails naming `what` after `ms`. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The JSON lines of the file at `path`, each parsed (none when it does not exist yet): what a test's processes logged. */
export function readJsonLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);
}

/**
 * `false` when a TCP connection to `url`'s host and port (`defaultPort` when it names none) opens within 2 s; else
 * the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` (CI) it throws instead: nothing is skipped there.
 */
export async function serviceSkip(
  name: string,
  url: string,
  defaultPort: number,
  env: string,
): Promise<string | false> {
  const u = new URL(url);
  const answers = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || defaultPort) });
    const done = (ok: boolean) => {
      socket.destroy();
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2_000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
  if (answers) return false;
  const reason = `${name} at ${u.host} did not answer`;
  if (process.env.WEFT_REQUIRE_SERVICES === '1')
    throw new Error(`${reason}; WEFT_REQUIRE_SERVICES=1 forbids skipping`);
  console.log(`# skipped: ${reason} (set ${env} to point elsewhere)`);
  return reason;
}

/** The first `event` of `emitter`, bounded by `ms` (a referenced timer: waiting keeps the process alive). */
export async function nextEvent<T = unknown>(emitter: EventEmitter, event: string, ms = 10_000): Promise<T> {
  const ac = new AbortController();
  try {
    const [value] = await within(once(emitter, event, { signal: ac.signal }), ms, `"${event}"`);
    return value as T;
  } finally {
    ac.abort();
  }
}

/** Resolves with the rejection reason of `promise` (fails if it fulfils), bounded by `ms`. */
export async function rejection(
  promise: Promise<unknown>,
  ms = 10_000,
  what = 'the rejection',
): Promise<unknown> {
  return within(
    promise.then(
      (value) => {
        throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
      },
      (err: unknown) => err,
    ),
    ms,
    what,
  );
}

export const fixture = (name: string): URL => new URL(`./fixtures/${name}`, import.meta.url);

/**
 * A gate shared with tasks (`block`, `blockAsync` in fixtures/tasks.ts): tasks count themselves in and wait until
 * `open()`; `started(n)` resolves once n tasks are inside.
 */
export class Gate {
  readonly sab = new SharedArrayBuffer(8);
  readonly #cells = new Int32Array(this.sab);

  open(): void {
    Atomics.store(this.#cells, 0, 1);
    Atomics.notify(this.#cells, 0);
  }

  get count(): number {
    return Atomics.load(this.#cells, 1);
  }

  async started(n: number, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (let seen = this.count; seen < n; seen = this.count) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out after ${ms} ms waiting for ${n} tasks to start (${seen} did)`);
      const r = Atomics.waitAsync(this.#cells, 1, seen, left);
      if (r.async) await r.value;
    }
  }
}

const tracked = new Set<{ destroy(): Promise<void> }>();
afterEach(async () => {
  const pools = [...tracked];
  tracked.clear();
  await within(Promise.all(pools.map((p) => p.destroy())), 10_000, 'pools to close after the test');
});

/** Registers a pool to be destroyed after the current test, whatever its outcome. */
export function track<T extends { destroy(): Promise<void> }>(pool: T): T {
  tracked.add(pool);
  return pool;
}

/** An `assert.throws` validator: an InvalidOptionError (a WeftError, ERR_WEFT_INVALID_OPTION) naming `option`. */
export function invalidOption(option: string): (err: unknown) => boolean {
  return (err: unknown) =>
    err instanceof InvalidOptionError &&
    err instanceof WeftError &&
    err.code === 'ERR_WEFT_INVALID_OPTION' &&
    err.option === option &&
    err.message.includes(option);
}

/**
 * Resolves once `condition()` is true, checking after every turn of the event loop (for state changed by I/O
 * callbacks, with no event to wait on); fails naming `what` after `ms`.
 */
export function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return within(
    new Promise<void>((resolve) => {
      const poll = () => {
        if (stopped) return; // timed out: stop polling, or the process keeps spinning
        if (condition()) resolve();
        else timer = setTimeout(poll, 1);
      };
      poll();
    }),
    ms,
    what,
  ).finally(() => {
    stopped = true;
    clearTimeout(timer);
  });
}

/**
 * Resolves with the first value of `probe()` for which `done` is true, asking again as soon as each answer is in
 * (for state only reachable by I/O, such as another process's view); fails naming `what` after `ms`.
 */
export function untilAnswer<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  ms: number,
  what: string,
): Promise<T> {
  let stopped = false;
  const loop = async (): Promise<T> => {
    for (;;) {
      const value = await probe();
      if (done(value) || stopped) return value;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return within(loop(), ms, what).finally(() => {
    stopped = true;
  });
}
