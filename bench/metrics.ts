/**
 * The `metrics` benchmark area: what weft/metrics costs an idle service. Each subject is a child process (an idle
 * pool thread and a lifecycle) whose own CPU time (`process.cpuUsage()`, user + system, main thread and pool thread)
 * is measured over the same window: without metrics, with the collectors at a 1 s interval, and with them scraped
 * over HTTP every second. Subjects alternate within each round. Plus the time of one `metrics()` render and of the
 * supervisor's merge of eight workers' families, in this process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLifecycle } from 'weftjs/lifecycle';
import { createMetrics, type MetricFamily, MetricsMerger, renderFamilies } from 'weftjs/metrics';
import { Pool } from 'weftjs/pool';
import { type AreaOptions, alternate, within } from './lib/harness.ts';
import { fmt, median, table } from './lib/stats.ts';

/** Seconds of each measured window: `BENCH_METRICS_SECONDS`, default 20. */
const WINDOW_S = Number(process.env.BENCH_METRICS_SECONDS ?? 20);
/** Seconds a subject runs before its window opens (module loading, JIT, first GC). */
const SETTLE_S = 3;
const FIXTURE = new URL('./fixtures/metrics-subject.ts', import.meta.url).pathname;

type Mode = 'baseline' | 'collectors' | 'scraped';
interface Subject {
  name: string;
  mode: Mode;
  note: string;
}

const SUBJECTS: Subject[] = [
  { name: 'no metrics', mode: 'baseline', note: 'idle pool (1 thread) + lifecycle' },
  {
    name: 'collectors',
    mode: 'collectors',
    note: '+ `createMetrics({ interval: 1000 })`, pool and lifecycle added',
  },
  {
    name: 'collectors + scrape every 1 s',
    mode: 'scraped',
    note: '+ `serveMetrics()`, `GET /metrics` every second',
  },
];

/** CPU % of one core the subject used over the window. */
async function measure(subject: Subject): Promise<number> {
  const child = spawn(process.execPath, [FIXTURE, subject.mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    return await within(
      trial(child, subject.mode),
      (WINDOW_S + SETTLE_S + 20) * 1000,
      `${subject.name}: trial`,
    );
  } finally {
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }
}

async function trial(child: ChildProcess, mode: Mode): Promise<number> {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`the subject exited (code ${child.exitCode})`);
    return JSON.parse(value) as Record<string, number>;
  };
  const { ready: port } = await next();
  await sleep(SETTLE_S * 1000);
  child.stdin!.write('start\n');
  const opened = performance.now();
  for (let i = 1; i <= WINDOW_S; i++) {
    if (mode === 'scraped') {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
      if (res.status !== 200) throw new Error(`scrape answered ${res.status}`);
      await res.text();
    }
    await sleep(Math.max(0, opened + i * 1000 - performance.now()));
  }
  child.stdin!.write('stop\n');
  const { cpuMs, wallMs } = await next();
  return (cpuMs! / wallMs!) * 100;
}

/** Median ms of `fn` over `n` calls, after 20 warm-up calls. */
async function timeOf(n: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 20; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return median(samples);
}

async function renderCosts(): Promise<{ render: number; merge: number; families: number; series: number }> {
  const pool = new Pool<typeof import('./fixtures/weft-tasks.ts')>({
    filename: new URL('./fixtures/weft-tasks.ts', import.meta.url),
    maxThreads: 1,
  });
  const life = createLifecycle({ signals: [], handleErrors: false, exit: false });
  const metrics = createMetrics();
  try {
    metrics.addPool(pool, { name: 'bench' });
    metrics.addLifecycle(life);
    await Promise.all(Array.from({ length: 100 }, (_, i) => pool.run('add', [i, 1])));
    const render = await timeOf(200, () => metrics.metrics());
    const { families } = await metrics.collect();
    const merger = new MetricsMerger();
    const workers = Array.from({ length: 8 }, (_, w) => ({
      worker: w,
      pid: 1000 + w,
      families: families as MetricFamily[],
    }));
    const alive = new Set(workers.map((w) => w.pid));
    const merge = await timeOf(100, () => renderFamilies(merger.merge({ workers, alive })));
    return {
      render,
      merge,
      families: families.length,
      series: families.reduce((n, f) => n + f.values.length, 0),
    };
  } finally {
    metrics.close();
    await pool.close();
  }
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  log(`  ${SUBJECTS.length} subjects × ${rounds} rounds × ${WINDOW_S + SETTLE_S} s`);
  const series = await alternate(
    SUBJECTS,
    rounds,
    async (s) => {
      const pct = await measure(s);
      log(`  ${s.name}: ${pct.toFixed(3)} % of one core`);
      return pct;
    },
    log,
  );
  const base = median(series.get(SUBJECTS[0]!)?.samples ?? []);
  const rows = SUBJECTS.map((s) => {
    const { samples, error } = series.get(s)!;
    const m = median(samples);
    return [
      s.name,
      s.note,
      error ? `failed: ${error}` : `${m.toFixed(3)} %`,
      s.mode === 'baseline' || error ? '—' : `${(m - base).toFixed(3)} pp`,
      samples.map((x) => x.toFixed(3)).join(', '),
    ];
  });
  const costs = await renderCosts();
  log(`  metrics(): ${fmt(costs.render)} ms; merge + render of 8 workers: ${fmt(costs.merge)} ms`);
  return [
    `CPU time of an idle service process (main thread and its one pool thread) over a ${WINDOW_S} s window, as % of one core; median of ${rounds} rounds, subjects alternating. The target is an overhead under 1 % of one core at a 1 s interval.`,
    '',
    table(['subject', 'what runs', 'CPU (median)', 'overhead vs no metrics', 'rounds'], rows),
    '',
    `One \`metrics()\` render of that process (${costs.families} families, ${costs.series} series, pool and lifecycle added): median ${fmt(costs.render)} ms. The supervisor's merge and render of eight such workers (\`MetricsMerger.merge\` + \`renderFamilies\`, IPC not included): median ${fmt(costs.merge)} ms.`,
  ].join('\n');
}
