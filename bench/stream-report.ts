/** The markdown report of the stream benchmark. */
import { CHECKSUM_PASSES } from './fixtures/stream-tasks.ts';
import type { Series } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';
import { POOLMAP_TARGET } from './stream-floor.ts';
import type { IngestResult } from './stream-ingest.ts';
import { CAPPED, CHUNK, CHUNKS, label, MiB, type Subject, THREADS } from './stream-lib.ts';

const RSS_TARGET = 150 * MiB;
const SPEEDUP_TARGET = 1.8;

export interface CpuSample {
  mbPerSecond: number;
  /** Sum of the checksums, to check both versions computed the same thing. */
  sum: number;
}

interface Results {
  series: Map<Subject, Series<IngestResult>>;
  files: Map<number, { path: string; rows: number }>;
  cpu: Map<'main' | 'pool' | 'loop', Series<CpuSample>>;
  sizes: [number, number];
  /** The floor rows (stream-floor.ts): its targets' rows and its sections. */
  floor?: { targets: string[][]; markdown: string };
}

const rowsPerSecond = (r: IngestResult) => r.rows / (r.ms / 1000);
const seconds = (ms: number) => `${fmt(ms / 1000)} s`;
const status = (met: boolean) => (met ? '**met**' : '**not met**');

function backpressure(samples: IngestResult[]): string {
  const m = (f: (r: IngestResult) => number | undefined) => median(samples.map((r) => f(r) ?? 0));
  return `reader waited ${seconds(m((r) => r.readerPausedMs))} (${fmt(m((r) => r.readerPauses))}×); batches waited for a writer slot ${seconds(m((r) => r.writerWaitedMs))} (${fmt(m((r) => r.writerWaits))}×)`;
}

export function report(
  { series, files, cpu, sizes, floor }: Results,
  { cpuOnly = false }: { cpuOnly?: boolean } = {},
): string {
  const [small, large] = sizes;
  const peak = (s: Subject) => Math.max(...(series.get(s)?.samples ?? []).map((r) => r.maxRss));
  const rate = (s: Subject | undefined) =>
    s ? median((series.get(s)?.samples ?? []).map(rowsPerSecond)) : NaN;
  const subjects = [...series.keys()];
  const streaming = (flags: boolean) =>
    subjects.filter((s) => s.mode === 'streaming' && s.flags.length > 0 === flags);
  const naive = subjects.find((s) => s.mode === 'naive');
  const rssTarget = (list: Subject[]) => {
    const worst = Math.max(...list.map(peak));
    return [
      list.map((s) => `${fmt(peak(s) / MiB)} MiB at ${label(s.size)}`).join(', '),
      status(Number.isFinite(worst) && worst < RSS_TARGET),
    ];
  };
  const ingestRows = subjects.map((s) => {
    const { samples, error } = series.get(s)!;
    if (samples.length === 0) return [s.name, '—', '—', '—', '—', `failed: ${error ?? 'no sample'}`, '—'];
    const first = samples[0]!;
    return [
      s.name,
      `${first.rows.toLocaleString('en-US')} (+${first.invalid} invalid)`,
      fmt(rate(s)),
      fmt(peak(s) / MiB),
      // The naive version never yields to the event loop, so the sampler never runs: nothing to show.
      s.mode === 'naive' ? '—' : fmt(Math.max(...samples.map((r) => r.maxNewSpace)) / MiB),
      samples.map((r) => `${fmt(rowsPerSecond(r))} rows/s, ${fmt(r.maxRss / MiB)} MiB`).join('; '),
      s.mode === 'streaming' ? backpressure(samples) : '—',
    ];
  });
  const cpuMedian = (name: 'main' | 'pool' | 'loop') =>
    median((cpu.get(name)?.samples ?? []).map((s) => s.mbPerSecond));
  const speedup = cpuMedian('pool') / cpuMedian('main');
  // Time ÷ the loop's time is the loop's rate ÷ poolMap's rate.
  const overLoop = cpuMedian('loop') / cpuMedian('pool');
  const sums = new Set([...cpu.values()].flatMap((e) => e.samples.map((s) => s.sum)));
  const cpuNames = {
    main: 'main thread (mapConcurrent, concurrency 1)',
    pool: `poolMap, ${THREADS} threads`,
    loop: `hand-written loop of pool.run, ${THREADS} threads, ${2 * THREADS} in flight`,
  };
  const cpuRows = (['main', 'pool', 'loop'] as const).map((name) => {
    const { samples, error } = cpu.get(name) ?? { samples: [] };
    return [
      cpuNames[name],
      fmt(cpuMedian(name)),
      samples.map((s) => fmt(s.mbPerSecond)).join(', ') || `failed: ${error}`,
      times(cpuMedian(name) / cpuMedian('main')),
      times(cpuMedian('loop') / cpuMedian(name)),
    ];
  });
  const cpuTargets = [
    [
      'poolMap on a CPU-bound transform',
      `≥ ${SPEEDUP_TARGET}× the main thread's rate, ${THREADS} threads`,
      times(speedup),
      status(speedup >= SPEEDUP_TARGET),
    ],
    [
      'poolMap ÷ a hand-written loop of pool.run, same bound, same tasks',
      `≤ ${POOLMAP_TARGET}× the time`,
      times(overLoop),
      status(overLoop <= POOLMAP_TARGET),
    ],
  ];
  const cpuSection = [
    '### poolMap on a CPU-bound transform',
    '',
    `${CHUNKS.toLocaleString('en-US')} chunks of ${CHUNK / 1024} KiB (${fmt((CHUNKS * CHUNK) / MiB)} MiB), each checksummed by ${CHECKSUM_PASSES} passes of FNV-1a in pure JavaScript (about 2 ms a chunk); the same function on the main thread (\`mapConcurrent\`, concurrency 1), through \`poolMap\` on a ${THREADS}-thread pool (default concurrency: 2 × threads; each chunk's buffer moved to its thread), and through a hand-written loop of \`pool.run\` on the same pool with the same bound (${2 * THREADS} in flight, \`Promise.race\`), in the benchmark process, after one unmeasured pass each. Results checked equal: ${sums.size === 1 ? 'yes' : 'NO'}.`,
    '',
    table(['Version', 'MiB/s (median)', 'per round', '÷ main thread', 'time ÷ loop'], cpuRows),
  ].join('\n');
  if (cpuOnly) {
    return [table(['Metric', 'Target', 'weft (measured)', 'Status'], cpuTargets), '', cpuSection].join('\n');
  }
  const [plainSmall] = streaming(false);
  const rowBytes = fmt(small / files.get(small)!.rows);
  return [
    `A CSV (\`id,name,email,amount,created_at\`, ${rowBytes} bytes a row, every 10 007th row invalid) generated under \`os.tmpdir()\` at ${label(small)} and ${label(large)} (${[...files.values()].map((f) => f.rows.toLocaleString('en-US')).join(' and ')} rows), deleted afterwards. Each ingest runs in a child process of its own (\`bench/stream-ingest.ts\` and its task module, compiled to JavaScript first, with weft from \`dist/\`); peak RSS is that process's \`process.resourceUsage().maxRSS\` at the end: main thread, writer thread and SQLite together.`,
    '',
    `- **weft/stream**: \`createReadStream\` → \`meter\` → csv-parse (stream) → validate → \`batch({ size: 1000 })\` → \`poolMap(writer, 'insertBatch', { concurrency: 4 })\`, where \`writer\` is a one-thread weft pool that owns the SQLite database (node:sqlite, WAL, one transaction per batch): parsing on the main thread and inserting on the writer thread overlap, with 4 batches in flight. Run with V8's default heap settings, and with \`${CAPPED.join(' ')}\`, which caps each of V8's two semi-spaces at 16 MiB. The parser allocates fast and the batches in flight survive young collections, so V8 grows the main thread's young generation towards its default cap; the "young gen" column is its largest size seen (sampled every 100 ms).`,
    `- **naive**: \`readFileSync\` of the whole file → csv-parse/sync → validate into one array → insert on the main thread, one transaction per 1000 rows. Same database settings, V8 defaults. Run on ${label(small)} only, not on ${label(large)}: it holds the file, every parsed row and the validated copies at once, so its memory grows with the file.`,
    '',
    '### Targets',
    '',
    table(
      ['Metric', 'Target', 'weft (measured)', 'Status'],
      [
        [
          'Peak RSS of the streaming ingest, V8 defaults',
          `< 150 MiB at ${label(small)} and ${label(large)}`,
          ...rssTarget(streaming(false)),
        ],
        [
          `Peak RSS of the streaming ingest, \`${CAPPED.join(' ')}\``,
          `< 150 MiB at ${label(small)} and ${label(large)}`,
          ...rssTarget(streaming(true)),
        ],
        ...cpuTargets,
        ...(floor?.targets ?? []),
      ],
    ),
    '',
    '### CSV → SQLite ingest',
    '',
    table(
      [
        'Version',
        'rows inserted',
        'rows/s (median)',
        'peak RSS MiB (worst)',
        'young gen MiB (worst)',
        'per round',
        'backpressure (median)',
      ],
      ingestRows,
    ),
    '',
    `weft/stream (V8 defaults) ÷ naive at ${label(small)}: ${times(rate(plainSmall) / rate(naive))} the rows/s, ${times((plainSmall ? peak(plainSmall) : NaN) / (naive ? peak(naive) : NaN))} the peak RSS. ${label(small)} rounds alternate the versions; ${label(large)} runs once each.`,
    '',
    cpuSection,
    ...(floor ? ['', floor.markdown] : []),
  ].join('\n');
}
