import { EventEmitter } from 'node:events';
import { InvalidOptionError } from '../errors.ts';
import { Health, type HealthOptions } from './health.ts';
import { type DrainableServer, type HttpDrain, type ServerOptions, serverDrain } from './http-drain.ts';
import { type Logger, stderrLogger } from './logger.ts';
import { type LifecycleOptions, PHASES, type Phase, resolveLifecycleOptions } from './options.ts';
import { SUPERVISOR_WORD_TIMEOUT, supervisorWord } from './supervisor-word.ts';

/** What a shutdown hook receives. */
export interface HookContext {
  /** Why the shutdown started: the signal name, `uncaughtException`, or what `shutdown(reason)` was given. */
  reason: string;
  /** Aborted when the hook's own timeout or the shutdown deadline passes: stop and return. */
  signal: AbortSignal;
}

/** A shutdown hook; may be async. Throwing or timing out is logged and makes the exit code 1; the rest still run. */
export type ShutdownHook = (context: HookContext) => unknown;

/** Options of `onShutdown` and `register`. */
export interface HookOptions {
  /** When it runs. Default: `drain`. */
  phase?: Phase;
  /** Ms it may take (never past the shutdown deadline). Default: the time left until the deadline. */
  timeout?: number;
}

/** Anything with `close()` or `Symbol.asyncDispose`: a `weftjs/pool` Pool, a database client, a file handle. */
export type Closable = { close(): unknown } | { [Symbol.asyncDispose](): PromiseLike<void> };

export type LifecycleState = 'starting' | 'ready' | 'shutting-down' | 'stopped';

interface Hook {
  name: string;
  fn: ShutdownHook;
  phase: Phase;
  timeout: number;
}

/**
 * Graceful shutdown, health and readiness for one process. See docs/lifecycle.md.
 *
 * @example
 * ```ts
 * const life = createLifecycle({ shutdownTimeout: 30_000 });
 * life.addServer(server);
 * life.register(pool);                       // closed in the drain phase
 * life.onShutdown('db', () => db.end(), { phase: 'resources' });
 * await life.ready();                        // readiness turns green
 * ```
 */
export class Lifecycle extends EventEmitter {
  readonly health: Health;
  readonly #options: ReturnType<typeof resolveLifecycleOptions>;
  readonly #logger: Logger;
  readonly #hooks: Hook[] = [];
  readonly #servers: HttpDrain[] = [];
  readonly #abort = new AbortController();
  readonly #listeners = new Map<string, (...args: unknown[]) => void>();
  #state: LifecycleState = 'starting';
  #shutdown: Promise<number> | undefined;
  #failed = false;
  #expired = false;
  /** Signals received since the shutdown started (by a signal or otherwise); the second one forces exit. */
  #signalsDuringShutdown = 0;
  /** Abort controllers of the hooks running now: the deadline aborts them all. */
  readonly #running = new Set<AbortController>();

  constructor(options: LifecycleOptions = {}) {
    super();
    this.#options = resolveLifecycleOptions(options);
    this.#logger = this.#options.logger ?? stderrLogger;
    this.health = new Health(this.#options.health as HealthOptions | undefined);
    for (const signal of this.#options.signals) this.#listen(signal, () => this.#onSignal(signal));
    if (this.#options.handleErrors) {
      this.#listen('uncaughtException', (err: unknown, origin: unknown) =>
        this.#onFatal(err, String(origin)),
      );
      this.#listen('unhandledRejection', (reason: unknown) => this.#onFatal(reason, 'unhandledRejection'));
    }
  }

  get state(): LifecycleState {
    return this.#state;
  }

  /** Aborted when the shutdown starts: loops and consumers can stop taking new work. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Drains this server on shutdown: node:http, https, http2 (fastify's `app.server`, express's `app.listen()`). */
  addServer(server: DrainableServer, options: ServerOptions = {}): this {
    if (!server || typeof server.on !== 'function' || typeof server.close !== 'function') {
      throw new InvalidOptionError('server', 'a node:http, https or http2 server', server);
    }
    for (const key of ['drainDelay', 'idleGrace', 'lingerTimeout'] as const) {
      const v = options[key];
      if (v !== undefined && (typeof v !== 'number' || !(v >= 0) || v > 2 ** 31 - 1)) {
        throw new InvalidOptionError(key, 'a number of ms from 0 to 2147483647', v);
      }
    }
    this.#servers.push(serverDrain(server, options));
    return this;
  }

  /** Runs `fn` during shutdown, in `phase` (default `drain`), with its own timeout. */
  onShutdown(name: string, fn: ShutdownHook, options: HookOptions = {}): this {
    if (typeof name !== 'string' || name.length === 0)
      throw new InvalidOptionError('name', 'a non-empty string', name);
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', 'a function', fn);
    const phase = options.phase ?? 'drain';
    if (!PHASES.includes(phase)) throw new InvalidOptionError('phase', `one of ${PHASES.join(', ')}`, phase);
    const timeout = options.timeout ?? Number.POSITIVE_INFINITY;
    if (typeof timeout !== 'number' || !(timeout >= 0))
      throw new InvalidOptionError('timeout', 'a number >= 0', timeout);
    this.#hooks.push({ name, fn, phase, timeout });
    return this;
  }

  /** Closes `closable` during shutdown (default phase `drain`): `close()` if it has one, else `Symbol.asyncDispose`. */
  register(closable: Closable, options: HookOptions & { name?: string } = {}): this {
    const c = closable as Partial<{ close(): unknown; [Symbol.asyncDispose](): PromiseLike<void> }>;
    if (!c || (typeof c.close !== 'function' && typeof c[Symbol.asyncDispose] !== 'function')) {
      throw new InvalidOptionError('closable', 'an object with close() or Symbol.asyncDispose', closable);
    }
    const name = options.name ?? ((closable as object).constructor?.name || 'closable');
    const close = typeof c.close === 'function' ? () => c.close!() : () => c[Symbol.asyncDispose]!();
    return this.onShutdown(name, close, options);
  }

  /** Adds a health check; see `Health#addCheck`. */
  addCheck(...args: Parameters<Health['addCheck']>): this {
    this.health.addCheck(...args);
    return this;
  }

  livenessHandler(): ReturnType<Health['handler']> {
    return this.health.handler('liveness');
  }

  readinessHandler(): ReturnType<Health['handler']> {
    return this.health.handler('readiness');
  }

  startupHandler(): ReturnType<Health['handler']> {
    return this.health.handler('startup');
  }

  /** Startup is complete: readiness (and startup) probes turn green. */
  async ready(): Promise<void> {
    if (this.#state !== 'starting') return;
    this.#state = 'ready';
    this.health.markStarted();
    this.emit('ready');
  }

  /**
   * Starts the shutdown (once; later calls return the same promise), resolving with the exit code: 0 for a clean
   * drain, 1 when the deadline forced it or a hook failed, or `exitCode` when given. Exits the process at the end
   * unless the `exit` option is false.
   */
  shutdown(reason = 'shutdown', options: { exitCode?: number } = {}): Promise<number> {
    this.#shutdown ??= this.#run(String(reason), options.exitCode);
    return this.#shutdown;
  }

  /** Stops listening for signals and process errors, and detaches from the servers. Does not shut down. */
  close(): void {
    for (const [event, fn] of this.#listeners) process.off(event, fn);
    this.#listeners.clear();
    for (const s of this.#servers) s.detach();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #listen(event: string, fn: (...args: unknown[]) => void): void {
    this.#listeners.set(event, fn);
    process.on(event, fn);
  }

  #onSignal(signal: string): void {
    if (!this.#shutdown) {
      this.#signalsDuringShutdown = 1;
      this.#logger.info({ signal }, `${signal} received: shutting down`);
      void this.shutdown(signal);
      return;
    }
    // A shutdown started by hand, by the supervisor or by an error is not forced by the orchestrator's first SIGTERM;
    // under a supervisor, no signal forces: it is the one that does.
    if (++this.#signalsDuringShutdown === 1 || !this.#options.forceOnRepeat) {
      this.#logger.info({ signal }, `${signal} received: already shutting down`);
      return;
    }
    this.#logger.error({ signal }, `${signal} received again during shutdown: forcing exit now`);
    for (const s of this.#servers) s.destroy();
    this.#exit(1);
  }

  #onFatal(err: unknown, origin: string): void {
    if (this.#shutdown) {
      // The shutdown goes on, but it did not go cleanly.
      this.#failed = true;
      this.#logger.error({ err, origin }, `${origin} during shutdown: the exit code will be 1`);
      return;
    }
    const code = exitCodeOf(err);
    this.#logger.error({ err, origin }, `${origin}: shutting down with exit code ${code}`);
    void this.shutdown(origin, { exitCode: code });
  }

  async #run(reason: string, exitCode: number | undefined): Promise<number> {
    const start = performance.now();
    this.#state = 'shutting-down';
    this.#abort.abort(new Error(`shutdown: ${reason}`));
    this.emit('shutdown', reason);
    this.#logger.info({ reason }, 'shutdown started');
    const deadline = start + this.#options.shutdownTimeout;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), this.#options.shutdownTimeout);
    });
    const phases = (async () => {
      for (const phase of PHASES) await this.#phase(phase, reason, deadline);
      return 'done' as const;
    })();
    const outcome = await Promise.race([phases, expired]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      this.#expired = true;
      this.#failed = true;
      for (const ac of this.#running) ac.abort(new Error('shutdown deadline passed'));
      this.#logger.error(
        { reason, shutdownTimeout: this.#options.shutdownTimeout, connections: this.#connections() },
        'shutdown deadline passed: destroying what is left',
      );
      for (const s of this.#servers) s.destroy();
    }
    // Probe servers answer liveness through the whole drain; they close last.
    await this.health.close().catch(() => {});
    const code = exitCode ?? (this.#failed ? 1 : 0);
    const ms = Math.round(performance.now() - start);
    this.#logger.info({ reason, code, ms }, `shutdown finished in ${ms} ms`);
    this.#state = 'stopped';
    this.close();
    this.emit('stopped', code);
    this.#exit(code);
    return code;
  }

  /** The deadline has passed though its timer has not fired yet: the same outcome, said once. */
  #pastDeadline(phase: Phase): void {
    if (this.#expired) return;
    this.#expired = true;
    this.#failed = true;
    this.#logger.error({ phase }, `shutdown deadline passed before phase ${phase}: destroying what is left`);
    for (const ac of this.#running) ac.abort(new Error('shutdown deadline passed'));
    for (const s of this.#servers) s.destroy();
  }

  async #phase(phase: Phase, reason: string, deadline: number): Promise<void> {
    // Past the deadline the shutdown has been decided: later phases do not start behind its back.
    if (this.#expired) return;
    if (performance.now() >= deadline) {
      this.#pastDeadline(phase);
      return;
    }
    this.emit('phase', phase);
    const steps: Promise<void>[] = [];
    if (phase === 'readiness') {
      this.health.markShuttingDown();
      const delay = Math.max(this.#options.drainDelay, ...this.#servers.map((s) => s.drainDelay));
      const left = deadline - performance.now();
      if (delay > 0) {
        // A drain delay that does not fit in the deadline uses it all: nothing after it may run.
        const after = () => (delay >= left ? this.#pastDeadline('listeners') : undefined);
        steps.push(sleep(Math.min(delay, left)).then(after));
      }
      // Under `weft start`: the listeners close once the supervisor has closed its shared listening sockets (its
      // word), so no connection it accepted is left to no one, whichever process heard the stop signal first.
      const word = this.#servers.length > 0 ? supervisorWord() : undefined;
      if (word) steps.push(word.wait(Math.min(SUPERVISOR_WORD_TIMEOUT, left)));
    } else if (phase === 'listeners') {
      for (const s of this.#servers) s.stopAccepting();
    } else if (phase === 'drain') {
      // Requests still arriving on open connections may need the pools and consumers registered for this phase, so
      // those close only once every server has drained.
      await Promise.all(this.#servers.map((s) => s.drain()));
      if (this.#expired) return;
    }
    for (const hook of this.#hooks) {
      if (hook.phase === phase) steps.push(this.#runHook(hook, reason, deadline));
    }
    await Promise.all(steps);
  }

  async #runHook(hook: Hook, reason: string, deadline: number): Promise<void> {
    // A hook with no timeout of its own, or one longer than what is left, is bounded by the shutdown deadline.
    const timeout = hook.timeout < deadline - performance.now() ? hook.timeout : undefined;
    const ac = new AbortController();
    this.#running.add(ac);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      if (timeout !== undefined) timer = setTimeout(() => resolve('timeout'), timeout);
    });
    try {
      const outcome = await Promise.race([
        Promise.resolve().then(() => hook.fn({ reason, signal: ac.signal })),
        timedOut,
      ]);
      if (outcome === 'timeout') {
        this.#failed = true;
        ac.abort(new Error(`shutdown hook "${hook.name}" timed out`));
        this.#logger.error(
          { hook: hook.name, phase: hook.phase, timeout },
          `shutdown hook "${hook.name}" timed out`,
        );
      }
    } catch (err) {
      this.#failed = true;
      this.#logger.error({ err, hook: hook.name, phase: hook.phase }, `shutdown hook "${hook.name}" failed`);
    } finally {
      clearTimeout(timer);
      this.#running.delete(ac);
    }
  }

  #connections(): number {
    let n = 0;
    for (const s of this.#servers) n += s.connections;
    return n;
  }

  #exit(code: number): void {
    const exit = this.#options.exit;
    if (exit === true) process.exit(code);
    else if (typeof exit === 'function') exit(code);
  }
}

/**
 * Creates the lifecycle of this process: listens for SIGTERM and SIGINT (configurable) and for uncaught errors.
 *
 * @example
 * ```ts
 * const life = createLifecycle({ shutdownTimeout: 30_000, logger });
 * life.addServer(server);
 * await life.ready();
 * ```
 */
export function createLifecycle(options: LifecycleOptions = {}): Lifecycle {
  return new Lifecycle(options);
}

function exitCodeOf(err: unknown): number {
  const code = (err as { exitCode?: unknown } | null)?.exitCode;
  return Number.isInteger(code) && (code as number) > 0 && (code as number) < 256 ? (code as number) : 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
