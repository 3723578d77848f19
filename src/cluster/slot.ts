import type { Worker } from 'node:cluster';
import { Backoff, CrashWindow } from './backoff.ts';
import type { ResolvedSuperviseOptions } from './options.ts';
import type { WorkerStats } from './protocol.ts';

export type SlotState = 'starting' | 'ready' | 'draining' | 'backoff' | 'failed' | 'stopped';

/** What `status()` reports for one slot. */
export interface SlotStatus {
  index: number;
  pid: number | undefined;
  state: SlotState;
  /** Ms since the current worker started. */
  uptime: number;
  restarts: number;
  /** Why the last worker of this slot ended: `exit code 1`, `signal SIGKILL`, `hung 12034 ms`, ... */
  lastExit: string | undefined;
  stats: WorkerStats | undefined;
  /** A replacement under way (rolling reload, memory limit), step by step; absent otherwise. */
  replacement?: SlotReplacement;
}

/** A slot being replaced: its new worker starts; once that one is ready it takes the slot and the old one drains. */
export interface SlotReplacement {
  why: 'reload' | 'memory';
  step: 'starting' | 'draining';
  /** The new worker. */
  pid: number | undefined;
  /** The worker it replaces. */
  oldPid: number | undefined;
}

/** One worker position with a stable index: its current process, restart policy and last numbers. Internal. */
export class Slot {
  readonly index: number;
  readonly backoff: Backoff;
  readonly crashes: CrashWindow;
  worker: Worker | undefined = undefined;
  state: SlotState = 'starting';
  restarts = 0;
  startedAt = 0;
  lastExit: string | undefined = undefined;
  /** `performance.now()` of the last pong (or of the start). */
  lastPong = 0;
  stats: WorkerStats | undefined = undefined;
  restartTimer: NodeJS.Timeout | undefined = undefined;
  /** Its first crash since it was last stable was restarted without delay; the next ones back off. */
  restartedAtOnce = false;
  /** A replacement (reload, memory) is under way: no second one may start. */
  replacing = false;
  /** Its progress, for status(). */
  replacement: SlotReplacement | undefined = undefined;

  constructor(index: number, options: ResolvedSuperviseOptions) {
    this.index = index;
    this.backoff = new Backoff(options.backoff);
    this.crashes = new CrashWindow(options.crashLoop.max, options.crashLoop.windowMs);
  }

  status(now: number): SlotStatus {
    return {
      index: this.index,
      pid: this.worker?.process.pid,
      state: this.state,
      uptime: this.worker ? Math.round(now - this.startedAt) : 0,
      restarts: this.restarts,
      lastExit: this.lastExit,
      stats: this.stats,
      ...(this.replacement ? { replacement: { ...this.replacement } } : {}),
    };
  }
}

/** Describes how a worker ended, for logs and status. */
export function describeExit(code: number | null, signal: string | null): string {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}
