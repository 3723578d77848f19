// A service for `weft start`: every worker serves the same port; the lifecycle drains it on reload and stop.
//   PORT=3000 npx weft start examples/cluster/server.ts --workers 2
import { createServer } from 'node:http';
import { worker } from 'weftjs/cluster';
import { createLifecycle } from 'weftjs/lifecycle';

let served = 0;
const server = createServer((req, res) => {
  if (req.url === '/health/ready') return life.readinessHandler()(req, res);
  served++;
  worker.report({ served });
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ slot: worker.index, pid: process.pid, threads: worker.threads }));
});

const life = createLifecycle({ shutdownTimeout: 10_000 });
life.addServer(server);
worker.handle('served', () => served);

server.listen(Number(process.env.PORT ?? 3000), () => {
  console.log(`slot ${worker.index} listening on ${process.env.PORT ?? 3000}`);
  void life.ready();
});
