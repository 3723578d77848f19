/**
 * Image jobs alone (section 2's "jobs only" subject of the `files` area), for working on them: bare sharp against
 * the service, each round {@link SIZES.photos} photos stored first and then run by a fresh service (2 workers),
 * rotating; per round each subject's images/s and its ratio to bare sharp. Not part of `npm run bench`:
 *
 *   npm run build && node bench/files-jobs.ts            # ROUNDS=4 by default
 *
 * `VARIANTS='a:{};b:{"NAME":"value"}'` runs the service once per variant, with that environment added;
 * `BENCH_BUILD_ROOT` in a variant's environment runs another checkout's build (`git worktree add`, then
 * `npm run build` there) to compare two commits.
 *
 * @module
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeJpegs } from './files-data.ts';
import { bareSharp, measureServiceJobsOnly, SIZES } from './files-measure.ts';
import { variantsFromEnv } from './files-service.ts';
import { fmt, median } from './lib/stats.ts';

const rounds = Number(process.env.ROUNDS ?? 4);
const variants = variantsFromEnv();
const scratch = mkdtempSync(join(tmpdir(), 'weft-bench-jobs-'));
try {
  mkdirSync(join(scratch, 'photos'));
  const photos = await makeJpegs(join(scratch, 'photos'), SIZES.photos, ...SIZES.photo);
  const subjects = [{ name: 'bare sharp', env: undefined }, ...variants];
  const rates = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < subjects.length; i++) {
      const s = subjects[(i + round) % subjects.length]!;
      let perSecond: number;
      if (s.env === undefined) {
        const r = await bareSharp(
          photos.map((p) => p.path),
          SIZES.concurrency,
          scratch,
        );
        perSecond = photos.length / (r.totalMs / 1000);
      } else perSecond = (await measureServiceJobsOnly(photos, scratch, s.env)).perSecond;
      rates.get(s.name)!.push(perSecond);
      console.error(`round ${round + 1} ${s.name}: ${fmt(perSecond)} images/s`);
    }
  }
  const bare = rates.get('bare sharp')!;
  console.log(
    `${rounds} rounds, ${SIZES.photos} photos of ${SIZES.photo.join('×')}, ${SIZES.concurrency} at a time; ${new Date().toISOString()}, Node ${process.version}`,
  );
  for (const [name, r] of rates) {
    const ratios = r.map((x, i) => x / bare[i]!);
    console.log(
      `${name}: ${fmt(median(r))} images/s${name === 'bare sharp' ? '' : `; ÷ bare sharp ${fmt(median(ratios))} (${ratios.map((x) => x.toFixed(3)).join(', ')})`}`,
    );
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
