/**
 * The `cluster` benchmark area: a keep-alive HTTP service with a 5 ms async handler under autocannon (50
 * connections, loopback), run as one process, raw node:cluster with 2 workers, PM2 cluster mode with 2, and weft
 * with 2. (a) throughput; (b) two rolling reloads during a 20 s load, `pm2 reload` against `weft reload`; (c)
 * kill -9 of a worker: time until a new process serves; (d) the zero-loss matrix of test/cluster/zero-loss.test.ts
 * (cluster-loss.ts) against weft, PM2 and raw node:cluster. (a)-(c) run every implementation for the whole area;
 * within each round the measurements alternate in rotated order.
 */
import { createRequire } from 'node:module';
import {
  APPS,
  EVENTS,
  isReload,
  key,
  lossesByClient,
  type Matrix,
  runMatrix,
  total,
} from './cluster-loss.ts';
import {
  type Impl,
  pm2,
  pm2Version,
  probe,
  type Running,
  rawCluster,
  single,
  weft,
} from './cluster-subjects.ts';
import { type AreaOptions, alternate, countFromEnv, type Series, within } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';
import { type ConnRecord, startLoad } from './lifecycle-client.ts';

const CONNECTIONS = 50;
const WARMUP_S = 2;
const THROUGHPUT_S = 10;
const RELOAD_LOAD_S = 20;
/** Throughput target: weft ≥ 97 % of raw node:cluster. */
const TARGET_RATIO = 0.97;
/** kill -9 target: weft's time until a new worker serves ≤ 1.2 × raw node:cluster's. */
const KILL_TARGET = 1.2;

/**
 * kill -9 samples per implementation and round (c): `BENCH_CLUSTER_KILLS`, default 3. One restart takes about 200 ms
 * and single samples of it differ by a third from one fresh start to the next, so three rounds of one sample each
 * leave the median to chance.
 */
const killsPerRound = () => countFromEnv('BENCH_CLUSTER_KILLS', 3);

/** Rounds of the zero-loss matrix (d): `BENCH_CLUSTER_LOSS_ROUNDS`, default 1 (each cell is a fresh start). */
const lossRounds = () => countFromEnv('BENCH_CLUSTER_LOSS_ROUNDS', 1);

interface AcSummary {
  requests: { average: number };
  errors: number;
  non2xx: number;
  timeouts: number;
}
const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (opts: object) => Promise<AcSummary>;

function cannon(port: number, seconds: number): Promise<AcSummary> {
  return within(
    autocannon({
      url: `http://127.0.0.1:${port}/`,
      connections: CONNECTIONS,
      duration: seconds,
      pipelining: 1,
    }),
    (seconds + 30) * 1000,
    'autocannon',
  );
}

interface Subject {
  name: string;
  impl: Impl;
}

interface ReloadSample {
  completed: number;
  non2xx: number;
  errors: number;
  resets: number;
  maxLatencyMs: number;
  reloadMs: number[];
}

const resetsOf = (conns: ConnRecord[]) =>
  conns.filter((c) => c.how === 'ECONNRESET' || c.later.includes('ECONNRESET')).length;

/** Two reloads during a 20 s load: at 4 s, and the second 2 s after the first returns (not before 11 s). */
async function reloadUnderLoad(r: Running): Promise<ReloadSample> {
  const load = startLoad({
    url: `http://127.0.0.1:${r.port}/`,
    connections: CONNECTIONS,
    maxSeconds: RELOAD_LOAD_S + 30,
    mode: 'stock',
    stagger: 0,
  });
  const at = (ms: number) =>
    new Promise((res) => setTimeout(res, Math.max(0, ms - (Date.now() - load.started))));
  const reloadMs: number[] = [];
  const timed = async () => {
    const t = performance.now();
    await within(r.reload!(), 60_000, 'reload');
    reloadMs.push(performance.now() - t);
  };
  try {
    await at(4_000);
    await timed();
    await at(Math.max(11_000, Date.now() - load.started + 2_000));
    await timed();
    await at(RELOAD_LOAD_S * 1000);
  } catch (err) {
    await load.stop();
    throw err;
  }
  const result = (await load.stop()) as Awaited<ReturnType<typeof load.stop>> & { latency: { max: number } };
  return {
    completed: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    resets: resetsOf(load.conns),
    maxLatencyMs: result.latency.max,
    reloadMs,
  };
}

/**
 * kill -9 of one worker; ms until a process that was not serving before answers. Probes go out every 10 ms on fresh
 * connections without waiting for each other: one that node:cluster hands to the dead worker before it notices the
 * death would otherwise hold the next ones back.
 */
async function killAndWait(r: Running, round: number): Promise<number> {
  const before = new Set<number>();
  for (let i = 0; before.size < 2 && i < 200; i++) {
    const body = await probe(r.port);
    if (body) before.add(Number(body));
  }
  const victim = [...before].sort((a, b) => a - b)[round % before.size]!;
  let timer: NodeJS.Timeout | undefined;
  const t = performance.now();
  process.kill(victim, 'SIGKILL');
  const served = new Promise<number>((resolve) => {
    timer = setInterval(() => {
      void probe(r.port, '/pid', 2_000).then((body) => {
        if (body && !before.has(Number(body))) resolve(performance.now() - t);
      });
    }, 10);
  });
  try {
    return await within(served, 60_000, 'a new worker to serve');
  } finally {
    clearInterval(timer);
  }
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const { throughput, reloads } = await shared(rounds, log);
  const { kills, repeats } = await crashes(rounds, log);
  log('  (d) zero-loss matrix');
  const matrix = await runMatrix(lossRounds(), log);
  return report(throughput, reloads, kills, repeats, rounds, matrix);
}

/**
 * (c) kill -9, each sample on a fresh start of the implementation, so that every sample is a lone crash (the case the
 * target is about); then, for weft, the same slot again at once: a repeated crash, which waits for its backoff.
 */
async function crashes(rounds: number, log: (line: string) => void) {
  log('  (c) kill -9 of a worker, each sample on a fresh start');
  const repeats: number[] = [];
  const subjects: Subject[] = [rawCluster, pm2, weft].map((impl) => ({ name: impl.name, impl }));
  // Each implementation's samples alternate with the others': rounds × killsPerRound() turns of all three.
  const kills = await alternate(
    subjects,
    rounds * killsPerRound(),
    async (s) => {
      const r = await s.impl.start();
      try {
        // The start's own work (compiling, the first requests) is over before the kill.
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        const ms = await killAndWait(r, 0);
        log(`    ${s.name}: serving again after ${fmt(ms)} ms`);
        if (s.impl === weft) {
          // The replacement has the highest pid: its slot crashes again within stableAfter.
          const again = await killAndWait(r, 1);
          repeats.push(again);
          log(`    ${s.name}: the same slot again at once: serving after ${fmt(again)} ms`);
        }
        return ms;
      } finally {
        await r.stop();
      }
    },
    log,
  );
  return { kills, repeats };
}

/** Pause after a fresh start before a kill, ms. */
const SETTLE_MS = 1_000;

/** (a) and (b), on one long-running instance of each implementation. */
async function shared(rounds: number, log: (line: string) => void) {
  const impls = [single, rawCluster, pm2, weft];
  const running = new Map<Impl, Running>();
  try {
    for (const impl of impls) {
      log(`  starting ${impl.name}`);
      running.set(impl, await impl.start());
    }
    const subjects: Subject[] = impls.map((impl) => ({ name: impl.name, impl }));

    log('  (a) throughput');
    const throughput = await alternate(
      subjects,
      rounds,
      async (s) => {
        const r = running.get(s.impl)!;
        await cannon(r.port, WARMUP_S);
        const res = await cannon(r.port, THROUGHPUT_S);
        log(`    ${s.name}: ${fmt(res.requests.average)} req/s, errors ${res.errors}, non-2xx ${res.non2xx}`);
        if (res.errors + res.non2xx + res.timeouts > 0)
          throw new Error(`${s.name}: failed requests under load`);
        return res.requests.average;
      },
      log,
    );

    log('  (b) two reloads under load');
    const reloads = await alternate(
      subjects.filter((s) => s.impl === pm2 || s.impl === weft),
      rounds,
      async (s) => {
        const sample = await reloadUnderLoad(running.get(s.impl)!);
        log(
          `    ${s.name}: ${sample.completed} ok, non-2xx ${sample.non2xx}, errors ${sample.errors}, resets ${sample.resets}, max ${sample.maxLatencyMs} ms, reloads ${sample.reloadMs.map((m) => fmt(m)).join(' / ')} ms`,
        );
        return sample;
      },
      log,
    );

    return { throughput, reloads };
  } finally {
    for (const [impl, r] of running) {
      log(`  stopping ${impl.name}`);
      await r.stop();
    }
  }
}

function series<S>(s: Series<S> | undefined, cell: (samples: S[]) => string): string {
  if (!s) return '—';
  if (s.error !== undefined) return `failed: ${s.error}`;
  return cell(s.samples);
}

function report(
  throughput: Map<Subject, Series<number>>,
  reloads: Map<Subject, Series<ReloadSample>>,
  kills: Map<Subject, Series<number>>,
  repeats: number[],
  rounds: number,
  matrix: Matrix,
): string {
  const byImpl = <S>(m: Map<Subject, Series<S>>, impl: Impl) => [...m].find(([s]) => s.impl === impl)?.[1];
  const med = (impl: Impl) => median(byImpl(throughput, impl)?.samples ?? []);
  const raw = med(rawCluster);
  const weftRate = med(weft);
  const ratio = weftRate / raw;

  const a = table(
    ['Implementation', 'req/s (median)', 'per round', '÷ raw node:cluster'],
    [single, rawCluster, pm2, weft].map((impl) => [
      impl === weft ? `**${impl.name}**` : impl.name,
      fmt(med(impl)),
      series(byImpl(throughput, impl), (x) => x.map((v) => fmt(v)).join(', ')),
      times(med(impl) / raw),
    ]),
  );

  const medOf = (impl: Impl, f: (s: ReloadSample) => number) =>
    median((byImpl(reloads, impl)?.samples ?? []).map(f));
  const b = table(
    [
      'Implementation',
      'completed (median)',
      'non-2xx',
      'errors',
      'connections reset',
      'max latency ms',
      'reload command ms',
      'per round (ok / errors / resets)',
    ],
    [pm2, weft].map((impl) => [
      impl === weft ? `**${impl.name}**` : impl.name,
      fmt(medOf(impl, (s) => s.completed)),
      fmt(medOf(impl, (s) => s.non2xx)),
      fmt(medOf(impl, (s) => s.errors)),
      fmt(medOf(impl, (s) => s.resets)),
      fmt(medOf(impl, (s) => s.maxLatencyMs)),
      fmt(median((byImpl(reloads, impl)?.samples ?? []).flatMap((s) => s.reloadMs))),
      series(byImpl(reloads, impl), (x) =>
        x.map((s) => `${s.completed} / ${s.errors} / ${s.resets}`).join('; '),
      ),
    ]),
  );
  const weftReloads = byImpl(reloads, weft)?.samples ?? [];
  const cleanReloads =
    weftReloads.length > 0 && weftReloads.every((s) => s.non2xx === 0 && s.errors === 0 && s.resets === 0);

  const killMed = (impl: Impl) => median(byImpl(kills, impl)?.samples ?? []);
  const killRatio = killMed(weft) / killMed(rawCluster);
  const c = table(
    ['Implementation', 'ms until a new worker serves (median)', 'samples, in order', '÷ raw node:cluster'],
    [rawCluster, pm2, weft].map((impl) => [
      impl === weft ? `**${impl.name}**` : impl.name,
      fmt(killMed(impl)),
      series(byImpl(kills, impl), (x) => x.map((v) => fmt(v)).join(', ')),
      times(killMed(impl) / killMed(rawCluster)),
    ]),
  );
  const d = matrixReport(matrix);

  const status = (ok: boolean) => (ok ? '**met**' : '**not met**');
  return `A node:http service with keep-alive and a 5 ms async handler (\`bench/fixtures/cluster-app.mjs\`), loaded by autocannon with ${CONNECTIONS} connections on loopback; autocannon shares the 2 cores with the service. For (a) and (b) every implementation runs for the whole area on its own port ((c) and (d) start it afresh for each sample); each round measures them in rotated order; ${rounds} rounds, medians. weft runs from \`dist/\` (\`weft start --workers 2\`, the app drained by \`weft/lifecycle\`); PM2 ${pm2Version()} runs \`pm2 start -i 2 --wait-ready\` with the app written to its documented graceful pattern (\`process.send('ready')\` once listening; \`server.close()\` then exit on SIGINT); raw node:cluster forks 2 workers and re-forks on exit.

### Targets

| Metric | Target | weft (median) | Status |
| --- | --- | --- | --- |
| Throughput | ≥ ${TARGET_RATIO * 100} % of raw node:cluster | ${fmt(weftRate)} req/s = ${(ratio * 100).toFixed(1)} % | ${status(ratio >= TARGET_RATIO)} |
| Two reloads under load | 0 failed requests, 0 connection resets | ${weftReloads.map((s) => `${s.non2xx + s.errors} failed, ${s.resets} resets`).join('; ')} | ${status(cleanReloads)} |
| kill -9 of a worker until a new one serves | ≤ ${KILL_TARGET}× raw node:cluster | ${fmt(killMed(weft))} ms = ${times(killRatio)} | ${status(killRatio <= KILL_TARGET)} |
| Zero-loss matrix (d) | 0 resets, 0 failed in every cell; 0 refused in reloads | ${d.weftSummary} | ${status(d.weftClean)} |

### (a) Throughput

${THROUGHPUT_S} s of load after a ${WARMUP_S} s warm-up. Higher is better.

${a}

### (b) Two rolling reloads during a ${RELOAD_LOAD_S} s load

\`pm2 reload bench\` against \`weft reload --name bench\`, the first at 4 s, the second 2 s after the first returned (not before 11 s). autocannon as it is ("stock": it writes its next request on a connection whose last response said \`Connection: close\`); a connection counts as reset when the client saw ECONNRESET on it. Completed = 2xx responses over the whole load.

${b}

### (c) kill -9 of a worker

${byImpl(kills, weft)?.samples.length ?? 0} samples per implementation (${killsPerRound()} per round, \`BENCH_CLUSTER_KILLS\`), the implementations taking turns in a rotated order. Each sample starts the implementation afresh (2 workers), waits ${SETTLE_MS / 1000} s, sends SIGKILL to one worker, then a request on a fresh connection every 10 ms (not waiting for each other) until a process that was not serving before answers; then stops it. So every sample is a lone crash. Raw node:cluster and PM2 re-fork at once, and so does weft for the first crash of a slot.

${c}

A repeated crash is another case, by design: weft restarts a slot that crashes again less than \`stableAfter\` (30 s) after its restart only after a backoff (100 ms, doubling, plus up to 20 % jitter), so that a crash loop cannot become a fork storm. Killing the replacement again at once, in the same runs: ${repeats.map((v) => fmt(v)).join(', ')} ms (median ${fmt(median(repeats))} ms).

### (d) Zero-loss matrix: reloads and stops under load, weft against PM2 and raw node:cluster

${d.markdown}
`;
}

/** The markdown of (d), and whether every weft cell was clean. */
function matrixReport(m: Matrix): { markdown: string; weftSummary: string; weftClean: boolean } {
  const [weftImpl, pm2Impl, rawImpl] = m.impls as [
    (typeof m.impls)[0],
    (typeof m.impls)[0],
    (typeof m.impls)[0],
  ];
  const order = [weftImpl, pm2Impl, rawImpl];
  let weftCells = 0;
  let weftDirty = 0;
  let rounds = 0;
  const notes: string[] = [];
  const rows = APPS.flatMap((app) =>
    EVENTS.map((event) => [
      app.name,
      event,
      ...order.map((impl) => {
        const cell = m.cells.get(key(impl, app, event));
        if (!cell || cell.error !== undefined || !cell.counts) return `failed: ${cell?.error ?? 'not run'}`;
        rounds = Math.max(rounds, cell.rounds);
        const t = total(cell.counts);
        const dirty = t.resets + t.failed + t.other > 0 || (isReload(event) && t.refused > 0);
        if (impl === weftImpl) {
          weftCells++;
          if (dirty) weftDirty++;
        }
        const where = lossesByClient(cell.counts);
        if (where) notes.push(`- ${impl.name}, ${app.name}, ${event}: ${where}`);
        const other = t.other > 0 ? ` (+${fmt(t.other)} other)` : '';
        const text = `${fmt(t.resets)} / ${fmt(t.failed)} / ${fmt(t.refused)} / ${fmt(t.ok)}${other}`;
        return dirty ? `**${text}**` : text;
      }),
    ]),
  );
  const weftErrors = APPS.length * EVENTS.length - weftCells;
  const weftClean = weftCells > 0 && weftDirty === 0 && weftErrors === 0;
  const weftSummary = `${weftCells - weftDirty} of ${APPS.length * EVENTS.length} cells clean${weftErrors ? `, ${weftErrors} failed to run` : ''}`;
  const markdown = `The matrix of \`test/cluster/zero-loss.test.ts\`, with its load generator (\`test/cluster/load.ts\`, imported, so the counting is the same): three clients at once — node:http with a keep-alive Agent, undici (\`fetch\`) and stock autocannon — 8 connections each, requests back to back on \`/?ms=5\`. Every cell starts the implementation afresh on 2 workers, waits until 2 workers answer and every client has 20 answers, runs the event, waits for the implementation to exit after a stop, and keeps the load on for 1 s more. ${rounds} round${rounds === 1 ? '' : 's'} (\`BENCH_CLUSTER_LOSS_ROUNDS\`); within each cell the implementations take turns, in a rotated order from cell to cell; counts are totals over the three clients${rounds > 1 ? ' and the rounds' : ''}. Each implementation gives a worker 10 s to drain before it kills it.

Apps (the three of the test): **weft/lifecycle** = \`bench/fixtures/cluster-app.mjs\` with \`BENCH_MODE=weft\` (drained by \`weft/lifecycle\`, which works in any process, so it runs under all three); **no Weft code** = \`test/cluster/fixtures/plain-app.mjs\` (bare node:http, no signal handling); **fastify** = \`test/cluster/fixtures/fastify-app.mjs\` (fastify 5, no signal handling).

What each event is, per implementation:

| Event | weft | ${pm2Impl.name} | raw node:cluster |
| --- | --- | --- | --- |
| reload | \`weft reload --name bench\` (returns when done) | \`pm2 reload bench\` (returns when done; no \`--wait-ready\`: PM2 counts a new worker up at its \`listening\`) | SIGHUP to the primary (\`bench/fixtures/cluster-raw.mjs\`), which forks a new worker, waits for its \`listening\`, then \`worker.disconnect()\`s the old one and \`worker.kill()\`s it if it is still there 2 s later (the Node docs' pattern), one worker at a time; the event returns when the primary prints \`reloaded\` |
| stop | \`weft stop --name bench\`; then wait for \`weft start\` to exit | \`pm2 stop bench\` (SIGINT to each worker, SIGKILL after \`--kill-timeout 10000\`; the daemon stays up) | SIGTERM to the primary only, which retires every worker as on reload, then exits |
| SIGINT / SIGTERM to group | the signal to the process group of \`weft start\` (supervisor and workers), as a terminal's Ctrl-C or a container runtime does | the signal to the PM2 daemon's process group (the daemon runs detached in a session of its own; its workers are in its group): the daemon's graceful exit stops the apps, and each worker gets the signal itself as well | the signal to the primary's process group: the primary retires its workers as on stop; each worker gets the signal itself as well |

Each cell: **resets / failed / refused / ok**, totals over the three clients. A reset (ECONNRESET, EPIPE, socket hang up, undici's "other side closed") is a request lost on a live connection; failed is a non-2xx answer; refused (ECONNREFUSED) is expected after a stop, when nobody listens, but is a loss during a reload. **Bold**: a cell with a loss. ok counts depend on how long the event took, not only on throughput.

${table(['App', 'Event', `**${weftImpl.name}**`, pm2Impl.name, rawImpl.name], rows)}

Losses by client:

${notes.length ? notes.join('\n') : '- none'}
`;
  return { markdown, weftSummary, weftClean };
}
