/** The `pool` benchmark area: weft's worker pool against piscina, tinypool, workerpool, poolifier and raw postMessage. */
import { type AreaOptions, alternate, type Series } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';
import { IMPLS, type Impl, THREADS } from './pool-impls.ts';
import {
  CPU_TASK_MS,
  CPU_TASKS,
  type CpuSample,
  closeProblems,
  cpuCeiling,
  cpuEfficiency,
  type LatencySample,
  SEQ_TASKS,
  sequential,
  startup,
  TINY_TASKS,
  TRANSFER_BYTES,
  TRANSFER_TRIPS,
  type TransferSample,
  tinyTasks,
  transferBytes,
} from './pool-metrics.ts';

/** One measured metric: its samples per implementation and how to read them. */
interface Metric<S> {
  /** Short name, for the targets table. */
  name: string;
  title: string;
  about: string;
  rounds: number;
  measure: (impl: Impl) => Promise<S>;
  /** The headline number of a sample, and its unit; the table and targets use its median over rounds. */
  value: (s: S) => number;
  unit: string;
  better: 'higher' | 'lower';
  /** More columns, each computed from all of an implementation's samples. */
  extra?: { header: string; cell: (samples: S[]) => string }[];
  /** Unmeasured passes before the measured rounds. */
  warmupRounds?: number;
  /** Measured in the same rounds as the pools: the most the machine gives this work, with no pool at all. */
  ceiling?: { name: string; about: string; measure: () => Promise<S> };
  target: Target<S>;
}

interface Target<S> {
  text: string;
  /** Whether weft meets the target, from its median and samples, and what it was measured against. */
  check: (weft: number, m: Medians, samples: S[]) => { met: boolean; measured: string };
}

/** Medians the targets are judged against. */
interface Medians {
  baseline: number;
  /** The median of the metric's ceiling, when it has one. */
  ceiling: number;
  bestAnchor: { name: string; value: number } | undefined;
}

const movedOrCopied = (values: boolean[]) =>
  values.length > 0 && values.every(Boolean) ? 'moved' : 'copied';

/** A column listing a metric's value in each round. */
const perRound = <S>(value: (s: S) => number) => ({
  header: 'per round',
  cell: (samples: S[]) => samples.map((s) => fmt(value(s))).join(', '),
});

/** The metrics in report order, each ready to run. */
function metrics(rounds: number): ((log: (line: string) => void) => Promise<Outcome>)[] {
  const tiny: Metric<number> = {
    name: 'Tiny tasks',
    title: '1. Tiny tasks',
    about: `${TINY_TASKS.toLocaleString('en-US')} \`add(a, b)\` tasks submitted at once and awaited with \`Promise.all\`, after warm-up. Higher is better.`,
    rounds,
    measure: tinyTasks,
    value: (s) => s,
    unit: 'tasks/s',
    better: 'higher',
    extra: [perRound((s: number) => s)],
    target: {
      text: 'tasks/s ≥ 1.5 × the best anchor',
      check: (weft, m) => ({
        met: m.bestAnchor !== undefined && weft >= 1.5 * m.bestAnchor.value,
        measured: `${fmt(weft)} tasks/s = ${times(weft / (m.bestAnchor?.value ?? Number.NaN))} ${m.bestAnchor?.name ?? '—'}`,
      }),
    },
  };
  const cpu: Metric<CpuSample> = {
    name: 'CPU efficiency',
    title: '2. CPU efficiency',
    about: `${CPU_TASKS.toLocaleString('en-US')} tasks each spinning ${CPU_TASK_MS} ms of CPU, submitted at once; efficiency = ideal time (${(CPU_TASKS * CPU_TASK_MS) / THREADS} ms on ${THREADS} threads) / wall time. Higher is better.`,
    // A round is about a second, and a busy neighbour on a small VM takes 5-20 % out of single rounds.
    rounds: Math.max(7, rounds),
    measure: cpuEfficiency,
    value: (s) => s.efficiency,
    unit: '% of ideal',
    better: 'higher',
    extra: [
      { header: 'wall ms (median)', cell: (ss) => fmt(median(ss.map((s) => s.wallMs))) },
      perRound((s: CpuSample) => s.efficiency),
    ],
    ceiling: {
      name: 'threads alone',
      about: `each of ${THREADS} threads runs its ${CPU_TASKS / THREADS} spins back to back, told once and answering once: no pool, no message per task, the main thread idle`,
      measure: cpuCeiling,
    },
    target: {
      text: 'efficiency ≥ 95 % of ideal',
      check: (weft, m) => ({
        met: weft >= 95,
        measured: `${fmt(weft)} %; the machine's ceiling, threads alone: ${fmt(m.ceiling)} %, weft = ${fmt((weft / m.ceiling) * 100)} % of it`,
      }),
    },
  };
  const seq: Metric<LatencySample> = {
    name: 'Sequential round trip',
    title: '3. Sequential round trip',
    about: `${SEQ_TASKS.toLocaleString('en-US')} \`add\` tasks awaited one at a time, after warm-up; latency in µs. Lower is better. On a small VM this is bimodal: a round trip is far cheaper when the woken thread runs on the core the main thread just left than on the other one, and that placement sticks to a thread for a while, so single rounds swing by 2-3× (weft always wakes one thread for sequential work; the raw baseline alternates two).`,
    rounds,
    measure: sequential,
    value: (s) => s.p50,
    unit: 'p50 µs',
    better: 'lower',
    extra: [
      { header: 'p99 µs (median)', cell: (ss) => fmt(median(ss.map((s) => s.p99))) },
      perRound((s: LatencySample) => s.p50),
    ],
    target: {
      text: 'p50 ≤ 1.2 × raw postMessage',
      check: (weft, m) => {
        const raw = m.baseline;
        return { met: weft <= 1.2 * raw, measured: `${fmt(weft)} µs = ${times(weft / raw)} raw` };
      },
    },
  };
  const moved: Metric<TransferSample> = {
    name: '64 MiB transfer',
    title: '4. 64 MiB transfer',
    about: `A ${TRANSFER_BYTES / 2 ** 20} MiB \`Uint8Array\` sent to a task that returns it; ms per direction = median round trip / 2 over ${TRANSFER_TRIPS} trips. "to thread: moved" means the caller's buffer was detached (byteLength 0) by the send; "back: moved" means the thread's buffer was detached by returning it (asked with a second task). Lower is better.`,
    rounds,
    measure: transferBytes,
    value: (s) => s.msPerDirection,
    unit: 'ms each way',
    better: 'lower',
    extra: [
      { header: 'to thread', cell: (ss) => movedOrCopied(ss.map((s) => s.movedIn)) },
      { header: 'back', cell: (ss) => movedOrCopied(ss.map((s) => s.movedOut)) },
      perRound((s: TransferSample) => s.msPerDirection),
    ],
    target: {
      text: '≤ 1 ms each way (and moved both ways)',
      check: (weft, _m, samples) => {
        const both = samples.every((s) => s.movedIn && s.movedOut);
        return { met: weft <= 1 && both, measured: `${fmt(weft)} ms, ${both ? 'moved' : 'copied'}` };
      },
    },
  };
  const start: Metric<number> = {
    name: 'Start to first result',
    title: '5. Start to first result',
    about: `From constructing a fresh pool (${THREADS} threads) to the first result of a trivial task, then the pool is closed; one fresh pool per implementation per round, after one unmeasured pass. Lower is better.`,
    // Thread start-up swings by a quarter or more from round to round on a small VM: more rounds, steadier medians.
    rounds: Math.max(15, rounds),
    warmupRounds: 1,
    measure: startup,
    value: (s) => s,
    unit: 'ms',
    better: 'lower',
    extra: [perRound((s: number) => s)],
    target: {
      text: '≤ the best anchor',
      check: (weft, m) => ({
        met: m.bestAnchor !== undefined && weft <= m.bestAnchor.value,
        measured: `${fmt(weft)} ms = ${times(weft / (m.bestAnchor?.value ?? Number.NaN))} ${m.bestAnchor?.name ?? '—'}`,
      }),
    },
  };
  return [
    (log) => runMetric(tiny, log),
    (log) => runMetric(cpu, log),
    (log) => runMetric(seq, log),
    (log) => runMetric(moved, log),
    (log) => runMetric(start, log),
  ];
}

interface Outcome {
  markdown: string;
  target: string[];
}

async function runMetric<S>(metric: Metric<S>, log: (line: string) => void): Promise<Outcome> {
  log(`${metric.title} (${metric.rounds} rounds)`);
  // The ceiling, when the metric has one, takes its turn among the pools in every round.
  const ceiling = metric.ceiling;
  const subjects: { name: string; impl?: Impl }[] = [
    ...IMPLS.map((impl) => ({ name: impl.name, impl })),
    ...(ceiling ? [{ name: ceiling.name }] : []),
  ];
  const measure = (s: { impl?: Impl }) => (s.impl ? metric.measure(s.impl) : ceiling!.measure());
  if (metric.warmupRounds) await alternate(subjects, metric.warmupRounds, measure, log);
  const bySubject = await alternate(
    subjects,
    metric.rounds,
    async (subject) => {
      const sample = await measure(subject);
      log(`  ${subject.name}: ${fmt(metric.value(sample))} ${metric.unit}`);
      return sample;
    },
    log,
  );
  const series = new Map<Impl, Series<S>>();
  let ceilingSeries: Series<S> | undefined;
  for (const [subject, s] of bySubject) {
    if (subject.impl) series.set(subject.impl, s);
    else ceilingSeries = s;
  }
  const medianOf = (impl: Impl) => median(series.get(impl)!.samples.map(metric.value));
  const ceilingMedian = ceilingSeries ? median(ceilingSeries.samples.map(metric.value)) : Number.NaN;
  const sign = metric.better === 'higher' ? 1 : -1;
  let bestAnchor: Medians['bestAnchor'];
  let baseline = Number.NaN;
  let subject: Impl | undefined;
  for (const impl of IMPLS) {
    if (impl.role === 'subject') subject = impl;
    if (impl.role === 'baseline') baseline = medianOf(impl);
    const value = medianOf(impl);
    if (impl.role !== 'anchor' || !Number.isFinite(value)) continue;
    if (!bestAnchor || sign * value > sign * bestAnchor.value) bestAnchor = { name: impl.name, value };
  }
  const weft = medianOf(subject!);
  const rows = IMPLS.map((impl) => row(metric, impl.name, impl.role, series.get(impl)!, weft));
  if (ceiling && ceilingSeries) rows.push(row(metric, ceiling.name, 'ceiling', ceilingSeries, weft));
  const ratio = weft / (bestAnchor?.value ?? Number.NaN);
  const { met, measured } = Number.isFinite(weft)
    ? metric.target.check(
        weft,
        { baseline, ceiling: ceilingMedian, bestAnchor },
        series.get(subject!)!.samples,
      )
    : { met: false, measured: 'weft failed' };
  const status = met ? '**met**' : '**not met**';
  const markdown = [
    `### ${metric.title}`,
    '',
    metric.about,
    '',
    ...(ceiling ? [`The row marked † is the ceiling, not a pool: ${ceiling.about}.`, ''] : []),
    table(
      [
        'Implementation',
        `${metric.unit} (median)`,
        ...(metric.extra ?? []).map((c) => c.header),
        'weft ÷ this',
      ],
      rows,
    ),
    '',
    `weft ÷ best anchor (${bestAnchor?.name ?? '—'}): **${times(ratio)}** (${metric.better} is better).`,
    `Target: ${metric.target.text}: ${status} (${measured}).`,
  ].join('\n');
  log(`  -> weft ÷ best anchor ${times(ratio)}; target ${met ? 'met' : 'not met'}`);
  return { markdown, target: [metric.name, metric.target.text, measured, status] };
}

function row<S>(
  metric: Metric<S>,
  implName: string,
  role: Impl['role'] | 'ceiling',
  s: Series<S>,
  weft: number,
): string[] {
  const name = {
    subject: `**${implName}**`,
    anchor: implName,
    baseline: `${implName} *`,
    ceiling: `${implName} †`,
  }[role];
  if (s.samples.length === 0) {
    return [name, `failed: ${s.error ?? 'no samples'}`, ...(metric.extra ?? []).map(() => ''), '—'];
  }
  const value = median(s.samples.map(metric.value));
  const note = s.error ? ` (stopped: ${s.error})` : '';
  return [
    name,
    `${fmt(value)}${note}`,
    ...(metric.extra ?? []).map((c) => c.cell(s.samples)),
    times(weft / value),
  ];
}

/** Runs every pool metric and returns the area's markdown, without its title and machine header. */
export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const sections: string[] = [];
  const targets: string[][] = [];
  for (const runOne of metrics(rounds)) {
    const outcome = await runOne(log);
    sections.push(outcome.markdown);
    targets.push(outcome.target);
  }
  const anchors = IMPLS.filter((i) => i.role === 'anchor').map((i) => i.name);
  return [
    `weft's \`Pool\` against ${anchors.join(', ')} and a hand-written raw \`postMessage\` baseline, all with ${THREADS} threads. ` +
      `The row marked * is a baseline, not an anchor: "best anchor" is the best of ${anchors.join(', ')}. ` +
      'Transfers: ' +
      IMPLS.map((i) => `${i.name}: ${i.note}`).join('; ') +
      '.',
    '',
    '### Targets',
    '',
    table(['Metric', 'Target', 'weft (median)', 'Status'], targets),
    '',
    ...sections.flatMap((s) => [s, '']),
    ...(closeProblems.length > 0
      ? ['### Pools that did not close', '', ...closeProblems.map((p) => `- ${p}`), '']
      : []),
  ].join('\n');
}
