// The order service of seed 002 on weftjs/bus, the same code in three scopes:
//   ./node_modules/.bin/node --conditions=weft-source examples/order-events/main.ts          one process: 3 orders, then exit
//   PORT=3000 npm run weft -- start examples/order-events/main.ts --workers 2            the workers of a cluster
//   ORDER_BUS=redis PORT=3001 ./node_modules/.bin/node --conditions=weft-source examples/order-events/main.ts   one node of several
// With PORT set it serves `POST /orders?user=u-1` (answers the order id) instead of placing 3 orders and exiting.
import { createServer } from 'node:http';
import { ready as analytics } from './analytics-service.ts';
import { closeBus } from './bus.ts';
import { ready as email } from './email-service.ts';
import { ready as inventory } from './inventory-service.ts';
import { placeOrder } from './order-service.ts';

await Promise.all([email, inventory, analytics]);

if (!process.env.PORT) {
  for (const user of ['u-1', 'u-2', 'u-3']) await placeOrder(user, [{ productId: 'p-42', qty: 2 }]);
  await closeBus();
} else {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'POST' || url.pathname !== '/orders') {
      res.writeHead(404).end();
      return;
    }
    placeOrder(url.searchParams.get('user') ?? 'anonymous', [{ productId: 'p-42', qty: 1 }]).then(
      (id) => res.end(id),
      (err: Error) => res.writeHead(503).end(err.message),
    );
  });
  server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`orders on ${process.env.PORT}`));
  const stop = () => server.close(() => void closeBus().then(() => process.exit(0)));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
