import { Pool } from 'weftjs/pool';

const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 2,
});

const passwords = ['correct horse battery staple', 'hunter2', 's3cret'];
const hashes = await Promise.all(passwords.map((p) => pool.run('hashPassword', [p], { timeout: 5_000 })));
for (const [i, hash] of hashes.entries()) console.log(`hash ${JSON.stringify(passwords[i])} ${hash}`);

const stored = hashes[1]!;
console.log(`verify "hunter2": ${await pool.run('verifyPassword', ['hunter2', stored])}`);
console.log(`verify "hunter3": ${await pool.run('verifyPassword', ['hunter3', stored])}`);

const { threads, completed, failed, runTime } = pool.stats();
console.log(
  `stats threads=${threads.total} completed=${completed} failed=${failed} p50=${runTime.p50.toFixed(1)} ms`,
);
await pool.close();
