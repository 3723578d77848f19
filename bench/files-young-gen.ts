/**
 * A/B of the file service's young generation (`--max-semi-space-size`, MB per semi-space), alternating, fresh
 * services (`weft start`, 1 worker, the service's other settings): an idle worker's VmRSS 3 s after it is ready,
 * small durable uploads (2,000 of 400 B, 16 at once), 400 MB of uploads (4 × 100 MB, server CPU per GB) and a CSV
 * of 1,000,000 rows (the job's run time). Not part of `npm run bench`; it measured the setting in
 * `apps/files/weft.config.mjs`:
 *
 *   npm run build && node bench/files-young-gen.ts            # SEMIS=4,1 ROUNDS=6 by default
 *
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const scratch = mkdtempSync(join(tmpdir(), 'weft-bench-young-'));
const config = join(scratch, 'weft.config.mjs');
writeFileSync(
  config,
  `export default {
  execArgv: [...process.execArgv, \`--max-semi-space-size=\${process.env.BENCH_SEMI}\`],
  env: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '1' },
};\n`,
);
// files-service.ts reads BENCH_FILES_CONFIG when it is loaded.
process.env.BENCH_FILES_CONFIG = config;
const { makeBlobs, makeCsv } = await import('./files-data.ts');
const { measureCsv, measureSmallUploads, measureUpload } = await import('./files-measure.ts');
const { workersResident } = await import('./files-proc.ts');
const { startService } = await import('./files-service.ts');
const { median } = await import('./lib/stats.ts');

interface Row {
  idleMb: number[];
  small: number[];
  smallCpuMs: number[];
  cpuPerGb: number[];
  csvRows: number[];
}
const semis = (process.env.SEMIS ?? '4,1').split(',');
const rounds = Number(process.env.ROUNDS ?? 6);
const rows = new Map<string, Row>(
  semis.map((s) => [s, { idleMb: [], small: [], smallCpuMs: [], cpuPerGb: [], csvRows: [] }]),
);
try {
  const blobs = await makeBlobs(scratch, 4, 100_000_000);
  const csv = await makeCsv(join(scratch, 'data.csv'), 1_000_000);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? semis : [...semis].reverse();
    for (const semi of order) {
      const r = rows.get(semi)!;
      const s = await startService({ BENCH_SEMI: semi }, 1);
      try {
        await sleep(3000);
        r.idleMb.push(Math.max(...workersResident(s.child.pid!).map((w) => w.rss)) / 1e6);
        const small = await measureSmallUploads(s.url, s.child.pid!);
        r.small.push(small.perSecond);
        r.smallCpuMs.push(small.serverCpuMs);
        r.cpuPerGb.push((await measureUpload(s, 'service', blobs)).cpuPerGb);
        const c = await measureCsv(s, csv);
        r.csvRows.push(c.rows / c.runSeconds);
      } finally {
        await s.stop();
      }
      console.error(
        `round ${round + 1}, semi-space ${semi} MB: idle ${r.idleMb.at(-1)!.toFixed(1)} MB, ${r.small.at(-1)!.toFixed(0)} small uploads/s (${r.smallCpuMs.at(-1)!.toFixed(2)} ms CPU), ${r.cpuPerGb.at(-1)!.toFixed(2)} s CPU/GB, ${r.csvRows.at(-1)!.toFixed(0)} CSV rows/s`,
      );
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
console.log(`${rounds} rounds, alternating, medians; ${new Date().toISOString()}, Node ${process.version}\n`);
console.log(
  '| semi-space | idle VmRSS MB | small uploads/s | server CPU ms per small upload | upload CPU s per GB | CSV rows/s |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [semi, r] of rows)
  console.log(
    `| ${semi} MB | ${median(r.idleMb).toFixed(1)} | ${median(r.small).toFixed(0)} | ${median(r.smallCpuMs).toFixed(2)} | ${median(r.cpuPerGb).toFixed(2)} | ${median(r.csvRows).toFixed(0)} |`,
  );
