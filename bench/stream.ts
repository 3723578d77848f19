/**
 * The `stream` benchmark area: a CSV → SQLite ingest with weft/stream against a naive version that buffers the whole
 * file (peak RSS and rows/s, each run in a child process of its own), and poolMap against the same CPU-bound
 * transform on the main thread.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'weftjs/pool';
import { mapConcurrent, poolMap } from 'weftjs/stream';
import { checksum } from './fixtures/stream-tasks.ts';
import { type AreaOptions, alternate, type Series, within } from './lib/harness.ts';
import { fmt, table } from './lib/stats.ts';
import { floorReport, floorSeries, STREAM_SUBJECTS, TINY_SUBJECTS } from './stream-floor.ts';
import type { IngestResult } from './stream-ingest.ts';
import {
  CAPPED,
  CHUNK,
  CHUNKS,
  compileIngest,
  generateCsv,
  ingest,
  label,
  MiB,
  type Subject,
  THREADS,
} from './stream-lib.ts';
import { type CpuSample, report } from './stream-report.ts';

/**
 * The CSV sizes: the streaming ingest runs on both, the naive one on the first only. `BENCH_STREAM_MIB` ("10,50")
 * overrides them for a quick run.
 */
const SIZES = (process.env.BENCH_STREAM_MIB ?? '100,1024').split(',').map((n) => Number(n) * MiB);

/** Pseudo-random bytes every CPU chunk starts from. */
const TEMPLATE = (() => {
  const bytes = new Uint8Array(CHUNK);
  let x = 1;
  for (let i = 0; i < CHUNK; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 1;
    bytes[i] = x >>> 24;
  }
  return bytes;
})();

/** The chunks of the CPU benchmark: fresh each time (poolMap moves them), cheap to make, the same for both runs. */
function* cpuChunks(): Generator<Uint8Array> {
  for (let c = 0; c < CHUNKS; c++) {
    const bytes = new Uint8Array(CHUNK);
    bytes.set(TEMPLATE);
    new DataView(bytes.buffer).setUint32(0, c);
    yield bytes;
  }
}

type Tasks = typeof import('./fixtures/stream-tasks.ts');

/** The bound of poolMap's default concurrency (2 × threads), which the hand-written loop uses too. */
const IN_FLIGHT = 2 * THREADS;

/** A hand-written loop of `pool.run` with at most `IN_FLIGHT` tasks in flight: poolMap's floor. */
async function loopRun(pool: Pool<Tasks>): Promise<CpuSample> {
  let sum = 0;
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  const work = async () => {
    for (const bytes of cpuChunks()) {
      const p: Promise<void> = pool
        .run('crunch', [bytes], { transfer: [bytes.buffer as ArrayBuffer] })
        .then((h) => {
          sum = (sum + h) >>> 0;
          inFlight.delete(p);
        });
      inFlight.add(p);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  };
  await within(work(), 120_000, 'the loop CPU run');
  const seconds = (performance.now() - started) / 1000;
  return { mbPerSecond: (CHUNKS * CHUNK) / MiB / seconds, sum };
}

async function cpuRun(stage: 'main' | 'pool' | 'loop', pool: Pool<Tasks>): Promise<CpuSample> {
  if (stage === 'loop') return loopRun(pool);
  let sum = 0;
  const sink = new Writable({
    objectMode: true,
    write(h: number, _encoding, callback) {
      sum = (sum + h) >>> 0;
      callback();
    },
  });
  const transform =
    stage === 'pool'
      ? poolMap(pool, 'crunch', { ordered: false })
      : mapConcurrent((bytes: Uint8Array) => checksum(bytes), { concurrency: 1 });
  const started = performance.now();
  await within(pipeline(Readable.from(cpuChunks()), transform, sink), 120_000, `the ${stage} CPU run`);
  const seconds = (performance.now() - started) / 1000;
  return { mbPerSecond: (CHUNKS * CHUNK) / MiB / seconds, sum };
}

async function cpuSeries(rounds: number, log: (line: string) => void) {
  const pool = new Pool<Tasks>({
    filename: new URL('./fixtures/stream-tasks.ts', import.meta.url),
    minThreads: THREADS,
    maxThreads: THREADS,
    eager: true,
  });
  try {
    await cpuRun('pool', pool); // warm-up: threads started, code optimised
    await cpuRun('main', pool);
    await cpuRun('loop', pool);
    const subjects = [{ name: 'main' as const }, { name: 'pool' as const }, { name: 'loop' as const }];
    const series = await alternate(
      subjects,
      rounds,
      async ({ name }) => {
        const s = await cpuRun(name, pool);
        log(`  ${name}: ${fmt(s.mbPerSecond)} MiB/s`);
        return s;
      },
      log,
    );
    return new Map([...series].map(([k, v]) => [k.name, v]));
  } finally {
    await pool.close();
  }
}

/** Which parts run: `BENCH_STREAM_PARTS` ("floor,cpu" for a quick look; a `--write` wants all three). */
const PARTS = new Set((process.env.BENCH_STREAM_PARTS ?? 'ingest,cpu,floor').split(','));

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  if (!PARTS.has('ingest')) {
    const out: string[] = [];
    if (PARTS.has('cpu')) {
      log(`poolMap vs main thread vs loop (${rounds} rounds)`);
      const cpu = await cpuSeries(rounds, log);
      out.push(report({ series: new Map(), files: new Map(), cpu, sizes: [0, 0] }, { cpuOnly: true }));
    }
    if (PARTS.has('floor')) out.push(await floor(rounds, log));
    return out.join('\n\n');
  }
  const [small, large] = SIZES;
  if (SIZES.length !== 2 || !small || !large)
    throw new Error('BENCH_STREAM_MIB must be two sizes, e.g. 10,50');
  const dir = await mkdtemp(join(os.tmpdir(), 'weft-bench-stream-'));
  try {
    const files = new Map<number, { path: string; rows: number }>();
    for (const size of SIZES) {
      const path = join(dir, `people-${size / MiB}MiB.csv`);
      const started = performance.now();
      const rows = await within(generateCsv(path, size), 180_000, `generating ${label(size)}`);
      const seconds = (performance.now() - started) / 1000;
      log(`generated ${label(size)} (${rows.toLocaleString('en-US')} rows) in ${fmt(seconds)} s`);
      files.set(size, { path, rows });
    }
    const streaming = (size: number, flags: string[]): Subject => ({
      name: `weft/stream, ${label(size)}${flags.length > 0 ? `, ${flags.join(' ')}` : ''}`,
      mode: 'streaming',
      size,
      flags,
    });
    const script = await compileIngest();
    let n = 0;
    const measure = async (s: Subject) => {
      const r = await ingest(script, s, files.get(s.size)!.path, join(dir, `run-${n++}.db`), 300_000);
      log(`  ${s.name}: ${fmt(r.rows / (r.ms / 1000))} rows/s, peak RSS ${fmt(r.maxRss / MiB)} MiB`);
      return r;
    };
    const series = new Map<Subject, Series<IngestResult>>();
    log(`ingest, ${label(small)} (${rounds} rounds)`);
    const naive: Subject = { name: `naive, ${label(small)}`, mode: 'naive', size: small, flags: [] };
    for (const entry of await alternate(
      [streaming(small, []), streaming(small, CAPPED), naive],
      rounds,
      measure,
      log,
    ))
      series.set(...entry);
    log(`ingest, ${label(large)} (1 round)`);
    for (const entry of await alternate([streaming(large, []), streaming(large, CAPPED)], 1, measure, log))
      series.set(...entry);
    log(`poolMap vs main thread vs loop (${rounds} rounds)`);
    const cpu = await cpuSeries(rounds, log);
    log(`stream floor (${rounds} rounds)`);
    const streams = await floorSeries(STREAM_SUBJECTS, rounds, log);
    const tiny = await floorSeries(TINY_SUBJECTS, rounds, log);
    return report({ series, files, cpu, sizes: [small, large], floor: floorReport(streams, tiny) });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The floor part alone (`BENCH_STREAM_PARTS=floor`). */
async function floor(rounds: number, log: (line: string) => void): Promise<string> {
  log(`stream floor (${rounds} rounds)`);
  const streams = await floorSeries(STREAM_SUBJECTS, rounds, log);
  const tiny = await floorSeries(TINY_SUBJECTS, rounds, log);
  const { targets, markdown } = floorReport(streams, tiny);
  return [table(['Metric', 'Target', 'weft (measured)', 'Status'], targets), '', markdown].join('\n');
}
