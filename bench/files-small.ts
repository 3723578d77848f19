/**
 * Small durable uploads alone (section 6 of the `files` area), for working on them: the durable node:http floor
 * (`bench/fixtures/files-sink.ts`, one process) against the service under `weft start` with 1 worker, compiled,
 * rotating, after {@link SIZES.small}'s unmeasured warm-up batches, each round one batch; per round the rate, p50, and the server CPU per upload split
 * between the supervisor and the worker. Not part of `npm run bench`:
 *
 *   npm run build && node bench/files-small.ts            # ROUNDS=6 by default
 *
 * `VARIANTS='a:{};b:{"NAME":"value"}'` runs one service per variant, each with that environment added, beside the
 * floor; `BENCH_BUILD_ROOT` in a variant's environment runs another checkout's build (`git worktree add`, then
 * `npm run build` there) to compare two commits. `BENCH_FILES_CONFIG=<weft.config.mjs>` starts the services with other supervisor settings (for example
 * `--cpu-prof` in the workers' `execArgv`).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clearDir, measureSmallUploads, SIZES, settle } from './files-measure.ts';
import { groupCpu } from './files-proc.ts';
import { type Group, startFixture, startService, variantsFromEnv } from './files-service.ts';
import { fmt, median } from './lib/stats.ts';

const rounds = Number(process.env.ROUNDS ?? 6);
const variants = variantsFromEnv();
const scratch = mkdtempSync(join(tmpdir(), 'weft-bench-small-'));
const groups: Group[] = [];
interface Row {
  name: string;
  group: Group;
  service: boolean;
  rate: number[];
  ratio: number[];
  supervisor: number[];
  worker: number[];
  p50: number[];
}
const rows: Row[] = [];
try {
  const floor = await startFixture('files-sink.ts', { SINK_DIR: scratch, SINK_MODE: 'durable' });
  groups.push(floor);
  const row = (name: string, group: Group, service: boolean): Row => ({
    name,
    group,
    service,
    rate: [],
    ratio: [],
    supervisor: [],
    worker: [],
    p50: [],
  });
  rows.push(row('floor', floor, false));
  for (const v of variants) {
    const s = await startService(v.env, 1);
    groups.push(s);
    rows.push(row(v.name, s, true));
  }
  // Unmeasured batches first, each server warmed the same way (as section 6 of the files area does).
  for (let i = 0; i < SIZES.small.warmup; i++) {
    for (const r of rows) {
      await measureSmallUploads(r.group.url, r.group.child.pid!);
      if (!r.service) await clearDir(scratch);
    }
  }
  await settle();
  for (let round = 0; round < rounds; round++) {
    const order = rows.map((_, i) => rows[(i + round) % rows.length]!);
    for (const r of order) {
      const g = r.group;
      const leader = g.child.pid!;
      const before = groupCpu(leader);
      const s = await measureSmallUploads(g.url, leader);
      const after = groupCpu(leader);
      const used = (pid: number) =>
        (((after.get(pid) ?? 0) - (before.get(pid) ?? 0)) * 1000) / SIZES.small.count;
      r.rate.push(s.perSecond);
      r.p50.push(s.p50Ms);
      r.supervisor.push(r.service ? used(leader) : 0);
      r.worker.push(
        [...after.keys()].filter((p) => !r.service || p !== leader).reduce((a, p) => a + used(p), 0),
      );
      if (!r.service) await clearDir(scratch);
      console.error(
        `round ${round + 1} ${r.name}: ${fmt(s.perSecond)}/s, p50 ${fmt(s.p50Ms)} ms, server CPU ${fmt(s.serverCpuMs)} ms per upload${r.service ? ` (supervisor ${fmt(r.supervisor.at(-1)!)}, worker ${fmt(r.worker.at(-1)!)})` : ''}`,
      );
      await settle();
    }
    for (const r of rows) r.ratio.push(r.rate.at(-1)! / rows[0]!.rate.at(-1)!);
  }
} finally {
  for (const g of groups) await g.stop();
  rmSync(scratch, { recursive: true, force: true });
}
console.log(
  `${rounds} rounds, ${SIZES.small.count} × ${SIZES.small.bytes} B, ${SIZES.small.concurrency} at once; ${new Date().toISOString()}, Node ${process.version}`,
);
for (const r of rows)
  console.log(
    `${r.name}: ${fmt(median(r.rate))}/s, p50 ${fmt(median(r.p50))} ms, CPU ${r.service ? `supervisor ${fmt(median(r.supervisor))} + ` : ''}${r.service ? 'worker ' : ''}${fmt(median(r.worker))} ms${r.service ? `; ÷ floor ${fmt(median(r.ratio))} (${r.ratio.map((x) => x.toFixed(2)).join(', ')})` : ''}`,
  );
