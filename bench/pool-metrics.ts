/** The five pool measurements. Each one creates its own pool, is bounded in count and time, and closes the pool. */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { within } from './lib/harness.ts';
import { median, percentile } from './lib/stats.ts';
import { type Impl, type Runner, THREADS } from './pool-impls.ts';

export const TINY_TASKS = 100_000;
export const CPU_TASKS = 2_000;
export const CPU_TASK_MS = 1;
export const SEQ_TASKS = 5_000;
export const TRANSFER_BYTES = 64 * 1024 * 1024;
export const TRANSFER_TRIPS = 10;
const WARM_TASKS = 500;
const CLOSE_LIMIT_MS = 15_000;

/** Pools that did not close within the limit: their threads may have disturbed later measurements. */
export const closeProblems: string[] = [];

/**
 * Runs `body` on a fresh pool of `impl` within `limitMs`, then closes the pool whatever happened. A close that
 * fails or times out is recorded in {@link closeProblems}; it does not discard the measurement.
 */
async function withPool<T>(impl: Impl, limitMs: number, body: (r: Runner) => Promise<T>): Promise<T> {
  const runner = impl.create();
  try {
    return await within(body(runner), limitMs, `${impl.name}: measurement`);
  } finally {
    await within(runner.close(), CLOSE_LIMIT_MS, `${impl.name}: close`).catch((err: unknown) => {
      closeProblems.push(err instanceof Error ? err.message : String(err));
    });
  }
}

/** Starts every thread and gets the task path hot: tasks submitted at once, then a few one at a time. */
async function warm(r: Runner): Promise<void> {
  const all: Promise<number>[] = [];
  for (let i = 0; i < WARM_TASKS; i++) all.push(r.add(i, 1));
  await Promise.all(all);
  for (let i = 0; i < 50; i++) await r.add(i, 1);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`wrong result: ${what}`);
}

/** 1. Tasks per second for {@link TINY_TASKS} `add` tasks submitted at once. */
export function tinyTasks(impl: Impl): Promise<number> {
  return withPool(impl, 120_000, async (r) => {
    await warm(r);
    const all = new Array<Promise<number>>(TINY_TASKS);
    const t0 = performance.now();
    for (let i = 0; i < TINY_TASKS; i++) all[i] = r.add(i, 1);
    const results = await Promise.all(all);
    const ms = performance.now() - t0;
    check(results[TINY_TASKS - 1] === TINY_TASKS, 'add');
    return TINY_TASKS / (ms / 1000);
  });
}

export interface CpuSample {
  /** Ideal wall time over measured wall time, in %. */
  efficiency: number;
  wallMs: number;
}

/** 2. {@link CPU_TASKS} tasks each spinning {@link CPU_TASK_MS} ms, submitted at once, against the ideal time. */
export function cpuEfficiency(impl: Impl): Promise<CpuSample> {
  return withPool(impl, 60_000, async (r) => {
    await warm(r);
    await Promise.all(Array.from({ length: 4 * THREADS }, () => r.spin(CPU_TASK_MS)));
    const all = new Array<Promise<number>>(CPU_TASKS);
    const t0 = performance.now();
    for (let i = 0; i < CPU_TASKS; i++) all[i] = r.spin(CPU_TASK_MS);
    const turns = await Promise.all(all);
    const wallMs = performance.now() - t0;
    const bad = turns.find((n) => typeof n !== 'number' || !(n >= 0));
    check(bad === undefined, `spin returned ${String(bad)}`);
    const idealMs = (CPU_TASKS * CPU_TASK_MS) / THREADS;
    return { efficiency: (idealMs / wallMs) * 100, wallMs };
  });
}

/**
 * 2, ceiling. The same {@link CPU_TASKS} spins of {@link CPU_TASK_MS} ms split between {@link THREADS} threads that
 * each run their share back to back, told once and answering once: no pool, no message per task, the main thread idle.
 * Its efficiency is the most this machine gives the work, the ceiling the pools are read against.
 */
export async function cpuCeiling(): Promise<CpuSample> {
  const workers = Array.from(
    { length: THREADS },
    () => new Worker(new URL('./fixtures/ceiling-worker.ts', import.meta.url)),
  );
  const round = (count: number) =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise<number>((resolve, reject) => {
            w.once('message', resolve);
            w.once('error', reject);
            w.postMessage([count, CPU_TASK_MS]);
          }),
      ),
    );
  try {
    return await within(
      (async () => {
        await round(4);
        const t0 = performance.now();
        const turns = await round(CPU_TASKS / THREADS);
        const wallMs = performance.now() - t0;
        check(
          turns.every((n) => n > 0),
          'spin',
        );
        const idealMs = (CPU_TASKS * CPU_TASK_MS) / THREADS;
        return { efficiency: (idealMs / wallMs) * 100, wallMs };
      })(),
      60_000,
      'ceiling: measurement',
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export interface LatencySample {
  p50: number;
  p99: number;
}

/** 3. Round trip of {@link SEQ_TASKS} `add` tasks awaited one at a time, in µs. */
export function sequential(impl: Impl): Promise<LatencySample> {
  return withPool(impl, 60_000, async (r) => {
    await warm(r);
    for (let i = 0; i < WARM_TASKS; i++) await r.add(i, 1);
    const micros = new Array<number>(SEQ_TASKS);
    for (let i = 0; i < SEQ_TASKS; i++) {
      const t0 = performance.now();
      const sum = await r.add(i, 1);
      micros[i] = (performance.now() - t0) * 1000;
      if (sum !== i + 1) check(false, 'add');
    }
    return { p50: percentile(micros, 50), p99: percentile(micros, 99) };
  });
}

export interface TransferSample {
  /** Median round trip / 2, in ms. */
  msPerDirection: number;
  /** The caller's buffer was detached by the send. */
  movedIn: boolean;
  /** The thread's buffer was detached by returning it. */
  movedOut: boolean;
}

/** 4. A {@link TRANSFER_BYTES} `Uint8Array` sent to a task that returns it, each way moved where the pool can. */
export function transferBytes(impl: Impl): Promise<TransferSample> {
  return withPool(impl, 120_000, async (r) => {
    await warm(r);
    let bytes: Uint8Array = new Uint8Array(TRANSFER_BYTES);
    const trips: number[] = [];
    let movedIn = true;
    // Two unmeasured trips first, so the first allocation and page faults are not counted.
    for (let i = -2; i < TRANSFER_TRIPS; i++) {
      const mark = (i + 3) & 0xff;
      bytes[0] = mark;
      bytes[TRANSFER_BYTES - 1] = mark;
      const sent = bytes;
      const t0 = performance.now();
      const back = await r.echoBytes(sent);
      const ms = performance.now() - t0;
      check(back.byteLength === TRANSFER_BYTES && back[0] === mark && back.at(-1) === mark, 'echoBytes');
      movedIn &&= sent.byteLength === 0;
      if (i >= 0) trips.push(ms);
      bytes = back;
    }
    const movedOut = await r.lastDetached();
    return { msPerDirection: median(trips) / 2, movedIn, movedOut };
  });
}

/** 5. Ms from constructing a pool to the first result of a trivial task; the pool is closed after (not timed). */
export async function startup(impl: Impl): Promise<number> {
  const t0 = performance.now();
  let ms = Number.NaN;
  await withPool(impl, 30_000, async (r) => {
    check((await r.add(1, 2)) === 3, 'add');
    ms = performance.now() - t0;
  });
  return ms;
}
