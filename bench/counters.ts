/**
 * The `counters` benchmark area: what a shared counter (`worker.counter(name).add()`, its value in the supervisor)
 * costs per call, against the same async call on a counter kept in the worker's memory and against a Redis `INCR`
 * (ioredis), from one worker of a `weftjs/cluster` supervisor; sequential (one call in flight) and 16 in flight.
 * Subjects alternate within each round; medians over rounds. Redis rows are skipped, with the reason printed, when
 * Redis does not answer.
 */
import { supervise } from 'weftjs/cluster';
import { REDIS_URL, redisUnreachable } from './bus-redis.ts';
import { type AreaOptions, alternate, within } from './lib/harness.ts';
import { fmt, median, table } from './lib/stats.ts';

const CALLS = 20_000;
const FIXTURE = new URL('./fixtures/counter-worker.mjs', import.meta.url);

interface Sample {
  rate: number;
  p50: number;
  p99: number;
}
interface Subject {
  name: string;
  subject: 'local' | 'shared' | 'redis';
  concurrency: number;
}

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const noRedis = await redisUnreachable();
  if (noRedis) log(`  ${noRedis}: the Redis rows are skipped`);
  const subjects: Subject[] = [];
  for (const concurrency of [1, 16]) {
    subjects.push({ name: 'in-process counter (same async call)', subject: 'local', concurrency });
    subjects.push({
      name: '**`worker.counter().add()`** (supervisor over IPC)',
      subject: 'shared',
      concurrency,
    });
    if (!noRedis) subjects.push({ name: 'ioredis `INCR`', subject: 'redis', concurrency });
  }
  const sup = await supervise({
    exec: FIXTURE,
    workers: 1,
    env: { REDIS_URL },
    exit: false,
    handleSignals: false,
    prefixOutput: false,
    logger: { info() {}, warn() {}, error() {} },
  });
  try {
    // Warm-up: each subject once, a tenth of the calls.
    for (const s of subjects)
      await sup.request(
        0,
        'run',
        { subject: s.subject, n: CALLS / 10, concurrency: s.concurrency },
        { timeout: 60_000 },
      );
    const series = await alternate(
      subjects,
      rounds,
      async (s) => {
        const r = (await sup.request(
          0,
          'run',
          { subject: s.subject, n: CALLS, concurrency: s.concurrency },
          { timeout: 120_000 },
        )) as Sample;
        log(`    ${s.name}, ${s.concurrency} in flight: ${fmt(r.rate)} calls/s, p99 ${fmt(r.p99 * 1000)} µs`);
        return r;
      },
      log,
    );
    await sup.request(0, 'close', undefined, { timeout: 10_000 }).catch(() => {});
    const rows: string[][] = [];
    for (const concurrency of [1, 16]) {
      const of = (name: Subject['subject']) =>
        series.get(subjects.find((s) => s.subject === name && s.concurrency === concurrency)!);
      const shared = median(of('shared')?.samples.map((x) => x.rate) ?? []);
      for (const s of subjects.filter((x) => x.concurrency === concurrency)) {
        const got = series.get(s)!;
        if (got.error) {
          rows.push([s.name, String(concurrency), `failed: ${got.error}`, '', '', '', '']);
          continue;
        }
        const rate = median(got.samples.map((x) => x.rate));
        rows.push([
          s.name,
          String(concurrency),
          fmt(rate),
          got.samples.map((x) => fmt(x.rate)).join(', '),
          fmt(median(got.samples.map((x) => x.p50)) * 1000),
          fmt(median(got.samples.map((x) => x.p99)) * 1000),
          s.subject === 'shared' ? '1' : `${fmt(shared / rate)}×`,
        ]);
      }
    }
    return `${CALLS.toLocaleString('en-US')} awaited \`add(1)\` calls per sample from one worker of a \`weftjs/cluster\` supervisor (\`bench/fixtures/counter-worker.mjs\`), one or 16 in flight; ${rounds} rounds, subjects in rotated order, medians. The in-process counter is the same async call on a \`Map\` in the worker (the cost of the call shape alone); ioredis \`INCR\` goes to Redis at \`${new URL(REDIS_URL).host}\` on this machine.${noRedis ? ` ${noRedis}: no Redis rows.` : ''} The last column is the shared counter's calls/s divided by the row's.

${table(['Counter', 'in flight', 'calls/s (median)', 'per round', 'p50 µs', 'p99 µs', 'shared ÷ this'], rows)}`;
  } finally {
    await within(sup.stop(), 30_000, 'the supervisor to stop');
  }
}
