/**
 * What the dashboard page shows, as one JSON snapshot per tick, and the builders that make its process and pool
 * parts from a supervisor's merged metrics (`/metrics.json`) or from one process's own. The input shapes are
 * structural, so this module depends on no supervisor class: `weftjs/cluster` passes its `ClusterMetricsSnapshot`.
 */
import type { MetricsSnapshot } from '../metrics/index.ts';

/** One worker slot (or the one process, when nothing supervises it). Times in ms, sizes in bytes. */
export interface SlotView {
  index: number;
  pid: number | undefined;
  /** `starting`, `ready`, `draining`, `backoff`, `failed`, `stopped`. */
  state: string;
  uptimeMs: number;
  restarts: number;
  /** How the slot's previous worker ended (`signal SIGKILL`, `exit code 1`, ...). */
  lastExit?: string;
  rss?: number;
  heapUsed?: number;
  /** Event-loop delay p99 over the last window. */
  loopP99?: number;
  /** Event-loop utilization over the last window, 0..1. */
  elu?: number;
  /** CPU time of the process since it started (user + system, every thread): the page shows its rate. */
  cpuMs?: number;
  /** A replacement in progress (rolling reload, memory limit): its new worker and the step it is at. */
  replacement?: ReplacementView;
  /** Why there are no numbers for this slot (not ready, did not answer in time). */
  error?: string;
}

/** A slot being replaced: the new worker starts; once it is ready it takes the slot and the old one drains. */
export interface ReplacementView {
  why: string;
  step: 'starting' | 'draining';
  /** The new worker. */
  pid: number | undefined;
  /** The worker it replaces. */
  oldPid: number | undefined;
}

/** A rolling reload under way. */
export interface ReloadView {
  startedAt: string;
  /** Slots to replace, and how many are done. */
  total: number;
  replaced: number;
}

/** One `weftjs/pool` pool of one process. Counters are since the pool started; the page derives rates. */
export interface PoolView {
  slot: number;
  pid: number | undefined;
  name: string;
  busy: number;
  idle: number;
  queued: number;
  running: number;
  completed: number;
  failed: number;
  timedOut: number;
  crashed: number;
  /** 99th percentile of the wait before a task starts, and of its run time, since the pool started (ms). */
  waitP99: number;
  runP99: number;
}

/** Job counts and the latest failures, for an application with a job queue. */
export interface JobsView {
  /** By state: `queued`, `active`, `retrying`, `completed`, `dead`, ... */
  counts: Record<string, number>;
  failures: FailureView[];
  /** `POST` here with `:id` replaced retries a dead job; `auth` says it needs `Authorization: Bearer`. */
  retry?: { path: string; auth: boolean };
}

export interface FailureView {
  id: number;
  /** What the job worked on (a file name). */
  label: string;
  kind: string;
  error: string;
  code: string | null;
  attempts: number;
  /** When it failed, epoch ms. */
  at: number;
}

/** Webhook deliveries, for an application that sends webhooks (as jobs of its queue). */
export interface WebhooksView {
  /** Deliveries by state: `queued`, `active`, `retrying` (failed, will be tried again), `completed`, `dead`. */
  counts: Record<string, number>;
  /** The latest deliveries that failed, newest first: waiting for their next try, or dead (with their last error). */
  failures: (FailureView & { state: string })[];
}

/** Recent uploads, and where to upload, for an application that stores files. */
export interface FilesView {
  upload?: { path: string; auth: boolean; maxBytes: number };
  recent: FileView[];
  /** What each owner (a tenant) stores, with its quota when there is one: the page shows a usage table. */
  tenants?: TenantView[];
  /** The backends the service needs, with their circuit breaker's state (`closed` is up; `open`, `half-open`). */
  backends?: BackendView[];
}

/** What one owner (a tenant; null: files of none) stores. */
export interface TenantView {
  name: string | null;
  files: number;
  bytes: number;
  /** Bytes it may store; absent: no quota. */
  quota?: number;
}

export interface BackendView {
  name: string;
  state: string;
  up: boolean;
}

export interface FileView {
  id: string;
  name: string;
  type: string;
  size: number;
  createdAt: number;
  /** The state of its jobs taken together: `stored` (no job), `queued`, `active`, `retrying`, `completed`, `dead`. */
  state: string;
  url: string;
  thumbnail?: string;
  /** From upload to the last job done, ms, once every job completed. */
  processMs?: number;
  /** Whose it is (a tenant), for views that show each viewer its own: null for no one's. */
  owner?: string | null;
}

/** An application event since the last snapshot. */
export interface EventView {
  id: string;
  type: string;
  at: number;
  text: string;
  /** Whose file it is about (a tenant), for views that show each viewer its own: null for no one's. */
  owner?: string | null;
}

/**
 * Another node of the same service, as its last heartbeat described it (a service spanning machines keeps a node
 * registry: apps/files' nodes.ts): its processes and pools as its own page shows them.
 */
export interface NodeView {
  name: string;
  /** When its last heartbeat was sent, epoch ms. */
  at: number;
  /** `lost`: no heartbeat for three of its intervals (down, or cut off from the others). */
  state: 'up' | 'lost';
  scope: 'cluster' | 'process';
  cluster?: DashboardSnapshot['cluster'];
  slots: SlotView[];
  pools: PoolView[];
}

/** One snapshot of the page, sent as an SSE `snapshot` event. Times in ms (epoch for instants), sizes in bytes. */
export interface DashboardSnapshot {
  /** Format version. */
  v: 1;
  time: number;
  title: string;
  /** `cluster`: every worker of a supervisor, merged; `process`: this process alone (nothing supervises it). */
  scope: 'cluster' | 'process';
  cluster?: {
    name: string;
    pid: number;
    state: string;
    uptimeMs: number;
    reload?: ReloadView;
    lastReload?: { ok: boolean; replaced: number; reason?: string; at: string };
  };
  slots: SlotView[];
  pools: PoolView[];
  /** This node's name, when the service spans machines. */
  node?: string;
  /** The other nodes of the service, when it spans machines. */
  nodes?: NodeView[];
  jobs?: JobsView;
  webhooks?: WebhooksView;
  files?: FilesView;
  events?: EventView[];
  /** Parts that could not be read this tick, and why. */
  warnings?: string[];
}

/** The shape of the supervisor's `/metrics.json` (`ClusterMetricsSnapshot` of `weftjs/cluster`) that views read. */
export interface ClusterInput {
  time: number;
  supervisor: {
    name: string;
    pid: number;
    state: string;
    uptimeMs: number;
    lastReload?: { ok: boolean; replaced: number; reason?: string; at: string } | undefined;
    reload?: ReloadView | undefined;
  };
  slots: {
    index: number;
    pid: number | undefined;
    state: string;
    restarts: number;
    uptimeMs: number;
    lastExit?: string | undefined;
    replacement?: ReplacementView | undefined;
    metrics?: MetricsSnapshot;
    error?: string;
  }[];
}

/** The process numbers of a slot from its `weftjs/metrics` snapshot. */
function numbers(m: MetricsSnapshot | undefined): Partial<SlotView> {
  const p = m?.process;
  if (!p) return {};
  return {
    rss: p.memory.rss,
    heapUsed: p.memory.heapUsed,
    loopP99: p.eventLoop.delayP99,
    elu: p.eventLoop.utilization,
    cpuMs: p.cpu.userMs + p.cpu.systemMs,
  };
}

function pools(slot: number, m: MetricsSnapshot | undefined): PoolView[] {
  if (!m) return [];
  return Object.entries(m.pools).map(([name, s]) => ({
    slot,
    pid: m.pid,
    name,
    busy: s.threads.busy,
    idle: s.threads.idle,
    queued: s.queued,
    running: s.running,
    completed: s.completed,
    failed: s.failed,
    timedOut: s.timedOut,
    crashed: s.crashed,
    waitP99: s.waitTime.p99,
    runP99: s.runTime.p99,
  }));
}

/**
 * The process and pool parts of a snapshot from a supervisor's merged metrics.
 *
 * @example
 * ```ts
 * const view = clusterView(await supervisor.metricsSnapshot(), 'files');
 * ```
 */
export function clusterView(
  input: ClusterInput,
  title = input.supervisor.name,
): Pick<DashboardSnapshot, 'v' | 'time' | 'title' | 'scope' | 'cluster' | 'slots' | 'pools'> {
  const s = input.supervisor;
  return {
    v: 1,
    time: input.time,
    title,
    scope: 'cluster',
    cluster: {
      name: s.name,
      pid: s.pid,
      state: s.state,
      uptimeMs: s.uptimeMs,
      ...(s.reload ? { reload: s.reload } : {}),
      ...(s.lastReload ? { lastReload: s.lastReload } : {}),
    },
    slots: input.slots.map((x) => ({
      index: x.index,
      pid: x.pid,
      state: x.state,
      uptimeMs: x.uptimeMs,
      restarts: x.restarts,
      ...(x.lastExit ? { lastExit: x.lastExit } : {}),
      ...(x.replacement ? { replacement: x.replacement } : {}),
      ...numbers(x.metrics),
      ...(x.error && x.state === 'ready' ? { error: x.error } : {}),
    })),
    pools: input.slots.flatMap((x) => pools(x.index, x.metrics)),
  };
}

/**
 * The process and pool parts for a process nothing supervises: one slot, from its `weftjs/metrics` snapshot when it
 * has one, else from `process.memoryUsage()` and `process.cpuUsage()`.
 *
 * @example
 * ```ts
 * const view = processView('files', defaultMetrics().snapshot());
 * ```
 */
export function processView(
  title: string,
  metrics?: MetricsSnapshot,
): Pick<DashboardSnapshot, 'v' | 'time' | 'title' | 'scope' | 'slots' | 'pools'> {
  const cpu = process.cpuUsage();
  const own = metrics?.process
    ? numbers(metrics)
    : {
        rss: process.memoryUsage.rss(),
        cpuMs: (cpu.user + cpu.system) / 1000,
      };
  return {
    v: 1,
    time: Date.now(),
    title,
    scope: 'process',
    slots: [
      {
        index: 0,
        pid: process.pid,
        state: 'ready',
        uptimeMs: Math.round(process.uptime() * 1000),
        restarts: 0,
        ...own,
      },
    ],
    pools: pools(0, metrics),
  };
}
