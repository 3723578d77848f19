// The one bus the services share. The services do not change with the scope; this file picks the transport:
// - one process: `node main.ts` (the default);
// - the workers of one `weft start`: the cluster transport, relayed by the supervisor;
// - several machines: `ORDER_BUS=redis` (Redis Streams at REDIS_URL, keys under ORDER_BUS_PREFIX).
import { appendFileSync } from 'node:fs';
import { clusterTransport, createBus, type Transport } from 'weftjs/bus';
import type { OrderEvents } from './events.ts';

/** Connections this file opened, closed by `closeBus`. */
const opened: { quit(): Promise<unknown> }[] = [];

async function transport(): Promise<Transport | undefined> {
  if (process.env.ORDER_BUS === 'redis') {
    const [{ Redis }, { redisTransport }] = await Promise.all([
      import('ioredis'),
      import('weftjs/bus/redis'),
    ]);
    const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    opened.push(client);
    return redisTransport({ client, prefix: process.env.ORDER_BUS_PREFIX ?? 'orders:' });
  }
  if (process.env.WEFT_WORKER_INDEX !== undefined) return clusterTransport();
  return undefined; // this process
}

const chosen = await transport();
export const bus = createBus<OrderEvents>(chosen ? { transport: chosen } : {});

/** Ends the subscriptions, then the connections the transport needed. */
export async function closeBus(): Promise<void> {
  await bus.close();
  for (const c of opened) await c.quit();
}

/** What a service did, one line on stdout and, when ORDER_LOG is set, in that file (the test reads it). */
export function done(service: string, text: string): void {
  const line = `${service}: ${text}`;
  console.log(line);
  if (process.env.ORDER_LOG)
    appendFileSync(process.env.ORDER_LOG, `${JSON.stringify({ pid: process.pid, service, text })}\n`);
}
