/**
 * The node registry: when the service spans machines (`QUEUE_URL`), each node says every few seconds, on the bus
 * (`node.seen`), what its processes and pools are, and a dashboard shows the other nodes from what it heard. One
 * process per node sends (the worker in slot 0 of its `weft start`, or the process itself when nothing supervises
 * it), with the view its own page shows: the supervisor's merged metrics, or the process alone. A node that stops
 * says so (it leaves the panel at once); one that goes silent shows as `lost` after three intervals and is dropped
 * after five minutes.
 */
import { Agent, get } from 'node:http';
import { hostname } from 'node:os';
import {
  type ClusterInput,
  clusterView,
  type DashboardSnapshot,
  type NodeView,
  processView,
} from 'weftjs/dashboard';
import type { MetricsSnapshot } from 'weftjs/metrics';
import type { FilesBus } from './events/bus.ts';
import { ThrottledLog } from './log-throttle.ts';
import type { Logger } from './logger.ts';

/** A node's processes and pools, as its own dashboard shows them. */
export type NodeProcesses = Pick<DashboardSnapshot, 'scope' | 'cluster' | 'slots' | 'pools'>;

/** A heartbeat of the registry. */
export interface NodeBeat {
  node: string;
  /** The process that sent it: a `leaving` from another one (a worker a reload replaced) does not remove the node. */
  pid: number;
  /** When the node sends its next one, at the latest: now + its interval. */
  intervalMs: number;
  /** The node is stopping: forget it. */
  leaving?: boolean;
  view: NodeProcesses;
}

/** Missed heartbeats before a node shows as lost. */
const LOST_AFTER = 3;
/** How long a lost node stays on the panel. */
const FORGET_MS = 5 * 60_000;

/** This node's default name: the host and the pid of its supervisor (or of this process, when not supervised). */
export function defaultNodeName(env: NodeJS.ProcessEnv = process.env): string {
  const supervised = env.WEFT_WORKER_INDEX !== undefined && typeof process.send === 'function';
  return `${hostname()}:${supervised ? process.ppid : process.pid}`;
}

/** Whether this process sends its node's heartbeats: slot 0 of a `weft start`, or a process nothing supervises. */
export function sendsHeartbeats(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.WEFT_WORKER_INDEX === undefined || env.WEFT_WORKER_INDEX === '0';
}

/** GETs JSON over a kept-alive connection: half the CPU of `fetch()` for a request made every second. */
function getJson(url: string, agent: Agent, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, timeout: ms }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ms} ms`)));
    req.on('error', reject);
  });
}

/**
 * This node's processes: the supervisor's merged metrics (`WEFT_METRICS_URL`) when it serves them, else this process
 * alone. A supervisor that does not answer adds a warning and falls back to this process.
 *
 * @example
 * ```ts
 * const local = localProcesses({ title: 'files', metrics: () => defaultMetrics().snapshot() });
 * const view = await local.read([]);
 * ```
 */
export function localProcesses(options: {
  title: string;
  metrics?: (() => MetricsSnapshot) | undefined;
  env?: NodeJS.ProcessEnv;
}): {
  read(warnings: string[]): Promise<ReturnType<typeof processView> & Partial<ReturnType<typeof clusterView>>>;
  close(): void;
} {
  const env = options.env ?? process.env;
  // The supervisor's endpoint is `…/metrics`; its JSON form is next to it. `light`: each worker's snapshot only,
  // without the metric families the page does not show (a fraction of the scrape's cost, every second).
  const merged = env.WEFT_METRICS_URL?.replace(/\/metrics$/, '/metrics.json?light');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return {
    async read(warnings) {
      if (merged) {
        try {
          return clusterView((await getJson(merged, agent, 2_000)) as ClusterInput, options.title);
        } catch (err) {
          warnings.push(
            `The supervisor's merged metrics did not answer (${(err as Error).message}): this process only.`,
          );
        }
      }
      return processView(options.title, options.metrics?.());
    },
    close: () => agent.destroy(),
  };
}

export interface NodeRegistryOptions {
  bus: FilesBus;
  /** This node's name (`FILES_NODE_NAME`, default {@link defaultNodeName}). */
  node: string;
  /** This node's processes, for its heartbeats. */
  view: () => Promise<NodeProcesses>;
  /** Whether this process sends the node's heartbeats ({@link sendsHeartbeats}). */
  sends: boolean;
  /** Between two heartbeats. Default 5 s. */
  intervalMs?: number;
  log: Logger;
}

/**
 * @example
 * ```ts
 * const registry = new NodeRegistry({ bus, node: 'eu-1', view: async () => processView('files'), sends: true, log });
 * registry.start();
 * const stop = registry.watch(); // while a page is open
 * registry.others();             // NodeView[]
 * ```
 */
export class NodeRegistry {
  readonly node: string;
  readonly #o: Required<Omit<NodeRegistryOptions, 'node'>>;
  readonly #seen = new Map<string, { beat: NodeBeat; at: number }>();
  #timer: NodeJS.Timeout | undefined;
  #watchers = 0;
  #off: (() => Promise<void>) | undefined;
  #sending: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #errors: ThrottledLog;

  constructor(options: NodeRegistryOptions) {
    this.node = options.node;
    this.#o = { intervalMs: 5_000, ...options };
    // While Redis is away every heartbeat fails: logged once a minute.
    this.#errors = new ThrottledLog(options.log);
  }

  /** Starts this node's heartbeats (when it sends them): the first now, then every interval. */
  start(): void {
    if (!this.#o.sends || this.#timer || this.#closed) return;
    this.#beat();
    this.#timer = setInterval(() => this.#beat(), this.#o.intervalMs);
    this.#timer.unref();
  }

  #beat(leaving = false): Promise<unknown> {
    // One at a time: a slow Redis does not pile heartbeats up.
    this.#sending = this.#sending.then(async () => {
      try {
        const { scope, cluster, slots, pools } = await this.#o.view();
        const view: NodeProcesses = { scope, slots, pools, ...(cluster ? { cluster } : {}) };
        await this.#o.bus.bus.publish('node.seen', {
          node: this.node,
          pid: process.pid,
          intervalMs: this.#o.intervalMs,
          ...(leaving ? { leaving } : {}),
          view,
        });
        this.#errors.recovered('beat', 'sending the node heartbeat works again');
      } catch (err) {
        this.#errors.failure('beat', err, 'sending the node heartbeat failed');
      }
    });
    return this.#sending;
  }

  /**
   * Listens to the heartbeats while the returned function is not called (several watchers share one subscription).
   * It starts with what was sent in the last three intervals, so the panel is whole from its first snapshot.
   */
  watch(): () => void {
    if (this.#closed) return () => {};
    if (this.#watchers++ === 0) {
      const from = `${Date.now() - LOST_AFTER * this.#o.intervalMs}-0`;
      const sub = this.#o.bus.bus.subscribe(
        'node.seen',
        (beat, event) => {
          if (beat.leaving) {
            if (this.#seen.get(beat.node)?.beat.pid === beat.pid) this.#seen.delete(beat.node);
          } else this.#seen.set(beat.node, { beat, at: event.time });
        },
        // The machines scope keeps events: `from` is a stream id (ms-seq). Other scopes have one node only.
        this.#o.bus.scope === 'machines' ? { from } : {},
      );
      this.#off = () => sub.close();
    }
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      if (--this.#watchers === 0) {
        void this.#off?.();
        this.#off = undefined;
        this.#seen.clear();
      }
    };
  }

  /** The other nodes heard from, by name; a silent one as `lost` until it is forgotten. */
  others(now = Date.now()): NodeView[] {
    const out: NodeView[] = [];
    for (const [name, { beat, at }] of this.#seen) {
      if (name === this.node) continue;
      const silent = now - at;
      if (silent > FORGET_MS) {
        this.#seen.delete(name);
        continue;
      }
      const { scope, cluster, slots, pools } = beat.view;
      out.push({
        name,
        at,
        state: silent > LOST_AFTER * beat.intervalMs ? 'lost' : 'up',
        scope,
        slots,
        pools,
        ...(cluster ? { cluster } : {}),
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Stops the heartbeats and says this node leaves (when it sent them); ends the watching. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#timer) await this.#beat(true);
    this.#timer = undefined;
    await this.#off?.();
    this.#off = undefined;
  }
}
