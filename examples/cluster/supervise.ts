// The same cluster from code: start two workers, ask each how many requests it served, reload, stop.
//   PORT=3000 node --conditions=weft-source examples/cluster/supervise.ts
import { supervise } from 'weftjs/cluster';

const port = Number(process.env.PORT ?? 3000);
const sup = await supervise({
  exec: new URL('./server.ts', import.meta.url),
  workers: 2,
  env: { PORT: String(port) },
  exit: false,
  handleSignals: false,
});
for (let i = 0; i < 10; i++) await (await fetch(`http://127.0.0.1:${port}/`)).text();
const served = await Promise.all([sup.request(0, 'served'), sup.request(1, 'served')]);
console.log(JSON.stringify({ served, total: (served as number[]).reduce((a, b) => a + b, 0) }));
const reload = await sup.reload();
console.log(JSON.stringify({ reload }));
console.log(JSON.stringify({ stopped: await sup.stop() }));
