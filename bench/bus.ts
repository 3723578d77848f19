/**
 * The `bus` benchmark area: weftjs/bus in each scope against the floor of that scope, measured in the same run with
 * the subjects alternating within each round. Events/s and publish → handler latency (a timestamp in the payload).
 *
 * - process: `bus.emit` and `await bus.publish` against node:events' `EventEmitter.emit`, in this process;
 * - cluster: `weft start --workers 2` with `clusterTransport()` against a bare node:cluster primary relaying
 *   `process.send` messages (bus-cluster.ts);
 * - machines: `redisTransport()` against hand-written ioredis XADD + XREADGROUP/XACK (and XREAD for fan-out)
 *   (bus-redis.ts); skipped, with the reason printed, when Redis does not answer.
 */
import { type ClusterSubject, type RunResult, startCluster } from './bus-cluster.ts';
import { PROCESS_SUBJECTS, sample } from './bus-process.ts';
import {
  REDIS_SUBJECTS,
  REDIS_URL,
  type RedisSubject,
  RedisWorld,
  redisUnreachable,
  type Started,
} from './bus-redis.ts';
import { type AreaOptions, alternate, type Series } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';

/** Process scope: events per throughput sample, and timed events per latency sample. */
const PROCESS_EVENTS = 5_000_000;
const PROCESS_TIMED = 200_000;
/** Cluster scope: events per throughput run, with at most WINDOW unhandled (credited every ACK_EVERY). */
const CLUSTER_EVENTS = 100_000;
const CLUSTER_TIMED = 3_000;
/** Machines scope: events per throughput run (same window). */
const REDIS_EVENTS = 30_000;
const REDIS_TIMED = 2_000;
const WINDOW = 1_000;
const ACK_EVERY = 100;

type Kind = 'ours' | 'floor' | 'info';
interface Row {
  scope: string;
  name: string;
  kind: Kind;
  /** Ours ÷ floor of events/s must be at least this. */
  goal?: number;
  series: Series<RunResult> | undefined;
  skipped?: string;
}

// ---- process scope ----------------------------------------------------------------------------------------------

async function processScope(rounds: number, log: (line: string) => void): Promise<Row[]> {
  log(
    `  process: ${PROCESS_EVENTS.toLocaleString('en-US')} events per sample, each in a process of its own, after a warm-up`,
  );
  const subjects = PROCESS_SUBJECTS.map((s, index) => ({ ...s, index }));
  const series = await alternate(
    subjects,
    rounds,
    async (s) => {
      const r = await sample(s.index, PROCESS_EVENTS, PROCESS_TIMED);
      log(`    ${s.name}: ${fmt(r.rate)} events/s, p99 ${fmt(r.p99 * 1000)} µs`);
      return r;
    },
    log,
  );
  return subjects.map((s) => ({ scope: 'process', ...pick(s), series: series.get(s) }));
}

// ---- cluster scope ----------------------------------------------------------------------------------------------

interface ClusterRow {
  name: string;
  kind: Kind;
  goal?: number;
  mode: 'weft' | 'raw';
}
const CLUSTER_SUBJECTS: ClusterRow[] = [
  { name: 'raw node:cluster primary relaying `process.send`', kind: 'floor', mode: 'raw' },
  {
    name: 'weftjs/bus `clusterTransport()` under `weft start`',
    kind: 'ours',
    goal: 0.8,
    mode: 'weft',
  },
];

async function clusterScope(rounds: number, log: (line: string) => void): Promise<Row[]> {
  const running = new Map<ClusterRow, ClusterSubject>();
  try {
    for (const s of CLUSTER_SUBJECTS) {
      log(`  cluster: starting ${s.name}`);
      const c = await startCluster(s.mode);
      running.set(s, c);
      // Warm-up: the JIT of three processes (the rate still climbs over the first 100 000 events or so).
      for (let i = 0; i < 3; i++) await c.run(CLUSTER_EVENTS / 2, WINDOW, ACK_EVERY);
      await c.run(CLUSTER_TIMED / 5, 1, 1);
    }
    const series = await alternate(
      CLUSTER_SUBJECTS,
      rounds,
      async (s) => {
        const c = running.get(s)!;
        const { rate } = await c.run(CLUSTER_EVENTS, WINDOW, ACK_EVERY);
        const { p50, p99 } = await c.run(CLUSTER_TIMED, 1, 1);
        log(`    ${s.name}: ${fmt(rate)} events/s, p99 ${fmt(p99)} ms`);
        return { rate, p50, p99 };
      },
      log,
    );
    return CLUSTER_SUBJECTS.map((s) => ({ scope: 'cluster', ...pick(s), series: series.get(s) }));
  } finally {
    for (const c of running.values()) await c.stop();
  }
}

// ---- machines scope ---------------------------------------------------------------------------------------------

const machinesScope = (s: RedisSubject) => `machines, ${s.mode === 'group' ? 'group' : 'fan-out'}`;

async function redisScope(rounds: number, log: (line: string) => void): Promise<Row[]> {
  const rows = (series: (s: RedisSubject) => Series<RunResult> | undefined, skipped?: string) =>
    REDIS_SUBJECTS.map((s) => ({
      scope: machinesScope(s),
      name: s.name,
      kind: s.kind,
      ...(s.kind === 'ours' ? { goal: 0.8 } : {}),
      series: series(s),
      ...(skipped === undefined ? {} : { skipped }),
    }));
  const unreachable = await redisUnreachable();
  if (unreachable) {
    log(`  machines: skipped: ${unreachable}`);
    return rows(() => undefined, unreachable);
  }
  const world = new RedisWorld();
  const started = new Map<RedisSubject, Started>();
  try {
    for (const s of REDIS_SUBJECTS) {
      log(`  machines: starting ${s.name}`);
      const st = await s.start(world);
      started.set(s, st);
      await st.run(REDIS_EVENTS / 5, WINDOW); // warm-up
      await st.run(REDIS_TIMED / 5, 1);
    }
    const series = await alternate(
      REDIS_SUBJECTS,
      rounds,
      async (s) => {
        const st = started.get(s)!;
        const { rate } = await st.run(REDIS_EVENTS, WINDOW);
        const { p50, p99 } = await st.run(REDIS_TIMED, 1);
        log(`    ${s.name}: ${fmt(rate)} events/s, p99 ${fmt(p99)} ms`);
        return { rate, p50, p99 };
      },
      log,
    );
    return rows((s) => series.get(s));
  } finally {
    for (const st of started.values()) await st.stop().catch(() => {});
    await world.close();
  }
}

// ---- report -----------------------------------------------------------------------------------------------------

function pick(s: { name: string; kind: Kind; goal?: number }) {
  return { name: s.name, kind: s.kind, ...(s.goal === undefined ? {} : { goal: s.goal }) };
}

const med = (row: Row | undefined, f: (r: RunResult) => number) =>
  median((row?.series?.samples ?? []).map(f));

function report(rows: Row[], rounds: number): string {
  const skipped = [...new Set(rows.flatMap((r) => (r.skipped === undefined ? [] : [r.skipped])))];
  const floorOf = (row: Row) => rows.find((r) => r.scope === row.scope && r.kind === 'floor');
  const lines = rows.map((row) => {
    const floor = floorOf(row);
    const ratio = med(row, (r) => r.rate) / med(floor, (r) => r.rate);
    const failed = row.skipped ?? row.series?.error;
    const met = row.goal === undefined || failed ? '—' : ratio >= row.goal ? '**met**' : '**not met**';
    const name = row.kind === 'ours' ? `**${row.name}**` : row.name;
    if (row.skipped !== undefined) return [row.scope, name, 'skipped', '', '', '', '', '', ''];
    if (failed !== undefined) return [row.scope, name, `failed: ${failed}`, '', '', '', '', '', ''];
    return [
      row.scope,
      name,
      fmt(med(row, (r) => r.rate)),
      (row.series?.samples ?? []).map((r) => fmt(r.rate)).join(', '),
      fmt(med(row, (r) => r.p50)),
      fmt(med(row, (r) => r.p99)),
      row.kind === 'floor' ? '1 (floor)' : times(ratio),
      row.goal === undefined ? '—' : `≥ ${row.goal}×`,
      met,
    ];
  });
  return `Each scope against its floor, measured in the same run: ${rounds} round${rounds === 1 ? '' : 's'}, the subjects of a scope in rotated order each round; medians over rounds. Events/s is a throughput run; p50 and p99 are the publish → handler latency of a separate run with one event in flight at a time (a timestamp taken just before the publish, read in the handler; across processes the machine's monotonic clock, \`process.hrtime()\`). The ratio is events/s ÷ the floor of the same scope.

- **process**: one subscriber, payload \`{ n, t }\`; ${PROCESS_EVENTS.toLocaleString('en-US')} events in a loop per sample (${PROCESS_TIMED.toLocaleString('en-US')} timed), each sample in a child process of its own after a warm-up. \`bus.emit\` (synchronous, as \`EventEmitter.emit\` is) is the like-for-like comparison and carries the goal; \`await bus.publish\` (a promise per event, awaited as a caller does) and an \`EventEmitter\` emitting an envelope with what the bus gives every handler (an id and the publish time) are for information.
- **cluster**: \`weft start --workers 2\` (from \`dist/\`) of \`bench/fixtures/bus-worker.mjs\`: worker 0 publishes with \`createBus({ transport: clusterTransport() })\`, worker 1 subscribes (fan-out); against \`bench/fixtures/bus-raw-primary.mjs\`, a node:cluster primary forwarding worker 0's \`process.send\` messages (the bare payload) to worker 1 with \`worker.send\`. Both use IPC's default (JSON) serialisation; the publisher awaits each publish (\`process.send\`'s callback in the floor); ${CLUSTER_EVENTS.toLocaleString('en-US')} events per run with at most ${WINDOW.toLocaleString('en-US')} unhandled (the subscriber credits the publisher every ${ACK_EVERY} through the benchmark's loopback TCP connection, the same for both); latency over ${CLUSTER_TIMED.toLocaleString('en-US')} events.
- **machines**: Redis at \`${new URL(REDIS_URL).host}\`, publisher and subscriber on clients of their own in the benchmark's process. \`redisTransport()\` with its defaults (\`batch\` 100, \`blockMs\` 1 000, \`maxLen\` 100 000) against a hand-written loop with the same commands: \`XADD … MAXLEN ~ 100000 * p <json> t <ms>\`, awaited; \`XREADGROUP … COUNT 100 BLOCK 1000 … >\` then \`XACK\` of each entry after its handler (group), or \`XREAD … COUNT 100 BLOCK 1000\` from the last id (fan-out), on a connection of its own. ${REDIS_EVENTS.toLocaleString('en-US')} events per run, at most ${WINDOW.toLocaleString('en-US')} unhandled; latency over ${REDIS_TIMED.toLocaleString('en-US')} events. Streams under a prefix of the run's own, deleted after.

${table(['Scope', 'Subject', 'events/s (median)', 'per round', 'p50 ms', 'p99 ms', 'events/s ÷ floor', 'Goal', 'Met'], lines)}
${skipped.map((reason) => `\nMachines scope skipped: ${reason}.\n`).join('')}`;
}

/** `BENCH_BUS_SCOPES=process,cluster,machines` (the default: all three) runs only the named scopes. */
function scopes(): Set<string> {
  const raw = process.env.BENCH_BUS_SCOPES;
  const all = ['process', 'cluster', 'machines'];
  if (!raw) return new Set(all);
  const chosen = raw.split(',').map((s) => s.trim());
  for (const s of chosen) if (!all.includes(s)) throw new Error(`BENCH_BUS_SCOPES: unknown scope "${s}"`);
  return new Set(chosen);
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const only = scopes();
  const rows = [
    ...(only.has('process') ? await processScope(rounds, log) : []),
    ...(only.has('cluster') ? await clusterScope(rounds, log) : []),
    ...(only.has('machines') ? await redisScope(rounds, log) : []),
  ];
  return report(rows, rounds);
}
