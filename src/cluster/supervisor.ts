import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Dashboard } from '../dashboard/index.ts';
import { WeftError } from '../errors.ts';
import { type Logger, stderrLogger } from '../lifecycle/index.ts';
import type { MetricsServer } from '../metrics/index.ts';
import { clusterDashboard } from './dashboard.ts';
import { PrimaryListeners } from './listeners.ts';
import { ClusterMetrics, type ClusterMetricsSnapshot } from './metrics.ts';
import { type ResolvedSuperviseOptions, resolveSuperviseOptions, type SuperviseOptions } from './options.ts';
import { isWeftMessage, type WorkerMessage } from './protocol.ts';
import { describeExit, Slot, type SlotStatus } from './slot.ts';

// The agent answers pings and reports stats inside every worker; loaded before the application with --import.
/** Worker output lines kept for `weft logs`. */
const LOG_LINES = 1_000;

const agentUrl = new URL(import.meta.url.endsWith('.ts') ? './agent.ts' : './agent.js', import.meta.url).href;

/** The outcome of a rolling reload. */
export interface ReloadResult {
  ok: boolean;
  /** Slots whose worker was replaced. */
  replaced: number;
  /** Why the rollout stopped, when it did. */
  reason?: string;
}

/** What `status()` returns. */
export interface SupervisorStatus {
  name: string;
  pid: number;
  state: 'running' | 'reloading' | 'stopping' | 'stopped' | 'failed';
  slots: SlotStatus[];
  lastReload: (ReloadResult & { at: string }) | undefined;
  /**
   * A rolling reload under way: when it started, slots to replace, replaced so far. Each slot's own step is in its
   * `replacement`.
   */
  reload?: ReloadProgress;
}

/** Progress of a rolling reload. */
export interface ReloadProgress {
  startedAt: string;
  total: number;
  replaced: number;
}

interface Forked {
  worker: Worker;
  ready: Promise<void>;
}

/**
 * Runs an application on N worker processes that share its ports (node:cluster), restarts crashed ones with
 * backoff, kills hung ones, reloads them one by one without dropping requests, and stops them gracefully.
 * Use `supervise()` to create one. See docs/cluster.md.
 */
export class Supervisor extends EventEmitter {
  readonly options: ResolvedSuperviseOptions;
  readonly #log: Logger;
  readonly #slots: Slot[];
  readonly #retiring = new Map<Worker, Promise<number>>();
  readonly #candidates = new Set<Worker>();
  readonly #signalHandlers = new Map<string, () => void>();
  #pingTimer: NodeJS.Timeout | undefined;
  #pingId = 0;
  #state: SupervisorStatus['state'] = 'running';
  #reload: Promise<ReloadResult> | undefined;
  #lastReload: SupervisorStatus['lastReload'];
  #stop: Promise<number> | undefined;
  /** When the signal that started the stop arrived. */
  #stopSignalAt = Number.NEGATIVE_INFINITY;
  readonly #logs: string[] = [];
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #requestId = 0;
  #metrics: ClusterMetrics | undefined;
  #metricsServer: MetricsServer | undefined;
  #reloadProgress: ReloadProgress | undefined;
  #dashboard: Dashboard | undefined;
  readonly #listeners = new PrimaryListeners();

  constructor(options: SuperviseOptions) {
    super();
    this.options = resolveSuperviseOptions(options);
    this.#log = this.options.logger ?? stderrLogger;
    this.#slots = Array.from({ length: this.options.workers }, (_, i) => new Slot(i, this.options));
  }

  /** Starts every slot; resolves once each has become ready or failed its first start. */
  async start(): Promise<void> {
    if (!cluster.isPrimary) throw new Error('supervise() must run in the primary process');
    const o = this.options;
    if (o.metricsPort !== undefined) {
      // Before any worker starts: a port in use fails the start with nothing to clean up. Loaded only when asked
      // for, so a supervisor without an endpoint never loads prom-client.
      const { serveMetrics } = await import('../metrics/index.ts');
      // The dashboard shares the metrics port: its page at `/`, its event stream at `/dashboard/events`.
      this.#dashboard = o.dashboard ? await clusterDashboard(this) : undefined;
      this.#metricsServer = await serveMetrics(this.#clusterMetrics(), {
        port: o.metricsPort,
        host: o.metricsHost,
        ...(this.#dashboard ? { handler: this.#dashboard.handle } : {}),
      });
      this.#log.info({ metrics: this.#metricsServer.url }, `metrics on ${this.#metricsServer.url}`);
      if (this.#dashboard) {
        const page = this.#metricsServer.url.replace(/metrics$/, '');
        this.#log.info({ dashboard: page }, `dashboard on ${page}`);
      }
    }
    cluster.setupPrimary({
      exec: o.exec,
      args: o.args,
      execArgv: [...(o.execArgv ?? process.execArgv), '--import', agentUrl],
      silent: o.prefixOutput,
    });
    if (o.handleSignals) {
      this.#onSignal('SIGTERM', () => void this.stop('SIGTERM'));
      this.#onSignal('SIGINT', () => void this.stop('SIGINT'));
      this.#onSignal('SIGHUP', () => void this.reload());
      this.#onSignal('SIGUSR2', () => void this.reload());
    }
    if (o.pingInterval > 0) {
      this.#pingTimer = setInterval(() => this.#ping(), o.pingInterval);
      this.#pingTimer.unref();
    }
    this.#log.info({ name: o.name, workers: o.workers, threads: o.threads }, `starting ${o.workers} workers`);
    await Promise.all(this.#slots.map((slot) => this.#startSlot(slot).catch(() => {})));
  }

  /** A snapshot of every slot. */
  status(): SupervisorStatus {
    const now = performance.now();
    return {
      name: this.options.name,
      pid: process.pid,
      state: this.#state,
      slots: this.#slots.map((s) => s.status(now)),
      lastReload: this.#lastReload,
      ...(this.#reloadProgress ? { reload: { ...this.#reloadProgress } } : {}),
    };
  }

  #onSignal(signal: string, fn: () => void): void {
    const handler = () => {
      const stopSignal = signal === 'SIGTERM' || signal === 'SIGINT';
      // One Ctrl-C under `npm start` arrives twice (from the terminal, and forwarded by npm): that is one request.
      if (
        this.#stop &&
        stopSignal &&
        performance.now() - this.#stopSignalAt < this.options.repeatSignalWindow
      ) {
        this.#log.info({ signal }, `${signal} received again at once: taken as the same stop`);
        return;
      }
      if (this.#stop && stopSignal) {
        this.#log.error({ signal }, `${signal} received again while stopping: killing every worker now`);
        this.#killAll('SIGKILL');
        this.#finish(1);
        return;
      }
      this.#log.info({ signal }, `${signal} received`);
      if (stopSignal && !this.#stop) this.#stopSignalAt = performance.now();
      fn();
    };
    this.#signalHandlers.set(signal, handler);
    process.on(signal, handler);
  }

  /** Forks a worker for `slot`; `ready` settles when it listens or says ready, or fails to in time. */
  #fork(slot: Slot): Forked {
    const o = this.options;
    const worker = cluster.fork({
      ...o.env,
      WEFT_WORKER_INDEX: String(slot.index),
      WEFT_WORKERS: String(o.workers),
      WEFT_THREADS: String(o.threads),
      // The merged endpoint, so an application can serve the whole cluster's metrics on its own port too.
      ...(this.#metricsServer ? { WEFT_METRICS_URL: this.#metricsServer.url } : {}),
      WEFT_STATS_INTERVAL: String(o.statsInterval),
      WEFT_KILL_TIMEOUT: String(o.killTimeout),
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`not ready within ${o.startTimeout} ms`));
        worker.process.kill('SIGKILL');
      }, o.startTimeout);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      worker.once('listening', done);
      worker.on('message', (msg: unknown) => {
        if (isWeftMessage(msg) && (msg as WorkerMessage).weft === 'ready') done();
      });
      worker.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited before ready (${describeExit(code, signal)})`));
      });
    });
    ready.catch(() => {}); // observed by the caller; never an unhandled rejection
    if (o.prefixOutput) {
      const prefix = `[${o.name}:${slot.index}]`;
      this.#pipe(worker.process.stdout, process.stdout, prefix);
      this.#pipe(worker.process.stderr, process.stderr, prefix);
    }
    worker.on('message', (msg: unknown) => this.#onMessage(slot, worker, msg));
    worker.on('exit', (code: number | null, signal: string | null) =>
      this.#onExit(slot, worker, code, signal),
    );
    return { worker, ready };
  }

  /** Copies a worker stream line by line with its slot prefix, and keeps the last lines for `weft logs`. */
  #pipe(from: Readable | null | undefined, to: Writable, prefix: string): void {
    if (!from) return;
    createInterface({ input: from, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (text) => {
      const line = `${prefix} ${text}`;
      to.write(`${line}\n`);
      this.#logs.push(line);
      if (this.#logs.length > LOG_LINES) this.#logs.shift();
      this.emit('log', line);
    });
  }

  /** The last lines the workers wrote (up to 1 000), oldest first. */
  recentLogs(): string[] {
    return [...this.#logs];
  }

  /**
   * The whole cluster's metrics as Prometheus text: each ready worker's `defaultMetrics()` with `worker` and `pid`
   * labels, counters summed into `_cluster_total`s, and the supervisor's own. A worker that does not answer within
   * `metricsTimeout` is skipped and counted. `GET /metrics` of the `metricsPort` endpoint.
   *
   * @example
   * ```ts
   * const text = await sup.metrics(); // weft_pool_tasks_total{pool="images",outcome="completed",worker="0",pid="4242"} 12
   * ```
   */
  metrics(): Promise<string> {
    return this.#clusterMetrics().metrics();
  }

  /**
   * The same numbers as JSON, slot by slot. `GET /metrics.json` of the `metricsPort` endpoint. With `light`
   * (`/metrics.json?light`) the workers send only their snapshots, and `totals` are the last full scrape's.
   */
  metricsSnapshot(options: { light?: boolean } = {}): Promise<ClusterMetricsSnapshot> {
    return this.#clusterMetrics().snapshot(options);
  }

  /** `http://host:port/metrics` when `metricsPort` is set. */
  get metricsUrl(): string | undefined {
    return this.#metricsServer?.url;
  }

  #clusterMetrics(): ClusterMetrics {
    this.#metrics ??= new ClusterMetrics(this, this.options.metricsTimeout);
    return this.#metrics;
  }

  async #startSlot(slot: Slot): Promise<void> {
    const { worker, ready } = this.#fork(slot);
    slot.worker = worker;
    slot.state = 'starting';
    slot.startedAt = performance.now();
    slot.lastPong = slot.startedAt;
    try {
      await ready;
    } catch (err) {
      this.#log.warn(
        { slot: slot.index, pid: worker.process.pid, err },
        `worker ${slot.index} did not start`,
      );
      throw err;
    }
    if (slot.worker === worker && slot.state === 'starting') {
      slot.state = 'ready';
      this.#log.info({ slot: slot.index, pid: worker.process.pid }, `worker ${slot.index} ready`);
      this.emit('ready', slot.index);
    }
  }

  #onMessage(slot: Slot, worker: Worker, msg: unknown): void {
    if (!isWeftMessage(msg) || slot.worker !== worker) return;
    const m = msg as WorkerMessage;
    if (m.weft === 'pong') slot.lastPong = performance.now();
    else if (m.weft === 'stats') {
      slot.stats = m.stats;
      slot.lastPong = performance.now();
      const max = this.options.maxMemory;
      if (
        max > 0 &&
        m.stats.rss > max &&
        slot.state === 'ready' &&
        !slot.replacing &&
        !this.#reload &&
        !this.#stop
      ) {
        this.#log.warn(
          { slot: slot.index, pid: worker.process.pid, rss: m.stats.rss, maxMemory: max },
          `worker ${slot.index} is over maxMemory: replacing it`,
        );
        void this.#replace(slot, 'memory');
      }
    } else if (m.weft === 'message') this.emit('message', slot.index, m.data);
    else if (m.weft === 'response') {
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (p && m.ok) p.resolve(m.data);
      else p?.reject(new WeftError('ERR_WEFT_IPC', `worker ${slot.index}: ${String(m.data)}`));
    }
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return; // a retired or candidate worker: handled where it was started
    const how =
      slot.lastExit?.startsWith('hung') && slot.state === 'draining'
        ? slot.lastExit
        : describeExit(code, signal);
    slot.lastExit = how;
    slot.worker = undefined;
    slot.stats = undefined;
    if (this.#stop) {
      slot.state = 'stopped';
      return;
    }
    const now = performance.now();
    this.#log.warn(
      { slot: slot.index, pid: worker.process.pid, exit: how },
      `worker ${slot.index} exited (${how})`,
    );
    if (now - slot.startedAt >= this.options.stableAfter) {
      slot.backoff.reset();
      slot.restartedAtOnce = false;
    }
    if (slot.crashes.record(now)) {
      slot.state = 'failed';
      this.#log.error(
        { slot: slot.index, crashes: slot.crashes.count, window: this.options.crashLoop.windowMs },
        `slot ${slot.index} failed: crash loop (${slot.crashes.count} crashes in ${this.options.crashLoop.windowMs} ms)`,
      );
      this.emit('failed', slot.index);
      if (this.#slots.every((s) => s.state === 'failed')) this.#crashLoop();
      return;
    }
    slot.state = 'backoff';
    slot.restarts++;
    // The first crash of a stable slot is restarted at once: a lone crash should cost no more than a fork. Repeated
    // crashes back off (100 ms, 200 ms, ...), so a broken build does not fork in a tight loop.
    if (!slot.restartedAtOnce) {
      slot.restartedAtOnce = true;
      void this.#startSlot(slot).catch(() => {});
      return;
    }
    const delay = slot.backoff.next();
    slot.restartTimer = setTimeout(() => void this.#startSlot(slot).catch(() => {}), delay);
  }

  /** Every slot failed: the orchestrator must see it, with the last reason of each slot. */
  #crashLoop(): void {
    this.#state = 'failed';
    const reasons = this.#slots.map((s) => `slot ${s.index}: ${s.lastExit ?? 'unknown'}`);
    this.#log.error({ reasons }, `every worker is crash-looping: giving up (${reasons.join('; ')})`);
    this.#finish(1);
  }

  #ping(): void {
    const now = performance.now();
    const limit = this.options.livenessTimeout;
    for (const slot of this.#slots) {
      const w = slot.worker;
      if (!w || slot.state !== 'ready') continue;
      if (limit > 0 && now - slot.lastPong > limit) {
        const stuck = Math.round(now - slot.lastPong);
        slot.lastExit = `hung ${stuck} ms`;
        slot.state = 'draining';
        this.#log.error(
          { slot: slot.index, pid: w.process.pid, stuckMs: stuck },
          `worker ${slot.index} (pid ${w.process.pid}) has not answered for ${stuck} ms: killing it`,
        );
        w.process.kill('SIGTERM');
        setTimeout(() => {
          if (w.process.exitCode === null && w.process.signalCode === null) w.process.kill('SIGKILL');
        }, this.options.hungKillGrace).unref();
        continue;
      }
      if (w.isConnected()) w.send({ weft: 'ping', id: ++this.#pingId });
    }
  }

  /** Sends `data` to the worker of `slot` (its `worker.onMessage` listeners); false when it has none connected. */
  send(slot: number, data: unknown): boolean {
    const w = this.#slots[slot]?.worker;
    if (!w?.isConnected()) return false;
    w.send({ weft: 'message', data });
    return true;
  }

  /** Sends `data` to every connected worker; returns how many got it. */
  broadcast(data: unknown): number {
    let n = 0;
    for (const slot of this.#slots) if (this.send(slot.index, data)) n++;
    return n;
  }

  /**
   * Asks the worker of `slot` to run its `worker.handle(name)` handler; resolves with the answer. Rejects with
   * `ERR_WEFT_IPC` when the worker has no such handler, its handler throws, it is not connected, or no answer
   * comes within `timeout` ms (default 5 000).
   */
  request(slot: number, name: string, data?: unknown, options: { timeout?: number } = {}): Promise<unknown> {
    const w = this.#slots[slot]?.worker;
    if (!w?.isConnected())
      return Promise.reject(new WeftError('ERR_WEFT_IPC', `worker ${slot} is not connected`));
    const id = ++this.#requestId;
    const timeout = options.timeout ?? 5_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WeftError('ERR_WEFT_IPC', `worker ${slot} did not answer "${name}" within ${timeout} ms`));
      }, timeout);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      w.send({ weft: 'request', id, name, data });
    });
  }

  /**
   * Rolling reload: for each slot, start a new worker, wait until it is ready, then drain the old one through its
   * lifecycle (SIGTERM). If a new worker fails to become ready, the rollout stops and the old workers keep serving.
   */
  reload(): Promise<ReloadResult> {
    if (this.#stop) return Promise.resolve({ ok: false, replaced: 0, reason: 'stopping' });
    this.#reload ??= this.#rollout().finally(() => {
      this.#reload = undefined;
      if (this.#state === 'reloading') this.#state = 'running';
    });
    return this.#reload;
  }

  async #rollout(): Promise<ReloadResult> {
    this.#state = 'reloading';
    this.#log.info({ workers: this.#slots.length }, 'rolling reload started');
    const progress = { startedAt: new Date().toISOString(), total: this.#slots.length, replaced: 0 };
    this.#reloadProgress = progress;
    let replaced = 0;
    let result: ReloadResult | undefined;
    const queue = [...this.#slots];
    // An old worker drains while the rollout goes on (nginx's old workers finish their connections while new ones
    // take new connections): its idle keep-alive connections may take seconds to close. The reload is done once the
    // last old worker has exited.
    const draining: Promise<number>[] = [];
    const lane = async () => {
      for (let slot = queue.shift(); slot && !result && !this.#stop; slot = queue.shift()) {
        const outcome = await this.#replace(slot, 'reload', draining);
        if (outcome === true) progress.replaced = ++replaced;
        else result = { ok: false, replaced, reason: `worker ${slot.index}: ${outcome}` };
      }
    };
    await Promise.all(Array.from({ length: this.options.maxSurge }, lane));
    await Promise.all(draining);
    result ??= { ok: true, replaced };
    this.#reloadProgress = undefined;
    this.#lastReload = { ...result, at: new Date().toISOString() };
    if (result.ok) this.#log.info({ replaced }, `rolling reload finished: ${replaced} workers replaced`);
    else
      this.#log.error(
        { reason: result.reason },
        `rolling reload failed: ${result.reason}; old workers keep serving`,
      );
    return result;
  }

  /**
   * Starts a new worker for `slot`, and once it is ready drains the old one: awaited, or pushed to `draining` to be
   * awaited by the caller. True, or why it failed.
   */
  async #replace(slot: Slot, why: 'reload' | 'memory', draining?: Promise<number>[]): Promise<true | string> {
    slot.replacing = true;
    try {
      return await this.#replaceOnce(slot, why, draining);
    } finally {
      slot.replacing = false;
      slot.replacement = undefined;
    }
  }

  async #replaceOnce(
    slot: Slot,
    why: 'reload' | 'memory',
    draining?: Promise<number>[],
  ): Promise<true | string> {
    const { worker, ready } = this.#fork(slot);
    this.#candidates.add(worker);
    const pid = worker.process.pid;
    slot.replacement = { why, step: 'starting', pid, oldPid: slot.worker?.process.pid };
    try {
      await ready;
    } catch (err) {
      this.#candidates.delete(worker);
      if (worker.process.exitCode === null && worker.process.signalCode === null)
        worker.process.kill('SIGKILL');
      return (err as Error).message;
    }
    this.#candidates.delete(worker);
    const old = slot.worker;
    slot.worker = worker;
    slot.state = 'ready';
    slot.startedAt = performance.now();
    slot.lastPong = slot.startedAt;
    slot.stats = undefined;
    clearTimeout(slot.restartTimer);
    slot.replacement = { why, step: 'draining', pid, oldPid: old?.process.pid };
    if (old) {
      this.#log.info(
        { slot: slot.index, old: old.process.pid, new: worker.process.pid, why },
        `worker ${slot.index} replaced (${why}): draining pid ${old.process.pid}`,
      );
      const retired = this.#retire(old);
      if (draining) draining.push(retired);
      else await retired;
    }
    return true;
  }

  /** Drains a worker through its lifecycle (SIGTERM), SIGKILL after killTimeout; resolves with its exit code. */
  #retire(worker: Worker): Promise<number> {
    let done = this.#retiring.get(worker);
    if (done) return done; // already draining: a second SIGTERM would force it
    done = new Promise<number>((resolve) => {
      const { exitCode, signalCode } = worker.process;
      if (exitCode !== null || signalCode !== null) return resolve(exitCode ?? 1);
      const timer = setTimeout(() => worker.process.kill('SIGKILL'), this.options.killTimeout);
      worker.once('exit', (code: number | null) => {
        clearTimeout(timer);
        this.#retiring.delete(worker);
        resolve(code ?? 1);
      });
      worker.process.kill('SIGTERM');
    });
    this.#retiring.set(worker, done);
    return done;
  }

  /**
   * Stops every worker in parallel through its lifecycle, SIGKILL after killTimeout. Resolves with the exit code:
   * 0 when every worker drained and exited cleanly, else 1. Exits the process unless `exit: false`.
   */
  stop(reason = 'stop'): Promise<number> {
    this.#stop ??= this.#stopAll(reason);
    return this.#stop;
  }

  async #stopAll(reason: string): Promise<number> {
    this.#state = 'stopping';
    this.#log.info({ reason }, 'stopping every worker');
    clearInterval(this.#pingTimer);
    // Stop accepting before the workers drain: a connection accepted from now on would have no worker to take it.
    this.#listeners.closeAll();
    const workers = new Set<Worker>([...this.#candidates, ...this.#retiring.keys()]);
    for (const slot of this.#slots) {
      clearTimeout(slot.restartTimer);
      if (slot.worker) workers.add(slot.worker);
    }
    const codes = await Promise.all([...workers].map((w) => this.#retire(w)));
    for (const slot of this.#slots) if (slot.state !== 'failed') slot.state = 'stopped';
    const code = codes.every((c) => c === 0) ? 0 : 1;
    this.#log.info(
      { code },
      `stopped (${code === 0 ? 'every worker drained' : 'not every worker exited cleanly'})`,
    );
    this.#finish(code);
    return code;
  }

  #killAll(signal: NodeJS.Signals): void {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
  }

  #finish(code: number): void {
    if (this.#state !== 'failed') this.#state = 'stopped';
    this.#listeners.dispose();
    clearInterval(this.#pingTimer);
    void this.#dashboard?.close();
    void this.#metricsServer?.close();
    for (const [signal, handler] of this.#signalHandlers) process.off(signal, handler);
    this.#signalHandlers.clear();
    this.emit('exit', code);
    if (this.options.exit) process.exit(code);
  }
}

/**
 * Starts a supervisor for `options.exec` and resolves once every worker is ready (or failed its first start).
 *
 * @example
 * ```ts
 * import { supervise } from 'weft/cluster';
 * const sup = await supervise({ exec: new URL('./server.js', import.meta.url), workers: 'max' });
 * console.log(sup.status().slots.map((s) => s.state));
 * ```
 */
export async function supervise(options: SuperviseOptions): Promise<Supervisor> {
  const supervisor = new Supervisor(options);
  await supervisor.start();
  return supervisor;
}
