/** The process collectors: event-loop delay and utilization, memory, CPU, GC pauses, active resources. Internal. */
import {
  constants,
  type EventLoopUtilization,
  monitorEventLoopDelay,
  PerformanceObserver,
  performance,
} from 'node:perf_hooks';
import type { EventLoopSnapshot, GcSnapshot, ProcessSnapshot } from './types.ts';

const GC_KINDS: Readonly<Record<number, string>> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * Samples the event loop in fixed windows of `interval` ms on one unref'd timer, so every reader (a Prometheus
 * scrape, `weft status`, a dashboard) sees the same last complete window whatever its own rhythm; memory, CPU and
 * active resources are read when asked; GC pauses arrive from a PerformanceObserver as they happen.
 */
export class ProcessCollector {
  readonly #resolution: number;
  readonly #histogram: ReturnType<typeof monitorEventLoopDelay>;
  readonly #timer: NodeJS.Timeout;
  readonly #observer: PerformanceObserver;
  readonly #gc = new Map<string, GcSnapshot>();
  #elu: EventLoopUtilization;
  #windowStart: number;
  #last: EventLoopSnapshot | undefined;
  #probe: NodeJS.Timeout | undefined;
  #due = 0;
  #probeLag = 0;

  /** `onGc` gets each pause (kind, seconds) as it is observed. */
  constructor(interval: number, resolution: number, onGc: (kind: string, seconds: number) => void) {
    this.#resolution = resolution;
    this.#histogram = monitorEventLoopDelay({ resolution });
    this.#histogram.enable();
    this.#elu = performance.eventLoopUtilization();
    this.#windowStart = performance.now();
    this.#arm();
    this.#timer = setInterval(() => this.#roll(), interval).unref();
    this.#observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
        const ms = entry.duration;
        const g = this.#gc.get(kind) ?? { count: 0, totalMs: 0, maxMs: 0 };
        this.#gc.set(kind, { count: g.count + 1, totalMs: g.totalMs + ms, maxMs: Math.max(g.maxMs, ms) });
        onGc(kind, ms / 1000);
      }
    });
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  read(): ProcessSnapshot {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const activeResources: Record<string, number> = {};
    for (const type of process.getActiveResourcesInfo())
      activeResources[type] = (activeResources[type] ?? 0) + 1;
    const gc: Record<string, GcSnapshot> = {};
    for (const [kind, g] of this.#gc) gc[kind] = { ...g };
    return {
      uptimeMs: process.uptime() * 1000,
      // Before the first window has closed, the one in progress.
      eventLoop: this.#last ?? this.#window(),
      memory: {
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        heapTotal: mem.heapTotal,
        external: mem.external,
        arrayBuffers: mem.arrayBuffers,
      },
      cpu: { userMs: cpu.user / 1000, systemMs: cpu.system / 1000 },
      gc,
      activeResources,
    };
  }

  /** Stops the timer, the delay monitor and the GC observer. Idempotent. */
  close(): void {
    clearInterval(this.#timer);
    clearTimeout(this.#probe);
    this.#histogram.disable();
    this.#observer.disconnect();
  }

  #roll(): void {
    this.#last = this.#window();
    this.#histogram.reset();
    this.#elu = performance.eventLoopUtilization();
    this.#windowStart = performance.now();
    this.#arm();
  }

  /**
   * The histogram records the time between two of its timer's ticks, and `reset()` (like `enable()`) forgets the
   * previous tick, so the first tick after it records nothing: a block starting before that tick would be lost (as
   * src/lifecycle/shed.ts found on Node 24). A one-shot probe due one resolution after each reset fires late by about
   * as much as such a block lasted; its lateness joins the maximum.
   */
  #arm(): void {
    clearTimeout(this.#probe);
    this.#probeLag = 0;
    this.#due = performance.now() + this.#resolution;
    this.#probe = setTimeout(() => {
      this.#probe = undefined;
      this.#probeLag = Math.max(0, performance.now() - this.#due);
    }, this.#resolution).unref();
  }

  #window(): EventLoopSnapshot {
    const h = this.#histogram;
    // Each recorded value is a whole tick of the monitor's timer: its resolution is not delay.
    const delay = (ns: number) => (h.count > 0 ? Math.max(0, ns / 1e6 - this.#resolution) : 0);
    return {
      delayP50: delay(h.percentile(50)),
      delayP99: delay(h.percentile(99)),
      delayMax: Math.max(delay(h.max), this.#probeLag, this.#probe ? performance.now() - this.#due : 0),
      delayMean: delay(h.mean),
      utilization: performance.eventLoopUtilization(this.#elu).utilization,
      intervalMs: performance.now() - this.#windowStart,
    };
  }
}
