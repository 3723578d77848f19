/**
 * The floor rows of the stream benchmark (issue 17, goal 1): weft/stream's `batch` + `mapConcurrent` against Node's
 * own stream tools on the same work, and `poolMap` against a hand-written loop of `pool.run` on tiny tasks, each run
 * in a process of its own (bench/fixtures/stream-floor.mjs, weft from `dist/`), rounds alternating, medians.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { alternate, type Series, within } from './lib/harness.ts';
import { fmt, median, table, times } from './lib/stats.ts';

const SCRIPT = fileURLToPath(new URL('./fixtures/stream-floor.mjs', import.meta.url));
export const FLOOR_TIME_TARGET = 1.05;
export const FLOOR_RSS_TARGET = 1.1;
export const POOLMAP_TARGET = 1.1;

export interface FloorSample {
  ms: number;
  cpuMs: number;
  maxRssMiB: number;
  check: number;
}

export type FloorSubject = { name: string; arg: string };

export const STREAM_SUBJECTS: FloorSubject[] = [
  { name: 'Node: Transform batcher + Readable#map', arg: 'node-ordered' },
  { name: 'weft: batch + mapConcurrent, ordered', arg: 'weft-ordered' },
  { name: 'weft: batch + mapConcurrent, unordered', arg: 'weft-unordered' },
];

export const TINY_SUBJECTS: FloorSubject[] = [
  { name: 'hand-written loop of pool.run', arg: 'loop' },
  { name: 'poolMap, unordered', arg: 'poolMap-unordered' },
  { name: 'poolMap, ordered', arg: 'poolMap-ordered' },
];

function once(subject: FloorSubject): Promise<FloorSample> {
  const child = spawn(process.execPath, [SCRIPT, subject.arg], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const done = new Promise<FloorSample>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${subject.arg} exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as FloorSample);
      } catch (err) {
        reject(err);
      }
    });
  });
  return within(done, 120_000, `stream floor ${subject.arg}`).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
}

export async function floorSeries(
  subjects: FloorSubject[],
  rounds: number,
  log: (line: string) => void,
): Promise<Map<FloorSubject, Series<FloorSample>>> {
  return alternate(
    subjects,
    rounds,
    async (s) => {
      const r = await once(s);
      log(`  ${s.name}: ${fmt(r.ms)} ms, CPU ${fmt(r.cpuMs)} ms, peak RSS ${fmt(r.maxRssMiB)} MiB`);
      return r;
    },
    log,
  );
}

const status = (met: boolean) => (met ? '**met**' : '**not met**');

function medians(series: Map<FloorSubject, Series<FloorSample>>, arg: string) {
  const entry = [...series].find(([s]) => s.arg === arg)?.[1];
  const samples = entry?.samples ?? [];
  return {
    samples,
    error: entry?.error,
    ms: median(samples.map((s) => s.ms)),
    cpuMs: median(samples.map((s) => s.cpuMs)),
    rss: median(samples.map((s) => s.maxRssMiB)),
  };
}

function rows(series: Map<FloorSubject, Series<FloorSample>>, floorArg: string): string[][] {
  const floor = medians(series, floorArg);
  return [...series.keys()].map((s) => {
    const m = medians(series, s.arg);
    if (m.samples.length === 0) return [s.name, '—', '—', '—', '—', '—', `failed: ${m.error ?? 'no sample'}`];
    return [
      s.arg === floorArg ? `${s.name} (floor)` : s.name,
      fmt(m.ms),
      times(m.ms / floor.ms),
      fmt(m.cpuMs),
      fmt(m.rss),
      times(m.rss / floor.rss),
      m.samples.map((x) => `${fmt(x.ms)} ms, ${fmt(x.maxRssMiB)} MiB`).join('; '),
    ];
  });
}

/** The targets' rows (for the area's Targets table) and the section's markdown. */
export function floorReport(
  streams: Map<FloorSubject, Series<FloorSample>>,
  tiny: Map<FloorSubject, Series<FloorSample>>,
): { targets: string[][]; markdown: string } {
  const node = medians(streams, 'node-ordered');
  const targets = ['weft-ordered', 'weft-unordered'].map((arg) => {
    const m = medians(streams, arg);
    const t = m.ms / node.ms;
    const r = m.rss / node.rss;
    return [
      `batch + mapConcurrent (${arg === 'weft-ordered' ? 'ordered' : 'unordered'}) ÷ Node's stream tools`,
      `≤ ${FLOOR_TIME_TARGET}× the time, ≤ ${FLOOR_RSS_TARGET}× the peak RSS`,
      `${times(t)} the time, ${times(r)} the peak RSS`,
      status(t <= FLOOR_TIME_TARGET && r <= FLOOR_RSS_TARGET),
    ];
  });
  const checks = new Set([...streams.values()].flatMap((e) => e.samples.map((s) => s.check)));
  const tinyChecks = new Set([...tiny.values()].flatMap((e) => e.samples.map((s) => s.check)));
  const header = [
    'Version',
    'ms (median)',
    '÷ floor',
    'CPU ms (median)',
    'peak RSS MiB (median)',
    '÷ floor',
    'per round',
  ];
  const markdown = [
    "### weft/stream against Node's own stream tools",
    '',
    `3,000,000 small objects (\`{ id, name }\`, from a generator through \`Readable.from\`) → a batcher of 1000 → an async map, 1 ms a call (\`timers/promises\` \`setTimeout\`), 4 calls at once → a sink taking 1 ms a batch. The floor is what Node offers for the same pipeline: a minimal \`Transform\` batcher and \`Readable#map(fn, { concurrency: 4 })\`, which is always ordered, so it is the floor of both weft rows. Each run is a process of its own (\`bench/fixtures/stream-floor.mjs\`), peak RSS its \`process.resourceUsage().maxRSS\`; rounds alternate the versions. Every run counted all 3,000,000 items: ${checks.size === 1 && checks.has(3_000_000) ? 'yes' : 'NO'}. The wall time is mostly the sink's 3,000 timers of 1 ms; the CPU column is the work the versions add.`,
    '',
    table(header, rows(streams, 'node-ordered')),
    '',
    '### poolMap against a hand-written loop, tiny tasks',
    '',
    `100,000 tasks of 256 bytes each (two FNV-1a passes, a few µs of work) on a 2-thread weft pool, 4 in flight, each buffer moved to its thread: a hand-written loop of \`pool.run\` (\`Promise.race\` over the 4 in flight) against \`poolMap\` in a \`pipeline\` from \`Readable.from\`. This is the worst case for poolMap: the stream machinery around each task (a readable, a transform and a writable hop) costs about as much as the task, and on 2 cores the main thread's CPU is taken from the pool's threads. The CPU-bound row above (2 ms tasks) is the one with the target. Results checked equal: ${tinyChecks.size === 1 ? 'yes' : 'NO'}.`,
    '',
    table(header, rows(tiny, 'loop')),
  ].join('\n');
  return { targets, markdown };
}
