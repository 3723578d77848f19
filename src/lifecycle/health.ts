import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { InvalidOptionError } from '../errors.ts';
import { DELAY, isDelay } from '../validate.ts';
import { type FastifyLikeReply, isFastifyReply } from './reply.ts';

/** What a probe asks: is the process alive, can it take traffic, has it finished starting. */
export type CheckKind = 'liveness' | 'readiness' | 'startup';
export type HealthState = 'starting' | 'ready' | 'shutting-down';

/** Options of one check; see {@link Health.addCheck}. */
export interface CheckOptions {
  /** Which probe it belongs to. Default: `readiness`. */
  kind?: CheckKind;
  /** Ms it may take; then its signal is aborted and it counts as `timeout`. 0 or Infinity: none. Default: 2000. */
  timeout?: number;
  /** Ms its last result is reused for, so probes cannot overload a dependency. 0: never. Default: 1000. */
  cacheFor?: number;
  /**
   * Whether its failure fails the probe. Default: true. A non-critical check (a dependency the process can do
   * without for a while, such as a queue it buffers for) is run and reported, marked `critical: false`, and while
   * it fails the probe still passes and names it in `degraded`.
   */
  critical?: boolean;
}

/** A check; may be async. Throwing, rejecting or returning `false` means failing; anything else means ok. */
export type CheckFunction = (signal: AbortSignal) => unknown;

export interface CheckResult {
  status: 'ok' | 'fail' | 'timeout';
  durationMs: number;
  /** True when this result was reused from an earlier run (within `cacheFor`). */
  cached: boolean;
  /** Why it failed: the error's message, or the thrown value as text. */
  error?: string;
  /** When the run that gave this result started (ISO 8601, from the clock). */
  checkedAt: string;
  /** Present (false) only on a non-critical check: its failure does not fail the probe. */
  critical?: false;
}

/** The JSON body every health handler answers with (200 when `status` is ok, else 503). */
export interface HealthReport {
  kind: CheckKind;
  status: 'ok' | 'fail';
  state: HealthState;
  checks: Record<string, CheckResult>;
  /** The non-critical checks that are failing, when there are any: the probe passes without them, degraded. */
  degraded?: string[];
}

export interface HealthOptions {
  /** Ms since the epoch, for durations, cache expiry and `checkedAt`. Default: `performance.timeOrigin + now()`. */
  clock?: () => number;
  /** Defaults of every check's `timeout` and `cacheFor`. */
  defaults?: Omit<CheckOptions, 'kind'>;
}

/** A health endpoint usable as a node:http, express or fastify handler; it answers the {@link HealthReport}. */
export interface HealthHandler {
  /** node:http `(req, res)` or express `(req, res, next)`; `next` gets only unexpected errors. */
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): Promise<void>;
  /** fastify `(request, reply)`: resolves with the reply, so fastify knows it was answered. */
  <Reply extends FastifyLikeReply>(request: unknown, reply: Reply): Promise<Reply>;
}

export interface ProbeServerOptions {
  /** Port to listen on; 0 picks a free one. Default: 0. */
  port?: number;
  /** Default: `127.0.0.1`. Use `0.0.0.0` (or `::`) for a kubelet outside the pod's loopback. */
  host?: string;
  /** Default: `/health/live`, `/health/ready`, `/health/startup`. */
  paths?: Partial<Record<CheckKind, string>>;
}

/** A standalone probe server; see {@link Health.probeServer}. */
export interface ProbeServer {
  readonly port: number;
  readonly server: Server;
  /** Stops listening and closes every connection, idle or active. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Check {
  readonly fn: CheckFunction;
  readonly kind: CheckKind;
  readonly timeout: number;
  readonly cacheFor: number;
  readonly critical: boolean;
  last: { readonly result: CheckResult; readonly at: number } | undefined;
  running: Promise<CheckResult> | undefined;
}

type Outcome = { status: CheckResult['status']; error?: string };

const KINDS: readonly CheckKind[] = ['liveness', 'readiness', 'startup'];
const KIND = `one of ${KINDS.map((k) => `'${k}'`).join(', ')}`;
const DEFAULT_PATHS: Readonly<Record<CheckKind, string>> = {
  liveness: '/health/live',
  readiness: '/health/ready',
  startup: '/health/startup',
};
const HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } as const;

/**
 * Liveness, readiness and startup probes for one process, with timed, cached, single-flight checks.
 *
 * Liveness ignores startup and shutdown (Kubernetes must not kill a draining process); readiness is 503 while
 * starting, from `markShuttingDown()` on, and while a readiness check fails; startup is 503 until `markStarted()`
 * and while a startup check fails.
 *
 * @example
 * ```ts
 * const health = new Health();
 * health.addCheck('db', (signal) => db.ping({ signal }), { timeout: 500 });
 * app.get('/health/ready', health.handler('readiness'));
 * health.markStarted();
 * ```
 */
export class Health {
  readonly #clock: () => number;
  readonly #defaults: { readonly timeout: number; readonly cacheFor: number };
  readonly #checks = new Map<string, Check>();
  readonly #probes = new Set<ProbeServer>();
  #started = false;
  #shuttingDown = false;

  constructor(options: HealthOptions = {}) {
    object(options, 'options');
    const { clock = () => performance.timeOrigin + performance.now(), defaults = {} } = options;
    if (typeof clock !== 'function') throw new InvalidOptionError('clock', 'a function', clock);
    object(defaults, 'defaults');
    this.#clock = clock;
    this.#defaults = Object.freeze({
      timeout: delay(defaults.timeout, 'defaults.timeout', 2_000),
      cacheFor: delay(defaults.cacheFor, 'defaults.cacheFor', 1_000),
    });
  }

  get state(): HealthState {
    if (this.#shuttingDown) return 'shutting-down';
    return this.#started ? 'ready' : 'starting';
  }

  /**
   * Adds a check run by the probes of its `kind`. A check stuck in synchronous code cannot be timed out.
   *
   * @example
   * ```ts
   * health.addCheck('redis', async () => (await redis.ping()) === 'PONG', { timeout: 300, cacheFor: 2_000 });
   * ```
   */
  addCheck(name: string, fn: CheckFunction, options: CheckOptions = {}): this {
    if (typeof name !== 'string' || name.length === 0) {
      throw new InvalidOptionError('name', 'a non-empty string', name);
    }
    if (this.#checks.has(name)) throw new InvalidOptionError('name', 'the name of no other check', name);
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', 'a function', fn);
    object(options, 'options');
    const kind = options.kind ?? 'readiness';
    if (!KINDS.includes(kind)) throw new InvalidOptionError('kind', KIND, kind);
    const critical = options.critical ?? true;
    if (typeof critical !== 'boolean') throw new InvalidOptionError('critical', 'a boolean', critical);
    this.#checks.set(name, {
      fn,
      kind,
      timeout: delay(options.timeout, 'timeout', this.#defaults.timeout),
      cacheFor: delay(options.cacheFor, 'cacheFor', this.#defaults.cacheFor),
      critical,
      last: undefined,
      running: undefined,
    });
    return this;
  }

  /** Removes a check; false when there was none by that name. A run in flight still settles, unreported. */
  removeCheck(name: string): boolean {
    return this.#checks.delete(name);
  }

  /** Startup is complete: startup and readiness may turn green. */
  markStarted(): void {
    this.#started = true;
  }

  /** Readiness fails at once, and from now on, without running its checks. Liveness is unaffected. */
  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  /**
   * Runs (or reuses cached results of) the checks of `kind`; never rejects because of a check.
   *
   * @example
   * ```ts
   * const { status, checks } = await health.report('readiness');
   * ```
   */
  async report(kind: CheckKind): Promise<HealthReport> {
    if (!KINDS.includes(kind)) throw new InvalidOptionError('kind', KIND, kind);
    const entries = [...this.#checks].filter(([, check]) => check.kind === kind);
    // Once shutting down, readiness answers at once: a dependency slow to answer must not delay the 503.
    const skip = kind === 'readiness' && this.#shuttingDown;
    const results = await Promise.all(
      entries.map(([, check]) => (skip ? Promise.resolve(cachedOf(check)) : this.#result(check))),
    );
    const checks: Record<string, CheckResult> = {};
    const degraded: string[] = [];
    let ok = true;
    entries.forEach(([name, check], i) => {
      const result = results[i];
      if (result === undefined) return;
      checks[name] = check.critical ? result : { ...result, critical: false };
      if (result.status === 'ok') return;
      if (check.critical) ok = false;
      else degraded.push(name);
    });
    // Read the state after the checks: a shutdown that began meanwhile already makes readiness fail.
    const state = this.state;
    if (kind === 'readiness' && state !== 'ready') ok = false;
    if (kind === 'startup' && !this.#started) ok = false;
    return { kind, status: ok ? 'ok' : 'fail', state, checks, ...(degraded.length ? { degraded } : {}) };
  }

  /**
   * One handler for node:http, express and fastify that answers the report of `kind` as JSON (200 or 503).
   *
   * @example
   * ```ts
   * http.createServer(health.handler('liveness'));           // node:http
   * app.get('/health/ready', health.handler('readiness'));     // express or fastify
   * ```
   */
  handler(kind: CheckKind): HealthHandler {
    if (!KINDS.includes(kind)) throw new InvalidOptionError('kind', KIND, kind);
    const handle = async (first: unknown, second: unknown, next?: unknown): Promise<unknown> => {
      if (isFastifyReply(second)) {
        const report = await this.report(kind);
        second.code(statusCode(report));
        for (const [name, value] of Object.entries(HEADERS)) second.header(name, value);
        second.send(JSON.stringify(report));
        return second;
      }
      const req = first as IncomingMessage;
      const res = second as ServerResponse;
      try {
        respond(res, await this.report(kind), req.method === 'HEAD');
      } catch (err) {
        // The returned promise is ignored by node:http and express: it must never reject.
        if (typeof next === 'function') next(err);
        else if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      }
      return undefined;
    };
    return handle as HealthHandler;
  }

  /**
   * Starts a node:http server on its own port that serves the three probes (the lightship pattern), so probes
   * keep answering whatever the application server does. `close()` it, or `health.close()`.
   *
   * @example
   * ```ts
   * const probes = await health.probeServer({ port: 9000, host: '0.0.0.0' });
   * // livenessProbe: httpGet { path: /health/live, port: 9000 }
   * ```
   */
  async probeServer(options: ProbeServerOptions = {}): Promise<ProbeServer> {
    const routes = this.#routes(options);
    const { port = 0, host = '127.0.0.1' } = options;
    if (!Number.isSafeInteger(port) || port < 0 || port > 65_535) {
      throw new InvalidOptionError('port', 'an integer from 0 to 65535', port);
    }
    if (typeof host !== 'string' || host.length === 0) {
      throw new InvalidOptionError('host', 'a non-empty string', host);
    }
    const server = createServer((req, res) => {
      const handle = routes.get((req.url ?? '/').split('?', 1)[0] ?? '/');
      if (handle === undefined) return void res.writeHead(404, HEADERS).end('{"error":"Not Found"}');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return void res
          .writeHead(405, { ...HEADERS, allow: 'GET, HEAD' })
          .end('{"error":"Method Not Allowed"}');
      }
      void handle(req, res);
    });
    server.listen(port, host);
    await once(server, 'listening');
    let closing: Promise<void> | undefined;
    const probe: ProbeServer = Object.freeze({
      port: (server.address() as AddressInfo).port,
      server,
      close: () => {
        closing ??= new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections(); // active probes too: a hung check must not hold the close
          this.#probes.delete(probe);
        });
        return closing;
      },
      [Symbol.asyncDispose]: () => probe.close(),
    });
    this.#probes.add(probe);
    return probe;
  }

  /** Closes every probe server this Health started. Idempotent; checks need no closing. */
  async close(): Promise<void> {
    await Promise.all([...this.#probes].map((probe) => probe.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #routes(options: ProbeServerOptions): Map<string, HealthHandler> {
    object(options, 'options');
    const paths = object(options.paths ?? {}, 'paths');
    for (const key of Object.keys(paths)) {
      if (!KINDS.includes(key as CheckKind)) throw new InvalidOptionError('paths', `keys among ${KIND}`, key);
    }
    const routes = new Map<string, HealthHandler>();
    for (const kind of KINDS) {
      const path = paths[kind] ?? DEFAULT_PATHS[kind];
      if (typeof path !== 'string' || !path.startsWith('/') || routes.has(path)) {
        throw new InvalidOptionError(
          `paths.${kind}`,
          'a path starting with "/", unique among the paths',
          path,
        );
      }
      routes.set(path, this.handler(kind));
    }
    return routes;
  }

  /** The cached result while fresh, else the run in flight, else a new run (single flight). */
  #result(check: Check): Promise<CheckResult> {
    const { last } = check;
    if (last !== undefined && this.#clock() - last.at < check.cacheFor) {
      return Promise.resolve({ ...last.result, cached: true });
    }
    // Cleared on both paths: a run that rejected (only a throwing clock can) must not be shared forever.
    check.running ??= this.#run(check).then(
      (result) => {
        check.running = undefined;
        check.last = { result, at: this.#clock() };
        return result;
      },
      (err: unknown) => {
        check.running = undefined;
        throw err;
      },
    );
    return check.running;
  }

  async #run(check: Check): Promise<CheckResult> {
    const started = this.#clock();
    const { status, error } = await settle(check.fn, check.timeout);
    const durationMs = Math.max(0, Math.round((this.#clock() - started) * 1000) / 1000);
    const checkedAt = new Date(Number.isFinite(started) ? started : Date.now()).toISOString();
    return error === undefined
      ? { status, durationMs, cached: false, checkedAt }
      : { status, durationMs, cached: false, error, checkedAt };
  }
}

/**
 * Runs `fn` under `timeout`. Never rejects: a check that throws, rejects (even long after its timeout) or
 * returns a thenable that never settles becomes an outcome, so no check can cause an unhandled rejection.
 */
function settle(fn: CheckFunction, timeout: number): Promise<Outcome> {
  const { promise, resolve } = Promise.withResolvers<Outcome>();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  if (timeout > 0 && timeout !== Number.POSITIVE_INFINITY) {
    timer = setTimeout(() => {
      controller.abort(new DOMException(`The check timed out after ${timeout} ms`, 'TimeoutError'));
      resolve({ status: 'timeout', error: `timed out after ${timeout} ms` });
    }, timeout);
  }
  const done = (outcome: Outcome) => {
    clearTimeout(timer);
    resolve(outcome);
  };
  try {
    Promise.resolve(fn(controller.signal)).then(
      (value) =>
        done(value === false ? { status: 'fail', error: 'the check returned false' } : { status: 'ok' }),
      (err: unknown) => done({ status: 'fail', error: errorText(err) }),
    );
  } catch (err) {
    done({ status: 'fail', error: errorText(err) });
  }
  return promise;
}

/** A thrown value as text, whatever it is (cross-realm errors, strings, objects, symbols); never throws. */
function errorText(err: unknown): string {
  try {
    if (typeof err === 'string') return err;
    if (typeof err === 'object' && err !== null && typeof (err as Error).message === 'string') {
      const { message, name } = err as Error;
      return message || (typeof name === 'string' && name) || 'Error';
    }
    if (typeof err === 'function') return `function ${err.name || '<anonymous>'}`;
    if (typeof err === 'object') {
      try {
        return JSON.stringify(err); // null and plain objects, including ones without a prototype
      } catch {} // cyclic, or a throwing toJSON: fall through to String()
    }
    return String(err);
  } catch {
    return 'a value that cannot be shown was thrown';
  }
}

function cachedOf(check: Check): CheckResult | undefined {
  return check.last && { ...check.last.result, cached: true };
}

function object<T>(value: T, option: string): T {
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError(option, 'an object', value);
  return value;
}

function delay(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!isDelay(value)) throw new InvalidOptionError(option, DELAY, value);
  return value;
}

const statusCode = (report: HealthReport): number => (report.status === 'ok' ? 200 : 503);

function respond(res: ServerResponse, report: HealthReport, head: boolean): void {
  // The client may have gone while the checks ran.
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(report);
  res.writeHead(statusCode(report), { ...HEADERS, 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}
