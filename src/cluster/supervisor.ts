import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { type Logger, stderrLogger } from '../lifecycle/index.ts';
import { BusRelay } from './bus-relay.ts';
import { CounterStore } from './counters.ts';
import { type Forked, forkWorker, setupPrimary } from './fork.ts';
import { Liveness, overMemory } from './health.ts';
import { sendTo, WorkerRequests } from './ipc.ts';
import { type ListenError, PrimaryListeners } from './listeners.ts';
import { ClusterMetrics, type ClusterMetricsSnapshot } from './metrics.ts';
import { type ResolvedSuperviseOptions, resolveSuperviseOptions, type SuperviseOptions } from './options.ts';
import { WorkerOutput } from './output.ts';
import { isWeftMessage, type WorkerMessage } from './protocol.ts';
import { onWorkerExit, type RestartContext } from './restart.ts';
import { Retirer } from './retire.ts';
import { Rollout } from './rollout.ts';
import { SignalHandlers } from './signals.ts';
import { Slot } from './slot.ts';
import { MetricsEndpoint, type ReloadResult, type SupervisorStatus, statusOf } from './status.ts';
import { StopWords } from './words.ts';

export type { ReloadProgress, ReloadResult, SupervisorStatus } from './status.ts';

/** The longest a stop waits for the connections queued on its listening sockets to be accepted, and then for those
 * accepted to be handed to workers, ms (each). */
const HAND_OVER_TIMEOUT = 2_000;

/** What node:cluster says a worker listens on. */
interface Address {
  address: string | null;
  port: number;
  addressType: number | string;
}

/** A listening address as a URL to open: `localhost` for every interface; a Unix socket as its path. */
function urlOf({ address, port, addressType }: Address): string {
  if (addressType === -1) return String(address);
  const any = address === null || address === '' || address === '0.0.0.0' || address === '::';
  const host = any ? 'localhost' : address.includes(':') ? `[${address}]` : address;
  return `http://${host}:${port}`;
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
  readonly #retirer: Retirer;
  readonly #rollout: Rollout;
  readonly #liveness: Liveness;
  readonly #signals: SignalHandlers;
  readonly #restart: RestartContext;
  readonly #requests = new WorkerRequests();
  readonly #output = new WorkerOutput((line) => this.emit('log', line));
  readonly #endpoint = new MetricsEndpoint();
  readonly #listeners = new PrimaryListeners((err) => this.#listenFailed(err));
  readonly #addresses = new Set<string>();
  readonly #bus: BusRelay;
  /** The shared counters' values (`worker.counter()`): here, so they outlive any worker. */
  readonly #counters = new CounterStore();
  /** Answers the workers that heard a stop signal before this supervisor did. */
  readonly #words: StopWords;
  #state: SupervisorStatus['state'] = 'running';
  #reload: Promise<ReloadResult> | undefined;
  #stop: Promise<number> | undefined;
  #metrics: ClusterMetrics | undefined;

  constructor(options: SuperviseOptions) {
    super();
    this.options = resolveSuperviseOptions(options);
    const log = this.options.logger ?? stderrLogger;
    this.#log = log;
    this.#bus = new BusRelay(log);
    this.#slots = Array.from({ length: this.options.workers }, (_, i) => new Slot(i, this.options));
    const stopping = () => this.#stop !== undefined;
    this.#words = new StopWords(stopping, log);
    this.#retirer = new Retirer(this.options.killTimeout);
    this.#rollout = new Rollout({
      slots: this.#slots,
      options: this.options,
      log,
      fork: (slot) => this.#fork(slot),
      retire: (worker) => this.#retirer.retire(worker),
      stopping,
    });
    this.#restart = {
      options: this.options,
      log,
      stopping,
      start: (slot) => this.#startSlot(slot),
      failed: (slot) => {
        this.emit('failed', slot.index);
        if (this.#slots.every((s) => s.state === 'failed')) this.#crashLoop();
        const retryAfter = this.options.crashLoop.retryAfter;
        if (retryAfter !== undefined && !this.#stop) {
          this.#log.warn(
            { slot: slot.index, retryAfter },
            `slot ${slot.index}: starting it again in ${retryAfter} ms`,
          );
          slot.restartTimer = setTimeout(() => {
            slot.restarts++;
            void this.#startSlot(slot).catch(() => {});
          }, retryAfter);
        }
      },
    };
    this.#liveness = new Liveness(this.#slots, this.options, log);
    this.#signals = new SignalHandlers({
      log,
      repeatWindow: this.options.repeatSignalWindow,
      stopping,
      force: () => {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
        this.#finish(1);
      },
    });
  }

  /** Starts every slot; resolves once each has become ready or failed its first start. */
  async start(): Promise<void> {
    if (!cluster.isPrimary) throw new Error('supervise() must run in the primary process');
    const o = this.options;
    // Before any worker starts: a port in use fails the start with nothing to clean up.
    if (o.metricsPort !== undefined)
      await this.#endpoint.open(this, this.#clusterMetrics(), o.metricsPort, this.#log);
    setupPrimary(o);
    if (o.handleSignals) {
      this.#signals.on('SIGTERM', () => void this.stop('SIGTERM'));
      this.#signals.on('SIGINT', () => void this.stop('SIGINT'));
      this.#signals.on('SIGHUP', () => void this.reload());
      this.#signals.on('SIGUSR2', () => void this.reload());
    }
    this.#liveness.start();
    this.#log.info({ name: o.name, workers: o.workers, threads: o.threads }, `starting ${o.workers} workers`);
    await Promise.all(this.#slots.map((slot) => this.#startSlot(slot).catch(() => {})));
  }

  /** A snapshot of every slot. */
  status(): SupervisorStatus {
    return statusOf(this.options.name, this.#state, this.#slots, this.#rollout.last, this.#rollout.progress);
  }

  /** Forks a worker for `slot`, its output copied and its messages and exit handled here. */
  #fork(slot: Slot): Forked {
    const o = this.options;
    const forked = forkWorker(slot, o, this.#endpoint.url);
    const { worker } = forked;
    if (o.prefixOutput) {
      const prefix = `[${o.name}:${slot.index}]`;
      this.#output.pipe(worker.process.stdout, process.stdout, prefix, o.formatOutput);
      this.#output.pipe(worker.process.stderr, process.stderr, prefix, o.formatOutput);
    }
    worker.on('listening', (address: Address) => this.#addresses.add(urlOf(address)));
    // Bus messages first, from any worker (a retiring one too: its acks and publications count).
    worker.on('message', (msg: unknown) => {
      if (this.#bus.onMessage(worker, msg)) return;
      if (this.#counters.onMessage(msg, (m) => sendTo(worker, m))) return;
      // From any worker too: one that is retiring or not ready yet also waits for the word.
      if (isWeftMessage(msg) && (msg as WorkerMessage).weft === 'stopping')
        return this.#words.heard(worker, slot.index);
      this.#onMessage(slot, worker, msg);
    });
    // Sending to a worker that is exiting fails with EPIPE, emitted on the Worker: node:cluster's own sends too (the
    // listen error of a port in use, handed to a worker the supervisor has just killed), which nothing else catches.
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_IPC_CHANNEL_CLOSED') return;
      this.#log.warn(
        { slot: slot.index, pid: worker.process.pid, err },
        `worker ${slot.index}: ${err.message}`,
      );
    });
    worker.once('exit', () => this.#bus.workerGone(worker));
    worker.on('exit', (code: number | null, signal: string | null) =>
      onWorkerExit(slot, worker, code, signal, this.#restart),
    );
    return forked;
  }

  /** Where the workers listen, as URLs (`http://localhost:3000` for every interface), in the order first seen. */
  get urls(): string[] {
    return [...this.#addresses];
  }

  /** The last lines the workers wrote (up to 1 000), oldest first. */
  recentLogs(): string[] {
    return this.#output.lines();
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
    return this.#endpoint.url;
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
      // Not when the supervisor ended it (a port that cannot be opened has been said once already).
      if (!this.#stop)
        this.#log.warn(
          { slot: slot.index, pid: worker.process.pid, err },
          `worker ${slot.index} did not start`,
        );
      throw err;
    }
    if (slot.worker === worker && slot.state === 'starting') {
      slot.state = 'ready';
      // Its readiness is its answer: it is judged from now on, not from its fork (a start, on a busy machine, can
      // outlast livenessTimeout with no stats sent meanwhile).
      slot.lastPong = performance.now();
      if (this.#state === 'failed') this.#state = 'running'; // a crash loop retried (crashLoop.retryAfter) is over
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
      if (!this.#reload && !this.#stop && overMemory(slot, worker, m.stats.rss, this.options, this.#log))
        void this.#rollout.replace(slot, 'memory');
    } else if (m.weft === 'message') this.emit('message', slot.index, m.data);
    else if (m.weft === 'response') this.#requests.settle(slot.index, m);
  }

  /** Every slot failed: the orchestrator must see it, with the last reason of each slot. */
  #crashLoop(): void {
    this.#state = 'failed';
    const reasons = this.#slots.map((s) => `slot ${s.index}: ${s.lastExit ?? 'unknown'}`);
    const retryAfter = this.options.crashLoop.retryAfter;
    if (retryAfter !== undefined) {
      this.#log.error(
        { reasons, retryAfter },
        `every worker is crash-looping: retrying every ${retryAfter} ms until one stays up (${reasons.join('; ')})`,
      );
      return;
    }
    this.#log.error(
      { reasons },
      `every worker is crash-looping: giving up (${reasons.join('; ')}); to keep retrying instead, start with --crash-loop-retry 30s (crashLoop.retryAfter)`,
    );
    this.#finish(1);
  }

  /**
   * The application's port cannot be opened (in use, or privileged): no worker can ever serve, so retrying is a
   * crash loop with a stack trace per try. One line says which port and what to do, the workers are ended before
   * node:cluster hands them the error, and the supervisor exits 1.
   */
  #listenFailed(err: ListenError): void {
    if (this.#stop || (err.code !== 'EADDRINUSE' && err.code !== 'EACCES')) return;
    this.#state = 'failed';
    const where = err.port === undefined ? (err.address ?? 'the address') : `port ${err.port}`;
    const why =
      err.code === 'EADDRINUSE' ? 'is already in use' : 'needs privileges this process does not have';
    const other = err.port ? err.port + 1 : 3001;
    this.#log.error(
      { code: err.code, address: err.address, port: err.port },
      `cannot listen: ${where} ${why} (${err.code}); stop what uses it, or choose another port (PORT=${other} for an app that reads PORT)`,
    );
    this.#stop = (async () => {
      this.#liveness.stop();
      const exits: Promise<unknown>[] = [];
      for (const slot of this.#slots) {
        clearTimeout(slot.restartTimer);
        const w = slot.worker;
        if (w && w.process.exitCode === null && w.process.signalCode === null) {
          exits.push(new Promise((resolve) => w.once('exit', resolve)));
          w.process.kill('SIGKILL');
        }
      }
      await Promise.all(exits);
      this.#finish(1);
      return 1;
    })();
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
    return this.#requests.request(this.#slots[slot]?.worker, slot, name, data, options);
  }

  /**
   * Rolling reload: for each slot, start a new worker, wait until it is ready, then drain the old one through its
   * lifecycle (SIGTERM). If a new worker fails to become ready, the rollout stops and the old workers keep serving.
   */
  reload(): Promise<ReloadResult> {
    if (this.#stop) return Promise.resolve({ ok: false, replaced: 0, reason: 'stopping' });
    if (!this.#reload) {
      this.#state = 'reloading';
      this.#reload = this.#rollout.run().finally(() => {
        this.#reload = undefined;
        if (this.#state === 'reloading') this.#state = 'running';
      });
    }
    return this.#reload;
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
    this.#liveness.stop();
    // Stop accepting before the workers drain: a connection accepted from now on would have no worker to take it.
    // Not before the connections already waiting in the listening sockets' accept queues are taken (handed to
    // workers, which keep accepting until they get the word the retirer sends): closing a listening socket resets
    // those, and a stop signal handled late (a busy machine) finds many.
    await this.#listeners.takeQueued(HAND_OVER_TIMEOUT);
    this.#listeners.closeAll();
    // The connections accepted by then go to the workers one at a time; a worker told to drain before the last was
    // handed over would leave it to node:cluster, which resets it when the last worker leaves.
    await this.#listeners.handedOver(HAND_OVER_TIMEOUT);
    const code = await this.#retirer.retireAll(this.#slots, this.#rollout.candidates, this.#log);
    this.#finish(code);
    return code;
  }

  #finish(code: number): void {
    if (this.#state !== 'failed') this.#state = 'stopped';
    this.#listeners.dispose();
    this.#liveness.stop();
    this.#endpoint.close();
    this.#counters.close();
    this.#words.dispose();
    this.emit('exit', code);
    // Exiting, the handlers stay: a signal that lands while the process exits must not kill it by its default
    // action, which would replace the exit code with the signal.
    if (this.options.exit) process.exit(code);
    this.#signals.dispose();
  }
}

/**
 * Starts a supervisor for `options.exec` and resolves once every worker is ready (or failed its first start).
 *
 * @example
 * ```ts
 * import { supervise } from 'weftjs/cluster';
 * const sup = await supervise({ exec: new URL('./server.js', import.meta.url), workers: 'max' });
 * console.log(sup.status().slots.map((s) => s.state));
 * ```
 */
export async function supervise(options: SuperviseOptions): Promise<Supervisor> {
  const supervisor = new Supervisor(options);
  await supervisor.start();
  return supervisor;
}
