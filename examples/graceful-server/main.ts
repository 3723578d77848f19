// A service that stops without losing an accepted request (see docs/lifecycle.md):
//   node --conditions=weft-source examples/graceful-server/main.ts      then: kill -TERM <pid>
// GET /?ms=100 waits 100 ms, then hashes the path in a weft/pool thread and answers the hex digest.
// GET /health/live, /health/ready and /health/startup are the probes; every other route is guarded by a LoadShedder.
// stdout: JSON lines: `{"listening":port}` once ready, the lifecycle's log, `{"counts":{...}}` in the flush phase.
import { createServer } from 'node:http';
import { createLifecycle, LoadShedder, type Logger } from 'weftjs/lifecycle';
import { Pool } from 'weftjs/pool';

const line = (value: object) => process.stdout.write(`${JSON.stringify(value)}\n`);
const log =
  (level: string) =>
  (obj: object, msg?: string): void => {
    const err = (obj as { err?: unknown }).err;
    line({
      level,
      msg,
      ...obj,
      ...(err instanceof Error ? { err: { message: err.message, stack: err.stack } } : {}),
    });
  };
const logger: Logger = { info: log('info'), warn: log('warn'), error: log('error') };

const life = createLifecycle({ shutdownTimeout: 10_000, logger });

const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 2,
});
life.register(pool); // closed in the drain phase, once the server has drained: late requests still need it
life.addCheck('pool-queue', () => pool.queueSize < 1_000, { kind: 'readiness' });

const shedder = new LoadShedder({
  maxEventLoopDelay: 1_000,
  gauges: { poolQueue: { value: () => pool.queueSize, max: 1_000 } },
});
shedder.on('overload', (reasons) => logger.warn({ reasons }, 'shedding load'));
shedder.on('recover', () => logger.info({}, 'load back to normal'));
life.register(shedder, { phase: 'flush' });
const guard = shedder.handler();

const probes: Record<string, ReturnType<typeof life.livenessHandler>> = {
  '/health/live': life.livenessHandler(),
  '/health/ready': life.readinessHandler(),
  '/health/startup': life.startupHandler(),
};

// The server's own log of what it accepted: a request is started once it passes the guard, finished once a full
// 200 has been handed to the OS.
const counts = { started: 0, finished: 0 };

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const probe = probes[url.pathname];
  if (probe) return void probe(req, res);
  if (guard(req, res)) return; // 503 + Retry-After while overloaded; health routes are exempt
  counts.started++;
  res.once('finish', () => {
    if (res.statusCode === 200) counts.finished++;
  });
  const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), 60_000);
  await new Promise((resolve) => setTimeout(resolve, ms));
  try {
    res.end(await pool.run('digest', [url.pathname, 1_000]));
  } catch (err) {
    res.statusCode = 500;
    res.end(String((err as Error).message));
  }
});

life.addServer(server, { idleGrace: 200 }); // the default idleGrace, spelled out
life.onShutdown('report', () => line({ counts }), { phase: 'flush' });

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', async () => {
  await life.ready(); // readiness and startup turn green
  const address = server.address();
  line({ listening: typeof address === 'object' && address ? address.port : 0 });
});
