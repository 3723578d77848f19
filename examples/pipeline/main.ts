import { MessageChannel } from 'node:worker_threads';
import { Pool } from 'weftjs/pool';

const ITEMS = 100_000;
const CHUNK_SIZE = 4_096;

// Both stages must run at the same time: stage B waits for what stage A sends, so give them two threads.
const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 2,
});

// The two ends of the channel are moved to the two tasks; this thread keeps neither, and each stage closes its end.
const { port1, port2 } = new MessageChannel();
const [sent, summary] = await Promise.all([
  pool.run('produce', [port1, ITEMS, CHUNK_SIZE], { transfer: [port1], timeout: 10_000 }),
  pool.run('summarize', [port2], { transfer: [port2], timeout: 10_000 }),
]);
console.log(`stage A sent chunks=${sent.chunks} items=${sent.items}`);
console.log(
  `stage B summary chunks=${summary.chunks} items=${summary.items} sum=${summary.sum} min=${summary.min} max=${summary.max}`,
);

// The sum of the squares of 1..n is n(n+1)(2n+1)/6; every partial sum stays an exact integer in a double.
const expected = (ITEMS * (ITEMS + 1) * (2 * ITEMS + 1)) / 6;
console.log(`expected sum=${expected}: ${summary.sum === expected ? 'ok' : 'WRONG'}`);

await pool.close();
if (summary.sum !== expected) process.exitCode = 1;
