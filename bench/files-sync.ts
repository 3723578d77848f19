/**
 * The `files-sync` benchmark area: the two ways the service has made a 201 survive a power cut, on uploads.
 * `FULL` (issue 15): SQLite fsyncs the WAL inside every COMMIT, on the event loop. Now (issue 17): `NORMAL`, and the
 * upload awaits an fsync of the WAL that started after its commit, off the event loop and shared by the uploads of
 * the same moment (`walSync`). The FULL subject still runs that shared fsync (the service always does), which then
 * finds nothing left to flush. One service in this process
 * (embedded SQLite and disk, no jobs run), a fresh data directory per measurement, the two settings alternating
 * by round: 500 uploads of 4 KiB (the commit is most of the work) and 120 of 1 MiB, 2 at a time over keep-alive.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../apps/files/src/config.ts';
import { silentLogger } from '../apps/files/src/logger.ts';
import { createService } from '../apps/files/src/service.ts';
import { type AreaOptions, alternate, within } from './lib/harness.ts';
import { fmt, median, percentile, table, times } from './lib/stats.ts';

const SETS = [
  { label: '4 KiB', count: 500, bytes: 4 * 1024 },
  { label: '1 MiB', count: 120, bytes: 1024 * 1024 },
] as const;
const CONCURRENCY = 2;

interface Sample {
  perSecond: number[];
  p50: number[];
  p95: number[];
}

async function measure(synchronous: 'NORMAL' | 'FULL'): Promise<Sample> {
  const dataDir = mkdtempSync(join(tmpdir(), 'weft-bench-sync-'));
  const config = { ...loadConfig({ FILES_DATA_DIR: dataDir }, dataDir), dataDir };
  const service = await createService(config, { log: silentLogger, runJobs: false });
  try {
    service.db!.exec(`PRAGMA synchronous = ${synchronous}`);
    await service.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = service.app.server.address() as { port: number };
    const sample: Sample = { perSecond: [], p50: [], p95: [] };
    for (const set of SETS) {
      const body = Buffer.alloc(set.bytes, 0xab);
      const latencies: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < set.count) {
            const i = next++;
            const t = performance.now();
            const res = await fetch(`http://127.0.0.1:${port}/files?name=b${i}.bin`, {
              method: 'POST',
              body,
            });
            await res.arrayBuffer();
            if (res.status !== 201) throw new Error(`upload ${i}: ${res.status}`);
            latencies.push(performance.now() - t);
          }
        }),
      );
      sample.perSecond.push(set.count / ((performance.now() - t0) / 1000));
      sample.p50.push(percentile(latencies, 50));
      sample.p95.push(percentile(latencies, 95));
    }
    return sample;
  } finally {
    await service.app.close();
    await service.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const subjects = [
    { name: 'synchronous = FULL: fsync in each COMMIT (issue 15)', value: 'FULL' as const },
    { name: 'synchronous = NORMAL + shared WAL fsync (now)', value: 'NORMAL' as const },
  ];
  const series = await alternate(
    subjects,
    rounds,
    async (s) => {
      const sample = await within(measure(s.value), 300_000, s.name);
      log(`    ${s.name}: ${SETS.map((set, i) => `${set.label} ${fmt(sample.perSecond[i]!)}/s`).join(', ')}`);
      return sample;
    },
    log,
  );
  const [before, after] = subjects.map((s) => series.get(s)!);
  if (before!.error || after!.error) throw new Error(before!.error ?? after!.error);
  const rows = SETS.flatMap((set, i) => {
    const pick = (ss: Sample[], k: keyof Sample) => ss.map((x) => x[k][i]!);
    const ratios = after!.samples.map((a, r) => a.perSecond[i]! / before!.samples[r]!.perSecond[i]!);
    return subjects.map((s, j) => {
      const ss = series.get(s)!.samples;
      return [
        j === 0 ? `${set.count} × ${set.label}` : '',
        s.name,
        fmt(median(pick(ss, 'perSecond'))),
        pick(ss, 'perSecond')
          .map((v) => fmt(v))
          .join(', '),
        fmt(median(pick(ss, 'p50'))),
        fmt(median(pick(ss, 'p95'))),
        j === 1 ? `${times(median(ratios))} (${ratios.map((r) => times(r)).join(', ')})` : '',
      ];
    });
  });
  return [
    `One in-process service (embedded SQLite in WAL mode, local disk, no jobs run), a fresh data directory for each measurement, uploads of opaque bytes (stored as \`application/octet-stream\`) POSTed ${CONCURRENCY} at a time over keep-alive from the same process; ${rounds} rounds, the two settings in rotated order within each round, medians. Each upload fsyncs its file and its directory (the directory's fsync shared by the uploads of the same moment). \`FULL\` fsyncs the WAL inside the COMMIT that records the upload, holding the event loop; now the commit does not fsync, and the upload awaits an fsync of the WAL started after it, off the event loop and shared by the uploads of the same moment (\`walSync\`). Higher uploads/s is better.`,
    '',
    table(
      ['uploads', 'setting', 'uploads/s (median)', 'per round', 'p50 ms', 'p95 ms', 'now ÷ FULL (per round)'],
      rows,
    ),
  ].join('\n');
}
