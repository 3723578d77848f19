/**
 * Benchmark entry point: `npm run bench` runs every area, `npm run bench -- pool` only the named ones, and
 * `--write` also replaces each area's section of docs/benchmarks.md; `files --backend redis` runs the file service on
 * Redis, PostgreSQL and S3 (files-redis.ts). `BENCH_ROUNDS` sets the rounds (default 3).
 */
import { type AreaOptions, roundsFromEnv } from './lib/harness.ts';
import { load, machine, updateDocs, writeResult } from './lib/report.ts';

interface Area {
  title: string;
  run: (options: AreaOptions) => Promise<string>;
}

/** Areas by name, loaded only when asked for. New areas (stream, cluster) are added here. */
const AREAS: Record<string, () => Promise<Area>> = {
  pool: async () => ({ title: 'Worker pool', run: (await import('./pool.ts')).run }),
  lifecycle: async () => ({ title: 'Graceful shutdown', run: (await import('./lifecycle.ts')).run }),
  stream: async () => ({ title: 'Streams', run: (await import('./stream.ts')).run }),
  cluster: async () => ({ title: 'Cluster supervisor', run: (await import('./cluster.ts')).run }),
  metrics: async () => ({ title: 'Metrics overhead', run: (await import('./metrics.ts')).run }),
  files: async () => ({ title: 'File service', run: (await import('./files.ts')).run }),
  counters: async () => ({ title: 'Shared counters', run: (await import('./counters.ts')).run }),
  // Its machines scope needs Redis: without it the area still runs and says why that scope was skipped.
  bus: async () => ({ title: 'Event bus', run: (await import('./bus.ts')).run }),
  'files-sync': async () => ({
    title: 'File service: making a 201 durable, FULL against a shared WAL fsync',
    run: (await import('./files-sync.ts')).run,
  }),
  // Needs Redis, RabbitMQ and PostgreSQL.
  'files-queues': async () => ({
    title: 'File service: no-op jobs through each remote queue',
    run: (await import('./files-queues.ts')).run,
  }),
  // `files --backend redis` runs this one.
  'files-redis': async () => ({
    title: 'File service on Redis, PostgreSQL and S3',
    run: (await import('./files-redis.ts')).run,
  }),
};

const RESULTS = new URL('./results/', import.meta.url);
const DOCS = new URL('../docs/benchmarks.md', import.meta.url);

/**
 * Areas run by default: `files-redis` needs Redis and PostgreSQL, `files-queues` RabbitMQ too, and `files-sync`
 * measures one setting, so they run when asked for.
 */
const DEFAULT_AREAS = Object.keys(AREAS).filter(
  (a) => a !== 'files-redis' && a !== 'files-sync' && a !== 'files-queues',
);

function parseArgs(argv: string[]): { areas: string[]; write: boolean } {
  const areas: string[] = [];
  let write = false;
  let backend = 'embedded';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--write') write = true;
    else if (arg === '--backend') {
      backend = argv[++i] ?? '';
      if (backend !== 'redis' && backend !== 'embedded')
        throw new Error(`--backend must be "embedded" or "redis", got "${backend}"`);
    } else if (Object.hasOwn(AREAS, arg)) areas.push(arg);
    else {
      throw new Error(
        `Unknown argument "${arg}". Areas: ${Object.keys(AREAS).join(', ')}; flags: --write, --backend redis.`,
      );
    }
  }
  const chosen = areas.length > 0 ? areas : DEFAULT_AREAS;
  return {
    areas: backend === 'redis' ? chosen.map((a) => (a === 'files' ? 'files-redis' : a)) : chosen,
    write,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const { areas, write } = parseArgs(args);
  const rounds = roundsFromEnv();
  const rounded = process.env.BENCH_ROUNDS ? `BENCH_ROUNDS=${rounds} ` : '';
  const command = `${rounded}npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  for (const name of areas) {
    const area = await AREAS[name]!();
    log(`# ${area.title} (${name})`);
    const started = performance.now();
    const loadBefore = load();
    const body = await area.run({ rounds, log });
    const took = performance.now() - started;
    const full = `## ${area.title}\n\n${machine(command, loadBefore, took)}\n\n${body}`;
    process.stdout.write(`${full}\n`);
    const file = await writeResult(RESULTS, name, full);
    log(`# ${name}: ${(took / 1000).toFixed(1)} s; wrote ${file.pathname}`);
    if (write) {
      await updateDocs(DOCS, name, full);
      log(`# ${name}: updated ${DOCS.pathname}`);
    }
  }
}

main().then(
  () => {
    // Every pool is closed by now; if a stuck one still holds the process, do not hang.
    setTimeout(() => {
      process.stderr.write('bench: something still holds the event loop after the run; exiting\n');
      process.exit(process.exitCode ?? 0);
    }, 5_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
