// A service that stops without losing an accepted request:
//   node --conditions=weft-source examples/graceful-server/main.ts      then: kill -TERM <pid>
// GET /?ms=100 answers after 100 ms; GET /hash?text=x does CPU work in a weft/pool thread; /health/* are probes.
import { createServer } from 'node:http';
import { createLifecycle, LoadShedder } from 'weft/lifecycle';
import { Pool } from 'weft/pool';

const json = (level: string) => (obj: object, msg?: string) =>
  console.log(JSON.stringify({ level, msg, ...obj }));
const logger = { info: json('info'), warn: json('warn'), error: json('error') };

const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 1,
});
const shedder = new LoadShedder({
  maxEventLoopDelay: 500,
  gauges: { queue: { value: () => pool.queueSize, max: 1_000 } },
});
const guard = shedder.handler();
const counts = { started: 0, finished: 0 };

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/health/live') return life.livenessHandler()(req, res);
  if (url.pathname === '/health/ready') return life.readinessHandler()(req, res);
  if (guard(req, res)) return; // 503 + Retry-After while overloaded
  counts.started++;
  res.on('finish', () => {
    if (res.statusCode === 200) counts.finished++;
  });
  if (url.pathname === '/hash') {
    try {
      res.end(await pool.run('digest', [url.searchParams.get('text') ?? '', 1_000]));
    } catch (err) {
      res.statusCode = 500;
      res.end(String((err as Error).message));
    }
    return;
  }
  setTimeout(() => res.end('ok'), Number(url.searchParams.get('ms') ?? 0));
});

const life = createLifecycle({ shutdownTimeout: 10_000, logger });
life.addServer(server, { idleGrace: 200 });
life.register(pool); // finishes its tasks in the drain phase
life.register(shedder, { phase: 'flush' });
life.onShutdown('report', () => console.log(JSON.stringify({ counts })), { phase: 'flush' });

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', async () => {
  await life.ready();
  const address = server.address();
  console.log(JSON.stringify({ listening: typeof address === 'object' && address ? address.port : 0 }));
});
