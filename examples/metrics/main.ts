// Metrics of one process (see docs/metrics.md): a pool, a lifecycle and a stream meter in weft/metrics, served on
// GET /metrics and /metrics.json on an ephemeral loopback port, scraped once, then everything closed.
//   node --conditions=weft-source examples/metrics/main.ts
// stdout: `listening http://127.0.0.1:<port>/metrics`, a few lines of the scrape, a JSON summary, `closed`.
import { createLifecycle } from 'weftjs/lifecycle';
import { createMetrics, type MeterSnapshot, serveMetrics } from 'weftjs/metrics';
import { Pool } from 'weftjs/pool';

const silent = { info() {}, warn() {}, error() {} };
// exit: false so the example ends by itself; a service keeps the default and exits after its shutdown.
const life = createLifecycle({ logger: silent, exit: false });
const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 2,
});

// Anything with a name and snapshot() is a meter; weft/stream's meter() has this shape.
let items = 0;
const started = performance.now();
const meter = {
  name: 'results',
  snapshot(): MeterSnapshot {
    const elapsedMs = performance.now() - started;
    return {
      name: 'results',
      items,
      bytes: items * 8,
      elapsedMs,
      itemsPerSecond: (items * 1000) / Math.max(1, elapsedMs),
      bytesPerSecond: (items * 8000) / Math.max(1, elapsedMs),
      pauses: 0,
      pausedMs: 0,
    };
  },
};

const metrics = createMetrics();
metrics.addPool(pool, { name: 'fib' });
metrics.addLifecycle(life);
metrics.addMeter(meter);
const server = await serveMetrics(metrics, { port: 0 });
// The pool closes in the drain phase; the endpoint and the collectors last (flush), so a scrape still sees the drain.
life.register(pool);
life.register(server, { phase: 'flush' });
life.register(metrics, { phase: 'flush' });
await life.ready();
console.log(`listening ${server.url}`);

await Promise.all(
  Array.from({ length: 20 }, async (_, i) => {
    await pool.run('fib', [15 + (i % 5)]);
    items++;
  }),
);

const text = await (await fetch(server.url)).text();
const wanted =
  /^weft_(pool_tasks_total\{.*completed|lifecycle_state\{.*\} 1|stream_items_total|eventloop_utilization)/;
for (const line of text.split('\n')) if (wanted.test(line)) console.log(line);

const json = (await (await fetch(`${server.url}.json`)).json()) as ReturnType<typeof metrics.snapshot>;
console.log(
  JSON.stringify({
    completed: json.pools.fib?.completed,
    state: json.lifecycles.default?.state,
    items: json.meters.results?.items,
    rssMB: Math.round((json.process?.memory.rss ?? 0) / 2 ** 20),
  }),
);

await life.shutdown('example done');
console.log('closed');
