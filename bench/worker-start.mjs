// What a weft worker's start costs beyond a bare node:cluster worker's: fork to `listening` of
// bench/fixtures/cluster-app.mjs in a real cluster worker, 12 rounds, the variants alternating; medians.
// `npm run build` first (the agent is loaded from dist/). Run: node bench/worker-start.mjs
//
// - raw: the app as node:cluster forks it (the cluster benchmark's raw and PM2 subjects);
// - agent: with weft's worker agent loaded first (`--import dist/cluster/agent.js`, as `weft start` does);
// - lifecycle: the app drained by weft/lifecycle (BENCH_MODE=weft), without the agent;
// - weft: both, as the cluster benchmark's weft subject runs;
// - weft, compile cache: both, with NODE_COMPILE_CACHE set (a directory under the OS's temporary one).
import cluster from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { within } from './lib/harness.ts';
import { median } from './lib/stats.ts';

const ROUNDS = 12;
const app = new URL('./fixtures/cluster-app.mjs', import.meta.url).pathname;
const agent = new URL('../dist/cluster/agent.js', import.meta.url).href;
const cache = mkdtempSync(join(tmpdir(), 'weft-worker-start-'));
const weftEnv = {
  WEFT_WORKER_INDEX: '0',
  WEFT_WORKERS: '1',
  WEFT_STATS_INTERVAL: '1000',
  WEFT_KILL_TIMEOUT: '5000',
};
const variants = {
  raw: { execArgv: [], env: {} },
  agent: { execArgv: ['--import', agent], env: weftEnv },
  lifecycle: { execArgv: [], env: { BENCH_MODE: 'weft' } },
  weft: { execArgv: ['--import', agent], env: { ...weftEnv, BENCH_MODE: 'weft' } },
  'weft, compile cache': {
    execArgv: ['--import', agent],
    env: { ...weftEnv, BENCH_MODE: 'weft', NODE_COMPILE_CACHE: cache },
  },
};

const results = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, v] of Object.entries(variants)) {
      cluster.setupPrimary({ exec: app, execArgv: v.execArgv, silent: true });
      const t = performance.now();
      const worker = cluster.fork({ PORT: '0', ...v.env });
      await within(new Promise((resolve) => worker.once('listening', resolve)), 10_000, `${name} to listen`);
      results[name].push(performance.now() - t);
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.process.kill('SIGKILL');
      await within(exited, 10_000, `${name} to exit`);
    }
  }
} finally {
  rmSync(cache, { recursive: true, force: true });
}
const raw = median(results.raw);
console.log(`fork to listening, ${ROUNDS} rounds, medians (node ${process.version}):`);
for (const [name, xs] of Object.entries(results)) {
  const m = median(xs);
  console.log(
    `  ${name}: ${m.toFixed(1)} ms (${(m / raw).toFixed(2)}× raw; ${xs.map((x) => x.toFixed(0)).join(', ')})`,
  );
}
process.exit(0);
