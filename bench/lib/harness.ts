/** Runs measurements in alternating rounds with a time limit on each one. */
import type { ChildProcess } from 'node:child_process';

/** What `bench/run.ts` passes to an area's `run`. */
export interface AreaOptions {
  rounds: number;
  /** Progress lines, to stderr; the area's markdown is its return value. */
  log: (line: string) => void;
}

/** A positive integer from the environment variable `name`, or `fallback` when it is unset or empty. */
export function countFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** Rounds per metric: `BENCH_ROUNDS`, default 3. */
export function roundsFromEnv(): number {
  return countFromEnv('BENCH_ROUNDS', 3);
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Resolves like `promise`, or rejects with {@link TimeoutError} after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** `items` rotated left by `by`, so each round starts with a different one. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** The samples of one subject over all rounds, or the error that stopped it. */
export interface Series<S> {
  samples: S[];
  error?: string;
}

/**
 * Measures every subject once per round, in rotated order each round. A subject that fails or times out is
 * skipped in later rounds and keeps its error.
 */
export async function alternate<T extends { name: string }, S>(
  subjects: readonly T[],
  rounds: number,
  measure: (subject: T) => Promise<S>,
  log: (line: string) => void,
): Promise<Map<T, Series<S>>> {
  const series = new Map<T, Series<S>>(subjects.map((s) => [s, { samples: [] }]));
  for (let round = 0; round < rounds; round++) {
    for (const subject of rotate(subjects, round)) {
      const entry = series.get(subject)!;
      if (entry.error !== undefined) continue;
      try {
        entry.samples.push(await measure(subject));
      } catch (err) {
        entry.error = err instanceof Error ? err.message : String(err);
        log(`  ${subject.name}: failed: ${entry.error}`);
      }
    }
  }
  return series;
}

/** Process groups of the children the benchmark started `detached` (leader pids), while their leader runs. */
const groups = new Set<number>();
/** Whether the exit and signal handlers that end {@link groups} are in place. */
let installed = false;

/**
 * Makes `child`, spawned `detached` (a process group of its own, so that a benchmark can signal the group: a
 * supervisor and its workers), end with the benchmark: a detached group gets no Ctrl-C from the terminal, and would
 * otherwise outlive a benchmark stopped by Ctrl-C, a `kill` or an error, holding its ports and cores. On SIGINT,
 * SIGTERM or SIGHUP the benchmark sends SIGTERM to every such group still running and exits (128 + the signal's
 * number); on any other exit it sends them SIGTERM as it goes. Call it right after `spawn`.
 */
export function ownGroup(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (!installed) install();
  groups.add(pid);
  child.once('exit', () => groups.delete(pid));
}

function endGroups(): void {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {}
  }
  groups.clear();
}

function install(): void {
  installed = true;
  process.once('exit', endGroups);
  for (const [signal, n] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(
        `\n# ${signal}: ending the ${groups.size} process group(s) this benchmark started\n`,
      );
      endGroups();
      process.exit(128 + n);
    });
  }
}
