// The PostgreSQL job store's own behaviour, beyond the queue contract it shares with the other stores
// (queue-contract.test.ts runs that contract on it under the RabbitMQ adapter).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PgJobStore } from '../src/queue/pg-store.ts';
import type { Job } from '../src/queue/types.ts';
import { DATABASE_URL, pgSchema, serviceSkip } from './services.ts';

const skip = await serviceSkip({ postgres: DATABASE_URL });

describe('PgJobStore specifics', { skip }, () => {
  let db: Awaited<ReturnType<typeof pgSchema>>;
  let store: PgJobStore;
  before(async () => {
    db = await pgSchema('pgstore');
    store = await PgJobStore.open(db.url, { leaseMs: 30_000, retryDelayMs: 100 });
  });
  after(async () => {
    await store?.close();
    await db?.cleanup();
  });

  /**
   * Runs `fn` with every statement a pg client sends (its text, when sent as a string) shown to `see` first, which
   * may return another statement to send in its place.
   */
  async function watchingQueries<T>(
    see: (text: string) => string | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const query = pg.Client.prototype.query;
    // biome-ignore lint/suspicious/noExplicitAny: pg's query overloads, passed through unchanged
    (pg.Client.prototype as any).query = function (this: pg.Client, ...args: any[]) {
      const text = typeof args[0] === 'string' ? args[0] : args[0]?.text;
      if (typeof text === 'string') args[0] = see(text) ?? args[0];
      // biome-ignore lint/suspicious/noExplicitAny: as above
      return (query as any).apply(this, args);
    };
    try {
      return await fn();
    } finally {
      pg.Client.prototype.query = query;
    }
  }

  /** Runs `fn`, counting the statements every pg client sends that start with `prefix`. */
  async function counting<T>(prefix: string, fn: () => Promise<T>): Promise<{ value: T; count: number }> {
    let count = 0;
    const value = await watchingQueries((text) => {
      if (text.trimStart().startsWith(prefix)) count++;
      return undefined;
    }, fn);
    return { value, count };
  }

  it('makes the completions of one turn that queue nothing by one statement; a refused one holds up none', async () => {
    const added = [...(await store.add('f', ['image', 'csv'], 3)), ...(await store.add('g', ['image'], 3))];
    const claimed = await store.claimIds(
      'A',
      added.map((j) => j.id),
    );
    assert.equal(claimed.jobs.length, 3);
    const [x, y, z] = claimed.jobs as [Job, Job, Job];
    const { value, count } = await counting('UPDATE weft_jobs', () =>
      Promise.all([
        store.complete(x, 'A', { n: 1 }),
        store.complete(y, 'B', { n: 2 }), // not B's lease
        store.complete(z, 'A', { n: 3 }),
        store.complete(x, 'A', { again: true }), // the same job twice in one turn
      ]),
    );
    assert.deepEqual(value, [true, false, true, false]);
    // One statement for the turn's distinct jobs, one more for the repeat (refused there). One at a time, these were 4.
    assert.equal(count, 2);
    assert.equal((await store.get(x.id))?.state, 'completed');
    assert.deepEqual((await store.get(x.id))?.result, { n: 1 });
    assert.ok((await store.get(x.id))?.finishedAt);
    const stillA = await store.get(y.id);
    assert.equal(stillA?.state, 'active');
    assert.equal(stillA?.leaseOwner, 'A');
    assert.deepEqual((await store.get(z.id))?.result, { n: 3 });
    assert.equal(await store.complete(y, 'A', null), true, 'its owner still completes it');
    assert.equal((await store.get(y.id))?.result, null);
  });

  it('leases the runnable jobs of a claim by one statement, and sorts out the rest as before', async () => {
    const added = [...(await store.add('p', ['image', 'csv'], 3)), ...(await store.add('q', ['image'], 3))];
    const ids = added.map((j) => j.id);
    const { value: claimed, count } = await counting('', () => store.claimIds('A', ids));
    assert.deepEqual(
      claimed.jobs.map((j) => [j.id, j.state, j.leaseOwner, j.attempts]),
      ids.map((id) => [id, 'active', 'A', 1]),
    );
    assert.deepEqual([claimed.gone, claimed.later, claimed.dead], [[], [], []]);
    // One UPDATE, no BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT.
    assert.equal(count, 1);
    const [first] = claimed.jobs;
    assert.ok(first);
    assert.equal(await store.complete(first, 'A', {}), true);
    // Another owner: one finished (gone), two under A's live lease (later), one that never was (gone).
    const again = await store.claimIds('B', [...ids, 987_654_321]);
    assert.deepEqual(again.jobs, []);
    assert.deepEqual(again.gone.sort(), [first.id, 987_654_321].sort());
    assert.deepEqual(again.later, ids.slice(1));
  });

  it('fails every completion of a turn with the database error when the statement fails', async () => {
    const [job] = await store.add('h', ['image'], 3);
    assert.ok(job);
    const [claimed] = (await store.claimIds('A', [job.id])).jobs;
    assert.ok(claimed);
    // A statement PostgreSQL refuses, in place of the completion's.
    const outcome = await watchingQueries(
      (text) => (text.includes('unnest(') ? 'SELECT * FROM no_such_table' : undefined),
      () => store.complete(claimed, 'A', {}).catch((err: unknown) => err),
    );
    assert.match(String((outcome as Error)?.message), /no_such_table/);
    assert.equal((await store.get(job.id))?.state, 'active', 'nothing recorded');
    assert.equal(await store.complete(claimed, 'A', {}), true, 'and the next completion is made');
  });
});
